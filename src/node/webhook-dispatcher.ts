/**
 * Delivers the events of activeflows that have a `webhook_uri` to that URI, in VoIPBIN's wrapped
 * form `{"type": "...", "data": <public activeflow>}`. At least once, in order per activeflow: a
 * message is acknowledged only once it is delivered (a 2xx answer), handed to the retry lane, or
 * given up.
 *
 * Two lanes, so that dead endpoints cannot hold up healthy ones:
 * - the **main lane**, the durable consumer `af_webhooks` on ACTIVEFLOW_EVENTS, tries each event
 *   once. When that fails, the activeflow moves to the retry lane: this event and every later one
 *   of that activeflow are republished there, in order, until its backlog there is delivered. The
 *   main lane therefore holds only first attempts, whatever number of endpoints is failing; when
 *   it held the retries too, 256 activeflows with dead endpoints filled its max_ack_pending and
 *   stopped every customer's webhooks for up to WEBHOOK_GIVE_UP_MS.
 * - the **retry lane**, the durable consumer `af_webhooks_retry` on the work-queue stream
 *   WEBHOOK_RETRY (one subject per activeflow), retries each event with backoff until
 *   `giveUpAfterMs`, then gives it up (logged) and goes on with the next.
 *
 * In both lanes each activeflow's messages are worked one at a time while different activeflows
 * run side by side; everything held is kept alive with `working()`. Only one node runs this at a
 * time (it holds the `webhooks` lease): two would each get some events of one activeflow and
 * deliver them side by side.
 *
 * A change of deliverer keeps each activeflow's order. The server hands out what a deliverer held
 * unacknowledged before anything new, but only once it is released: at once when that deliverer
 * stopped cleanly (it naks what it held, and it pulls in bounded fetches, so a stop waits for the
 * last fetch to end instead of dropping messages still on the wire), and only after the ack wait
 * when it died. A successor that started at once after a death would send an activeflow's later
 * events before the earlier ones the dead deliverer held (seen in CI: the `activeflow_ended` first,
 * the held events after it). So a successor that did not get the lease from a clean release, and
 * finds messages unacknowledged, waits out the ack wait before it pulls anything. It learns which
 * activeflows have a backlog in the retry lane from that stream (a work queue keeps exactly the
 * messages not yet acknowledged). A republish repeated after a crash carries the same message id,
 * and the server drops it.
 */
import { AckPolicy, DeliverPolicy, type JetStreamClient, type JetStreamManager, type JsMsg } from '@nats-io/jetstream';
import { StreamEvent } from '../../machines/index.js';
import type { Logger } from '../log.js';
import { EVENTS_STREAM, WEBHOOK_RETRY_STREAM, webhookRetrySubject } from '../store/buckets.js';
import { WEBHOOK_HEADER } from '../store/event-log.js';
import { decodeJson, encodeJson } from '../store/codec.js';

export const WEBHOOK_CONSUMER = 'af_webhooks';
export const WEBHOOK_RETRY_CONSUMER = 'af_webhooks_retry';

export interface WebhookOptions {
  timeoutMs: number;
  /** How long one event is retried before it is given up. */
  giveUpAfterMs: number;
  /** Longest wait between two attempts. */
  maxBackoffMs?: number;
  /** Messages each lane may hold unacknowledged (its consumer's max_ack_pending). */
  concurrency?: number;
  /** Delivery lag (seconds from the event) and events given up, for /metrics. */
  onDelivered?: (lagSeconds: number) => void;
  onGivenUp?: () => void;
}

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

type Outcome = 'ack' | 'term' | 'stop';
interface Held { m: JsMsg; event: StreamEvent }

/** One consumer's messages, queued per activeflow and worked in order. */
class Lane {
  private readonly queues = new Map<string, Held[]>();
  private readonly workers = new Set<Promise<void>>();
  private stopFn: (() => void) | null = null;
  private loop: Promise<void> | null = null;
  private stopping = false;

  constructor(private readonly handle: (id: string, held: Held) => Promise<Outcome>, private readonly log: Logger) {}

