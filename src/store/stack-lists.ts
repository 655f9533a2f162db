/**
 * The action lists of a running activeflow's stacks in memory and in its checkpoints.
 *
 * Checkpoints hold their stacks' lists inline. Before the journal, when a snapshot was written on
 * every move, a list of MIN_ACTIONS or more was stored aside once in `af_history` under
 * `<activeflow_id>.s.<hash of its JSON>` and the snapshot named it in `af_stack_lists`: a move then
 * re-sent no list. With a checkpoint every CHECKPOINT_EVERY entries that saving is small, and it
 * cost every load of a passivated activeflow a second round trip (the checkpoint, then its lists),
 * so lists are inline again (docs/architecture.md, "The journal"). Stores written that way are still
 * read: `join` reads the named lists back, and the activeflow's later checkpoints keep `af_aside` so
 * that its end purges them.
 *
 * In memory, activeflows of one flow share one frozen copy of its actions (FlowStore shares them at
 * creation; `intern` gives a loaded activeflow the same copy).
 */
import type { KV } from '@nats-io/kv';
import type { Snapshot } from 'xstate';
import type { Action, Stack } from '../../machines/index.js';
import { decodeJson } from './codec.js';
import { contentHash } from './content-hash.js';
import { deepFreeze } from './deep-freeze.js';

/** Shorter lists are not shared (their hash would cost more than the copy); earlier versions stored lists of this length or more aside. */
export const MIN_ACTIONS = 8;

type Persisted = Snapshot<unknown> & {
  context: { activeflow: { id: string; stack_map: Record<string, Stack> } };
  af_stack_lists?: Record<string, string>;
  /** Sticky: something was stored aside once (a list since popped included), so the end cleans up. */
  af_aside?: true;
};

export class StackLists {
  /** Activeflows in memory whose earlier checkpoints stored lists aside (their end must purge them). */
  private readonly aside = new Set<string>();
  /**
   * The content hash of each list seen: a list is an immutable array, kept by identity from move to
   * move, so it is encoded and hashed once, not on every checkpoint.
   */
  private readonly hashes = new WeakMap<readonly Action[], string>();

  /**
   * One copy of each list among the activeflows in memory: activeflows of one flow, loaded again
   * after a restart or a passivation, share their main stack's actions as they did when created
   * (FlowStore). Weak: a list goes once no activeflow holds it.
   */
  private readonly shared = new Map<string, WeakRef<Action[]>>();
  private readonly unshare = new FinalizationRegistry<string>((hash) => {
    if (this.shared.get(hash)?.deref() === undefined) this.shared.delete(hash);
  });

  constructor(private readonly kv: KV) {}

  /** The one shared, frozen copy of a list equal to `actions` (short lists are left as they are). */
  intern(actions: Action[]): Action[] {
    if (actions.length < MIN_ACTIONS) return actions;
    const hash = this.hashes.get(actions) ?? contentHash(JSON.stringify(actions));
    return this.shared.get(hash)?.deref() ?? this.share(actions, hash);
  }

  private share(actions: Action[], hash: string): Action[] {
    deepFreeze(actions);
    this.hashes.set(actions, hash);
    this.shared.set(hash, new WeakRef(actions));
    this.unshare.register(actions, hash);
    return actions;
  }

  /**
   * The snapshot to store: its lists inline. Each long list becomes the copy later loads share (a
   * flow's actions, as FlowStore shares them at creation), hashed once; an activeflow whose lists
   * were stored aside before keeps the mark that has its end purge them.
   */
  split(snapshot: Snapshot<unknown>): Snapshot<unknown> {
    const s = snapshot as Persisted;
    const af = s.context.activeflow;
    for (const stack of Object.values(af.stack_map)) {
      if (stack.actions.length < MIN_ACTIONS || this.hashes.has(stack.actions)) continue;
      const hash = contentHash(JSON.stringify(stack.actions));
      if (this.shared.get(hash)?.deref() === undefined) this.share(stack.actions, hash);
      else this.hashes.set(stack.actions, hash);
    }
    return this.aside.has(af.id) ? ({ ...s, af_aside: true } as unknown as Snapshot<unknown>) : snapshot;
  }

  /** A stored snapshot with its stacks' lists read back in (those stored aside by earlier versions). */
  async join(stored: Snapshot<unknown>): Promise<Snapshot<unknown>> {
    const s = stored as Persisted;
    const af = s.context.activeflow;
    if (s.af_aside === true) this.aside.add(af.id);
    if (s.af_stack_lists === undefined) {
      if (s.af_aside === undefined) return stored;
      const { af_aside: _a, ...plain } = s;
      return plain as unknown as Snapshot<unknown>;
    }
    const stacks = { ...af.stack_map };
    await Promise.all(
      Object.entries(s.af_stack_lists).map(async ([stackId, key]) => {
        const e = await this.kv.get(key);
        if (e === null || e.operation !== 'PUT') throw new Error(`the action list ${key} of stack ${stackId} is missing`);
        stacks[stackId] = { ...stacks[stackId]!, actions: decodeJson(e.value) as Action[] };
      }),
    );
    const { af_stack_lists: _r, af_aside: _a, ...rest } = s;
    return { ...rest, context: { ...s.context, activeflow: { ...af, stack_map: stacks } } } as unknown as Snapshot<unknown>;
  }

  /** Forgets what this node knows of the activeflow (it left memory; a load learns it again). */
  forget(id: string): void {
    this.aside.delete(id);
  }

  get tracked(): number {
    return this.aside.size;
  }
}
