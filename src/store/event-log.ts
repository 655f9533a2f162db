/**
 * The `ACTIVEFLOW_EVENTS` stream: every event of every activeflow, on
 * `activeflow.events.<customer_id>.<activeflow_id>`, with message id `<activeflow_id>:<seq>` so the
 * server drops a republished duplicate.
 */
import { DeliverPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import { StreamEvent } from '../../machines/index.js';
import { decodeJson, encodeJson } from './codec.js';
import { EVENTS_STREAM } from './buckets.js';
import { isMessageGone } from '../errors.js';

export const eventSubject = (customerId: string, activeflowId: string): string => `activeflow.events.${customerId}.${activeflowId}`;

/**
 * On every event: `1` when its activeflow has a webhook_uri, else `0`. The webhook deliverer reads
 * every event of the stream, and without this header it had to decode and validate each one to
 * find the few it delivers (7% of a node's CPU under load with no webhooks at all).
 */
export const WEBHOOK_HEADER = 'Activeflow-Webhook';

export class EventLog {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /** Publishes in order, each acknowledged before the next, so a retry can never reorder them. */
  async publish(customerId: string, activeflowId: string, events: readonly StreamEvent[]): Promise<void> {
    const subject = eventSubject(customerId, activeflowId);
    for (const event of events) {
      const h = headers();
      h.set(WEBHOOK_HEADER, event.data.webhook_uri === '' ? '0' : '1');
      await this.js.publish(subject, encodeJson(event), { msgID: `${activeflowId}:${event.seq}`, headers: h });
    }
  }

  /** The `seq` of the last event stored for an activeflow; 0 when it has none. */
  async lastSeq(customerId: string, activeflowId: string): Promise<number> {
    try {
      // From the stream's leader, not a direct get: a replica that lags would answer an older event,
      // and the load would take effects that already started for ones that never did.
      const msg = await this.jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: eventSubject(customerId, activeflowId) });
      return msg === null ? 0 : StreamEvent.parse(decodeJson(msg.data)).seq;
    } catch (e) {
      if (isMessageGone(e)) return 0;
      throw e;
    }
  }

  /** Events of one activeflow with `seq >= fromSeq`, at most `limit`, read by an ordered consumer. */
  async history(customerId: string, activeflowId: string, fromSeq: number, limit: number): Promise<StreamEvent[]> {
    const consumer = await this.js.consumers.get(EVENTS_STREAM, {
      filter_subjects: eventSubject(customerId, activeflowId),
      deliver_policy: DeliverPolicy.All,
    });
    const out: StreamEvent[] = [];
    const info = await consumer.info(true);
    let pending = info.num_pending;
    while (pending > 0 && out.length < limit) {
      const batch = await consumer.fetch({ max_messages: Math.min(256, pending), expires: 2_000 });
      let got = 0;
      for await (const m of batch) {
        got++;
        pending = m.info.pending;
        const event = StreamEvent.parse(decodeJson(m.data));
        if (event.seq >= fromSeq && out.length < limit) out.push(event);
      }
      if (got === 0) break;
    }
    await consumer.delete().catch(() => undefined);
    return out;
  }
}
