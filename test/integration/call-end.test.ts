/**
 * The last steps of an end, and what they read. A call that ends before its first checkpoint (most
 * calls: a checkpoint comes every CHECKPOINT_EVERY moves, or at passivation) is ended from what its
 * handle knows: its running checkpoint is the creation's, which stores nothing aside, so it is not
 * read back; its index entry is the one it created, so it is replaced at that revision, not read and
 * merged; and the running key goes in one purge whose marker expires. Each shortcut is tested where
 * it could go wrong: a handle that checkpointed since reads its checkpoint and cleans what it stored
 * aside, an index entry rewritten meanwhile is read and merged, and a bucket that takes no message
 * TTL has its key removed in two steps.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type Bucket, Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { connectNats } from '../../src/nats/connect.js';
import { openStorage, type Storage } from '../../src/store/buckets.js';
import { keysNow } from '../../src/store/kv-keys.js';
import { SnapshotStore, type Revision } from '../../src/store/snapshot-store.js';
import { RevisionConflict } from '../../src/store/revision-conflict.js';
import { ActiveflowIndex } from '../../src/store/activeflow-index.js';
import { Limits } from '../../machines/index.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, openStoresFor, SHARDS, startNats, startNode, until, warmedUp } from '../helpers/nats.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

async function setup(): Promise<{ server: NatsServer; node: ActiveflowNode; client: ActiveflowClient; storage: Storage; store: SnapshotStore }> {
  const server = await startNats();
  cleanups.push(() => server.stop());
  const { nc, client } = await clientFor(server);
  cleanups.push(() => nc.close());
  const node = await startNode(server, { limits: Limits.parse({ max_execute_count: 400, max_cycle_iterations: 400 }) });
  cleanups.push(() => node.stop());
  await warmedUp(node);
  const stores = await openStoresFor(server);
  cleanups.push(() => stores.nc.close());
  return { server, node, client, storage: stores.storage, store: stores.store };
}

/** The node's own handles on its buckets (what its stores call). */
function nodeStorage(node: ActiveflowNode): Storage {
  return (node as unknown as { storage: Storage }).storage;
}

const talks = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } }));

async function indexEntry(storage: Storage, id: string): Promise<unknown> {
  const e = await storage.index.get(`${CUSTOMER}.${id}`);
  return e === null ? null : JSON.parse(new TextDecoder().decode(e.value));
}

/** The running key holds no value, and no marker either once its TTL (one second) has run out. */
async function runningKeyGone(storage: Storage, store: SnapshotStore, id: string): Promise<boolean> {
  if ((await storage.running.get(store.runningKey(id)))?.operation === 'PUT') return false;
  return until(async () => (await keysNow(storage.running, store.runningKey(id))).length === 0, 5_000);
}

describe('the end of an activeflow', () => {
  it('that never checkpointed reads neither its checkpoint nor its index entry, and removes its running key in one write', async () => {
    const { node, client, storage, store } = await setup();
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: talks(5) });
    await client.next(af.id, af.current_action.id);
    const own = nodeStorage(node);
    const runningGet = vi.spyOn(own.running, 'get');
    const indexGet = vi.spyOn(own.index, 'get');
    const direct = vi.spyOn((own.running as Bucket).jsm.direct, 'getMessage'); // a read by revision
    const deleted = vi.spyOn(own.running, 'delete');
    const purged = vi.spyOn(own.running, 'purge');
    expect(await client.stop(af.id)).toMatchObject({ status: 'ended' });
    await node.registry.settleAll(); // the end's last steps run after its reply
    expect([runningGet.mock.calls.length, indexGet.mock.calls.length, direct.mock.calls.length, deleted.mock.calls.length]).toEqual([0, 0, 0, 0]);
    expect(purged).toHaveBeenCalledTimes(1);
    expect(purged.mock.calls[0]![1]).toMatchObject({ previousSeq: expect.any(Number), ttl: '1s' });
    expect(await indexEntry(storage, af.id)).toEqual({ status: 'ended', reference_type: 'call', reference_id: af.reference_id, tm_create: af.tm_create, deleted: false });
    expect((await storage.ended.get(af.id))?.operation).toBe('PUT');
    expect(await runningKeyGone(storage, store, af.id)).toBe(true);
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);
    expect(await client.get(af.id)).toMatchObject({ status: 'ended', end_reason: 'stopped' });
  }, 30_000);

  it('that checkpointed since its creation, in the same handle, reads that checkpoint back and removes the history it stored aside', async () => {
    const { node, client, storage, store } = await setup();
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: talks(100) });
    let current = af.current_action.id;
    for (let i = 0; i < 70; i++) current = (await client.next(af.id, current)).id;
    await node.registry.settleAll(); // its checkpoints (every 32 entries) are written
    expect(await keysNow(storage.history, `${af.id}.>`)).toHaveLength(2); // 70 executed: two chunks of 32 aside
    expect(node.residentActors).toBe(1); // the handle that created it
    const direct = vi.spyOn((nodeStorage(node).running as Bucket).jsm.direct, 'getMessage');
    await client.stop(af.id);
    await node.registry.settleAll();
    expect(direct).toHaveBeenCalled(); // its own checkpoint, by revision, for what it stored aside
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);
    expect(await runningKeyGone(storage, store, af.id)).toBe(true);
    expect((await client.get(af.id)).executed_actions).toHaveLength(70); // the start and t0 ... t68
  }, 30_000);

  it('whose index entry was rewritten after its creation reads it and merges (a delete mark is kept)', async () => {
    const { node, client, storage } = await setup();
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: talks(3) });
    // Another writer (a former owner's late write, say) moved the entry on since the creation.
    const key = `${CUSTOMER}.${af.id}`;
    const created = (await storage.index.get(key))!;
    await storage.index.update(key, new TextEncoder().encode(JSON.stringify({ ...(JSON.parse(new TextDecoder().decode(created.value)) as object), deleted: true })), created.revision);
    const indexGet = vi.spyOn(nodeStorage(node).index, 'get');
    await client.stop(af.id);
    await node.registry.settleAll();
    expect(indexGet).toHaveBeenCalled(); // refused at the remembered revision, then read
    expect(await indexEntry(storage, af.id)).toMatchObject({ status: 'ended', deleted: true });
  }, 30_000);
});