  /**
   * `pass` sees the message before it is decoded: a cheap way to ack what is not for this lane.
   * `mayAct` says whether this node still holds the lease: no `working()` is sent for it once not.
   */
  async start(js: JetStreamClient, stream: string, consumerName: string, skip: (event: StreamEvent) => boolean, pass: (m: JsMsg) => boolean, mayAct: () => boolean): Promise<void> {
    const consumer = await js.consumers.get(stream, consumerName);
    const heartbeat = setInterval(() => {
      if (!mayAct()) return;
      for (const queue of this.queues.values()) for (const { m } of queue) settle(m, 'working');
    }, Math.floor(ACK_WAIT_MS / 3));
    heartbeat.unref();
    this.stopFn = () => {
      this.stopping = true;
      clearInterval(heartbeat);
    };
    this.loop = (async () => {
      while (!this.stopping) {
        try {
          const batch = await consumer.fetch({ max_messages: FETCH_BATCH, expires: FETCH_EXPIRES_MS });
          for await (const m of batch) {
            if (pass(m)) settle(m, 'ack');
            else this.accept(m, skip);
          }
        } catch (e) {
          if (this.stopping) return;
          this.log.warn({ event: 'webhook_fetch_failed', consumer: consumerName, err: e });
          await new Promise((r) => setTimeout(r, FETCH_EXPIRES_MS));
        }
      }
    })();
  }

