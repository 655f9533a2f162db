/** A node refuses to start, saying what to do, when the server or the cluster disagree with it. */
import { afterEach, describe, expect, it } from 'vitest';
import { NatsServer } from '../../src/nats/server-process.js';
import { shardMappingConfig } from '../../src/nats/shard-mapping.js';
import { startNats, startNode } from '../helpers/nats.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

describe('node start-up checks', () => {
  it('refuses a server without the shard mapping, printing the block to add', async () => {
    const server = await NatsServer.start({});
    cleanups.push(() => server.stop());
    await expect(startNode(server)).rejects.toThrow(/does not map activeflow\.v1\.<id>\.<verb> to shards; add this[\s\S]*partition\(256,1\)/);
  }, 30_000);

  it('refuses a server whose mapping uses another shard count', async () => {
    const server = await NatsServer.start({ extraConfig: shardMappingConfig(64) });
    cleanups.push(() => server.stop());
    await expect(startNode(server)).rejects.toThrow(/another shard count than SHARD_COUNT=256[\s\S]*partition\(256,1\)/);
  }, 30_000);

  it('refuses a shard count other than the one the cluster was created with', async () => {
    const server = await startNats(shardMappingConfig(128));
    cleanups.push(() => server.stop());
    const first = await startNode(server, { shardCount: 128 });
    await first.stop();
    const server2Mapping = server; // same server and storage: the cluster already says 128
    await expect(startNode(server2Mapping, { shardCount: 256 })).rejects.toThrow(/this cluster has 128 shards .* SHARD_COUNT=256; start it with SHARD_COUNT=128/);
  }, 30_000);

  it('a node alone holds the lease of every shard, and shows as the owner of each with its epoch', async () => {
    const { clientFor } = await import('../helpers/nats.js');
    const server = await startNats();
    cleanups.push(() => server.stop());
    const alone = await startNode(server, { nodeId: 'alone' });
    cleanups.push(() => alone.stop());
    for (let i = 0; i < 100 && alone.servedShards < 256; i++) await new Promise((r) => setTimeout(r, 50));
    expect(alone.servedShards).toBe(256);
    const { nc, client } = await clientFor(server);
    cleanups.push(() => nc.close());
    const s = await client.call<{ shards: { owner: string | null; target: string | null; epoch: number | null }[]; nodes: { node_id: string; shards: number }[]; moving: number }>(
      'activeflow.admin.v1.shards',
    );
    expect(s.shards).toHaveLength(256);
    expect(s.shards.every((x) => x.owner === 'alone' && x.target === 'alone' && typeof x.epoch === 'number')).toBe(true);
    expect(s.nodes).toEqual([expect.objectContaining({ node_id: 'alone', shards: 256 })]);
    expect(s.moving).toBe(0);
  }, 30_000);

  it('connects as NATS_USER to servers that require a password, and listens to disconnect events as NATS_SYSTEM_USER', async () => {
    const { accountsConfig } = await import('../../src/nats/cluster-config.js');
    const server = await NatsServer.start({ extraConfig: accountsConfig(256, { system: '"sys-pw"', app: '"app-pw"' }, false) });
    cleanups.push(() => server.stop());
    await expect(startNode(server, { nodeId: 'anonymous' })).rejects.toThrow(/Authorization|authorization|auth/i);
    await expect(startNode(server, { nodeId: 'bad-system', credentials: { user: 'activeflow', pass: 'app-pw' }, systemCredentials: { user: 'system', pass: 'wrong' } })).rejects.toThrow(
      /cannot listen to disconnect events as NATS_SYSTEM_USER "system".*check the user and password/,
    );
    const node = await startNode(server, { nodeId: 'authed', credentials: { user: 'activeflow', pass: 'app-pw' }, systemCredentials: { user: 'system', pass: 'sys-pw' } });
    cleanups.push(() => node.stop());
    for (let i = 0; i < 100 && node.servedShards < 256; i++) await new Promise((r) => setTimeout(r, 50));
    expect(node.servedShards).toBe(256);
  }, 30_000);

  it('a node started before its server waits for it and serves once it is up', async () => {
    const { spawnNode, exited } = await import('../helpers/nats.js');
    const { createServer } = await import('node:net');
    const port = await new Promise<number>((resolve) => {
      const probe = createServer().listen(0, '127.0.0.1', () => {
        const { port } = probe.address() as { port: number };
        probe.close(() => resolve(port));
      });
    });
    // spawnNode resolves at "node_serving": the server comes up while it waits.
    const serving = spawnNode([`nats://127.0.0.1:${port}`], { NODE_ID: 'early' });
    await new Promise((r) => setTimeout(r, 2_500)); // refused for a while (as a StatefulSet still starting)
    const server = await NatsServer.start({ port, extraConfig: shardMappingConfig(256) });
    cleanups.push(() => server.stop());
    const child = await serving;
    let out = '';
    child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(0);
    expect(out).toMatch(/"node_stopped"/);
  }, 60_000);

  it('a node whose server never comes up says so after NATS_START_WAIT_MS and exits 1', async () => {
    const { NATS_START_WAIT_MS } = await import('../../src/nats/connect.js');
    expect(NATS_START_WAIT_MS).toBe(30_000); // the bound below depends on it
    const { spawn } = await import('node:child_process');
    const { exited } = await import('../helpers/nats.js');
    const child = spawn(process.execPath, [new URL('../../bin/activeflow.mjs', import.meta.url).pathname, 'node'], {
      env: { ...process.env, NATS_URL: 'nats://127.0.0.1:1', NODE_ID: 'never', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let all = '';
    for (const s of [child.stdout!, child.stderr!]) s.on('data', (b: Buffer) => (all += b.toString()));
    await expect.poll(() => all, { timeout: 10_000 }).toMatch(/"nats_not_ready".*waiting for NATS at nats:\/\/127\.0\.0\.1:1/);
    const t0 = Date.now();
    expect(await exited(child)).toBe(1);
    expect(Date.now() - t0).toBeLessThan(35_000);
    expect(all).toMatch(/NATS at nats:\/\/127\.0\.0\.1:1 did not answer for 30 s \(.*\); is nats-server running there, and is NATS_URL right\?/);
  }, 60_000);

  it('on SIGTERM with its NATS server gone, a node gives up after STOP_TIMEOUT_MS and exits 1 instead of hanging', async () => {
    const { spawnNode, exited } = await import('../helpers/nats.js');
    const server = await startNats();
    cleanups.push(() => server.stop());
    const child = await spawnNode(server, { NODE_ID: 'orphan', STOP_TIMEOUT_MS: '1500', LEASE_TTL_MS: '1000' });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    await new Promise((r) => setTimeout(r, 500)); // it holds shards
    server.signal('SIGKILL');
    const t0 = Date.now();
    child.kill('SIGTERM');
    expect(await exited(child)).toBe(1);
    expect(Date.now() - t0).toBeLessThan(5_000);
    // Whether it saw the server go before the signal (it then stops at once) or only after (the
    // stop's deadline ends it), it says why it could not hand over.
    expect(err).toMatch(/the stop did not finish within 1500 ms \(STOP_TIMEOUT_MS; is NATS reachable\?\)|NATS is unreachable: stopped without handing the shards over/);
  }, 30_000);
});
