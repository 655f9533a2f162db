/**
 * Stacks' action lists stored aside (src/store/stack-lists.ts), on a real node and nats-server:
 * a move writes a snapshot that names the lists instead of copying them, a pushed stack's list is
 * stored once, a reload reads them back exactly, and the end leaves nothing in af_history.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activeflow } from '../../machines/index.js';
import { keysNow } from '../../src/store/kv-keys.js';
import type { Storage } from '../../src/store/buckets.js';
import type { SnapshotStore } from '../../src/store/snapshot-store.js';
import { CUSTOMER } from '../helpers/engine.js';
import { openStoresFor, useNode } from '../helpers/nats.js';

const env = useNode();
let storage: Storage;
let store: SnapshotStore;
let close: () => Promise<void>;
beforeAll(async () => {
  const s = await openStoresFor(env.server);
  ({ storage, store } = s);
  close = () => s.nc.close();
});
afterAll(() => close?.());

interface Stored {
  af_stack_lists?: Record<string, string>;
  af_aside?: true;
  context: { activeflow: { stack_map: Record<string, { actions: unknown[] }> } };
}
/** The activeflow's checkpoint, written now (otherwise every CHECKPOINT_EVERY moves and when it leaves memory). */
async function stored(id: string): Promise<{ value: Stored }> {
  await env.node.registry.settleAll();
  const e = (await storage.running.get(store.runningKey(id)))!;
  return { value: JSON.parse(new TextDecoder().decode(e.value)) as Stored };
}
const talks = (n: number, tag: string) => Array.from({ length: n }, (_, i) => ({ type: 'talk', option: { text: `${tag} ${i} ${'x'.repeat(100)}` } }));

describe('stack action lists stored aside', () => {
  it('a move names the lists; a pushed stack adds one; a reload reads them back; the end leaves nothing', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [...talks(10, 'main'), { type: 'talk', option: { text: 'short' } }] });
    const first = await env.client.next(af.id, af.current_action.id);
    const afterOne = await stored(af.id);
    expect(Object.keys(afterOne.value.af_stack_lists ?? {})).toHaveLength(1);
    expect(Object.values(afterOne.value.context.activeflow.stack_map).every((st) => st.actions.length === 0)).toBe(true);
    expect(JSON.stringify(afterOne.value)).not.toContain('main 5 '); // the actions ahead are not in the snapshot

    // Moves on the same stack write no new list; a push adds the pushed stack's list, once.
    const second = await env.client.next(af.id, first.id);
    expect(await keysNow(storage.history, `${af.id}.>`)).toHaveLength(1);
    await env.client.pushActions(af.id, talks(9, 'pushed'));
    await env.client.pushActions(af.id, talks(2, 'short')); // a short list stays inline
    const pushed = await stored(af.id);
    const lists = pushed.value.af_stack_lists ?? {};
    expect(Object.keys(lists)).toHaveLength(2);
    const inline = Object.entries(pushed.value.context.activeflow.stack_map).filter(([, st]) => st.actions.length > 0);
    expect(inline.map(([, st]) => st.actions.length)).toEqual([2]);
    expect(await keysNow(storage.history, `${af.id}.>`)).toHaveLength(2);

    // Out of memory and back: the activeflow reads exactly as before, and goes on.
    const before: Activeflow = await env.client.get(af.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    expect(env.node.residentActors).toBe(0);
    expect(await env.client.get(af.id)).toEqual(before);
    let current = (await env.client.next(af.id, second.id)).id;
    expect((await stored(af.id)).value.af_stack_lists).toEqual(lists); // nothing rewritten after the reload
    expect(await keysNow(storage.history, `${af.id}.>`)).toHaveLength(2);

    for (let i = 0; i < 40 && (await env.client.get(af.id)).status === 'running'; i++) current = (await env.client.next(af.id, current)).id;
    expect((await env.client.get(af.id)).status).toBe('ended');
    // One purge: no list and no delete marker left.
    for (let i = 0; i < 50 && (await keysNow(storage.history, `${af.id}.>`)).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);
    expect(await keysNow(storage.running, store.runningKey(af.id))).toEqual([]); // nor its running key's marker
  });

  it('activeflows of one flow share one copy of its actions in memory, when created and when loaded again', async () => {
    const flow = await env.client.createFlow({ customer_id: CUSTOMER, actions: talks(12, 'shared') });
    const [a, b] = await Promise.all([0, 1].map(() => env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', flow_id: flow.id })));
    const mainOf = (id: string) => Object.values(env.node.registry.get(id).state()!.activeflow.stack_map)[0]!.actions;
    expect(mainOf(a!.id)).toBe(mainOf(b!.id));
    for (const af of [a!, b!]) await env.client.next(af.id, af.current_action.id); // stored aside
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    await Promise.all([a!, b!].map((af) => env.client.get(af.id))); // loaded again, each from its own list
    expect(mainOf(a!.id)).toBe(mainOf(b!.id));
    const c = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', flow_id: flow.id });
    expect(mainOf(c.id)).toBe(mainOf(a!.id)); // the same copy as before the reload: one per node
    expect(Object.isFrozen(mainOf(a!.id)[0])).toBe(true); // shared, so never changed in place
    expect(mainOf(a!.id).map((x) => x.id)).toEqual(flow.actions.map((x) => x.id));
  });

  it('a snapshot whose list is gone does not load as something else: the request fails and says so', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: talks(10, 'lost') });
    await env.client.next(af.id, af.current_action.id);
    const key = Object.values((await stored(af.id)).value.af_stack_lists ?? {})[0]!;
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    await storage.history.purge(key);
    // A storage fault, not the caller's: `internal` (the node's log names the missing list).
    await expect(env.client.get(af.id)).rejects.toMatchObject({ code: 'internal' });
  });
});
