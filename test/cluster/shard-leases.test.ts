/**
 * Nodes splitting the shards with leases: two nodes share the 256 shards; one
 * dies mid-flow (its connection drops without releasing anything) and the other takes its shards
 * over after the lease TTL; a third joins and takes about a third. Every call keeps exactly the
 * moves it was acknowledged, and every event stream stays contiguous.
 */
import { Kvm } from '@nats-io/kv';
import { afterAll, describe, expect, it } from 'vitest';
import type { LeaseValue } from '../../src/cluster/shard-lease.js';
import { ActiveflowClient } from '../../src/api/client.js';
import { connectNats } from '../../src/nats/connect.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { driveCalls, startNats, startNode, until } from '../helpers/nats.js';
import { keysNow } from '../../src/store/kv-keys.js';

const FINISH = '00000000-0000-0000-0000-000000000002';
const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

describe('nodes splitting the shards with leases', () => {
  it('share the shards, survive a node dying, and rebalance when one joins, losing no acknowledged move', async () => {
    const server: NatsServer = await startNats();
    cleanups.push(() => server.stop());
    const leased = { leaseTtlMs: 1_000 };
    const a = await startNode(server, { ...leased, nodeId: 'node-a' });
    const b = await startNode(server, { ...leased, nodeId: 'node-b' });
    cleanups.push(
      () => a.stop(),
      () => b.stop(),
    );
    expect(await until(() => a.servedShards + b.servedShards === 256 && a.servedShards > 70 && b.servedShards > 70, 10_000)).toBe(true);

    const nc = await connectNats(server.url, 'lease-test-client');
    cleanups.push(() => nc.close());
    const client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 30_000 });
    const STEPS = 15;
    const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: STEPS }, (_, i) => ({ type: 'talk', option: { text: `${i}` } })) });
    const calls = await Promise.all(Array.from({ length: 30 }, () => client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })));
    const { assignment } = await import('../../src/cluster/shard-map.js');
    const { shardOf } = await import('../../src/nats/shard-mapping.js');
    const before = assignment(256, ['node-a', 'node-b']);
    const onB = calls.filter((call) => before[shardOf(call.id, 256)] === 'node-b');
    expect(onB.length).toBeGreaterThan(3); // calls that lose their node mid-flow
    const aMovesBefore = a.shardMoves;

    let c: ActiveflowNode | null = null;
    const events: Promise<void>[] = [];
    const acked = await driveCalls(client, calls, (moves) => {
      if (moves === 100) events.push(b.nc.close().then(() => undefined)); // node-b dies: nothing released
      if (moves === 250) {
        events.push(
          startNode(server, { ...leased, nodeId: 'node-c' }).then((n) => {
            c = n;
            cleanups.push(() => n.stop());
          }),
        );
      }
    });
    await Promise.all(events);

    expect(a.shardMoves - aMovesBefore).toBeGreaterThan(70); // node-a took node-b's shards over
    const expected = [...flow.actions.map((x) => x.id), FINISH];
    for (const call of calls) expect(acked.get(call.id)).toEqual(expected);
    expect(await until(() => c !== null && a.servedShards + c.servedShards === 256 && c.servedShards > 50, 10_000)).toBe(true);
    for (const call of calls) {
      expect(await client.get(call.id)).toMatchObject({ status: 'ended', execute_count: STEPS + 1 });
      const { events: history } = await client.history(call.id);
      expect(history.map((e) => e.seq)).toEqual(history.map((_, i) => i + 1));
    }
  }, 90_000);
});

