/**
 * The actors of the shards this node owns. A handle exists per activeflow that was asked for;
 * idle ones are passivated (kept only in the store) and rehydrate on their next request.
 */
import { ActiveflowActor, type ActorDeps } from './activeflow-actor.js';

export class ActorRegistry {
  private readonly actors = new Map<string, ActiveflowActor>();

  constructor(
    private readonly deps: ActorDeps,
    private readonly passivateAfterMs: number,
  ) {}

  /** The handle of an activeflow (created on first use; loading happens in its mailbox). */
  get(id: string): ActiveflowActor {
    let actor = this.actors.get(id);
    if (actor === undefined || (!actor.usable && !actor.busy)) {
      actor = new ActiveflowActor(id, this.deps);
      this.actors.set(id, actor);
    }
    return actor;
  }

  /** The customer of a resident activeflow, if this node has it in memory. */
  customerOf(id: string): string | undefined {
    return this.actors.get(id)?.customerId;
  }

  /** Forgets idle actors; returns how many went. A busy actor is never passivated. */
  passivateIdle(nowMs: number): number {
    let n = 0;
    for (const [id, actor] of this.actors) {
      if (actor.busy) continue;
      if (!actor.usable || nowMs - actor.lastUsedMs >= this.passivateAfterMs) {
        this.actors.delete(id);
        this.deps.store.forget(id);
        if (actor.resident) n++;
      }
    }
    return n;
  }

  /** Forgets every actor of the given shards after their requests finish (a shard handed over). */
  async release(belongs: (id: string) => boolean): Promise<void> {
    const leaving = [...this.actors.entries()].filter(([id]) => belongs(id));
    await Promise.all(leaving.map(([, a]) => a.settle()));
    for (const [id] of leaving) {
      this.actors.delete(id);
      this.deps.store.forget(id);
    }
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
