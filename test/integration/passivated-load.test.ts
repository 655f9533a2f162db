/**
 * A load of an activeflow passivated here, in this node's present term on its shard, with its
 * checkpoint current: that checkpoint is read alone, by its revision, and not validated again (not
 * the journal's last entry, not af_ended, not the leader's last value of the key). What makes that
 * safe is tested where it could go wrong: the checkpoint is handed to one handle only (a handle
 * gone with moves it never checkpointed leaves the next load reading the journal), a checkpoint at
 * another position or revision than the one remembered is read as without it, and the shard
 * leaving takes the memory with it. That validation would change nothing in such a checkpoint is
 * test/unit/checkpoint.test.ts.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { Kvm } from '@nats-io/kv';
import { EngineState } from '../../machines/index.js';
import { connectNats } from '../../src/nats/connect.js';
import { Journal } from '../../src/store/journal.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, openStoresFor, SHARDS, startNats, startNode, warmedUp } from '../helpers/nats.js';
import { shardOf } from '../../src/nats/shard-mapping.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function setup(before?: (server: NatsServer) => Promise<void>): Promise<{ server: NatsServer; node: ActiveflowNode; client: ActiveflowClient }> {
  const server = await startNats();
  cleanups.push(() => server.stop());
  await before?.(server);
  const { nc, client } = await clientFor(server);
  cleanups.push(() => nc.close());
  const node = await startNode(server);
  cleanups.push(() => node.stop());
  await warmedUp(node); // a start-up warm-up's load would hold the activeflows beside the test
  return { server, node, client };
}

/** An activeflow of ten talks, moved `moves` times (its executed actions: the start, then t0 ... before the current one). */
async function moved(client: ActiveflowClient, moves: number): Promise<{ id: string; current: string }> {
  const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: Array.from({ length: 10 }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } })) });
  let current = af.current_action.id;
  for (let i = 0; i < moves; i++) current = (await client.next(af.id, current)).id;
  return { id: af.id, current };
}

const texts = (af: { executed_actions: { option?: Record<string, unknown> }[] }) => af.executed_actions.map((a) => a.option?.['text']);

describe('a load of an activeflow passivated here', () => {
  it('reads neither the journal nor af_ended, answers what it answered before, and its next move is stored', async () => {
    const { node, client } = await setup();
    const { id, current } = await moved(client, 3);
    const before = await client.get(id);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    expect(node.residentActors).toBe(0);
    const last = vi.spyOn(Journal.prototype, 'last');
    const between = vi.spyOn(Journal.prototype, 'between');
    const storage = (node as unknown as { storage: Record<'ended' | 'running', { get: (k: string) => Promise<unknown> }> }).storage;
    const ended = vi.spyOn(storage.ended, 'get');
    const running = vi.spyOn(storage.running, 'get'); // the last value, from the leader
    const validated = vi.spyOn(EngineState, 'parse');
    expect(await client.get(id)).toEqual(before);
    expect([last.mock.calls.length, between.mock.calls.length, ended.mock.calls.length, running.mock.calls.length]).toEqual([0, 0, 0, 0]);
    expect(validated).not.toHaveBeenCalled();
    // Its journal position came from the memory: an append at a wrong one would be refused.
    const next = await client.next(id, current);
    expect(next.option?.['text']).toBe('t3');
    expect(texts(await client.get(id))).toEqual([undefined, 't0', 't1', 't2']);
    expect(last).not.toHaveBeenCalled(); // the append went through at the remembered position
  }, 30_000);

  it('hands the position to one handle: one gone with moves it never checkpointed leaves the next load reading the journal', async () => {
    const { node, client } = await setup();
    const { id, current } = await moved(client, 2);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    // Loaded from the memory, then moved three times: journaled, not checkpointed (every 32 entries).
    let cur = current;
    for (let i = 0; i < 3; i++) cur = (await client.next(id, cur)).id;
    const after = await client.get(id);
    expect(texts(after)).toEqual([undefined, 't0', 't1', 't2', 't3']);
    // The handle goes without a checkpoint (as one does after a failed write): the next one must
    // not take the checkpoint, three moves behind, for the whole truth.
    (node.registry as unknown as { actors: Map<string, unknown> }).actors.delete(id);
    const last = vi.spyOn(Journal.prototype, 'last');
    expect(await client.get(id)).toEqual(after);
    expect(last).toHaveBeenCalled();
    expect((await client.next(id, cur)).option?.['text']).toBe('t5');
  }, 30_000);

  it('reads a checkpoint at another position than the one remembered as without the memory: the journal after it is replayed', async () => {
    const { server, node, client } = await setup();
    const { nc, storage, store } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    const { id, current } = await moved(client, 1);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    const older = (await storage.running.get(store.runningKey(id)))!.value;
    let cur = current;
    for (let i = 0; i < 2; i++) cur = (await client.next(id, cur)).id;
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER); // remembered: after three moves
    const truth = await client.get(id);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    // What a replica behind the leader would answer: the checkpoint of one move.
    await storage.running.put(store.runningKey(id), older);
    const last = vi.spyOn(Journal.prototype, 'last');
    expect(await client.get(id)).toEqual(truth);
    expect(last).toHaveBeenCalled();
    expect(texts(truth)).toEqual([undefined, 't0', 't1']);
    expect((await client.next(id, cur)).option?.['text']).toBe('t3');
  }, 30_000);

  it('reads a checkpoint rewritten since, at the same position, as without the memory: from the leader, validated, the journal read', async () => {
    const { server, node, client } = await setup();
    const { nc, storage, store } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    const { id, current } = await moved(client, 2);
    const truth = await client.get(id);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    // The same bytes again: the remembered revision is gone, so a server asked for it has nothing.
    const key = store.runningKey(id);
    await storage.running.put(key, (await storage.running.get(key))!.value);
    const last = vi.spyOn(Journal.prototype, 'last');
    const validated = vi.spyOn(EngineState, 'parse');
    expect(await client.get(id)).toEqual(truth);
    expect(validated).toHaveBeenCalled();
    expect(last).toHaveBeenCalled();
    expect((await client.next(id, current)).option?.['text']).toBe('t2');
  }, 30_000);

  it('loads from the leader when no server answers a direct get (af_running made without allow_direct)', async () => {
    const { node, client } = await setup(async (server) => {
      const nc = await connectNats(server.url, 'no-direct');
      await new Kvm(nc).create('af_running', { history: 1, allow_direct: false });
      await nc.close();
    });
    const { id, current } = await moved(client, 2);
    const truth = await client.get(id);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    const last = vi.spyOn(Journal.prototype, 'last');
    expect(await client.get(id)).toEqual(truth);
    expect(last).not.toHaveBeenCalled(); // the leader had the remembered revision: still the one-key load
    expect((await client.next(id, current)).option?.['text']).toBe('t2');
  }, 30_000);

  it('forgets the position with the shard: after the shard was dropped, the load reads the journal', async () => {
    const { node, client } = await setup();
    const { id } = await moved(client, 2);
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    node.registry.drop(shardOf(id, SHARDS)); // the lease lost: whatever was known of the shard goes
    const last = vi.spyOn(Journal.prototype, 'last');
    expect(texts(await client.get(id))).toEqual([undefined, 't0']);
    expect(last).toHaveBeenCalled();
  }, 30_000);
});
