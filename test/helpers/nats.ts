/**
 * Real NATS for tests: a nats-server per test file on a free loopback port, with a temporary
 * store and the shard mapping; nodes in this process or as child processes (to SIGKILL them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll } from 'vitest';
import { openStorage, type Storage } from '../../src/store/buckets.js';
import { SnapshotStore } from '../../src/store/snapshot-store.js';
import { ActiveflowClient } from '../../src/api/client.js';
import { ActiveflowError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import { connectNats } from '../../src/nats/connect.js';
import { NatsServer } from '../../src/nats/server-process.js';
import { shardMappingConfig } from '../../src/nats/shard-mapping.js';
import { ActiveflowNode, type NodeOptions } from '../../src/node/activeflow-node.js';

export const SHARDS = 256;

export function startNats(extraConfig = shardMappingConfig(SHARDS)): Promise<NatsServer> {
  return NatsServer.start({ extraConfig });
}

export function nodeOptions(server: NatsServer, overrides: Partial<NodeOptions> = {}): NodeOptions {
  return {
    servers: [server.url],
    nodeId: 'test-node',
    shardCount: SHARDS,
    replicas: 1,
    passivateAfterMs: 60_000,
    endedRetentionMs: 86_400_000,
    eventRetentionMs: 86_400_000,
    httpTimeoutMs: 1_000,
    httpMaxResponseBytes: 64 * 1024,
    // The tests' HTTP servers listen on loopback, which the default egress policy refuses.
    egressAllow: ['127.0.0.0/8', '::1'],
    serviceTimeoutMs: 500,
    leaseTtlMs: 1_000,
    log: silentLogger,
    ...overrides,
  };
}

export function startNode(server: NatsServer, overrides: Partial<NodeOptions> = {}): Promise<ActiveflowNode> {
  return ActiveflowNode.start(nodeOptions(server, overrides));
}

export async function clientFor(server: NatsServer, retryForMs = 10_000): Promise<{ nc: NatsConnection; client: ActiveflowClient }> {
  const nc = await connectNats(server.url, 'test-client');
  return { nc, client: new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs }) };
}

const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;

/** `activeflow node` as a child process (one server, or a cluster's URLs); resolves once it serves. */
export async function spawnNode(server: NatsServer | readonly string[], env: Record<string, string> = {}): Promise<ChildProcess> {
  const url = Array.isArray(server) ? server.join(',') : (server as NatsServer).url;
  const child = spawn(process.execPath, [BIN, 'node'], {
    env: { ...process.env, NATS_URL: url, NODE_ID: 'proc-node', LOG_LEVEL: 'info', EGRESS_ALLOW: '127.0.0.0/8,::1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`the node did not start within 15 s:\n${out}`)), 15_000);
    const onData = (b: Buffer) => {
      const text = b.toString();
      const serving = (out.slice(-100) + text).includes('"node_serving"'); // before trimming: a chunk can be long
      out = (out + text).slice(-8000);
      if (serving) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the node exited with ${code}:\n${out}`));
    });
  });
  child.removeAllListeners('exit');
  child.stdout!.resume();
  child.stderr!.resume();
  return child;
}

export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/**
 * One server and one in-process node for a whole test file: `const env = useNode();` then
 * `env.client` inside tests. Stopped after the file.
 */
export function useNode(overrides: Partial<NodeOptions> = {}): { server: NatsServer; node: ActiveflowNode; nc: NatsConnection; client: ActiveflowClient } {
  const env = {} as { server: NatsServer; node: ActiveflowNode; nc: NatsConnection; client: ActiveflowClient };
  beforeAll(async () => {
    env.server = await startNats();
    env.node = await startNode(env.server, overrides);
    ({ nc: env.nc, client: env.client } = await clientFor(env.server));
  });
  afterAll(async () => {
    await env.nc?.close();
    await env.node?.stop();
    await env.server?.stop();
  });
  return env;
}

/**
 * Resolves once the node has no shard warm-up due or under way: each served shard's running
 * activeflows are loaded in the background soon after (src/cluster/shard-ownership.ts), and a test
 * that writes beside the node must not race such a load.
 */
export async function warmedUp(node: ActiveflowNode, ms = 20_000): Promise<void> {
  const ownership = (node as unknown as { ownership: { warmsPending: number } | null }).ownership;
  if (!(await until(() => (ownership?.warmsPending ?? 0) === 0, ms))) throw new Error(`node still warming shards after ${ms} ms`);
}

/** The node's stores, opened beside it (to play a crashed node, or another writer). */
export async function openStoresFor(server: NatsServer): Promise<{ nc: NatsConnection; storage: Storage; store: SnapshotStore }> {
  const nc = await connectNats(server.url, 'test-store');
  const storage = await openStorage(nc, { replicas: 1, endedRetentionMs: 86_400_000, eventRetentionMs: 86_400_000, leaseTtlMs: 1_000 });
  return { nc, storage, store: new SnapshotStore(storage.running, storage.ended, SHARDS) };
}

/**
 * Drives calls with `next` until each gets FINISH, all at once, as a call service would; records
 * every action each call was acknowledged, and tells `onMove` the running count of moves (to kill,
 * pause or add something mid-flight).
 */
export async function driveCalls(
  client: ActiveflowClient,
  calls: readonly { id: string; current_action: { id: string } }[],
  onMove: (moves: number) => void = () => undefined,
): Promise<Map<string, string[]>> {
  const acked = new Map<string, string[]>(calls.map((c) => [c.id, []]));
  let moves = 0;
  await Promise.all(
    calls.map(async (call) => {
      let current = call.current_action.id;
      for (;;) {
        const action = await client.next(call.id, current);
        acked.get(call.id)!.push(action.id);
        if (action.id === '00000000-0000-0000-0000-000000000002') return;
        current = action.id;
        onMove(++moves);
      }
    }),
  );
  return acked;
}

/** Polls `check` until it holds or `ms` pass; the last answer. */
export async function until(check: () => boolean | Promise<boolean>, ms = 10_000, everyMs = 50): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await check()) return true;
    await new Promise((r) => setTimeout(r, everyMs));
  }
  return check();
}

/** The ActiveflowError a request fails with; throws if it succeeds. */
export async function rejects(p: Promise<unknown>): Promise<ActiveflowError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ActiveflowError) return e;
    throw e;
  }
  throw new Error('expected the request to fail');
}
