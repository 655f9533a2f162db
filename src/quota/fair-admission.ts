/**
 * Fair admission of a node's requests. At most `concurrency` requests run at once; beyond that,
 * each customer waits in its own queue and the queues are served round robin, one request each.
 * Under overload, a customer asking little is served within a turn of the round however long
 * another customer's queue has grown, instead of behind it. A customer whose queue is full is
 * refused (`limit_exceeded`, quota pending_requests) rather than queued without bound.
 *
 * Below the concurrency nothing waits: with no overload this costs a counter.
 */
import { ActiveflowError } from '../errors.js';

export interface FairAdmissionOptions {
  /** Requests running at once (ADMISSION_CONCURRENCY). */
  concurrency: number;
  /** Requests one customer may have waiting (ADMISSION_QUEUE_PER_CUSTOMER). */
  maxQueuedPerCustomer: number;
}

export class FairAdmission {
  private running = 0;
  private waiting = 0;
  /** Customers with waiting requests, in round-robin order (a Map keeps insertion order). */
  private readonly queues = new Map<string, (() => void)[]>();

  constructor(private readonly o: FairAdmissionOptions) {}

  /** Requests waiting for a turn. */
  get queued(): number {
    return this.waiting;
  }

  /**
   * Runs `task` now or in its customer's turn (`customerOf` is asked only when it must wait); refuses at once when the customer's queue is full.
   * The returned promise settles when the task has run.
   */
  run<T>(customerOf: () => string, task: () => Promise<T>): Promise<T> {
    if (this.running < this.o.concurrency && this.waiting === 0) return this.start(task);
    const customer = customerOf(); // only under load: it may read the request's body
    const queue = this.queues.get(customer) ?? [];
    if (queue.length >= this.o.maxQueuedPerCustomer) {
      return Promise.reject(new ActiveflowError('limit_exceeded', `customer ${customer} has ${queue.length} requests waiting on this node; retry in a moment (quota pending_requests)`, { quota: 'pending_requests' }));
    }
    return new Promise<T>((resolve, reject) => {
      queue.push(() => void this.start(task).then(resolve, reject));
      this.waiting++;
      if (!this.queues.has(customer)) this.queues.set(customer, queue);
    });
  }

  private async start<T>(task: () => Promise<T>): Promise<T> {
    this.running++;
    try {
      return await task();
    } finally {
      this.running--;
      this.next();
    }
  }

  /** Gives free places to the queues in turn: the first customer in the round, then to the back. */
  private next(): void {
    while (this.running < this.o.concurrency && this.waiting > 0) {
      const [customer, queue] = this.queues.entries().next().value as [string, (() => void)[]];
      this.queues.delete(customer);
      const go = queue.shift()!;
      this.waiting--;
      if (queue.length > 0) this.queues.set(customer, queue); // back of the round
      go();
    }
  }
}