describe('a graceful move', () => {
  it('transfers each lease straight to its next owner (one write), on join and on stop', async () => {
    const server: NatsServer = await startNats();
    cleanups.push(() => server.stop());
    const leased = { leaseTtlMs: 1_000 };
    const a = await startNode(server, { ...leased, nodeId: 'node-a' });
    cleanups.push(() => a.stop());
    expect(await until(() => a.servedShards === 256, 10_000)).toBe(true);
    const watcher = await connectNats(server.url, 'transfer-watch');
    cleanups.push(() => watcher.close());
    const leases = await new Kvm(watcher).open('af_leases');
    const transfers: { key: string; value: LeaseValue }[] = [];
    const iter = await leases.watch({ key: 'shard.*', include: 'updates' });
    void (async () => {
      for await (const e of iter) {
        if (e.operation !== 'PUT') continue;
        const value = JSON.parse(e.string()) as LeaseValue;
        if (value.transferred_from !== undefined || value.released_at !== undefined) transfers.push({ key: e.key, value });
      }
    })();

    const b = await startNode(server, { ...leased, nodeId: 'node-b' });
    cleanups.push(() => b.stop());
    // Settled: b holds exactly what the assignment gives it (a join moves shards a few at a time).
    const { assignment } = await import('../../src/cluster/shard-map.js');
    const bShare = assignment(256, ['node-a', 'node-b']).filter((o) => o === 'node-b').length;
    expect(await until(() => a.servedShards === 256 - bShare && b.servedShards === bShare, 10_000)).toBe(true);
    // Every shard b took came as a transfer from a, not as a released marker b had to claim. (While
    // the two nodes' views converge a shard may go back and forth, each time by transfer too.)
    await until(() => transfers.length >= bShare, 5_000); // the watch may trail the nodes a little
    expect(transfers.length).toBeGreaterThanOrEqual(bShare);
    expect(transfers.every((t) => t.value.released_at === undefined && t.value.transferred_from !== undefined && t.value.stopped_at !== undefined)).toBe(true);
    const lastToB = () => [...new Map(transfers.map((t) => [t.key, t.value])).values()].filter((v) => v.node_id === 'node-b');
    await until(() => lastToB().length === bShare, 5_000); // the watch may trail the nodes a little
    const toB = lastToB();
    expect(toB).toHaveLength(bShare);
    expect(toB.every((v) => v.transferred_from === 'node-a')).toBe(true);

    // Quiet first: a handoff the two views queued while converging may still be on its way.
    for (let seen = -1; seen !== transfers.length; ) {
      seen = transfers.length;
      await new Promise((r) => setTimeout(r, 1_000)); // three reconciles (TTL/3)
    }
    transfers.length = 0;
    await b.stop();
    expect(await until(() => a.servedShards === 256, 10_000)).toBe(true);
    await until(() => transfers.length >= bShare, 5_000); // the watch may trail the nodes a little
    expect(transfers.length).toBeGreaterThan(100);
    // Each write is a transfer from b to a: a does not hand a shard back to b even when b's
    // announcement reaches it before b's leave does.
    expect(transfers.filter((t) => !(t.value.node_id === 'node-a' && t.value.transferred_from === 'node-b'))).toEqual([]);
    iter.stop();
    // And a confirmed each one: the leases are in its own plain name now.
    // Listed in one request: a kv.keys() walk can run on while a renews its leases (src/store/kv-keys.ts).
    for (const key of await keysNow(leases, 'shard.*')) {
      expect(JSON.parse((await leases.get(key))!.string())).toEqual({ node_id: 'node-a', acquired_at: expect.any(String), conn: expect.stringMatching(/^\w+\/\d+$/) });
    }
  }, 60_000);
});

