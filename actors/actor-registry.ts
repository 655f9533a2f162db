/**
 * The actors of the shards this node owns. A handle exists per activeflow that was asked for;
 * idle ones are passivated (kept only in the store) and rehydrate on their next request.
 */
import { RecentMap } from '../src/recent-map.js';
import type { OwnCheckpoint } from '../src/store/snapshot-store.js';
import { ActiveflowActor, type ActorDeps } from './activeflow-actor.js';

/**
 * How many passivated activeflows' customers are remembered (about 200 bytes each): fair admission
 * keys a request by its customer, and a request that names none (a call service's `next`) would
 * otherwise share one queue for every customer until its activeflow is loaded again.
 */
export const REMEMBERED_CUSTOMERS = 50_000;

export class ActorRegistry {
  private readonly actors = new Map<string, ActiveflowActor>();
  /**
   * The ids in `actors`, by shard: a shard's handover or lost lease touches its own actors only.
   * (Scanning every actor per shard cost 256 x 100,000 hashes of ids when a node holding 100,000
   * stopped, about 7 s, or fenced its shards, long enough to make the next renewals late too.)
   */
  private readonly byShard = new Map<number, Set<string>>();
  /**
   * Customers of activeflows passivated here, the most recent ones, with their shards (forgotten
   * with the shard), and the checkpoint each one left when it left memory, current then (see `get`).
   */
  private readonly passivated = new RecentMap<string, { customer: string; shard: number; checkpoint: OwnCheckpoint | null }>(REMEMBERED_CUSTOMERS);

  constructor(
    private readonly deps: ActorDeps,
    private readonly passivateAfterMs: number,
    /** The shard of an activeflow id (src/nats/shard-mapping.ts shardOf at the cluster's shard count). */
    private readonly shardOf: (id: string) => number,
  ) {}

  /** The handle of an activeflow (created on first use; loading happens in its mailbox). */
  get(id: string): ActiveflowActor {
    let actor = this.actors.get(id);
    if (actor === undefined || (!actor.usable && !actor.busy)) {
      // The checkpoint is handed to one handle only: from the load it goes to, this node's knowledge
      // of the journal is that handle's (a handle dropped after moves it did not checkpoint must not
      // leave the next one trusting a checkpoint those moves are missing from).
      const hint = this.passivated.get(id);
      const checkpoint = hint?.checkpoint ?? undefined;
      if (hint !== undefined) hint.checkpoint = null;
      actor = new ActiveflowActor(id, this.deps, hint?.customer, checkpoint);
      this.actors.set(id, actor);
      const shard = this.shardOf(id);
      const ids = this.byShard.get(shard);
      if (ids === undefined) this.byShard.set(shard, new Set([id]));
      else ids.add(id);
    }
    return actor;
  }

  /** Takes a handle out of the registry (and its shard's set). */
  private remove(id: string): void {
    this.actors.delete(id);
    const shard = this.shardOf(id);
    const ids = this.byShard.get(shard);
    ids?.delete(id);
    if (ids?.size === 0) this.byShard.delete(shard);
  }

  /** The handles of one shard, now. */
  private ofShard(shard: number): [string, ActiveflowActor][] {
    return [...(this.byShard.get(shard) ?? [])].map((id) => [id, this.actors.get(id)!]);
  }

  /** The handle of an activeflow if there is one (never makes one). */
  peek(id: string): ActiveflowActor | undefined {
    return this.actors.get(id);
  }

  /** The customer of an activeflow resident here, or passivated here not long ago. */
  customerOf(id: string): string | undefined {
    return this.actors.get(id)?.customerId ?? this.passivated.get(id)?.customer;
  }

  /**
   * Forgets idle actors, each checkpointed first so that its next load reads no journal entries;
   * returns how many went. A busy actor is never passivated, nor one whose checkpoint failed.
   */
  async passivateIdle(nowMs: number): Promise<number> {
    const idle = [...this.actors].filter(([, a]) => !a.busy && (!a.usable || nowMs - a.lastUsedMs >= this.passivateAfterMs));
    await Promise.all(idle.filter(([, a]) => a.dirty).map(([, a]) => a.checkpoint()));
    let n = 0;
    for (const [id, actor] of idle) {
      // a request may have come meanwhile (it keeps the actor), or the checkpoint failed
      if (this.actors.get(id) !== actor || actor.busy || actor.dirty || (actor.usable && nowMs - actor.lastUsedMs < this.passivateAfterMs)) continue;
      this.remove(id);
      const customer = actor.customerId;
      if (customer !== undefined) this.passivated.set(id, { customer, shard: this.shardOf(id), checkpoint: actor.ownCheckpoint });
      this.deps.store.forget(id);
      if (actor.resident) n++;
    }
    return n;
  }

  /**
   * Forgets every actor of a shard after their requests finish (the shard handed over). Only the
   * handles it waited for: while they settled, the shard may have been lost (drop) and taken again,
   * and a new handle of the same activeflow made here; that one belongs to the new term, and taking
   * it out of the registry without forgetting it would leave it working unseen, past the shard's
   * next handover (found by the cluster simulation, seed 360).
   */
  async release(shard: number): Promise<void> {
    const leaving = this.ofShard(shard);
    await Promise.all(leaving.map(([, a]) => a.settle()));
    for (const [id, a] of leaving) {
      a.forget();
      if (this.actors.get(id) !== a) continue; // dropped meanwhile (and forgotten then)
      this.remove(id);
      this.deps.store.forget(id);
    }
    this.forgetPassivated(shard); // no longer asked here
  }

  /** The customers remembered for a shard's passivated activeflows (a comparison each, no hashing). */
  private forgetPassivated(shard: number): void {
    for (const [id, p] of this.passivated.entries()) if (p.shard === shard) this.passivated.delete(id);
  }

  /**
   * Forgets the actors of a shard whose lease was lost, at once: the next request of any of them,
   * here, loads it afresh (and fences it if the shard is taken again after a crash), instead of
   * queueing behind an actor whose state may be stale by then. A request already in hand finishes
   * on its own; its write is revision-checked, so it is refused if the next owner has written. The
   * requests queued behind it are refused as retryable (ActiveflowActor.forget): run on the old
   * handle, they could load and move the activeflow beside a new handle here that holds it too.
   * Forgetting what it knew of stored chunks only makes a later write store them again.
   */
  drop(shard: number): void {
    for (const [id, a] of this.ofShard(shard)) {
      a.forget();
      this.remove(id);
      this.deps.store.forget(id);
    }
    this.forgetPassivated(shard);
  }

  get residentCount(): number {
    let n = 0;
    for (const a of this.actors.values()) if (a.resident) n++;
    return n;
  }

  async settleAll(): Promise<void> {
    await Promise.all([...this.actors.values()].map((a) => a.settle()));
  }
}
