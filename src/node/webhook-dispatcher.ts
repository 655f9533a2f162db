/**
 * Delivers the events of activeflows that have a `webhook_uri` to that URI, in VoIPBIN's wrapped
 * form `{"type": "...", "data": <public activeflow>}`, from the durable consumer `af_webhooks` on
 * ACTIVEFLOW_EVENTS. At least once: a message is acknowledged only after a 2xx answer. Messages
 * are handled one at a time, so one activeflow's events arrive in order; a failing endpoint is
 * retried in place with backoff (bounded), then handed back to the server for a later redelivery.
 */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { StreamEvent } from '../../machines/index.js';
import type { Logger } from '../log.js';
import { EVENTS_STREAM } from '../store/buckets.js';
import { decodeJson } from '../store/codec.js';

export const WEBHOOK_CONSUMER = 'af_webhooks';

export interface WebhookOptions {
  timeoutMs: number;
  /** Attempts in place before the message goes back to the server. */
  attempts: number;
  /** Redeliveries by the server before the event is given up (and logged). */
  maxDeliver: number;
}

export class WebhookDispatcher {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private stopFn: (() => void) | null = null;
  delivered = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly options: WebhookOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    await this.jsm.consumers.add(EVENTS_STREAM, {
      durable_name: WEBHOOK_CONSUMER,
      ack_policy: AckPolicy.Explicit,
      deliver_policy: DeliverPolicy.New,
      ack_wait: (this.options.timeoutMs * (this.options.attempts + 1) + 5_000) * 1_000_000,
      max_deliver: this.options.maxDeliver,
      max_ack_pending: 1, // one at a time: order per activeflow
    }).catch(async (e: unknown) => {
      if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
    });
    const consumer = await this.js.consumers.get(EVENTS_STREAM, WEBHOOK_CONSUMER);
    const messages = await consumer.consume({ max_messages: 64 });
    this.stopFn = () => messages.stop();
    this.loop = (async () => {
      for await (const m of messages) {
        if (this.stopped) break;
        let event: StreamEvent;
        try {
          event = StreamEvent.parse(decodeJson(m.data));
        } catch {
          m.term();
          continue;
        }
        const uri = event.data.webhook_uri;
        if (uri === '') {
          m.ack();
          continue;
        }
        if (await this.deliver(uri, event.data.webhook_method || 'POST', event)) {
          this.delivered++;
          m.ack();
        } else if (m.info.deliveryCount >= this.options.maxDeliver) {
          this.log.error({ event: 'webhook_given_up', activeflow_id: event.data.id, seq: event.seq }, 'a webhook event could not be delivered');
          m.term();
        } else {
          m.nak(Math.min(60_000, 1_000 * 2 ** m.info.deliveryCount));
        }
      }
    })().catch((e: unknown) => this.log.error({ event: 'webhook_loop_failed', err: e }));
  }

  private async deliver(uri: string, method: string, event: StreamEvent): Promise<boolean> {
    const body = JSON.stringify({ type: event.type, data: event.data });
    for (let attempt = 0; attempt < this.options.attempts && !this.stopped; attempt++) {
      try {
        const r = await fetch(uri, {
          method, headers: { 'Content-Type': 'application/json' }, ...(method === 'GET' ? {} : { body }),
          signal: AbortSignal.timeout(this.options.timeoutMs),
        });
        await r.arrayBuffer().catch(() => undefined);
        if (r.status >= 200 && r.status < 300) return true;
        this.log.warn({ event: 'webhook_failed', status: r.status, activeflow_id: event.data.id, attempt });
      } catch (e) {
        this.log.warn({ event: 'webhook_failed', reason: (e as Error).message, activeflow_id: event.data.id, attempt });
      }
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
    return false;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopFn?.();
    await this.loop;
  }
}
