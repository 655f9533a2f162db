/**
 * The running activeflows of each customer, across the cluster: one counter per customer in
 * `af_quotas` under `running.<customer_id>`, changed only by revision-checked writes, so two
 * nodes admitting the same customer's creations at once can never both take the last slot.
 *
 * A slot is taken once the activeflow is stored (a refused one is removed again); an end gives it
 * back before the running snapshot is removed (a step of the end that recovery repeats). A write
 * whose answer is lost is found again rather than repeated (see write), so faults of the servers
 * do not move the count. KV has no transaction across two keys, so a process crash between the
 * count write and the activeflow's own write makes the count drift by one, always too low (the customer
 * may run one more), never a slot taken for nothing that would lock a customer out.
 */
import type { KV } from '@nats-io/kv';
import { randomUUID } from 'node:crypto';
import { ActiveflowError, isTransient } from '../errors.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import { valuesNow } from '../store/kv-keys.js';
import { retry, type RetryTiming } from '../retry.js';
import { isRevisionConflict } from '../store/revision-conflict.js';
import { countWrite, lastWriteOf, type StoredCount } from './running-count-write.js';

export type { StoredCount } from './running-count-write.js';

const PREFIX = 'running.';

/** What a write takes from its host; the cluster simulation gives its own clock, timers and ids, so a run is the same every time. */
export interface RunningCountHost {
  /** The waits between tries of a write (real time, Math.random jitter by default). */
  timing?: RetryTiming;
  /** A write's id (a random UUID by default). */
  newId?: () => string;
  /** Milliseconds since 1970, for the counter's last-write records (Date.now by default). */
  now?: () => number;
}

interface Outcome {
  admitted: Batch['takes'];
  refused: Batch['takes'];
  count: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

interface Batch {
  takes: (Waiter & { limit: number })[];
  gives: Waiter[];
  writing: boolean;
}

/**
 * Concurrent changes of one customer's count on this node are written together (group commit):
 * at most one write per customer is in flight per node, so a burst of a thousand creations costs
 * a few revision-checked writes, not a thousand that conflict with each other. Between nodes the
 * revision check settles who goes first.
 */
export class RunningCount {
  private readonly batches = new Map<string, Batch>();

  constructor(
    private readonly kv: KV,
    /** Whose writes these are: each node keeps its own last write in the counter. */
    private readonly nodeId: string,
    private readonly host: RunningCountHost = {},
  ) {}

  async of(customerId: string): Promise<number> {
    const e = await this.kv.get(PREFIX + customerId);
    return e !== null && e.operation === 'PUT' ? (decodeJson(e.value) as { running: number }).running : 0;
  }

  /** Every customer with activeflows running, busiest first (one read of all the counters). */
  async all(): Promise<{ customer_id: string; running_activeflows: number }[]> {
    const values = await valuesNow(this.kv, `${PREFIX}*`);
    return [...values]
      .map(([k, v]) => ({ customer_id: k.slice(PREFIX.length), running_activeflows: (decodeJson(v) as { running: number }).running }))
      .filter((c) => c.running_activeflows > 0)
      .sort((a, b) => b.running_activeflows - a.running_activeflows || a.customer_id.localeCompare(b.customer_id));
  }

  /** Every customer with a counter (even at 0): those a reconcile looks at. */
  async customers(): Promise<string[]> {
    return [...(await valuesNow(this.kv, `${PREFIX}*`)).keys()].map((k) => k.slice(PREFIX.length));
  }

  /** One customer's counter and its revision (null when it has none). */
  async read(customerId: string): Promise<{ running: number; revision: number; stored: StoredCount } | null> {
    const e = await this.kv.get(PREFIX + customerId);
    if (e === null || e.operation !== 'PUT') return null;
    const stored = decodeJson(e.value) as StoredCount;
    return { running: stored.running, revision: e.revision, stored };
  }

  /**
   * Sets a customer's count to `running` if the counter is still as `read` (a reconcile's
   * correction, src/quota/running-reconcile.ts); false when it changed meanwhile.
   */
  async correct(customerId: string, read: { revision: number; stored: StoredCount }, running: number): Promise<boolean> {
    try {
      // The nodes' last writes stay: one whose answer was lost still finds its write there.
      await this.kv.update(PREFIX + customerId, encodeJson({ ...read.stored, running } satisfies StoredCount), read.revision);
      return true;
    } catch (e) {
      if (isRevisionConflict(e)) return false;
      throw e;
    }
  }

