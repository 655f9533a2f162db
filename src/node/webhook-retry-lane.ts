/**
 * The webhook retry lane. An activeflow whose webhook failed keeps its backlog here: its events,
 * in order, on its own subject of the work-queue stream WEBHOOK_RETRY. Each activeflow's backlog is
 * worked head first: read the subject's first message, retry it with backoff until it is delivered
 * or given up, delete it, go on with the next.
 *
 * There is no consumer. A consumer's window of unacknowledged messages (max_ack_pending) filled up
 * with the heads of dead endpoints, each held until it was given up (15 minutes by default), and a
 * healthy endpoint that had failed once waited behind them all that time (the first test of
 * test/integration/webhooks-isolation.test.ts). Here an activeflow waiting for its next attempt
 * holds a timer and nothing else; only the HTTP attempts in flight share a bound.
 *
 * After a crash the stream holds exactly the backlog, per subject; the next deliverer reads it and
 * starts each activeflow at its head. With no consumer there is no ack wait to sit out. A head
 * delivered but not yet deleted is delivered again (at least once).
 */
import type { JetStreamClient, JetStreamManager } from '@nats-io/jetstream';
import { StreamEvent } from '../../machines/index.js';
import { Slots, StopSignal } from '../cluster/async-limits.js';
import type { Logger } from '../log.js';
import { WEBHOOK_RETRY_STREAM, webhookRetrySubject } from '../store/buckets.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import type { RecentMap } from '../recent-map.js';
import { isMessageGone } from '../errors.js';
import { backoffDelay, type Backoff } from '../retry.js';

/** Between tries of the lane's own NATS work (parking an event, reading the lane's head). */
const LANE_BACKOFF: Backoff = { firstMs: 100, maxMs: 5_000 };

export interface RetryLaneOptions {
  /** How long one event is retried before it is given up. */
  giveUpAfterMs: number;
  /** Longest wait between two attempts. */
  maxBackoffMs: number;
  /** HTTP attempts in flight at once, over all activeflows. */
  concurrency: number;
}

export interface RetryLaneHooks {
  /** One HTTP attempt; true when delivered. */
  attempt: (event: StreamEvent, attempt: number) => Promise<boolean>;
  /** Whether this node still holds the webhooks lease: nothing is sent once it does not. */
  mayAct: () => boolean;
  delivered: (event: StreamEvent) => void;
  givenUp: () => void;
}

const SUBJECT_PREFIX = webhookRetrySubject('');

