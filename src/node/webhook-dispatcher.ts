/**
 * Delivers the events of activeflows that have a `webhook_uri` to that URI, in VoIPBIN's wrapped
 * form `{"type": "...", "data": <public activeflow>}`. At least once, in order per activeflow: a
 * message is acknowledged only once it is delivered (a 2xx answer), handed to the retry lane, or
 * given up.
 *
 * Two lanes, so that dead endpoints cannot hold up healthy ones:
 * - the **main lane**, the durable consumer `af_webhooks` on ACTIVEFLOW_EVENTS, tries each event
 *   once. When that fails, the activeflow moves to the retry lane: this event and every later one
 *   of that activeflow go there, in order, until its backlog there is delivered. The main lane
 *   therefore holds only first attempts, whatever number of endpoints is failing; when it held the
 *   retries too, 256 activeflows with dead endpoints filled its max_ack_pending and stopped every
 *   customer's webhooks for up to WEBHOOK_GIVE_UP_MS.
 * - the **retry lane** (RetryLane), a backlog per activeflow in the work-queue stream
 *   WEBHOOK_RETRY, retried with backoff until `giveUpAfterMs`, then given up (logged).
 *
 * The main lane works each activeflow's messages one at a time while different activeflows run
 * side by side; everything it holds is kept alive with `working()`. Only one node runs this at a
 * time (it holds the `webhooks` lease): two would each get some events of one activeflow and
 * deliver them side by side.
 *
 * A change of deliverer keeps each activeflow's order. The server hands out what a deliverer held
 * unacknowledged before anything new, but only once it is released: at once when that deliverer
 * stopped cleanly (it naks what it held, and it pulls in bounded fetches, so a stop waits for the
 * last fetch to end instead of dropping messages still on the wire), and only after the ack wait
 * when it died. A successor that started at once after a death would send an activeflow's later
 * events before the earlier ones the dead deliverer held (seen in CI: the `activeflow_ended` first,
 * the held events after it). So a successor that did not get the lease from a clean release waits
 * out the ack wait (when messages are held) and the HTTP timeout (an attempt the former deliverer
 * had on its way) before it sends anything. The retry lane has no consumer: its stream holds
 * exactly the backlog.
 */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { isConsumerExists, isConsumerNotFound } from '../errors.js';
import type { StreamEvent } from '../../machines/index.js';
import { StopSignal } from '../cluster/async-limits.js';
import type { Logger } from '../log.js';
import { EVENTS_STREAM, WEBHOOK_CONSUMER, WEBHOOK_RETRY_STREAM } from '../store/buckets.js';
import { WEBHOOK_HEADER } from '../store/journal.js';
import { decodeJson } from '../store/codec.js';
import { type EventMaterializer, subjectIds } from '../store/event-materializer.js';
import { parseStreamMessage } from '../store/journal-entry.js';
import { RetryLane } from './webhook-retry-lane.js';
import type { EgressPolicy } from '../../actors/index.js';
import { DeliveryMemory } from './delivery-memory.js';
import type { RecentMap } from '../recent-map.js';

/** The retry lane's consumer before it worked the stream directly; removed when found. */
const FORMER_RETRY_CONSUMER = 'af_webhooks_retry';

export interface WebhookOptions {
  timeoutMs: number;
  /** Where webhooks may go (the customer's webhook_uri is theirs to choose). */
  egress: EgressPolicy;
  /** How long one event is retried before it is given up. */
  giveUpAfterMs: number;
  /** Longest wait between two attempts. */
  maxBackoffMs?: number;
  /** Messages the main lane may hold unacknowledged (its consumer's max_ack_pending), and retry attempts in flight at once. */
  concurrency?: number;
  /** Makes the full events of the stream's entries (src/store/event-materializer.ts). */
  materializer: EventMaterializer;
  /** Delivery lag (seconds from the event) and events given up, for /metrics. */
  onDelivered?: (lagSeconds: number) => void;
  onGivenUp?: () => void;
  /** Kept by the node across its terms as deliverer (see DeliveryMemory). */
  memory?: DeliveryMemory;
  /**
   * Where the consumer's ack floor is kept (af_cluster), so that a consumer someone deleted, or
   * that vanished, is recreated from where it stopped instead of from new events only.
   */
  floor?: AckFloorStore;
}

/** The last stream sequence below which every webhook event was settled, kept across deliverers. */
export interface AckFloorStore {
  get(): Promise<number | null>;
  set(seq: number): Promise<void>;
}

/** How often the deliverer records the consumer's ack floor: at most this much is sent again after a loss. */
const FLOOR_EVERY_MS = 2_000;

