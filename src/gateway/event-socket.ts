/**
 * The gateway's WebSocket (`/v1.0/ws?token=<access key>`): a client subscribes to topics and gets
 * its customer's activeflow events pushed, read from the ACTIVEFLOW_EVENTS stream. Topics:
 *
 *   customer_id:<id>:activeflow                   every activeflow of the customer
 *   customer_id:<id>:activeflow:<activeflow_id>   one activeflow
 *
 * A client may subscribe only to its own customer's topics. Each pushed event carries `seq` (the
 * activeflow's own event number, as `history` shows it) and `stream_seq` (its place in the stream).
 * A client that reconnects resumes without a gap: `from_seq` on an activeflow topic (events with
 * `seq >= from_seq`), `from_stream_seq` on a customer topic. Nothing is kept per client between
 * connections, so this survives a gateway restart, or reconnecting to another gateway.
 *
 * A client that reads too slowly is disconnected (1013, "try again later") instead of having its
 * events buffered without bound; it resumes from the last event it saw.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { WebSocket } from 'ws';
import { z } from 'zod';
import { describeIssues, type StreamEvent, Uuid } from '../../machines/index.js';
import type { Logger } from '../log.js';
import { RelayReader, type RelaySpec } from '../nats/relay-reader.js';
import { decodeJson } from '../store/codec.js';
import { EventMaterializer, type MissHandler, subjectIds } from '../store/event-materializer.js';
import { parseStreamMessage, type StreamMessage } from '../store/journal-entry.js';
import type { StoredAccessKey } from './access-keys.js';
import { restActiveflow } from './rest-schemas.js';

/** Activeflows each feed keeps what their next entry folds onto for. */
const FEED_ACTIVEFLOWS = 1_024;
/** Topics one connection may follow at once. */
const MAX_TOPICS = 100;
/** Bytes queued to a client before it counts as too slow. */
const MAX_BUFFERED = 8 * 1024 * 1024;
const PING_MS = 30_000;

const Topic = z.string().regex(/^customer_id:[0-9a-fA-F-]{36}:activeflow(:[0-9a-fA-F-]{36})?$/, {
  message: 'a topic is customer_id:<customer id>:activeflow or customer_id:<customer id>:activeflow:<activeflow id>',
});

export const ClientMessage = z.discriminatedUnion('type', [
  z.strictObject({
    type: z.literal('subscribe'),
    topics: z.array(Topic).min(1).max(MAX_TOPICS),
    from_seq: z.number().int().min(1).optional(),
    from_stream_seq: z.number().int().min(1).optional(),
  }),
  z.strictObject({ type: z.literal('unsubscribe'), topics: z.array(Topic).min(1).max(MAX_TOPICS) }),
]);

/** The close code and reason a client sees when its access key is deleted. */
export const REVOKED_CLOSE = { code: 1008, reason: 'access key revoked' } as const;

/** One client connection: its topics and the stream readers behind them. */
export class EventSocket {
  /** The topics followed, each read through a relay (src/nats/relay-reader.ts). */
  private readonly feeds = new Map<string, RelayReader>();
  private alive = true;
  private closed = false;
  /**
   * Messages are handled one at a time: a burst of subscribes sent at once must not each pass the
   * topic limit before any of them is counted.
   */
  private inbox: Promise<void> = Promise.resolve();
  private readonly pinger: NodeJS.Timeout;

  constructor(
    private readonly ws: WebSocket,
    private readonly nc: NatsConnection,
    readonly key: StoredAccessKey,
    private readonly log: Logger,
    /** An activeflow's events from `fromSeq` (a node's `history`): for entries of activeflows a feed saw no start of. */
    private readonly history: (customerId: string, activeflowId: string, fromSeq: number, limit: number) => Promise<StreamEvent[]>,
    /** Told when the connection ends (the gateway forgets it). */
    private readonly onClosed: (socket: EventSocket) => void = () => undefined,
  ) {
    ws.on('message', (data, isBinary) => {
      const text = isBinary ? null : data.toString();
      this.inbox = this.inbox.then(() => this.onMessage(text)).catch(() => undefined);
    });
    ws.on('close', () => this.close());
    ws.on('error', () => this.close());
    ws.on('pong', () => (this.alive = true));
    // A peer that vanished without a close frame is found by the missing pong.
    this.pinger = setInterval(() => {
      if (!this.alive) {
        ws.terminate();
        return;
      }
      this.alive = false;
      ws.ping();
    }, PING_MS);
    this.pinger.unref();
  }

  private send(value: unknown): void {
    if (this.ws.readyState !== this.ws.OPEN) return;
    if (this.ws.bufferedAmount > MAX_BUFFERED) {
      this.ws.close(1013, 'too slow: reconnect and resume with from_seq');
      return;
    }
    this.ws.send(JSON.stringify(value));
  }

  private error(code: string, message: string): void {
    this.send({ type: 'error', error: { code, message } });
  }

