/**
 * The cluster issue's tests as written: a 3-server NATS JetStream cluster (R3 buckets), node
 * processes splitting the shards with leases, and the call simulator driving a few hundred calls
 * through each disruption. After each one, every call is checked against the event stream: the
 * actions the simulator was given are exactly the ones the activeflow executed (no acknowledged
 * move lost, none applied twice), sequence numbers are contiguous, and every call finished.
 *
 * The disruptions run in turn on one cluster: kill -9 a node; SIGSTOP one past its lease; a node
 * joins; a node is drained and then stopped; the NATS server leading the snapshot bucket is killed.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SUBJECTS } from '../../src/api/subjects.js';
import { ActiveflowClient } from '../../src/api/client.js';
import type { ShardsReply } from '../../src/cluster/cluster-admin.js';
import { connectNats } from '../../src/nats/connect.js';
import { simulateCalls, type SimulationReport } from '../../src/simulator/call-simulator.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { CUSTOMER } from '../helpers/engine.js';
import { exited, spawnNode } from '../helpers/nats.js';
import { NatsCluster } from '../../src/nats/nats-cluster.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const FINISH = '00000000-0000-0000-0000-000000000002';
const STEPS = 12;
const CALLS = 240;

let cluster: NatsCluster;
let nc: NatsConnection;
let client: ActiveflowClient;
let flow: { id: string; actions: { id: string }[] };
const nodes = new Map<string, { child: ChildProcess; log: string[] }>();

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function startNode(id: string): Promise<void> {
  const child = await spawnNode(cluster.urls, {
    NODE_ID: id,
    NATS_REPLICAS: '3',
    LEASE_TTL_MS: '1000',
    NATS_SYSTEM_USER: 'system',
    NATS_SYSTEM_PASSWORD: 'system-dev-only',
    RUNNING_RECONCILE_MS: '500',
  });
  const log: string[] = [];
  child.stdout!.on('data', (b: Buffer) => log.push(b.toString()));
  nodes.set(id, { child, log });
}

async function shards(): Promise<ShardsReply> {
  return client.call<ShardsReply>('activeflow.admin.v1.shards');
}

/** Waits until the shards are where the assignment wants them, all owned. */
async function settled(expectedNodes: readonly string[], ms = 20_000): Promise<ShardsReply> {
  const deadline = Date.now() + ms;
  for (;;) {
    const s = await shards();
    const owners = new Set(s.shards.map((x) => x.owner));
    if (s.moving === 0 && owners.size === expectedNodes.length && expectedNodes.every((n) => owners.has(n))) return s;
    if (Date.now() > deadline) throw new Error(`shards not settled on ${expectedNodes.join(',')} after ${ms} ms: ${JSON.stringify(s.nodes)}`);
    await sleep(100);
  }
}

/** Runs the simulator; `disrupt` is called once the calls are under way. */
async function simulate(disrupt: () => Promise<void>): Promise<SimulationReport> {
  const simulation = simulateCalls(client, { flowId: flow.id, customerId: CUSTOMER, calls: CALLS, concurrency: CALLS, digits: [], mediaMs: 25, maxMovesPerCall: STEPS + 5 });
  let finished = false;
  void simulation.then(() => (finished = true));
  await sleep(300);
  expect(finished).toBe(false); // the disruption hits calls in flight
  await disrupt();
  return simulation;
}

/**
 * The calls that failed at the caller, each with its error's code, and, if any did, the nodes'
 * warnings and errors of the run: what a failure needs to be understood from the CI log alone.
 */
function failedCalls(report: SimulationReport): string[] {
  const failed = report.results.flatMap((r) => (r.error === undefined ? [] : [`${r.activeflowId}: ${r.error}`]));
  if (failed.length === 0) return [];
  const logged = [...nodes.entries()].flatMap(([id, { log }]) =>
    log
      .join('')
      .split('\n')
      .filter((line) => /"level":(40|50|60)/.test(line))
      .slice(-20)
      .map((line) => `${id} logged ${line}`),
  );
  return [...failed, ...logged];
}

/** No call failed at the caller, then every call against its event stream. */
async function checkAgainstStreams(report: SimulationReport): Promise<void> {
  expect(failedCalls(report)).toEqual([]);
  expect(report.calls).toBe(CALLS);
  const expected = [...flow.actions.map((a) => a.id), FINISH];
  await Promise.all(
    report.results.map(async (r) => {
      expect(r.actions.map((a) => a.id)).toEqual(expected); // every call finished, each move given once
      const { events } = await client.history(r.activeflowId);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
      const last = events[events.length - 1]!;
      expect(last.data.status).toBe('ended');
      // The stream's record of executed actions is the moves the caller was acknowledged, no more.
      const START = '00000000-0000-0000-0000-000000000001';
      expect(last.data.executed_actions.map((a) => a.id)).toEqual([START, ...flow.actions.map((a) => a.id)]);
      for (let i = 1; i < events.length; i++) {
        expect(events[i]!.data.executed_actions.length).toBeGreaterThanOrEqual(events[i - 1]!.data.executed_actions.length);
      }
    }),
  );
}