/**
 * How long the server waits for an ack before it redelivers (what a dead deliverer costs its
 * successor); every message held here is kept alive with `working()` three times per period.
 */
const ACK_WAIT_MS = 5_000;
/** Beyond the former deliverer's ack wait, so that the server has released all it held. */
const RELEASE_MARGIN_MS = 1_000;
/**
 * One pull's lifetime. A stopping lane waits for its pull to end, so that no message is left on
 * the wire unseen (it would stay held until the ack wait, behind the successor's back).
 */
const FETCH_EXPIRES_MS = 1_000;
const FETCH_BATCH = 64;

/** Acks, naks, `working()`: on a closed connection there is nothing to do (the server redelivers after the ack wait). */
function settle(m: JsMsg, how: 'ack' | 'nak' | 'term' | 'working'): void {
  try {
    m[how]();
  } catch {
    // closed: the message stays with the server
  }
}

type Outcome = 'ack' | 'stop';
interface Held {
  m: JsMsg;
}

/** The main lane: one consumer's messages, queued per activeflow and worked in order. */
class Lane {
  private readonly queues = new Map<string, Held[]>();
  private readonly workers = new Set<Promise<void>>();
  private stopFn: (() => void) | null = null;
  private loop: Promise<void> | null = null;

  constructor(
    /** The dispatcher's: stopped before the lane is. */
    private readonly halt: StopSignal,
    private readonly handle: (id: string, held: Held) => Promise<Outcome>,
    /** Stream sequences settled here already, maybe without the server knowing. */
    private readonly settled: RecentMap<number, true>,
    private readonly log: Logger,
  ) {}

  /**
   * `pass` sees the message before it is decoded: a cheap way to ack what is not for this lane.
   * `mayAct` says whether this node still holds the lease: no `working()` is sent for it once not.
   */
  async start(
    js: JetStreamClient,
    stream: string,
    consumerName: string,
    pass: (m: JsMsg) => boolean,
    mayAct: () => boolean,
    /** Called when a pull fails: true when the consumer was gone and has been made again. */
    heal: () => Promise<boolean> = async () => false,
  ): Promise<void> {
    let consumer = await js.consumers.get(stream, consumerName);
    const heartbeat = setInterval(
      () => {
        if (!mayAct()) return;
        for (const queue of this.queues.values()) for (const { m } of queue) settle(m, 'working');
      },
      Math.floor(ACK_WAIT_MS / 3),
    );
    heartbeat.unref();
    this.stopFn = () => clearInterval(heartbeat);
    this.loop = (async () => {
      while (!this.halt.stopped) {
        try {
          const batch = await consumer.fetch({ max_messages: FETCH_BATCH, expires: FETCH_EXPIRES_MS });
          for await (const m of batch) {
            if (pass(m)) settle(m, 'ack');
            else this.accept(m);
          }
        } catch (e) {
          if (this.halt.stopped) return;
          this.log.warn({ event: 'webhook_fetch_failed', consumer: consumerName, err: e });
          if (await heal().catch(() => false)) {
            consumer = await js.consumers.get(stream, consumerName).catch(() => consumer);
            continue;
          }
          await this.halt.sleep(FETCH_EXPIRES_MS);
        }
      }
    })();
  }

  private accept(m: JsMsg): void {
    if (this.settled.get(m.seq) === true) {
      // its ack was lost: not sent again
      settle(m, 'ack');
      return;
    }
    // Queued by activeflow, undecoded: its events are materialised in order by the worker.
    const id = subjectIds(m.subject).activeflowId;
    const queue = this.queues.get(id);
    if (queue !== undefined) {
      queue.push({ m });
      return;
    }
    this.queues.set(id, [{ m }]);
    const worker = this.work(id).finally(() => this.workers.delete(worker));
    this.workers.add(worker);
  }

  private async work(id: string): Promise<void> {
    const queue = this.queues.get(id)!;
    while (queue.length > 0) {
      const held = queue[0]!;
      const outcome = await this.handle(id, held);
      if (outcome === 'stop') return; // unacknowledged: redelivered to whoever delivers next
      this.settled.set(held.m.seq, true);
      settle(held.m, outcome);
      queue.shift();
    }
    this.queues.delete(id);
  }

  /** Ends the pull (at most FETCH_EXPIRES_MS) and the workers, then gives back what is left. */
  async stop(): Promise<void> {
    this.stopFn?.();
    await this.loop;
    await Promise.all([...this.workers]);
    // Whatever was not done goes back to the server now, not after the ack wait, in order.
    for (const queue of this.queues.values()) for (const { m } of queue) settle(m, 'nak');
    this.queues.clear();
  }
}