describe('removing a running key', () => {
  async function bucketWithoutTtl(): Promise<{ store: SnapshotStore; running: Awaited<ReturnType<Kvm['open']>> }> {
    const server = await startNats();
    cleanups.push(() => server.stop());
    const nc = await connectNats(server.url, 'test');
    cleanups.push(() => nc.close());
    const kvm = new Kvm(nc);
    await kvm.create('af_running', { history: 1 });
    await kvm.create('af_ended', { history: 1 });
    const running = await kvm.open('af_running');
    return { store: new SnapshotStore(running, await kvm.open('af_ended'), SHARDS), running };
  }
  const snapshot = { status: 'active', context: {} } as never;

  it('from a bucket that takes no message TTL: a delete and a purge, nothing left, still revision-checked', async () => {
    const { store, running } = await bucketWithoutTtl();
    for (const id of ['5a0d5ab6-0c6e-4a2e-9b53-0d5c6f3e7a01', '5a0d5ab6-0c6e-4a2e-9b53-0d5c6f3e7a02']) {
      const revision = await store.create(id, snapshot);
      await expect(store.deleteRunning(id, (revision + 100) as Revision, true)).rejects.toBeInstanceOf(RevisionConflict);
      await store.deleteRunning(id, revision, true);
      expect(await keysNow(running, store.runningKey(id))).toEqual([]); // at once: no marker was left
    }
  });

  it('with message TTLs (openStorage turns them on, also for a bucket made before): one purge, revision-checked, its marker expires', async () => {
    const { store, running } = await bucketWithoutTtl();
    const nc = await connectNats((running as unknown as { js: { nc: { getServer(): string } } }).js.nc.getServer(), 'test');
    cleanups.push(() => nc.close());
    const storage = await openStorage(nc, { replicas: 1, endedRetentionMs: 86_400_000, eventRetentionMs: 86_400_000, leaseTtlMs: 1_000 });
    const jsm = await jetstreamManager(nc);
    expect((await jsm.streams.info('KV_af_running')).config.allow_msg_ttl).toBe(true);
    const id = '5a0d5ab6-0c6e-4a2e-9b53-0d5c6f3e7a03';
    const revision = await store.create(id, snapshot);
    const deleted = vi.spyOn(running, 'delete');
    await expect(store.deleteRunning(id, (revision + 100) as Revision, true)).rejects.toBeInstanceOf(RevisionConflict);
    expect((await running.get(store.runningKey(id)))?.operation).toBe('PUT'); // refused: still there
    await store.deleteRunning(id, revision, true);
    expect(deleted).not.toHaveBeenCalled();
    expect((await storage.running.get(store.runningKey(id)))?.operation).toBe('PURGE');
    expect(await until(async () => (await keysNow(running, store.runningKey(id))).length === 0, 5_000)).toBe(true);
  });
});

describe('ActiveflowIndex.record with the revision it created', () => {
  it('replaces the entry without reading it, and returns the revision only of a created running entry', async () => {
    const server = await startNats();
    cleanups.push(() => server.stop());
    const { nc, storage } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    const index = new ActiveflowIndex(storage.index);
    const af = {
      id: '5a0d5ab6-0c6e-4a2e-9b53-0d5c6f3e7a04',
      customer_id: CUSTOMER,
      status: 'running',
      reference_type: 'call',
      reference_id: 'r',
      tm_create: '2026-12-06T00:00:00.000000Z',
      tm_delete: null,
    } as never as Parameters<ActiveflowIndex['record']>[0];
    const created = await index.record(af);
    expect(created).toEqual(expect.any(Number));
    expect(await index.record(af)).toBeNull(); // there already
    const get = vi.spyOn(storage.index, 'get');
    expect(await index.record({ ...af, status: 'ended' }, created!)).toBeNull();
    expect(get).not.toHaveBeenCalled();
    expect(await indexEntry(storage, af.id)).toMatchObject({ status: 'ended', deleted: false });
    // The same revision again is stale now: read and merged, nothing lost.
    await index.record({ ...af, status: 'ended', tm_delete: '2026-12-06T00:00:01.000000Z' }, created!);
    expect(get).toHaveBeenCalled();
    expect(await indexEntry(storage, af.id)).toMatchObject({ status: 'ended', deleted: true });
  });
});