  private accept(m: JsMsg, skip: (event: StreamEvent) => boolean): void {
    let event: StreamEvent;
    try {
      event = StreamEvent.parse(decodeJson(m.data));
    } catch {
      settle(m, 'term');
      return;
    }
    if (skip(event)) {
      settle(m, 'ack');
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

  private async work(id: string): Promise<void> {
    const queue = this.queues.get(id)!;
    while (queue.length > 0) {
      const held = queue[0]!;
      const outcome = await this.handle(id, held);
      if (outcome === 'stop') return; // unacknowledged: redelivered to whoever delivers next
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
  private stopped = false;
  private wake!: () => void;
  /** Resolves on stop(): a backoff sleep ends at once instead of holding the stop up to 30 s. */
  private readonly stopping = new Promise<void>((r) => (this.wake = r));
  /** Per activeflow, its messages in the retry lane not yet acknowledged. */
  private readonly retrying = new Map<string, number>();
  private readonly main: Lane;
  private readonly retry: Lane;
  /** Whether this node still holds the webhooks lease (set by start). */
  private mayAct: () => boolean = () => true;
  delivered = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly options: WebhookOptions,
    private readonly log: Logger,
  ) {
    this.main = new Lane((id, held) => this.firstAttempt(id, held), log);
    this.retry = new Lane((id, held) => this.retried(id, held), log);
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
    const held = await Promise.all([
      this.ensureConsumer(EVENTS_STREAM, WEBHOOK_CONSUMER, DeliverPolicy.New, config),
      this.ensureConsumer(WEBHOOK_RETRY_STREAM, WEBHOOK_RETRY_CONSUMER, DeliverPolicy.All, config),
    ]);
    if (!clean && held.some((h) => h.pending > 0)) {
      const waitMs = Math.max(...held.map((h) => h.ackWaitMs)) + RELEASE_MARGIN_MS;
      this.log.info({ event: 'webhooks_awaiting_release', held: held.map((h) => h.pending), wait_ms: waitMs },
        'the former deliverer did not hand over cleanly: waiting for the server to release what it held, so each activeflow\'s events stay in order');
      await this.sleep(waitMs);
    }
    if (this.stopped) return;
    // Which activeflows have a backlog in the retry lane: the work queue holds exactly what is not acknowledged.
    const info = await this.jsm.streams.info(WEBHOOK_RETRY_STREAM, { subjects_filter: webhookRetrySubject('*') });
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) this.retrying.set(subject.slice(webhookRetrySubject('').length), n);
    await this.retry.start(this.js, WEBHOOK_RETRY_STREAM, WEBHOOK_RETRY_CONSUMER, () => false, () => false, mayAct);
    // Events published before the header existed have none: those are decoded and checked.
    await this.main.start(this.js, EVENTS_STREAM, WEBHOOK_CONSUMER, (event) => event.data.webhook_uri === '', (m) => m.headers?.get(WEBHOOK_HEADER) === '0', mayAct);
  }

  /**
   * Creates the consumer, or brings an existing one to these settings. Returns what it had before:
   * its messages held unacknowledged, and the ack wait they were delivered under.
   */
  private async ensureConsumer(stream: string, name: string, deliver: DeliverPolicy, config: { ack_wait: number } & Record<string, unknown>): Promise<{ pending: number; ackWaitMs: number }> {
    const before = await this.jsm.consumers.info(stream, name).catch((e: unknown) => {
      if (/not found/i.test(String((e as Error).message))) return null;
      throw e;
    });
    if (before === null) {
      await this.jsm.consumers.add(stream, { durable_name: name, deliver_policy: deliver, ...config }).catch(async (e: unknown) => {
        if (!/already in use|exists/i.test(String((e as Error).message))) throw e;
        await this.jsm.consumers.update(stream, name, config); // made by another node meanwhile
      });
      return { pending: 0, ackWaitMs: 0 };
    }
    await this.jsm.consumers.update(stream, name, config); // older settings
    return { pending: before.num_ack_pending, ackWaitMs: Math.ceil((before.config.ack_wait ?? 30_000_000_000) / 1_000_000) };
  }

  /** Main lane: one attempt, unless the activeflow's earlier events wait in the retry lane. */
  private async firstAttempt(id: string, { event }: Held): Promise<Outcome> {
    if ((this.retrying.get(id) ?? 0) === 0) {
      if (this.stopped || !this.mayAct()) return 'stop';
      if (await this.attempt(event, 0)) {
        this.deliveredOne(event);
        return 'ack';
      }
    }
    return this.toRetryLane(id, event);
  }

  /** Republishes an event to the retry lane (counted first, so the activeflow's next event follows it there). */
  private async toRetryLane(id: string, event: StreamEvent): Promise<Outcome> {
    this.retrying.set(id, (this.retrying.get(id) ?? 0) + 1);
    for (let attempt = 0; ; attempt++) {
      if (this.stopped || !this.mayAct()) {
        this.uncount(id);
        return 'stop';
      }
      try {
        await this.js.publish(webhookRetrySubject(id), encodeJson(event), { msgID: `${id}:${event.seq}` });
        return 'ack';
      } catch (e) {
        this.log.warn({ event: 'webhook_park_failed', activeflow_id: id, seq: event.seq, err: e });
        await this.sleep(Math.min(5_000, 100 * 2 ** attempt));
      }
    }
  }

  /** Retry lane: retried with backoff until delivered or given up. */
  private async retried(id: string, { event }: Held): Promise<Outcome> {
    const deadline = Date.now() + this.options.giveUpAfterMs;
    for (let attempt = 1; ; attempt++) {
      if (this.stopped || !this.mayAct()) return 'stop';
      if (await this.attempt(event, attempt)) {
        this.deliveredOne(event);
        this.uncount(id);
        return 'ack';
      }
      if (Date.now() >= deadline) {
        this.log.error({ event: 'webhook_given_up', activeflow_id: id, seq: event.seq, uri: event.data.webhook_uri }, `a webhook event could not be delivered within ${this.options.giveUpAfterMs} ms; going on with the next one`);
        this.options.onGivenUp?.();
        this.uncount(id);
        return 'term';
      }
      const backoff = Math.min(this.options.maxBackoffMs ?? 30_000, 100 * 2 ** (attempt - 1));
      await this.sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
    }
  }

  private async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), this.stopping]);
    clearTimeout(timer);
  }

  private uncount(id: string): void {
    const n = (this.retrying.get(id) ?? 1) - 1;
    if (n <= 0) this.retrying.delete(id);
    else this.retrying.set(id, n);
  }

  private deliveredOne(event: StreamEvent): void {
    this.delivered++;
    this.options.onDelivered?.(Math.max(0, (Date.now() - Date.parse(event.at)) / 1000));
  }

  /** One HTTP attempt; true on a 2xx answer. */
  private async attempt(event: StreamEvent, attempt: number): Promise<boolean> {
    const method = event.data.webhook_method || 'POST';
    try {
      const r = await fetch(event.data.webhook_uri, {
        method, headers: { 'Content-Type': 'application/json' }, ...(method === 'GET' ? {} : { body: JSON.stringify({ type: event.type, data: event.data }) }),
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
    this.stopped = true;
    this.wake();
    await Promise.all([this.main.stop(), this.retry.stop()]);
  }
}
