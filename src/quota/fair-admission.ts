/**
 * Fair admission of a node's requests.
 *
 * A node runs at most `concurrency` requests at once. While other customers are active (a request
 * in the last second), one customer may run at most `perCustomer` of them; alone, it may use them
 * all. Requests that may not start wait in one queue per customer, and the queues are served
 * round robin, one request each.
 *
 * Why two numbers: a quiet customer's request is slowed by every request running beside it, not
 * only by those queued before it (measured: with 256 of a flood's requests running, a quiet `next`
 * took 48 ms at p50; with 32, 7 ms). So while customers share the node, a flood keeps few running;
 * but one customer alone needs many in flight to keep the journal writes pipelined (1,000 calls of
 * one customer: 10% fewer moves/s and twice the p99 when held to 32). docs/quotas.md has the figures.
 *
 * A customer whose queue is full is refused (`limit_exceeded`, quota pending_requests) rather than
 * queued without bound.
 */
import { ActiveflowError } from '../errors.js';

export interface FairAdmissionOptions {
  /** Requests running at once on the node (ADMISSION_CONCURRENCY). */
  concurrency: number;
  /** Requests one customer may run at once while others are active (ADMISSION_PER_CUSTOMER). */
  perCustomer: number;
  /** Requests one customer may have waiting (ADMISSION_QUEUE_PER_CUSTOMER). */
  maxQueuedPerCustomer: number;
  /** How long after its last request a customer counts as active. */
  activeWindowMs?: number;
}

interface Seen {
  customer: string;
  at: number;
}

export class FairAdmission {
  private running = 0;
  private waiting = 0;
  private readonly runningBy = new Map<string, number>();
  /** Customers with waiting requests, in round-robin order (a Map keeps insertion order). */
  private readonly queues = new Map<string, (() => void)[]>();
  /** The last customer seen, and the last one before it that was someone else. */
  private latest: Seen = { customer: '', at: -Infinity };
  private latestOther: Seen = { customer: '', at: -Infinity };
  private readonly windowMs: number;

  constructor(
    private readonly o: FairAdmissionOptions,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.windowMs = o.activeWindowMs ?? 1_000;
  }

  /** Requests waiting for a turn. */
  get queued(): number {
    return this.waiting;
  }

  /**
   * Runs `task` now or in its customer's turn; refuses at once when that customer's queue is full.
   * The returned promise settles when the task has run.
   */
  run<T>(customerOf: () => string, task: () => Promise<T>): Promise<T> {
    const customer = customerOf();
    const now = this.now();
    this.see(customer, now);
    if (!this.queues.has(customer) && this.mayStart(customer, now)) return this.start(customer, task);
    const queue = this.queues.get(customer) ?? [];
    if (queue.length >= this.o.maxQueuedPerCustomer) {
      return Promise.reject(
        new ActiveflowError('limit_exceeded', `customer ${customer} has ${queue.length} requests waiting on this node; retry in a moment (quota pending_requests)`, { quota: 'pending_requests' }),
      );
    }
    return new Promise<T>((resolve, reject) => {
      queue.push(() => void this.start(customer, task).then(resolve, reject));
      this.waiting++;
      if (!this.queues.has(customer)) this.queues.set(customer, queue);
    });
  }

  private see(customer: string, at: number): void {
    if (customer === this.latest.customer) {
      this.latest.at = at;
    } else {
      this.latestOther = this.latest;
      this.latest = { customer, at };
    }
  }

  /** Whether a customer other than this one made a request within the window. */
  private othersActive(customer: string, now: number): boolean {
    const other = customer === this.latest.customer ? this.latestOther : this.latest;
    return other.customer !== '' && now - other.at < this.windowMs;
  }

  private mayStart(customer: string, now: number): boolean {
    if (this.running >= this.o.concurrency) return false;
    return (this.runningBy.get(customer) ?? 0) < this.o.perCustomer || !this.othersActive(customer, now);
  }

  private async start<T>(customer: string, task: () => Promise<T>): Promise<T> {
    this.running++;
    this.runningBy.set(customer, (this.runningBy.get(customer) ?? 0) + 1);
    try {
      return await task();
    } finally {
      this.running--;
      const left = this.runningBy.get(customer)! - 1;
      if (left === 0) this.runningBy.delete(customer);
      else this.runningBy.set(customer, left);
      this.next();
    }
  }

  /** Gives free places to the queues in turn: the first customer that may start, then to the back. */
  private next(): void {
    const now = this.now();
    while (this.waiting > 0 && this.running < this.o.concurrency) {
      let started = false;
      for (const [customer, queue] of this.queues) {
        if (!this.mayStart(customer, now)) continue;
        this.queues.delete(customer);
        const go = queue.shift()!;
        this.waiting--;
        if (queue.length > 0) this.queues.set(customer, queue); // back of the round
        go();
        started = true;
        break;
      }
      if (!started) return;
    }
  }
}
