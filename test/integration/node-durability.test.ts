/**
 * Crashes: a node killed with SIGKILL mid-flow and right after each reply, a creation cut after its
 * first checkpoint, an end cut after its journal entry, a stale owner's write, and nats-server
 * restarting under a node. After each, every activeflow continues exactly where its last
 * acknowledged reply left it, and its events have no gap and no duplicate.
 */
import { randomUUID } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { type EngineEvent, type EngineState, reduce, type StreamEvent } from '../../machines/index.js';
import type { ActiveflowClient } from '../../src/api/client.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { EVENTS_STREAM, type Storage } from '../../src/store/buckets.js';
import { encodeJson } from '../../src/store/codec.js';
import { Journal, journalSubject } from '../../src/store/journal.js';
import { moveEntry, replayEntry } from '../../src/store/journal-entry.js';
import { RevisionConflict } from '../../src/store/revision-conflict.js';
import type { SnapshotStore } from '../../src/store/snapshot-store.js';
import { keysNow } from '../../src/store/kv-keys.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, driveCalls, exited, openStoresFor, SHARDS, spawnNode, startNats, startNode, until } from '../helpers/nats.js';
import { shardOf } from '../../src/nats/shard-mapping.js';

const FINISH = '00000000-0000-0000-0000-000000000002';
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

function expectCleanStream(events: StreamEvent[]): void {
  expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1)); // contiguous, no duplicate
  expect(events[0]!.type).toBe('activeflow_created');
}

async function setup(): Promise<{ server: NatsServer; client: ActiveflowClient }> {
  const server = await startNats();
  cleanups.push(() => server.stop());
  const { nc, client } = await clientFor(server, 30_000);
  cleanups.push(() => nc.close());
  return { server, client };
}

describe('a node killed with SIGKILL mid-flow', () => {
  it('loses nothing: every call continues from its last acknowledged reply, and the streams are clean', async () => {
    const { server, client } = await setup();
    let child: ChildProcess = await spawnNode(server);
    cleanups.push(async () => {
      child.kill('SIGKILL');
      await exited(child);
    });

    const STEPS = 25;
    const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: STEPS }, (_, i) => ({ type: i % 2 ? 'play' : 'talk', option: { text: `step ${i}` } })) });
    const calls = await Promise.all(Array.from({ length: 20 }, () => client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })));
    let killed = false;
    const killAndRestart = async () => {
      child.kill('SIGKILL');
      await exited(child);
      child = await spawnNode(server);
    };
    let restart: Promise<void> | null = null;
    const acked = await driveCalls(client, calls, (moves) => {
      if (moves === 150 && !killed) {
        killed = true;
        restart = killAndRestart(); // mid-flight: other calls have requests in the air
      }
    });
    await restart;
    expect(killed).toBe(true);

    const expected = [...flow.actions.map((a) => a.id), FINISH];
    for (const call of calls) {
      expect(acked.get(call.id)).toEqual(expected); // no move lost, none applied twice
      const af = await client.get(call.id);
      expect(af).toMatchObject({ status: 'ended', end_reason: 'finished', execute_count: STEPS + 1 });
      const { events } = await client.history(call.id);
      expectCleanStream(events);
      expect(events.filter((e) => e.type === 'activeflow_updated')).toHaveLength(STEPS + 2); // moves + the status change
      expect(events.at(-1)!.type).toBe('activeflow_ended');
    }
  }, 60_000);

  it('an acknowledged move is stored: SIGKILL right after each reply, with nothing else in flight', async () => {
    const { server, client } = await setup();
    let child: ChildProcess = await spawnNode(server);
    cleanups.push(async () => {
      child.kill('SIGKILL');
      await exited(child);
    });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: Array.from({ length: 6 }, () => ({ type: 'talk' })) });
    let current = af.current_action.id;
    for (let i = 1; i <= 4; i++) {
      const action = await client.next(af.id, current);
      child.kill('SIGKILL');
      await exited(child);
      child = await spawnNode(server);
      const stored = await client.get(af.id);
      expect([stored.execute_count, stored.current_action.id]).toEqual([i, action.id]);
      current = action.id;
    }
    expectCleanStream((await client.history(af.id)).events);
  }, 60_000);

  it('a node stopped with SIGTERM finishes its in-flight requests and exits 0', async () => {
    const { server, client } = await setup();
    const child = await spawnNode(server);
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
    const again = await spawnNode(server);
    cleanups.push(async () => {
      again.kill('SIGKILL');
      await exited(again);
    });
    expect((await client.get(af.id)).status).toBe('running');
  }, 30_000);
});

