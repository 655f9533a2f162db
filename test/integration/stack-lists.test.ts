/**
 * Stacks' action lists (src/store/stack-lists.ts), on a real node and nats-server: checkpoints hold
 * them inline, so a load is one read; lists an earlier version stored aside in af_history are read
 * back, and the end purges them; activeflows of one flow share one copy in memory.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activeflow } from '../../machines/index.js';
import { keysNow } from '../../src/store/kv-keys.js';
import type { Storage } from '../../src/store/buckets.js';
import type { SnapshotStore } from '../../src/store/snapshot-store.js';
import { CUSTOMER } from '../helpers/engine.js';
import { openStoresFor, SHARDS, until, useNode, warmedUp } from '../helpers/nats.js';
import { shardOf } from '../../src/nats/shard-mapping.js';

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

describe('stack action lists', () => {
  it('a checkpoint holds them inline: nothing in af_history, a reload reads them back exactly, the end leaves nothing', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [...talks(10, 'main'), { type: 'talk', option: { text: 'short' } }] });
    const first = await env.client.next(af.id, af.current_action.id);
    await env.client.pushActions(af.id, talks(9, 'pushed'));
    const checkpoint = await stored(af.id);
    expect(checkpoint.value.af_stack_lists).toBeUndefined();
    expect(checkpoint.value.af_aside).toBeUndefined();
    expect(
      Object.values(checkpoint.value.context.activeflow.stack_map)
        .map((st) => st.actions.length)
        .sort(),
    ).toEqual([11, 9]);
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);

    // Out of memory and back: the activeflow reads exactly as before, and goes on.
    const before: Activeflow = await env.client.get(af.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    expect(env.node.residentActors).toBe(0);
    expect(await env.client.get(af.id)).toEqual(before);
    let current = (await env.client.next(af.id, first.id)).id;
    for (let i = 0; i < 40 && (await env.client.get(af.id)).status === 'running'; i++) current = (await env.client.next(af.id, current)).id;
    expect((await env.client.get(af.id)).status).toBe('ended');
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);
    // nor its running key's marker: the removal's purge marker expires (one second)
    expect(await until(async () => (await keysNow(storage.running, store.runningKey(af.id))).length === 0, 5_000)).toBe(true);
  });

  it('lists an earlier version stored aside are read back, the mark stays on later checkpoints, and the end purges them', async () => {
    // This test writes the checkpoint beside the node: no background load of the node's start-up
    // warm-ups may hold the activeflow meanwhile (it did in CI, and its stale revision refused the
    // checkpoint after).
    await warmedUp(env.node);
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: talks(12, 'old') });
    const first = await env.client.next(af.id, af.current_action.id);
    await stored(af.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    const before: Activeflow = await env.client.get(af.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    // The checkpoint as the previous version wrote it: the main stack's list under <id>.s.<hash>, named.
    const raw = (await storage.running.get(store.runningKey(af.id)))!;
    const value = JSON.parse(new TextDecoder().decode(raw.value)) as Stored;
    const [stackId, stack] = Object.entries(value.context.activeflow.stack_map)[0]!;
    const key = `${af.id}.s.0123456789abcdef`;
    await storage.history.put(key, new TextEncoder().encode(JSON.stringify(stack.actions)));
    stack.actions = [];
    await storage.running.update(store.runningKey(af.id), new TextEncoder().encode(JSON.stringify({ ...value, af_stack_lists: { [stackId]: key }, af_aside: true })), raw.revision);

    expect(await env.client.get(af.id)).toEqual(before);
    let current = (await env.client.next(af.id, first.id)).id;
    const later = await stored(af.id); // a new checkpoint: inline, and still marked
    expect(later.value.af_stack_lists).toBeUndefined();
    expect(later.value.af_aside).toBe(true);
    expect(Object.values(later.value.context.activeflow.stack_map)[0]!.actions).toHaveLength(12);
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([key]);

    for (let i = 0; i < 40 && (await env.client.get(af.id)).status === 'running'; i++) current = (await env.client.next(af.id, current)).id;
    expect((await env.client.get(af.id)).status).toBe('ended');
    // One purge: no list and no delete marker left.
    for (let i = 0; i < 50 && (await keysNow(storage.history, `${af.id}.>`)).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);
  });

  it('activeflows of one flow share one copy of its actions in memory, when created and when loaded again', async () => {
    const flow = await env.client.createFlow({ customer_id: CUSTOMER, actions: talks(12, 'shared') });
    const [a, b] = await Promise.all([0, 1].map(() => env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', flow_id: flow.id })));
    const mainOf = (id: string) => Object.values(env.node.registry.get(id).state()!.activeflow.stack_map)[0]!.actions;
    expect(mainOf(a!.id)).toBe(mainOf(b!.id));
    for (const af of [a!, b!]) await env.client.next(af.id, af.current_action.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    await Promise.all([a!, b!].map((af) => env.client.get(af.id))); // loaded again, each from its own list
    expect(mainOf(a!.id)).toBe(mainOf(b!.id));
    const c = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', flow_id: flow.id });
    expect(mainOf(c.id)).toBe(mainOf(a!.id)); // the same copy as before the reload: one per node
    expect(Object.isFrozen(mainOf(a!.id)[0])).toBe(true); // shared, so never changed in place
    expect(mainOf(a!.id).map((x) => x.id)).toEqual(flow.actions.map((x) => x.id));
  });

  it('a checkpoint whose list stored aside is gone does not load as something else: the request fails and says so', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: talks(10, 'lost') });
    await env.client.next(af.id, af.current_action.id);
    await stored(af.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    const raw = (await storage.running.get(store.runningKey(af.id)))!;
    const value = JSON.parse(new TextDecoder().decode(raw.value)) as Stored;
    const stackId = Object.keys(value.context.activeflow.stack_map)[0]!;
    value.context.activeflow.stack_map[stackId]!.actions = [];
    await storage.running.update(
      store.runningKey(af.id),
      new TextEncoder().encode(JSON.stringify({ ...value, af_stack_lists: { [stackId]: `${af.id}.s.0123456789abcdef` }, af_aside: true })),
      raw.revision,
    );
    // Whatever handle the node may have loaded meanwhile goes, so the get loads what is stored now.
    // (One CI run answered this get with the state from before the change; a handle loaded in
    // between, e.g. by the warm-up of a shard taken again after a late renewal, is the likely way.)
    env.node.registry.drop(shardOf(af.id, SHARDS));
    // A storage fault, not the caller's: `internal` (the node's log names the missing list).
    await expect(env.client.get(af.id)).rejects.toMatchObject({ code: 'internal' });
  });
});
