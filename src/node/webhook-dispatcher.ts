/**
 * Delivers the events of activeflows that have a `webhook_uri` to that URI, in VoIPBIN's wrapped
 * form `{"type": "...", "data": <public activeflow>}`, from the durable consumer `af_webhooks` on
 * ACTIVEFLOW_EVENTS. At least once: a message is acknowledged only after a 2xx answer.
 *
 * Order per activeflow, without one endpoint holding up the others: messages are queued per
 * activeflow and each queue is worked one message at a time, while queues of different
 * activeflows run side by side. A failing endpoint is retried in place, with backoff, holding its
 * own activeflow's later events back (they stay unacknowledged, kept alive with `working()`), so
 * a retry can never be overtaken. After `giveUpAfterMs` the event is given up
 * (logged, terminated) and the next one goes.
 *
 * Only one node runs this at a time (it holds the `webhooks` lease in af_leases): two nodes pulling
 * from the same durable would each get some events of one activeflow and deliver them side by
 * side, out of order. If that node dies, another takes the lease, and the events it had not
 * acknowledged are redelivered to the new one after the ack wait.
 */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { StreamEvent } from '../../machines/index.js';
import type { Logger } from '../log.js';
import { EVENTS_STREAM } from '../store/buckets.js';
import { decodeJson } from '../store/codec.js';

export const WEBHOOK_CONSUMER = 'af_webhooks';

export interface WebhookOptions {
  timeoutMs: number;
  /** How long one event is retried before it is given up. */
  giveUpAfterMs: number;
  /** Longest wait between two attempts. */
  maxBackoffMs?: number;
  /** Events in flight at once (across activeflows; each activeflow has one). */
  concurrency?: number;
  /** Delivery lag (seconds from the event) and events given up, for /metrics. */
  onDelivered?: (lagSeconds: number) => void;
  onGivenUp?: () => void;
}

/**
 * How long the server waits for an ack before it redelivers (what a dead deliverer costs); every
 * message held here is kept alive with `working()` three times per period.
 */
const ACK_WAIT_MS = 10_000;

export class WebhookDispatcher {
  private stopped = false;
  private loop: Promise<void> | null = null;
  private stopFn: (() => void) | null = null;
  /** Per activeflow, the messages waiting behind the one being delivered. */
  private readonly queues = new Map<string, { m: JsMsg; event: StreamEvent }[]>();
  private readonly workers = new Set<Promise<void>>();
  delivered = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly options: WebhookOptions,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    const config = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: ACK_WAIT_MS * 1_000_000,
      max_deliver: -1, // given up by time, here: a redelivery after a crash must not count against it
      max_ack_pending: this.options.concurrency ?? 256,
    };
    await this.jsm.consumers.add(EVENTS_STREAM, { durable_name: WEBHOOK_CONSUMER, deliver_policy: DeliverPolicy.New, ...config }).catch(async (e: unknown) => {
      if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
      await this.jsm.consumers.update(EVENTS_STREAM, WEBHOOK_CONSUMER, config); // older settings (one at a time)
    });
    const consumer = await this.js.consumers.get(EVENTS_STREAM, WEBHOOK_CONSUMER);
    const messages = await consumer.consume({ max_messages: 64 });
    // Everything held (delivering, retrying, or queued behind those) stays ours while we hold it.
    const heartbeat = setInterval(() => {
      for (const queue of this.queues.values()) for (const { m } of queue) m.working();
    }, Math.floor(ACK_WAIT_MS / 3));
    heartbeat.unref();
    this.stopFn = () => {
      clearInterval(heartbeat);
      messages.stop();
    };
    this.loop = (async () => {
      for await (const m of messages) {
        if (this.stopped) break;
        this.accept(m);
      }
    })().catch((e: unknown) => this.log.error({ event: 'webhook_loop_failed', err: e }));
  }

  private accept(m: JsMsg): void {
    let event: StreamEvent;
    try {
      event = StreamEvent.parse(decodeJson(m.data));
    } catch {
      m.term();
      return;
    }
    if (event.data.webhook_uri === '') {
      m.ack();
      return;
    }
    const id = event.data.id;
    const queue = this.queues.get(id);
    if (queue !== undefined) {
      queue.push({ m, event });
      return;
    }
    this.queues.set(id, [{ m, event }]);
    const worker = this.work(id).finally(() => this.workers.delete(worker));
    this.workers.add(worker);
  }

  /** Delivers one activeflow's queue in order. */
  private async work(id: string): Promise<void> {
    const queue = this.queues.get(id)!;
    while (queue.length > 0 && !this.stopped) {
      const { m, event } = queue[0]!;
      const outcome = await this.deliver(event);
      if (outcome === 'delivered') {
        this.delivered++;
        this.options.onDelivered?.(Math.max(0, (Date.now() - Date.parse(event.at)) / 1000));
        m.ack();
      } else if (outcome === 'given_up') {
        this.log.error({ event: 'webhook_given_up', activeflow_id: id, seq: event.seq, uri: event.data.webhook_uri }, `a webhook event could not be delivered within ${this.options.giveUpAfterMs} ms; going on with the next one`);
        this.options.onGivenUp?.();
        m.term();
      } else {
        return; // stopping: unacknowledged, redelivered to whoever delivers next
      }
      queue.shift();
    }
    this.queues.delete(id);
  }

  private async deliver(event: StreamEvent): Promise<'delivered' | 'given_up' | 'stopped'> {
    const method = event.data.webhook_method || 'POST';
    const body = JSON.stringify({ type: event.type, data: event.data });
    const deadline = Date.now() + this.options.giveUpAfterMs;
    for (let attempt = 0; ; attempt++) {
      if (this.stopped) return 'stopped';
      try {
        const r = await fetch(event.data.webhook_uri, {
          method, headers: { 'Content-Type': 'application/json' }, ...(method === 'GET' ? {} : { body }),
          signal: AbortSignal.timeout(this.options.timeoutMs),
        });
        await r.arrayBuffer().catch(() => undefined);
        if (r.status >= 200 && r.status < 300) return 'delivered';
        this.log.warn({ event: 'webhook_failed', status: r.status, activeflow_id: event.data.id, seq: event.seq, attempt });
      } catch (e) {
        this.log.warn({ event: 'webhook_failed', reason: (e as Error).message, activeflow_id: event.data.id, seq: event.seq, attempt });
      }
      if (Date.now() >= deadline) return 'given_up';
      const backoff = Math.min(this.options.maxBackoffMs ?? 30_000, 100 * 2 ** attempt);
      await new Promise((r) => setTimeout(r, Math.min(backoff, Math.max(0, deadline - Date.now()))));
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopFn?.();
    await this.loop;
    await Promise.all([...this.workers]);
    // Whatever was not delivered goes back to the server now, not after the ack wait.
    for (const queue of this.queues.values()) for (const { m } of queue) m.nak();
    this.queues.clear();
  }
}
