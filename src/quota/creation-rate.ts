/**
 * Creations per second per customer, as token buckets in memory. A create is admitted by the
 * owner of the new id's shard, and ids are uniform over shards, so each node sees its share of a
 * customer's creations: it refills at the customer's rate times the share of the shards it owns.
 * The cluster-wide rate is then the quota, within what chance spreads unevenly over short
 * windows, and up to twice it for the seconds shards move (both ends count a shard in motion);
 * with one node it is exact. No write per creation, and nothing to lose on a crash.
 */
import { ActiveflowError } from '../errors.js';
import type { Quotas } from './quotas.js';

/**
 * A node's share for its buckets: the shards it counts (served, or on their way to it:
 * ownership-core's creationShards), but never fewer than one. A create is
 * taken only for a shard the node served when it arrived, so one in hand always has a shard behind
 * it; a node that has just fenced its shards (a pause past its renewals) answers it `unavailable`
 * from the fence, not `limit_exceeded` from a bucket sized at nothing (measured: a node that fenced
 * under a 100,000-creation flood refused creations so, and `limit_exceeded` is not retried).
 */
export function creationShare(shards: number, shardCount: number): number {
  return Math.max(1, shards) / shardCount;
}

/**
 * A bucket's fill as a fraction of its size, not as a count of tokens: the size follows the node's
 * share of the shards, which changes whenever shards move (a node joins, one drains). Kept as a
 * count, a bucket made while a newcomer held a few shards stayed nearly empty as its share grew,
 * and the customer's burst was refused there while the cluster as a whole had room; as a fraction,
 * the cluster's buckets together never hold more than the burst, and a move takes nothing away.
 */
interface Bucket {
  level: number;
  at: number;
}

/** Buckets untouched this long are full again, and dropped to bound the memory. */
const FORGET_AFTER_MS = 60_000;

export class CreationRate {
  private readonly buckets = new Map<string, Bucket>();
  private lastSweep = 0;

  /** `share`: the fraction of the shards this node owns now (1 with one node; more than 0 while it takes creations). */
  constructor(
    private readonly share: () => number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Takes a token, or refuses with `limit_exceeded` (quota creations_per_second). */
  take(customerId: string, q: Pick<Quotas, 'creations_per_second' | 'creation_burst'>): void {
    const now = this.now();
    this.sweep(now);
    const share = this.shareNow();
    const size = this.size(q, share);
    const b = this.buckets.get(customerId) ?? { level: 1, at: now };
    b.level = Math.min(1, b.level + ((now - b.at) / 1000) * ((q.creations_per_second * share) / size));
    b.at = now;
    this.buckets.set(customerId, b);
    // The epsilon: a level refilled to exactly one token must not be refused for a rounding error.
    if (b.level * size < 1 - 1e-9) {
      throw new ActiveflowError(
        'limit_exceeded',
        `customer ${customerId} creates activeflows faster than ${q.creations_per_second}/s (burst ${q.creation_burst}); retry in a moment (quota creations_per_second)`,
        { quota: 'creations_per_second' },
      );
    }
    b.level = Math.max(0, b.level - 1 / size);
  }

  /** Gives back the token of a creation that turned out not to happen (its id was taken): it used up nothing. */
  giveBack(customerId: string, q: Pick<Quotas, 'creation_burst'>): void {
    const b = this.buckets.get(customerId);
    if (b === undefined) return; // swept: full again
    b.level = Math.min(1, b.level + 1 / this.size(q, this.shareNow()));
  }

  private shareNow(): number {
    return Math.max(0, Math.min(1, this.share()));
  }

  /** A bucket's size in tokens; never below one: a node with a small share must still admit a customer's first creation. */
  private size(q: Pick<Quotas, 'creation_burst'>, share: number): number {
    return Math.max(1, q.creation_burst * share);
  }

  private sweep(now: number): void {
    if (now - this.lastSweep < FORGET_AFTER_MS) return;
    this.lastSweep = now;
    for (const [id, b] of this.buckets) if (now - b.at > FORGET_AFTER_MS) this.buckets.delete(id);
  }
}