describe('recovery of what a crash leaves half done', () => {
  /** The state the journal holds for an activeflow (its checkpoint and the entries after it), as a node loads it. */
  async function journaled(storage: Storage, store: SnapshotStore, id: string): Promise<{ state: EngineState; last: number; n: number; journal: Journal }> {
    const journal = new Journal(storage.js, storage.jsm);
    const stored = await store.load(id);
    if (stored === null || stored.position === null) throw new Error('expected a checkpoint with its journal position');
    const last = await journal.last(stored.state.activeflow.customer_id, id);
    let state = stored.state;
    let n = stored.position.n;
    for (const { message } of await journal.between(stored.state.activeflow.customer_id, id, stored.position.seq, last!.seq)) {
      if (message.kind !== 'entry') continue;
      state = replayEntry(state, message.entry);
      n = message.entry.n;
    }
    return { state, last: last!.seq, n, journal };
  }

  /** Plays a node that appended a move's entry and died before anything after it. */
  async function appendAsDeadNode(storage: Storage, store: SnapshotStore, id: string, event: EngineEvent): Promise<EngineState> {
    const { state, last, n, journal } = await journaled(storage, store, id);
    const after = reduce(state, event);
    await journal.append(after.activeflow.customer_id, id, moveEntry(state, after, event, n + 1, 'test'), last, after.activeflow.webhook_uri !== '');
    return after;
  }

  it('appends the created entry of an activeflow whose first checkpoint was written and nothing after it; its running slot is counted again', async () => {
    const { server, client } = await setup();
    let node: ActiveflowNode = await startNode(server);
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }] });
    await node.stop();
    // Play the node that died right after the first checkpoint: no running slot, no index entry, an
    // empty journal.
    const { nc, storage } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    await storage.jsm.streams.purge(EVENTS_STREAM, { filter: journalSubject(CUSTOMER, af.id) });
    expect(await new Journal(storage.js, storage.jsm).last(CUSTOMER, af.id)).toBeNull();
    await storage.index.purge(`${CUSTOMER}.${af.id}`);
    await storage.quotas.put(`running.${CUSTOMER}`, JSON.stringify({ running: 0 }));
    node = await startNode(server, { runningReconcileMs: 200 });
    cleanups.push(() => node.stop());
    expect((await client.get(af.id)).status).toBe('running');
    // The load wrote its index entry again, so the reconcile sees it run and counts it.
    const usage = async () => (await client.call<{ usage: { running_activeflows: number } }>(SUBJECTS.adminQuotas('get'), { customer_id: CUSTOMER })).usage.running_activeflows;
    await expect.poll(usage, { timeout: 5_000 }).toBe(1);
    const { events } = await client.history(af.id);
    expectCleanStream(events);
    expect(events).toHaveLength(1);
    const answer = await client.next(af.id, af.current_action.id);
    expect(answer.type).toBe('answer');
    expectCleanStream((await client.history(af.id)).events);
  }, 30_000);

  it('a creation whose index write fails is refused before its created entry; the retry finds it, and its load indexes it', async () => {
    const { server, client } = await setup();
    const node = await startNode(server);
    cleanups.push(() => node.stop());
    // NATS fails the index write once (a leader election in af_index). Passed over, as it was, the
    // activeflow ran unindexed, and the reconcile counted its customer one below what ran.
    const index = (node as unknown as { index: { record(af: { id: string }): Promise<void> } }).index;
    const record = index.record.bind(index);
    const failed: string[] = [];
    index.record = async (af) => {
      if (failed.length === 0) {
        failed.push(af.id);
        throw new Error('no responders available for request');
      }
      return record(af);
    };
    // (the client picks the id, so its retry, refused as `conflict`, reads what the first attempt stored)
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    const id = af.id;
    expect(failed).toEqual([id]);
    expect(af.status).toBe('running');
    const { nc, storage } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    const entry = await storage.index.get(`${CUSTOMER}.${id}`);
    expect(entry?.operation).toBe('PUT');
    expect(JSON.parse(new TextDecoder().decode(entry!.value))).toMatchObject({ status: 'running', deleted: false });
    const { events } = await client.history(id);
    expectCleanStream(events);
    expect(events.map((e) => e.type)).toEqual(['activeflow_created']);
  }, 30_000);

  it('finishes an end that stopped right after its journal entry (no ended record, running key still there)', async () => {
    const { server, client } = await setup();
    const node = await startNode(server);
    cleanups.push(() => node.stop());
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    const { nc, storage, store } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    await node.registry.release(shardOf(af.id, SHARDS)); // forget the resident actor, as a restart would
    await appendAsDeadNode(storage, store, af.id, { type: 'stop', request_id: 'x', now: '2026-11-27T10:00:00.000000Z', entropy: 'crash-end' });
    expect(await storage.ended.get(af.id)).toBeNull();
    expect(await client.get(af.id)).toMatchObject({ status: 'ended', end_reason: 'stopped' });
    expect((await storage.ended.get(af.id))?.operation).toBe('PUT');
    expect((await storage.running.get(store.runningKey(af.id)))?.operation ?? null).not.toBe('PUT');
    // no marker left behind: the removal's purge marker expires (one second)
    expect(await until(async () => (await keysNow(storage.running, store.runningKey(af.id))).length === 0, 5_000)).toBe(true);
    const { events } = await client.history(af.id);
    expectCleanStream(events);
    expect(events.map((e) => e.type).slice(-2)).toEqual(['activeflow_updated', 'activeflow_ended']);
  }, 30_000);

  it('finishes an end whose last step failed on its own, without waiting for a request or a restart', async () => {
    const { server, client } = await setup();
    const node = await startNode(server);
    cleanups.push(() => node.stop());
    const { nc, storage, store } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    // NATS refuses the removal of the running key once, as during a leader election.
    const snapshots = (node as unknown as { snapshots: { deleteRunning(id: string, revision: number): Promise<void> } }).snapshots;
    const original = snapshots.deleteRunning.bind(snapshots);
    let failures = 1;
    snapshots.deleteRunning = async (id, revision) => {
      if (failures-- > 0) throw new Error('no responders available for request');
      return original(id, revision);
    };
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    expect((await client.stop(af.id)).status).toBe('ended');
    await expect.poll(() => failures, { timeout: 5_000 }).toBe(0); // the first attempt, just after the reply, failed
    expect((await storage.running.get(store.runningKey(af.id)))?.operation).toBe('PUT');
    // Nobody asks for it again: the retry finishes the end.
    for (let i = 0; i < 100 && (await storage.running.get(store.runningKey(af.id))) !== null; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await storage.running.get(store.runningKey(af.id))).toBeNull();
  }, 30_000);

  it("starts an on_complete child that a crash after the parent's end left unstarted", async () => {
    const { server, client } = await setup();
    let node = await startNode(server);
    const childFlow = await client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'variable_set', option: { key: 'from_parent', value: '${order}' } }] });
    const parentFlow = await client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'talk' }], on_complete_flow_id: childFlow.id });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: parentFlow.id, reference_type: 'call', variables: { order: 'A-9' } });
    await node.stop();
    // Play the node that died right after storing the parent's end, before starting the child.
    const { nc, storage, store } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    const ended = await appendAsDeadNode(storage, store, af.id, { type: 'stop', request_id: 'x', now: '2026-11-27T10:00:00.000000Z', entropy: 'crash-child' });
    const childId = ended.activeflow.on_complete_activeflow_id;
    expect((await storage.running.get(store.runningKey(af.id)))?.operation).toBe('PUT');

    node = await startNode(server); // recovery finishes the end, starting the child
    cleanups.push(() => node.stop());
    let child: Awaited<ReturnType<typeof client.get>> | undefined;
    for (let i = 0; i < 100; i++) {
      child = await client.get(childId).catch(() => undefined);
      if (child?.status === 'ended') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(child).toMatchObject({ status: 'ended', end_reason: 'finished', reference_activeflow_id: af.id, flow_id: childFlow.id });
    expect((await client.variables(childId)).variables['from_parent']).toBe('A-9');
    for (let i = 0; i < 50 && (await storage.running.get(store.runningKey(af.id))) !== null; i++) await new Promise((r) => setTimeout(r, 20));
    expect(await storage.running.get(store.runningKey(af.id))).toBeNull();
    // A second restart starts nothing twice.
    for (const id of [af.id, childId]) await node.registry.release(shardOf(id, SHARDS));
    expect((await client.get(af.id)).status).toBe('ended');
    expect((await client.history(childId)).events.filter((e) => e.type === 'activeflow_created')).toHaveLength(1);
  }, 30_000);

  it("a stale owner's journal write is refused: the actor is dropped and answers unavailable, never a stale success", async () => {
    const { server, client } = await setup();
    const node = await startNode(server);
    cleanups.push(() => node.stop());
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }] });
    await client.get(af.id); // resident now
    const { nc, storage } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    // Another writer (a new owner) fences the journal: this node's idea of its last entry is stale.
    const journal = new Journal(storage.js, storage.jsm);
    const last = (await journal.last(CUSTOMER, af.id))!;
    await journal.append(CUSTOMER, af.id, { v: 2, kind: 'fence', n: 2, at: '2026-11-27T10:00:00.000000Z', engine: 'test' }, last.seq, false);
    // a write expecting anything but the last entry is refused by the server, whoever sends it
    await expect(journal.append(CUSTOMER, af.id, { v: 2, kind: 'fence', n: 3, at: '2026-11-27T10:00:00.000000Z', engine: 'test' }, last.seq, false)).rejects.toBeInstanceOf(RevisionConflict);
    const { nc: nc2 } = await clientFor(server);
    cleanups.push(() => nc2.close());
    const once = await nc2.request(`activeflow.v1.${af.id}.next`, encodeJson({ current_action_id: af.current_action.id }), { timeout: 2000 });
    expect(JSON.parse(new TextDecoder().decode(once.data)).error.code).toBe('unavailable');
    // the next request reloads what was stored and goes on
    const answer = await client.next(af.id, af.current_action.id);
    expect(answer.type).toBe('answer');
    expectCleanStream((await client.history(af.id)).events);
  }, 30_000);
});

