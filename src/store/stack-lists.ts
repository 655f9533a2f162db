/**
 * The action lists of a running activeflow's stacks, stored aside so that a move does not write
 * them again. A move changes the cursor, rarely a stack: yet the stacks (the flow's actions, and
 * what fetch_flow, queue_join or push_actions pushed) were most of every snapshot, re-encoded and
 * re-sent on each move (measured: 3.6 KB of a 13.5 KB snapshot for a 20-action flow).
 *
 * A list of at least MIN_ACTIONS actions is written once to `af_history` under
 * `<activeflow_id>.s.<hash of its JSON>`, before the first snapshot that names it; the stored
 * snapshot keeps the stack with an empty list and the key in `af_stack_lists`. Content addressing
 * means a stale owner can never overwrite a list that a current snapshot uses. A changed stack
 * (push_actions, add_actions, a decremented loop counter) is a new list and a new key.
 */
import type { KV } from '@nats-io/kv';
import type { Snapshot } from 'xstate';
import type { Action, Stack } from '../../machines/index.js';
import { decodeJson, encodeJson } from './codec.js';
import { contentHash } from './content-hash.js';
import { deepFreeze } from './deep-freeze.js';

/** Shorter lists stay inline: their own write would cost more than it saves. */
export const MIN_ACTIONS = 8;

type Persisted = Snapshot<unknown> & {
  context: { activeflow: { id: string; stack_map: Record<string, Stack> } };
  af_stack_lists?: Record<string, string>;
  /** Sticky: something was stored aside once (a list since popped included), so the end cleans up. */
  af_aside?: true;
};

/** Stands for lists stored before the last load whose keys the snapshot no longer names. */
const EARLIER = '';

export class StackLists {
  /** List keys known to be stored, per activeflow (written here, or read from its snapshot). */
  private readonly stored = new Map<string, Set<string>>();
  /**
   * The content hash of each list seen: a list is an immutable array, kept by identity from move to
   * move, so it is encoded and hashed once, not on every write.
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

  /** The snapshot to store: long lists written first (once each), then named instead of copied. */
  async split(snapshot: Snapshot<unknown>): Promise<Snapshot<unknown>> {
    const s = snapshot as Persisted;
    const af = s.context.activeflow;
    let known = this.stored.get(af.id);
    let stacks: Record<string, Stack> | null = null;
    const refs: Record<string, string> = {};
    const writes: Promise<unknown>[] = [];
    for (const [stackId, stack] of Object.entries(af.stack_map)) {
      if (stack.actions.length < MIN_ACTIONS) continue;
      let hash = this.hashes.get(stack.actions);
      let json: string | undefined;
      if (hash === undefined) {
        json = JSON.stringify(stack.actions);
        hash = contentHash(json);
        // The copy later loads will share (a flow's actions, as FlowStore shares them at creation).
        if (this.shared.get(hash)?.deref() === undefined) this.share(stack.actions, hash);
        else this.hashes.set(stack.actions, hash);
      }
      const key = `${af.id}.s.${hash}`;
      if (known === undefined) {
        known = new Set();
        this.stored.set(af.id, known);
      }
      if (!known.has(key)) {
        const set = known;
        writes.push(this.kv.put(key, json === undefined ? encodeJson(stack.actions) : new TextEncoder().encode(json)).then(() => set.add(key)));
      }
      stacks ??= { ...af.stack_map };
      stacks[stackId] = { ...stack, actions: [] };
      refs[stackId] = key;
    }
    await Promise.all(writes);
    const aside = known !== undefined && known.size > 0;
    if (stacks === null) return aside ? ({ ...s, af_aside: true } as unknown as Snapshot<unknown>) : snapshot;
    return { ...s, context: { ...s.context, activeflow: { ...af, stack_map: stacks } }, af_stack_lists: refs, af_aside: true } as unknown as Snapshot<unknown>;
  }

  /** A stored snapshot with its stacks' lists read back in. */
  async join(stored: Snapshot<unknown>): Promise<Snapshot<unknown>> {
    const s = stored as Persisted;
    const refs = s.af_stack_lists ?? {};
    const af = s.context.activeflow;
    if (s.af_aside === true) this.stored.set(af.id, new Set([EARLIER, ...Object.values(refs)]));
    if (s.af_stack_lists === undefined) {
      if (s.af_aside === undefined) return stored;
      const { af_aside: _a, ...plain } = s;
      return plain as unknown as Snapshot<unknown>;
    }
    const stacks = { ...af.stack_map };
    await Promise.all(
      Object.entries(refs).map(async ([stackId, key]) => {
        const e = await this.kv.get(key);
        if (e === null || e.operation !== 'PUT') throw new Error(`the action list ${key} of stack ${stackId} is missing`);
        stacks[stackId] = { ...stacks[stackId]!, actions: decodeJson(e.value) as Action[] };
      }),
    );
    const { af_stack_lists: _r, af_aside: _a, ...rest } = s;
    return { ...rest, context: { ...s.context, activeflow: { ...af, stack_map: stacks } } } as unknown as Snapshot<unknown>;
  }

  /** Forgets what this node knows is stored (the actor left memory; a load learns it again). */
  forget(id: string): void {
    this.stored.delete(id);
  }

  get tracked(): number {
    return this.stored.size;
  }
}