  /** Takes a slot, or refuses with `limit_exceeded` (quota running_activeflows) when none is left. */
  take(customerId: string, limit: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch(customerId).takes.push({ limit, resolve, reject });
      void this.flush(customerId);
    });
  }

  /** Gives a slot back (never below zero). */
  give(customerId: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.batch(customerId).gives.push({ resolve, reject });
      void this.flush(customerId);
    });
  }

  private batch(customerId: string): Batch {
    let b = this.batches.get(customerId);
    if (b === undefined) {
      b = { takes: [], gives: [], writing: false };
      this.batches.set(customerId, b);
    }
    return b;
  }

  private async flush(customerId: string): Promise<void> {
    const b = this.batches.get(customerId);
    if (b === undefined || b.writing) return;
    b.writing = true;
    try {
      while (b.takes.length > 0 || b.gives.length > 0) {
        const takes = b.takes.splice(0);
        const gives = b.gives.splice(0);
        try {
          const { admitted, refused, count } = await this.write(customerId, takes, gives.length);
          for (const g of gives) g.resolve();
          for (const t of admitted) t.resolve();
          for (const t of refused) {
            t.reject(
              new ActiveflowError('limit_exceeded', `customer ${customerId} has ${count} running activeflows; at most ${t.limit} are allowed (quota running_activeflows)`, {
                quota: 'running_activeflows',
              }),
            );
          }
        } catch (e) {
          for (const w of [...gives, ...takes]) w.reject(e);
        }
      }
    } finally {
      b.writing = false;
      if (b.takes.length === 0 && b.gives.length === 0) this.batches.delete(customerId);
    }
  }

  /**
   * One revision-checked write of the count: the gives first, then as many takes as fit.
   *
   * A write whose answer is lost (a timeout while a server restarts or a leader moves) may still
   * have landed: trying it again blindly would take or give twice, and the count would drift with
   * every fault. So each attempt carries an id, the counter keeps each node's last write id, and
   * after a failure the next attempt first reads whether this node's last write is an earlier
   * attempt: if so, that attempt's outcome is the answer. A node has at most one write of a
   * customer's count in flight (the batching above), so no write of its own can come between;
   * the other nodes' writes leave its entry alone. (At most one attempt can land: each is checked
   * against the revision it read, and a later one reads only after the earlier one failed.)
   */
  private async write(customerId: string, takes: Batch['takes'], gives: number): Promise<Outcome> {
    const key = PREFIX + customerId;
    const attempts = new Map<string, Outcome>();
    return retry(
      async () => {
        const e = await this.kv.get(key);
        const stored: StoredCount = e !== null && e.operation === 'PUT' ? (decodeJson(e.value) as StoredCount) : { running: 0 };
        const mine = lastWriteOf(stored, this.nodeId);
        if (mine !== undefined && attempts.has(mine)) return attempts.get(mine)!;
        const id = this.host.newId?.() ?? randomUUID();
        const written = countWrite(
          stored,
          takes.map((t) => t.limit),
          gives,
          { nodeId: this.nodeId, id, now: this.host.now?.() ?? Date.now() },
        );
        attempts.set(id, { admitted: takes.filter((_, i) => written.admitted[i]), refused: takes.filter((_, i) => !written.admitted[i]), count: written.count });
        const value = encodeJson(written.value);
        if (e === null) await this.kv.create(key, value);
        else await this.kv.update(key, value, e.revision);
        return attempts.get(id)!;
      },
      // Another node changed the count meanwhile (read it again; the jitter spreads the retries),
      // or NATS did not answer (read whether it landed).
      {
        backoff: { firstMs: 2, maxMs: 20, jitter: true },
        retryable: (err) => isRevisionConflict(err) || isTransient(err),
        maxAttempts: 51,
        ...(this.host.timing === undefined ? {} : { timing: this.host.timing }),
      },
    );
  }
}