export class WebhookDispatcher {
  private readonly halt = new StopSignal();
  private readonly main: Lane;
  private readonly retry: RetryLane;
  /** Whether this node still holds the webhooks lease (set by start). */
  private mayAct: () => boolean = () => true;
  delivered = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly options: WebhookOptions,
    private readonly log: Logger,
  ) {
    const memory = options.memory ?? new DeliveryMemory();
    this.main = new Lane(this.halt, (id, held) => this.firstAttempt(id, held), memory.main, log);
    this.retry = new RetryLane(
      js,
      jsm,
      memory.retry,
      {
        giveUpAfterMs: options.giveUpAfterMs,
        maxBackoffMs: options.maxBackoffMs ?? 30_000,
        concurrency: options.concurrency ?? 256,
      },
      {
        attempt: (event, attempt) => this.attempt(event, attempt),
        mayAct: () => this.mayAct(),
        delivered: (event) => this.deliveredOne(event),
        givenUp: () => this.options.onGivenUp?.(),
      },
      log,
    );
  }

  /**
   * `clean`: the lease came from a holder that released it after stopping (it gave back all it
   * held). `mayAct`: this node still holds the lease; nothing is sent once it does not.
   */
  async start({ clean, mayAct }: { clean: boolean; mayAct: () => boolean }): Promise<void> {
    this.mayAct = mayAct;
    const config = {
      ack_policy: AckPolicy.Explicit,
      ack_wait: ACK_WAIT_MS * 1_000_000,
      max_deliver: -1, // given up by time, here: a redelivery after a crash must not count against it
      max_ack_pending: this.options.concurrency ?? 256,
    };
    const before = await this.ensureConsumer(EVENTS_STREAM, WEBHOOK_CONSUMER, DeliverPolicy.New, config);
    await this.jsm.consumers.delete(WEBHOOK_RETRY_STREAM, FORMER_RETRY_CONSUMER).catch(() => undefined);
    if (!clean && before !== null) {
      // A former deliverer that did not hand over may still have an HTTP attempt on its way (it
      // stopped starting them when its lease ran out), and the server releases what it held only
      // after the ack wait: sending anything sooner could overtake an earlier event.
      const waitMs = Math.max(before.pending > 0 ? before.ackWaitMs : 0, this.options.timeoutMs) + RELEASE_MARGIN_MS;
      this.log.info(
        { event: 'webhooks_awaiting_release', held: before.pending, wait_ms: waitMs },
        "the former deliverer did not hand over cleanly: waiting until nothing it started can still arrive, so each activeflow's events stay in order",
      );
      await this.halt.sleep(waitMs);
    }
    if (this.halt.stopped) return;
    await this.retry.start();
    // Events published before the header existed have none: those are decoded and checked.
    this.keepFloor();
    await this.main.start(
      this.js,
      EVENTS_STREAM,
      WEBHOOK_CONSUMER,
      (m) => m.headers?.get(WEBHOOK_HEADER) === '0',
      mayAct,
      () => this.heal(config),
    );
  }

  /** Records the consumer's ack floor every FLOOR_EVERY_MS while this node delivers. */
  private keepFloor(): void {
    const store = this.options.floor;
    if (store === undefined) return;
    let last = -1;
    void (async () => {
      while (!this.halt.stopped) {
        await this.halt.sleep(FLOOR_EVERY_MS);
        if (this.halt.stopped || !this.mayAct()) continue;
        try {
          const floor = (await this.jsm.consumers.info(EVENTS_STREAM, WEBHOOK_CONSUMER)).ack_floor.stream_seq;
          if (floor > last) {
            await store.set(floor);
            last = floor;
          }
        } catch {
          // the consumer is gone (heal makes it again) or NATS is away: the next round tries again
        }
      }
    })();
  }

  /**
   * The consumer is gone (deleted by someone, or lost): made again from the last recorded ack
   * floor, so that no event is lost; those settled after that floor are sent again (at least once,
   * as after any crash) unless this node remembers sending them.
   */
  private async heal(config: { ack_wait: number } & Record<string, unknown>): Promise<boolean> {
    try {
      await this.jsm.consumers.info(EVENTS_STREAM, WEBHOOK_CONSUMER);
      return false; // still there: the failure was something else
    } catch (e) {
      if (!isConsumerNotFound(e)) return false;
    }
    if (this.halt.stopped || !this.mayAct()) return false;
    await this.ensureConsumer(EVENTS_STREAM, WEBHOOK_CONSUMER, DeliverPolicy.New, config);
    return true;
  }

  /**
   * Creates the consumer, or brings an existing one to these settings. Returns what an existing one
   * had before: its messages held unacknowledged, and the ack wait they were delivered under; null
   * when there was none (nobody delivered before).
   */
  private async ensureConsumer(stream: string, name: string, deliver: DeliverPolicy, config: { ack_wait: number } & Record<string, unknown>): Promise<{ pending: number; ackWaitMs: number } | null> {
    const before = await this.jsm.consumers.info(stream, name).catch((e: unknown) => {
      if (isConsumerNotFound(e)) return null;
      throw e;
    });
    if (before === null) {
      // Never made, or gone: from the recorded ack floor when there is one, so that nothing published
      // while it was missing is skipped.
      const floor = (await this.options.floor?.get().catch(() => null)) ?? null;
      const from = floor === null ? { deliver_policy: deliver } : { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: floor + 1 };
      if (floor !== null) this.log.warn({ event: 'webhook_consumer_recreated', from_seq: floor + 1 }, 'the webhook consumer was gone; made again from the last recorded ack floor');
      await this.jsm.consumers.add(stream, { durable_name: name, ...from, ...config }).catch(async (e: unknown) => {
        if (!isConsumerExists(e)) throw e;
        await this.jsm.consumers.update(stream, name, config); // made by another node meanwhile
      });
      return null;
    }
    await this.jsm.consumers.update(stream, name, config); // older settings
    return { pending: before.num_ack_pending, ackWaitMs: Math.ceil((before.config.ack_wait ?? 30_000_000_000) / 1_000_000) };
  }

  /**
   * Main lane: the message's events (a journal entry stands for 0..n of them, materialised here),
   * each tried once unless the activeflow's earlier events wait in the retry lane, where it and the
   * rest then go.
   */
  private async firstAttempt(id: string, { m }: Held): Promise<Outcome> {
    const events = await this.materialize(m);
    if (events === null) return 'stop';
    for (const event of events) {
      if (event.data.webhook_uri === '') continue; // an event written before the header existed
      if (!this.retry.holds(id)) {
        if (this.halt.stopped || !this.mayAct()) return 'stop';
        if (await this.attempt(event, 0)) {
          this.deliveredOne(event);
          continue;
        }
      }
      if (!(await this.retry.park(id, event))) return 'stop';
    }
    return 'ack';
  }

  /** A message's events; a message that is neither an entry nor an event is logged and has none. Null once stopped. */
  private async materialize(m: JsMsg): Promise<StreamEvent[] | null> {
    let message: ReturnType<typeof parseStreamMessage>;
    try {
      message = parseStreamMessage(decodeJson(m.data));
    } catch (e) {
      this.log.error({ event: 'webhook_message_unreadable', seq: m.seq, err: e }, 'a stream message is neither a journal entry nor an event: skipped');
      return [];
    }
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.options.materializer.events({ ...subjectIds(m.subject), seq: m.seq }, message);
      } catch (e) {
        // reading the activeflow's journal (a miss) failed: NATS away for a moment
        this.log.warn({ event: 'webhook_materialize_failed', seq: m.seq, err: e, attempt });
        if (this.halt.stopped || !this.mayAct()) return null;
        await this.halt.sleep(Math.min(5_000, 250 * attempt));
        if (this.halt.stopped) return null;
      }
    }
  }

  private deliveredOne(event: StreamEvent): void {
    this.delivered++;
    this.options.onDelivered?.(Math.max(0, (Date.now() - Date.parse(event.at)) / 1000));
  }

  /** One HTTP attempt; true on a 2xx answer. */
  private async attempt(event: StreamEvent, attempt: number): Promise<boolean> {
    const method = event.data.webhook_method || 'POST';
    try {
      const r = await this.options.egress.fetch(event.data.webhook_uri, {
        method,
        headers: { 'Content-Type': 'application/json' },
        ...(method === 'GET' ? {} : { body: JSON.stringify({ type: event.type, data: event.data }) }),
        signal: AbortSignal.timeout(this.options.timeoutMs),
      });
      await r.arrayBuffer().catch(() => undefined);
      if (r.status >= 200 && r.status < 300) return true;
      this.log.warn({ event: 'webhook_failed', status: r.status, activeflow_id: event.data.id, seq: event.seq, attempt });
    } catch (e) {
      this.log.warn({ event: 'webhook_failed', reason: (e as Error).message, activeflow_id: event.data.id, seq: event.seq, attempt });
    }
    return false;
  }

  async stop(): Promise<void> {
    this.halt.stop();
    await Promise.all([this.main.stop(), this.retry.stop()]);
  }
}