describe('nats-server restarting under a node', () => {
  it('the node reconnects and carries on; stored activeflows survive', async () => {
    const server = await NatsServer.start({ extraConfig: (await import('../../src/nats/shard-mapping.js')).shardMappingConfig(SHARDS) });
    cleanups.push(() => server.stop());
    const node = await startNode(server);
    cleanups.push(() => node.stop());
    const { nc, client } = await clientFor(server, 30_000);
    cleanups.push(() => nc.close());
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }, { type: 'hangup' }] });
    const a1 = await client.next(af.id, af.current_action.id);
    await server.restart();
    const a2 = await client.next(af.id, a1.id); // retried by the client until the node is back
    expect(a2.type).toBe('talk');
    const a3 = await client.next(af.id, a2.id);
    expect(a3.type).toBe('hangup');
    const { events } = await client.history(af.id);
    expectCleanStream(events);
    expect(events).toHaveLength(4);
    const id = randomUUID();
    await client.createActiveflow({ id, customer_id: CUSTOMER, reference_type: 'api', actions: [] });
    expect((await client.get(id)).status).toBe('running');
  }, 60_000);
});

describe('passivation', () => {
  it('drops idle actors from memory and rehydrates them on the next request, unchanged', async () => {
    const { server, client } = await setup();
    const node = await startNode(server, { passivateAfterMs: 1_000 });
    cleanups.push(() => node.stop());
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }], variables: { k: 'v' } });
    const a1 = await client.next(af.id, af.current_action.id);
    expect(node.residentActors).toBe(1);
    const before = await client.get(af.id);
    for (let i = 0; i < 60 && node.residentActors > 0; i++) await new Promise((r) => setTimeout(r, 50));
    expect(node.residentActors).toBe(0);
    expect(await client.get(af.id)).toEqual(before);
    expect(node.residentActors).toBe(1);
    expect((await client.next(af.id, a1.id)).type).toBe('talk');
    expect((await client.variables(af.id)).variables['k']).toBe('v');
  }, 30_000);
});

