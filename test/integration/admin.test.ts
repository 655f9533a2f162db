/**
 * The operators' verbs (activeflow.admin.v1.*) and their CLI, on one server with two nodes that
 * split the shards: where the shards are, drain (refusals included), undrain, a drain that lasts
 * across a restart and one that lasts only until the node stops, rebalance.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { ShardsReply } from '../../src/cluster/cluster-admin.js';
import type { NodeInfo } from '../../src/cluster/membership-registry.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { clientFor, rejects, startNats, startNode, until } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;

let server: NatsServer;
let nc: NatsConnection;
let client: ActiveflowClient;
const nodes = new Map<string, ActiveflowNode>();

async function start(id: string): Promise<ActiveflowNode> {
  const node = await startNode(server, { nodeId: id, leaseTtlMs: 1_000 });
  nodes.set(id, node);
  return node;
}

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: server.url } });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const shards = () => client.call<ShardsReply>('activeflow.admin.v1.shards');
/** Both nodes serve their share, and no shard is still on its way. */
const split = async (a: ActiveflowNode, b: ActiveflowNode) => a.servedShards + b.servedShards === 256 && a.servedShards > 70 && b.servedShards > 70 && (await shards()).moving === 0;

beforeAll(async () => {
  server = await startNats();
  ({ nc, client } = await clientFor(server));
  await start('node-a');
  await start('node-b');
  expect(await until(() => split(nodes.get('node-a')!, nodes.get('node-b')!))).toBe(true);
});

afterAll(async () => {
  await nc?.close();
  for (const n of nodes.values()) await n.stop();
  await server?.stop();
});

describe('admin verbs', () => {
  it('shards: every shard has an owner, where the assignment wants it', async () => {
    const s = await shards();
    expect(s.shard_count).toBe(256);
    expect(s.moving).toBe(0);
    expect(s.shards.every((x) => x.owner !== null && x.owner === x.target && x.epoch !== null)).toBe(true);
    expect(s.nodes.map((n) => [n.node_id, n.shards])).toEqual([
      ['node-a', nodes.get('node-a')!.servedShards],
      ['node-b', nodes.get('node-b')!.servedShards],
    ]);
    const out = await cli('shards');
    expect(out.stdout).toMatch(/node-a\s+live\s+\d+\s+\d+\s+[\d,-]+/);
    expect(out.stdout).toMatch(/256 shards; 0 moving; 0 without an owner/);
  });

  it('refuses bad drains and changes nothing', async () => {
    expect((await rejects(client.call('activeflow.admin.v1.drain', { node_id: 'bad id!' }))).code).toBe('invalid_argument');
    expect((await rejects(client.call('activeflow.admin.v1.drain', { node_id: 'node-a', extra: 1 }))).code).toBe('invalid_argument');
    expect((await rejects(client.call('activeflow.admin.v1.drain', { node_id: 'node-zz' }))).message).toMatch(/no live node "node-zz"/);
    expect((await cli('drain')).code).toBe(2);
    expect((await shards()).moving).toBe(0);
    const listed = await client.call<{ nodes: NodeInfo[] }>('activeflow.admin.v1.nodes');
    expect(listed.nodes.every((n) => !n.draining)).toBe(true);
  });

  it('drain moves every shard off a node; undrain brings its share back', async () => {
    const a = nodes.get('node-a')!;
    const b = nodes.get('node-b')!;
    const out = await cli('drain', 'node-b', '--wait', '--timeout', '20');
    expect(out.code).toBe(0);
    expect(out.stdout).toMatch(/node node-b holds no shard and no actor/);
    expect(b.servedShards).toBe(0);
    expect(a.servedShards).toBe(256);
    expect((await client.call<{ nodes: NodeInfo[] }>('activeflow.admin.v1.nodes')).nodes.find((n) => n.node_id === 'node-b')).toMatchObject({ live: true, draining: true });
    // The last node that could serve the shards cannot be drained without force.
    const last = await rejects(client.call('activeflow.admin.v1.drain', { node_id: 'node-a' }));
    expect(last.code).toBe('conflict');
    expect(last.message).toMatch(/would leave no node to serve the shards/);
    expect((await cli('undrain', 'node-b')).stdout).toMatch(/node-b undrained/);
    expect(await until(() => split(a, b))).toBe(true);
    expect((await cli('rebalance')).stdout).toMatch(/every shard is where it should be/);
  });

  it("a drain lasts across the node's restart until undrain; one until_stop ends when the node stops", async () => {
    const a = nodes.get('node-a')!;
    await client.call('activeflow.admin.v1.drain', { node_id: 'node-b' });
    expect(await until(() => nodes.get('node-b')!.servedShards === 0)).toBe(true);
    await nodes.get('node-b')!.stop();
    const b = await start('node-b'); // the same node, back from maintenance: still drained
    await new Promise((r) => setTimeout(r, 1_000));
    expect(b.servedShards).toBe(0);
    expect(a.servedShards).toBe(256);
    await client.call('activeflow.admin.v1.undrain', { node_id: 'node-b' });
    expect(await until(() => split(a, b))).toBe(true);

    await client.call('activeflow.admin.v1.drain', { node_id: 'node-b', until_stop: true });
    expect(await until(() => b.servedShards === 0)).toBe(true);
    await b.stop();
    const listed = await client.call<{ nodes: NodeInfo[] }>('activeflow.admin.v1.nodes');
    expect(listed.nodes.map((n) => n.node_id)).toEqual(['node-a']); // no mark left behind
    const again = await start('node-b');
    expect(await until(() => split(a, again))).toBe(true);
  }, 30_000);

  it('a node reports its own status', async () => {
    const status = await client.call<{ node_id: string; shards: number[]; resident_actors: number }>('activeflow.admin.v1.node.node-a.status');
    expect(status.node_id).toBe('node-a');
    expect(status.shards.length).toBe(nodes.get('node-a')!.servedShards);
  });
});