export class RetryLane {
  /**
   * Per activeflow, its events here as far as this node knows. An event being parked is counted
   * before it is stored, so that the activeflow's next event already follows it here.
   */
  private readonly backlog = new Map<string, number>();
  /** Per activeflow, parks whose write has not landed yet (counted in `backlog` too). */
  private readonly parking = new Map<string, number>();
  private readonly workers = new Map<string, Promise<void>>();
  private readonly slots: Slots;
  private readonly halt = new StopSignal();

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    /** Heads delivered or given up whose deletion may not have happened (DeliveryMemory.retry). */
    private readonly settled: RecentMap<number, true>,
    private readonly options: RetryLaneOptions,
    private readonly hooks: RetryLaneHooks,
    private readonly log: Logger,
  ) {
    this.slots = new Slots(options.concurrency);
  }

  /** Picks up the backlog the stream holds (left by this node's predecessors) and works it. */
  async start(): Promise<void> {
    const info = await this.jsm.streams.info(WEBHOOK_RETRY_STREAM, { subjects_filter: webhookRetrySubject('*') });
    for (const [subject, n] of Object.entries(info.state.subjects ?? {})) {
      const id = subject.slice(SUBJECT_PREFIX.length);
      this.backlog.set(id, n);
      this.startWorker(id);
    }
  }

  /** Whether this activeflow has events waiting here: its next ones must go behind them. */
  holds(id: string): boolean {
    return (this.backlog.get(id) ?? 0) > 0;
  }

  /**
   * Puts an event at the end of its activeflow's backlog. False when the lane stopped before it
   * was stored (the caller leaves it unacknowledged). A repeat after a crash carries the same
   * message id, and the server drops it.
   */
  async park(id: string, event: StreamEvent): Promise<boolean> {
    this.count(id, 1);
    this.parking.set(id, (this.parking.get(id) ?? 0) + 1);
    try {
      for (let failures = 0; ; failures++) {
        if (this.halt.stopped || !this.hooks.mayAct()) {
          this.count(id, -1);
          return false;
        }
        try {
          await this.js.publish(webhookRetrySubject(id), encodeJson(event), { msgID: `${id}:${event.seq}` });
          return true;
        } catch (e) {
          this.log.warn({ event: 'webhook_park_failed', activeflow_id: id, seq: event.seq, err: e });
          await this.halt.sleep(backoffDelay(LANE_BACKOFF, failures + 1));
        }
      }
    } finally {
      const n = (this.parking.get(id) ?? 1) - 1;
      if (n <= 0) this.parking.delete(id);
      else this.parking.set(id, n);
      this.startWorker(id);
    }
  }

  async stop(): Promise<void> {
    this.halt.stop();
    await Promise.all([...this.workers.values()]);
  }

  private count(id: string, by: number): void {
    const n = (this.backlog.get(id) ?? 0) + by;
    if (n <= 0) this.backlog.delete(id);
    else this.backlog.set(id, n);
  }

  /** One worker per activeflow with a backlog; a park that lands after its worker left starts another. */
  private startWorker(id: string): void {
    if (this.workers.has(id) || this.halt.stopped || !this.holds(id)) return;
    const worker = this.work(id).finally(() => {
      this.workers.delete(id);
      // A park that landed while this worker was leaving could not start one.
      if (!this.parking.has(id)) this.startWorker(id);
    });
    this.workers.set(id, worker);
  }

  /** Works one activeflow's backlog, head first, until it is empty or the lane stops. */
  private async work(id: string): Promise<void> {
    const subject = webhookRetrySubject(id);
    let done: number | null = null; // a head delivered or given up, still to delete
    for (let failures = 0; !this.halt.stopped && this.holds(id); ) {
      try {
        if (done !== null) {
          await this.remove(done);
          this.settled.delete(done);
          done = null;
          this.count(id, -1);
          continue;
        }
        const head = await this.jsm.streams.getMessage(WEBHOOK_RETRY_STREAM, { next_by_subj: subject, seq: 0 } as never);
        if (head === null) {
          if (this.parking.has(id)) return; // its write is on its way; the park starts a worker when it lands
          await this.recount(id, subject);
          continue;
        }
        if (this.settled.get(head.seq) === true) {
          // sent in an earlier term; only its deletion failed
          done = head.seq;
          continue;
        }
        let event: StreamEvent;
        try {
          event = StreamEvent.parse(decodeJson(head.data));
        } catch (e) {
          this.log.error({ event: 'webhook_unreadable', activeflow_id: id, stream_seq: head.seq, err: e }, 'an unreadable message in the webhook retry lane: removed');
          done = head.seq;
          continue;
        }
        if (!(await this.retry(id, event))) return; // stopped: the head stays for the next deliverer
        done = head.seq;
        this.settled.set(done, true);
        failures = 0;
        // Stopped during the last attempt: still record it, so the next deliverer does not repeat it.
        if (this.halt.stopped) await this.remove(done).catch(() => undefined);
      } catch (e) {
        this.log.warn({ event: 'webhook_retry_lane_failed', activeflow_id: id, err: e });
        await this.halt.sleep(backoffDelay(LANE_BACKOFF, ++failures));
      }
    }
  }

  private async remove(seq: number): Promise<void> {
    await this.jsm.streams.deleteMessage(WEBHOOK_RETRY_STREAM, seq, false).catch((e: unknown) => {
      if (!isMessageGone(e)) throw e; // a former deliverer deleted it
    });
  }

  /**
   * The backlog count said more than the stream holds: a park was a duplicate the server dropped
   * (a repeat after a crash). Trusts the stream, plus the parks still on their way.
   */
  private async recount(id: string, subject: string): Promise<void> {
    const info = await this.jsm.streams.info(WEBHOOK_RETRY_STREAM, { subjects_filter: subject });
    const n = (info.state.subjects?.[subject] ?? 0) + (this.parking.get(id) ?? 0);
    if (n > 0) this.backlog.set(id, n);
    else this.backlog.delete(id);
  }

  /** Retries one event with backoff; true when delivered or given up, false when stopped. */
  private async retry(id: string, event: StreamEvent): Promise<boolean> {
    const deadline = Date.now() + this.options.giveUpAfterMs;
    for (let attempt = 1; ; attempt++) {
      if (this.halt.stopped || !this.hooks.mayAct()) return false;
      const ok = await this.slots.run(async () => !this.halt.stopped && (await this.hooks.attempt(event, attempt)));
      if (ok) {
        this.hooks.delivered(event);
        return true;
      }
      if (this.halt.stopped) return false;
      if (Date.now() >= deadline) {
        this.log.error(
          { event: 'webhook_given_up', activeflow_id: id, seq: event.seq, uri: event.data.webhook_uri },
          `a webhook event could not be delivered within ${this.options.giveUpAfterMs} ms; going on with the next one`,
        );
        this.hooks.givenUp();
        return true;
      }
      const backoff = backoffDelay({ firstMs: 100, maxMs: this.options.maxBackoffMs }, attempt);
      await this.halt.sleep(Math.min(backoff, Math.max(0, deadline - Date.now())));
    }
  }
}