  private async onMessage(text: string | null): Promise<void> {
    if (this.closed) return;
    if (text === null) return this.error('invalid_argument', 'send JSON text messages');
    let raw: unknown;
    try {
      raw = JSON.parse(text);
    } catch (e) {
      return this.error('invalid_argument', `not valid JSON (${(e as Error).message})`);
    }
    const parsed = ClientMessage.safeParse(raw);
    if (!parsed.success) return this.error('invalid_argument', describeIssues(parsed.error.issues));
    const m = parsed.data;
    for (const topic of m.topics) {
      const customer = topic.split(':')[1]!.toLowerCase();
      // Another customer's topic is refused like a missing one: nothing is told about it.
      if (this.key.role !== 'operator' && customer !== this.key.customer_id) return this.error('not_found', `no topic ${topic} for this access key`);
      if (!Uuid.safeParse(customer).success) return this.error('invalid_argument', `${topic}: not a customer id`);
      if (topic.split(':')[3] !== undefined && !Uuid.safeParse(topic.split(':')[3]).success) return this.error('invalid_argument', `${topic}: not an activeflow id`);
    }
    if (m.type === 'unsubscribe') {
      for (const topic of m.topics) this.unsubscribe(topic);
      this.send({ type: 'unsubscribed', topics: m.topics });
      return;
    }
    const fresh = m.topics.filter((t) => !this.feeds.has(t));
    if (this.feeds.size + fresh.length > MAX_TOPICS) return this.error('limit_exceeded', `at most ${MAX_TOPICS} topics per connection`);
    if (m.from_seq !== undefined && m.topics.some((t) => t.split(':').length !== 4)) {
      return this.error('invalid_argument', 'from_seq resumes an activeflow topic; a customer topic resumes with from_stream_seq');
    }
    try {
      for (const topic of fresh) await this.subscribe(topic, m.from_seq, m.from_stream_seq);
    } catch (e) {
      this.log.warn({ event: 'ws_subscribe_failed', err: e });
      return this.error('unavailable', 'the event stream cannot be read right now; retry');
    }
    this.send({ type: 'subscribed', topics: m.topics });
  }

  private async subscribe(topic: string, fromSeq: number | undefined, fromStreamSeq: number | undefined): Promise<void> {
    const [, customer, , activeflow] = topic.toLowerCase().split(':');
    const subject = `activeflow.events.${customer}.${activeflow ?? '*'}`;
    const start: Pick<RelaySpec, 'deliver' | 'start_seq'> =
      activeflow !== undefined && fromSeq !== undefined
        ? { deliver: 'all' } // the activeflow's own events, skipped up to from_seq
        : fromStreamSeq !== undefined
          ? { deliver: 'all', start_seq: fromStreamSeq }
          : { deliver: 'new' };
    const reader = await RelayReader.open(this.nc, 'gateway', { stream: 'events', filter: subject, ...start });
    if (this.closed) {
      // the connection ended while this was being set up
      reader.stop();
      return;
    }
    this.feeds.set(topic, reader);
    // One per feed: a feed sees each activeflow's entries in order, two feeds each in their own.
    const events = new EventMaterializer(this.missFromNode, FEED_ACTIVEFLOWS);
    void (async () => {
      try {
        for await (const msg of reader) {
          let message: StreamMessage;
          try {
            message = parseStreamMessage(decodeJson(msg.data));
          } catch {
            continue;
          }
          for (const event of await events.events({ ...subjectIds(msg.subject), seq: msg.seq }, message)) {
            if (fromSeq !== undefined && activeflow !== undefined && event.seq < fromSeq) continue;
            this.send({ type: event.type, topic, seq: event.seq, stream_seq: msg.seq, at: event.at, data: restActiveflow(event.data) });
          }
        }
      } catch (e) {
        this.log.debug({ event: 'ws_feed_ended', err: e });
      }
    })();
  }

  /**
   * An entry of an activeflow whose start this feed did not see (it subscribed mid-call): its
   * events come from a node, which reads the journal. Its later entries do too; activeflows created
   * after the subscription are materialised here.
   */
  private readonly missFromNode: MissHandler = async (at, message) => {
    if (message.kind !== 'entry' || message.entry.kind !== 'move' || message.entry.events.length === 0) return { events: [], state: null };
    const first = message.entry.events[0]!.seq;
    return { events: await this.history(at.customerId, at.activeflowId, first, message.entry.events.length), state: null };
  };

  private unsubscribe(topic: string): void {
    const reader = this.feeds.get(topic);
    if (reader === undefined) return;
    this.feeds.delete(topic);
    reader.stop();
  }

  /** Its access key was deleted: the client is told why, and everything it followed goes. */
  revoke(): void {
    this.ws.close(REVOKED_CLOSE.code, REVOKED_CLOSE.reason);
    this.close();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    for (const topic of [...this.feeds.keys()]) this.unsubscribe(topic);
    this.onClosed(this);
  }
}