beforeAll(async () => {
  cluster = await NatsCluster.start();
  await Promise.all(['node-1', 'node-2', 'node-3'].map(startNode));
  nc = await connectNats(cluster.urls, 'cluster-test-client');
  client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 30_000 });
  await settled(['node-1', 'node-2', 'node-3'], 30_000);
  flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: STEPS }, (_, i) => ({ type: 'talk', option: { text: `${i}` } })) });
}, 90_000);

afterAll(async () => {
  await nc?.close();
  await Promise.all(
    [...nodes.values()].map(async ({ child }) => {
      child.kill('SIGCONT');
      child.kill('SIGKILL');
      await exited(child);
    }),
  );
  await cluster?.stop();
});

describe('a cluster of node processes on 3 NATS servers, under the call simulator', () => {
  it('1. kill -9 a node: its activeflows go on elsewhere, no acknowledged move lost or doubled', async () => {
    const before = await shards();
    const owned = before.shards.filter((s) => s.owner === 'node-1').length;
    expect(owned).toBeGreaterThan(40);
    const report = await simulate(async () => {
      nodes.get('node-1')!.child.kill('SIGKILL');
      await exited(nodes.get('node-1')!.child);
      nodes.delete('node-1');
    });
    await checkAgainstStreams(report);
    const after = await settled(['node-2', 'node-3']);
    expect(after.shards.filter((s) => s.owner === 'node-1')).toEqual([]);
    // The survivors heard of the dead node from the servers' disconnect events, before its lease ran out.
    for (const id of ['node-2', 'node-3']) expect(nodes.get(id)!.log.join('')).toMatch(/"event":"node_suspected","suspect":"node-1"/);
  }, 90_000);

  it('2. SIGSTOP a node past its lease, then SIGCONT: nothing diverges, and once settled it serves only the shards it holds', async () => {
    const paused = nodes.get('node-2')!;
    const held = (await shards()).shards
      .filter((s) => s.owner === 'node-2')
      .map((s) => s.shard)
      .sort((a, b) => a - b);
    expect(held.length).toBeGreaterThan(50);
    const report = await simulate(async () => {
      paused.child.kill('SIGSTOP');
      await sleep(3_000); // 3x the lease TTL: node-3 takes node-2's shards meanwhile
      paused.child.kill('SIGCONT');
    });
    await checkAgainstStreams(report);
    await sleep(500);
    // Its late writes were refused by the revision checks: nothing diverged (the streams above).
    // (Whether it gives its shards up by its leases' fence or by the hand-off its new view asks
    // for depends on which timer fires first after the pause; either is safe.)
    // And once settled it serves exactly the shards whose leases it holds: no shard is served by two
    // nodes (a woken node that kept serving a shard another took would answer stale reads).
    const view = await settled(['node-2', 'node-3']);
    const status = await client.call<{ shards: number[] }>(SUBJECTS.adminNodeStatus('node-2'), {});
    expect(status.shards.length).toBeGreaterThan(50);
    expect(status.shards.filter((sh) => view.shards[sh]!.owner !== 'node-2')).toEqual([]);
  }, 90_000);

  it('3. a fourth node joins: about a quarter of the shards move, and no request fails at the caller', async () => {
    await startNode('node-1'); // back: three nodes again
    const before = await settled(['node-1', 'node-2', 'node-3']);
    const report = await simulate(() => startNode('node-4'));
    await checkAgainstStreams(report); // first of all: no call failed at the caller
    const after = await settled(['node-1', 'node-2', 'node-3', 'node-4']);
    const moved = after.shards.filter((s, i) => s.owner !== before.shards[i]!.owner);
    expect(moved.every((s) => s.owner === 'node-4')).toBe(true); // rendezvous: only the newcomer's wins move
    expect(moved.length).toBeGreaterThan(256 / 4 - 30);
    expect(moved.length).toBeLessThan(256 / 4 + 30);
  }, 90_000);

  it('4. drain a node: it ends with no shard and no actor, no request fails, and it stops with exit 0', async () => {
    const report = await simulate(async () => {
      const { stdout } = await run(process.execPath, [BIN, 'drain', 'node-4', '--wait', '--timeout', '30'], { env: { ...process.env, NATS_URL: cluster.urls.join(',') } });
      expect(stdout).toMatch(/node node-4 holds no shard and no actor/);
    });
    await checkAgainstStreams(report); // first of all: no call failed at the caller
    const status = await client.call<{ shards: number[]; resident_actors: number }>('activeflow.admin.v1.node.node-4.status');
    expect(status).toMatchObject({ shards: [], resident_actors: 0 });
    await settled(['node-1', 'node-2', 'node-3']);
    const drained = nodes.get('node-4')!.child;
    drained.kill('SIGTERM');
    expect(await exited(drained)).toBe(0);
    nodes.delete('node-4');
    const { stdout } = await run(process.execPath, [BIN, 'undrain', 'node-4'], { env: { ...process.env, NATS_URL: cluster.urls.join(',') } });
    expect(stdout).toMatch(/undrained/);
  }, 90_000);

  it('5. kill -9 the NATS server leading the snapshot bucket: the nodes ride through the election, no acknowledged move lost', async () => {
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const jsm = await jetstreamManager(nc);
    const leader = (await jsm.streams.info('KV_af_running')).cluster!.leader!;
    // What the servers say while they elect, printed if the test fails: an election that outlasts
    // the callers' 30 s retry budget is NATS's, not the runtime's (4-13 s measured on the development machine).
    const timeline: string[] = [];
    let probing = true;
    const t0 = Date.now();
    const probe = (async () => {
      while (probing) {
        const at = `${((Date.now() - t0) / 1000).toFixed(1)} s`;
        await jsm.streams.info('KV_af_running').then(
          (i) => timeline.push(`${at}: leader ${i.cluster?.leader ?? '(none)'}, replicas ${JSON.stringify(i.cluster?.replicas?.map((r) => [r.name, r.current, r.lag]))}`),
          (e: unknown) => timeline.push(`${at}: ${(e as Error).message}`),
        );
        await sleep(1_000);
      }
    })();
    const report = await simulate(async () => {
      cluster.byName(leader).signal('SIGKILL'); // writes fail until the others elect a new leader (seconds)
    });
    probing = false;
    await probe;
    if (process.env['SHOW_ELECTION'] === '1') {
      process.stderr.write(`killed ${leader} at ${new Date(t0).toISOString()}; calls done after ${Date.now() - t0} ms; KV_af_running meanwhile:\n${timeline.join('\n')}\n`);
      const { writeFileSync } = await import('node:fs');
      for (const [id, n] of nodes) writeFileSync(`/tmp/election-${id}.log`, n.log.join(''));
    }
    try {
      await checkAgainstStreams(report);
    } catch (e) {
      process.stderr.write(`killed ${leader}; KV_af_running meanwhile:\n${timeline.join('\n')}\n`);
      for (const [id, n] of nodes)
        process.stderr.write(
          `${id}:\n${n.log
            .join('')
            .split('\n')
            .filter((l) => /"level":(40|50)/.test(l))
            .slice(-15)
            .join('\n')}\n`,
        );
      throw e;
    }
    await cluster.byName(leader).restart();
  }, 120_000);

  it('6. through all of the above, the running count is exact once things are quiet', async () => {
    const runningNow = async () => {
      let n = 0;
      let token: string | undefined;
      do {
        const page = await client.listActiveflows({ customer_id: CUSTOMER, status: 'running', page_size: 100, ...(token === undefined ? {} : { page_token: token }) });
        n += page.result.length;
        token = page.next_page_token === '' ? undefined : page.next_page_token;
      } while (token !== undefined);
      return n;
    };
    const counted = async () => (await client.call<{ usage: { running_activeflows: number } }>('activeflow.admin.v1.quotas.get', { customer_id: CUSTOMER })).usage.running_activeflows;
    // Every simulated call ended; whatever the crashes and elections left, the count follows the truth.
    // A quiet point is one where both hold still: a create the client was still retrying when its
    // caller gave up (during the election of test 5) may land late, seconds after everything looked
    // quiet (seen in CI: 100 at once), and moves the count first, then the list. So the two are read
    // a second apart until they agree twice in a row; a count that drifted never agrees.
    let previous: number | null = null;
    await expect
      .poll(
        async () => {
          const now = { truth: await runningNow(), counted: await counted() };
          const quiet = now.truth === now.counted && now.truth === previous;
          previous = now.truth === now.counted ? now.truth : null;
          return quiet;
        },
        { timeout: 40_000, interval: 1_000 },
      )
      .toBe(true);
  }, 60_000);
});
