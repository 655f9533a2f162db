/** Membership leases: a node appears when it starts, leaves at once when it stops, and within the lease TTL when it dies. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NodeInfo } from '../../src/cluster/membership-registry.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { clientFor, exited, spawnNode, startNats, startNode, until } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
let server: NatsServer;
beforeAll(async () => {
  server = await startNats();
});
afterAll(async () => {
  await server?.stop();
});

async function liveNodes(): Promise<string[]> {
  const { stdout } = await run(process.execPath, [BIN, 'nodes', '--json'], { env: { ...process.env, NATS_URL: server.url } });
  return (JSON.parse(stdout) as NodeInfo[]).map((n) => n.node_id);
}

describe('activeflow nodes', () => {
  it('shows nodes joining, leaving on stop, and dying', async () => {
    const observer = await startNode(server, { nodeId: 'node-c' }); // answers `nodes` throughout
    const a = await startNode(server, { nodeId: 'node-a' });
    const b = await spawnNode(server, { NODE_ID: 'node-b', LEASE_TTL_MS: '1000' });
    expect(await until(async () => (await liveNodes()).join() === 'node-a,node-b,node-c', 5_000)).toBe(true);
    await a.stop(); // released at once
    expect(await liveNodes()).toEqual(['node-b', 'node-c']);
    b.kill('SIGKILL'); // gone within the lease TTL (1 s) plus the bucket's expiry check
    await exited(b);
    expect(await until(async () => (await liveNodes()).join() === 'node-c', 5_000)).toBe(true);
    const { nc, client } = await clientFor(server);
    const again = await startNode(server, { nodeId: 'node-a' }); // a restart under the same id joins again
    expect(await until(async () => (await client.call<{ nodes: NodeInfo[] }>('activeflow.admin.v1.nodes')).nodes.length === 2, 5_000)).toBe(true);
    await again.stop();
    await observer.stop();
    await nc.close();
  }, 60_000);
});