describe('a long history', () => {
  it("is stored in chunks (the stack's action list inline), survives a crash and a reload whole, and all of it goes when the activeflow ends", async () => {
    const { Limits } = await import('../../machines/index.js');
    const { server, client } = await setup();
    const limits = Limits.parse({ max_execute_count: 400, max_cycle_iterations: 400 });
    let node = await startNode(server, { limits });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: Array.from({ length: 300 }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } })) });
    let current = af.current_action.id;
    for (let i = 0; i < 200; i++) current = (await client.next(af.id, current)).id;
    await node.registry.settleAll(); // its checkpoint now (every CHECKPOINT_EVERY entries otherwise)
    const { nc, storage, store } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    const raw = JSON.parse(new TextDecoder().decode((await storage.running.get(store.runningKey(af.id)))!.value)) as {
      af_history_chunks: string[];
      af_stack_lists?: Record<string, string>;
      context: { activeflow: { executed_actions: unknown[]; stack_map: Record<string, { actions: unknown[] }> } };
    };
    expect(raw.af_history_chunks).toHaveLength(6); // 200 = 6 x 32 + 8
    expect(raw.context.activeflow.executed_actions).toHaveLength(200 - 6 * 32);
    // The 300 actions of the main stack are in the checkpoint (one read loads it), not aside.
    expect(Object.values(raw.context.activeflow.stack_map).map((st) => st.actions.length)).toEqual([300]);
    expect(raw.af_stack_lists).toBeUndefined();
    const before = await client.get(af.id);
    expect(before.executed_actions).toHaveLength(200);
    // What the node remembers of the chunks leaves memory with the actor, and comes back with a load.
    const snapshots = (node as unknown as { snapshots: { trackedAside: number } }).snapshots;
    expect(snapshots.trackedAside).toBe(1); // its history chunks
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    expect(snapshots.trackedAside).toBe(0);
    current = (await client.next(af.id, current)).id; // reloaded: continues with the same chunks
    expect(snapshots.trackedAside).toBe(1);
    const reloaded = JSON.parse(new TextDecoder().decode((await storage.running.get(store.runningKey(af.id)))!.value)) as { af_history_chunks: string[] };
    expect(reloaded.af_history_chunks).toEqual(raw.af_history_chunks);
    expect(await keysNow(storage.history, `${af.id}.>`)).toHaveLength(6); // six chunks, nothing written twice
    const beforeRestart = await client.get(af.id);
    expect(beforeRestart.executed_actions).toHaveLength(201);
    await node.stop(); // a restart: the next node reads the chunks back
    node = await startNode(server, { limits });
    expect(await client.get(af.id)).toEqual(beforeRestart);
    for (let i = 0; i < 100; i++) current = (await client.next(af.id, current)).id; // the last talk, then FINISH
    const ended = await client.get(af.id);
    expectCleanStream((await client.history(af.id)).events);
    await node.stop();
    expect(ended).toMatchObject({ status: 'ended', execute_count: 301 });
    expect(ended.executed_actions.map((a) => a.option?.['text'])).toEqual([undefined, ...Array.from({ length: 300 }, (_, i) => `t${i}`)]);
    // Purged, not deleted key by key: no delete marker is left in the bucket either.
    expect(await keysNow(storage.history, `${af.id}.>`)).toEqual([]);
  }, 60_000);
});
