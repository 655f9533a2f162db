/**
 * The actors of the shards this node owns. A handle exists per activeflow that was asked for;
 * idle ones are passivated (kept only in the store) and rehydrate on their next request.
 */
import { RecentMap } from '../src/recent-map.js';
import { ActiveflowActor, type ActorDeps } from './activeflow-actor.js';

/**
 * How many passivated activeflows' customers are remembered (about 200 bytes each): fair admission
 * keys a request by its customer, and a request that names none (a call service's `next`) would
 * otherwise share one queue for every customer until its activeflow is loaded again.
 */
export const REMEMBERED_CUSTOMERS = 50_000;

export class ActorRegistry {
  private readonly actors = new Map<string, ActiveflowActor>();
  /** Customers of activeflows passivated here, the most recent ones. */
  private readonly passivated = new RecentMap<string, string>(REMEMBERED_CUSTOMERS);

  constructor(
    private readonly deps: ActorDeps,
    private readonly passivateAfterMs: number,
  ) {}

  /** The handle of an activeflow (created on first use; loading happens in its mailbox). */
  get(id: string): ActiveflowActor {
    let actor = this.actors.get(id);
    if (actor === undefined || (!actor.usable && !actor.busy)) {
      actor = new ActiveflowActor(id, this.deps, this.passivated.get(id));
      this.actors.set(id, actor);
    }
    return actor;
  }

  /** The handle of an activeflow if there is one (never makes one). */
  peek(id: string): ActiveflowActor | undefined {
    return this.actors.get(id);
  }

  /** The customer of an activeflow resident here, or passivated here not long ago. */
  customerOf(id: string): string | undefined {
    return this.actors.get(id)?.customerId ?? this.passivated.get(id);
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
      this.actors.delete(id);
      const customer = actor.customerId;
      if (customer !== undefined) this.passivated.set(id, customer);
      this.deps.store.forget(id);
      if (actor.resident) n++;
    }
    return n;
  }

  /** Forgets every actor of the given shards after their requests finish (a shard handed over). */
  async release(belongs: (id: string) => boolean): Promise<void> {
    const leaving = [...this.actors.entries()].filter(([id]) => belongs(id));
    await Promise.all(leaving.map(([, a]) => a.settle()));
    for (const [id, a] of leaving) {
      a.forget();
      this.actors.delete(id);
      this.deps.store.forget(id);
    }
    for (const id of this.passivated.keys()) if (belongs(id)) this.passivated.delete(id); // no longer asked here
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
  drop(belongs: (id: string) => boolean): void {
    for (const [id, a] of [...this.actors]) {
      if (!belongs(id)) continue;
      a.forget();
      this.actors.delete(id);
      this.deps.store.forget(id);
    }
    for (const id of this.passivated.keys()) if (belongs(id)) this.passivated.delete(id);
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