describe('a node paused past its lease (SIGSTOP, then SIGCONT)', () => {
  it('loses its shards to the others, and its late writes are refused: no activeflow diverges', async () => {
    const { spawnNode, exited, clientFor } = await import('../helpers/nats.js');
    const server = await startNats();
    cleanups.push(() => server.stop());
    const env = { LEASE_TTL_MS: '1000' };
    const a = await spawnNode(server, { ...env, NODE_ID: 'paused-a' });
    let aLog = '';
    a.stdout!.on('data', (chunk: Buffer) => (aLog += chunk.toString()));
    const b = await spawnNode(server, { ...env, NODE_ID: 'paused-b' });
    cleanups.push(
      async () => {
        a.kill('SIGCONT');
        a.kill('SIGKILL');
        await exited(a);
      },
      async () => {
        b.kill('SIGKILL');
        await exited(b);
      },
    );
    const { nc, client } = await clientFor(server, 30_000);
    cleanups.push(() => nc.close());
    const STEPS = 12;
    const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: STEPS }, (_, i) => ({ type: 'talk', option: { text: `${i}` } })) });
    // Both nodes must be serving before the calls start: every shard answers.
    const { shardOf } = await import('../../src/nats/shard-mapping.js');
    const probe = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'api', actions: [] });
    expect(shardOf(probe.id, 256)).toBeGreaterThanOrEqual(0);
    const calls = await Promise.all(Array.from({ length: 20 }, () => client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })));
    let paused: Promise<void> | null = null;
    const acked = await driveCalls(client, calls, (moves) => {
      if (moves === 60) {
        a.kill('SIGSTOP'); // longer than the lease TTL: node-b takes its shards over meanwhile
        paused = new Promise((r) => setTimeout(r, 3_000)).then(() => {
          a.kill('SIGCONT');
        });
      }
    });
    await paused;
    await new Promise((r) => setTimeout(r, 1_500)); // node-a runs again: whatever it tries now must be refused
    expect(aLog).toMatch(/"event":"shard_fenced"/); // it noticed it had lost its leases, and stopped serving
    const expected = [...flow.actions.map((x) => x.id), '00000000-0000-0000-0000-000000000002'];
    for (const call of calls) {
      expect(acked.get(call.id)).toEqual(expected);
      expect(await client.get(call.id)).toMatchObject({ status: 'ended', execute_count: STEPS + 1 });
      const { events } = await client.history(call.id);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    }
  }, 90_000);
});

describe('a shard taken from a holder that did not hand it over', () => {
  it('is served at once, and every running activeflow of it is fenced (a fence entry on its journal) before or soon after its first use', async () => {
    const { openStoresFor } = await import('../helpers/nats.js');
    const server = await startNats();
    cleanups.push(() => server.stop());
    const leased = { leaseTtlMs: 1_000 };
    const a = await startNode(server, { ...leased, nodeId: 'crashing-a' });
    expect(await until(() => a.servedShards === 256, 10_000)).toBe(true);
    const nc = await connectNats(server.url, 'fence-test-client');
    cleanups.push(() => nc.close());
    const client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 30_000 });
    const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: 5 }, (_, i) => ({ type: 'talk', option: { text: `${i}` } })) });
    const calls = await Promise.all(Array.from({ length: 40 }, () => client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })));
    for (const c of calls) await client.next(c.id, c.current_action.id);
    const stores = await openStoresFor(server);
    cleanups.push(() => stores.nc.close());
    const { Journal } = await import('../../src/store/journal.js');
    const { RevisionConflict } = await import('../../src/store/revision-conflict.js');
    const journal = new Journal(stores.storage.js, stores.storage.jsm);
    const before = new Map<string, number>();
    for (const c of calls) before.set(c.id, (await journal.last(CUSTOMER, c.id))!.seq);

    await a.nc.close(); // crashing-a dies holding every lease: nothing handed over
    const b = await startNode(server, { ...leased, nodeId: 'taking-b' });
    cleanups.push(() => b.stop());
    const first = calls[0]!;
    const moved = await client.next(first.id, (await client.get(first.id)).current_action.id); // served as soon as b holds the shard
    expect(moved.type).toBe('talk');
    expect(await until(() => b.servedShards === 256, 10_000)).toBe(true);
    // The sweep fences the rest: a fence entry goes on each journal although nothing was asked of it.
    const isFenced = async (id: string) =>
      (await journal.between(CUSTOMER, id, before.get(id)!, Number.MAX_SAFE_INTEGER)).some(({ message }) => message.kind === 'entry' && message.entry.kind === 'fence');
    let fenced = 0;
    for (let i = 0; i < 50 && fenced < calls.length; i++) {
      fenced = 0;
      for (const c of calls) if (await isFenced(c.id)) fenced++;
      if (fenced < calls.length) await new Promise((r) => setTimeout(r, 100));
    }
    expect(fenced).toBe(calls.length);
    // A write by the former holder, after the last entry it knew, is refused.
    const stale = calls[1]!;
    await expect(journal.append(CUSTOMER, stale.id, { v: 2, kind: 'fence', n: 99, at: '2026-11-27T10:00:00.000000Z', engine: 'stale' }, before.get(stale.id)!, false)).rejects.toBeInstanceOf(
      RevisionConflict,
    );
  }, 60_000);
});
