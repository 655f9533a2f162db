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

  it('refuses a standalone node (SHARD_LEASES=0) beside nodes that split the shards', async () => {
    const server = await startNats();
    cleanups.push(() => server.stop());
    const leased = await startNode(server, { nodeId: 'leased', shardLeases: true });
    cleanups.push(() => leased.stop());
    for (let i = 0; i < 50 && leased.servedShards === 0; i++) await new Promise((r) => setTimeout(r, 50));
    await expect(startNode(server, { nodeId: 'alone', shardLeases: false })).rejects.toThrow(/other nodes are running \(leased\).*Start this node with SHARD_LEASES=1/);
  }, 30_000);

  it('of two standalone nodes (SHARD_LEASES=0) started at the same instant, exactly one starts; the other says which one runs', async () => {
    const server = await startNats();
    cleanups.push(() => server.stop());
    for (let round = 0; round < 3; round++) {
      const started = await Promise.allSettled([startNode(server, { nodeId: `twin-a${round}`, shardLeases: false }), startNode(server, { nodeId: `twin-b${round}`, shardLeases: false })]);
      const up = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const refused = started.flatMap((r) => (r.status === 'rejected' ? [(r.reason as Error).message] : []));
      expect(up).toHaveLength(1);
      expect(refused[0]).toMatch(new RegExp(`another node with SHARD_LEASES=0 is running \\(${up[0]!.options.nodeId}\\)`));
      await up[0]!.stop(); // releases the lease: the next round starts at once
    }
  }, 30_000);

  it('a standalone node and a node with shard leases started at the same instant never both serve', async () => {
    const server = await startNats();
    cleanups.push(() => server.stop());
    for (let round = 0; round < 3; round++) {
      const started = await Promise.allSettled([startNode(server, { nodeId: `solo${round}`, shardLeases: false }), startNode(server, { nodeId: `shared${round}`, shardLeases: true })]);
      const up = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      expect(up.length).toBeLessThanOrEqual(1);
      for (const r of started) if (r.status === 'rejected') expect((r.reason as Error).message).toMatch(/SHARD_LEASES/);
      for (const n of up) await n.stop();
    }
  }, 60_000);

  it('a standalone node restarted after a crash waits out its own former lease; another id is refused while it lasts', async () => {
    const { openStoresFor } = await import('../helpers/nats.js');
    const server = await startNats();
    cleanups.push(() => server.stop());
    const { nc, storage } = await openStoresFor(server);
    cleanups.push(() => nc.close());
    // what a crashed standalone node leaves behind: its lease, until the TTL (1 s here)
    await storage.leases.put('standalone', JSON.stringify({ node_id: 'phoenix', acquired_at: new Date().toISOString() }));
    await expect(startNode(server, { nodeId: 'intruder', shardLeases: false })).rejects.toThrow(/another node with SHARD_LEASES=0 is running \(phoenix\)/);
    await storage.leases.put('standalone', JSON.stringify({ node_id: 'phoenix', acquired_at: new Date().toISOString() }));
    const phoenix = await startNode(server, { nodeId: 'phoenix', shardLeases: false });
    cleanups.push(() => phoenix.stop());
    expect(phoenix.servedShards).toBe(256);
    await expect(startNode(server, { nodeId: 'intruder', shardLeases: false })).rejects.toThrow(/another node with SHARD_LEASES=0 is running \(phoenix\)/);
  }, 30_000);

  it('a standalone node (SHARD_LEASES=0) shows itself as the owner of every shard, though it holds no lease', async () => {
    const { clientFor } = await import('../helpers/nats.js');
    const server = await startNats();
    cleanups.push(() => server.stop());
    const alone = await startNode(server, { nodeId: 'alone', shardLeases: false });
    cleanups.push(() => alone.stop());
    const { nc, client } = await clientFor(server);
    cleanups.push(() => nc.close());
    const s = await client.call<{ shards: { owner: string | null; target: string | null }[]; nodes: { node_id: string; shards: number }[]; moving: number }>('activeflow.admin.v1.shards');
    expect(s.shards).toHaveLength(256);
    expect(s.shards.every((x) => x.owner === 'alone')).toBe(true);
    expect(s.nodes).toEqual([expect.objectContaining({ node_id: 'alone', shards: 256 })]);
    expect(s.moving).toBe(0);
  }, 30_000);

  it('connects as NATS_USER to servers that require a password, and listens to disconnect events as NATS_SYSTEM_USER', async () => {
    const { accountsConfig } = await import('../../src/nats/cluster-config.js');
    const server = await NatsServer.start({ extraConfig: accountsConfig(256, { system: '"sys-pw"', app: '"app-pw"' }, false) });
    cleanups.push(() => server.stop());
    await expect(startNode(server, { nodeId: 'anonymous' })).rejects.toThrow(/Authorization|authorization|auth/i);
    await expect(
      startNode(server, { nodeId: 'bad-system', shardLeases: true, credentials: { user: 'activeflow', pass: 'app-pw' }, systemCredentials: { user: 'system', pass: 'wrong' } }),
    ).rejects.toThrow(/cannot listen to disconnect events as NATS_SYSTEM_USER "system".*check the user and password/);
    const node = await startNode(server, { nodeId: 'authed', shardLeases: true, credentials: { user: 'activeflow', pass: 'app-pw' }, systemCredentials: { user: 'system', pass: 'sys-pw' } });
    cleanups.push(() => node.stop());
    for (let i = 0; i < 100 && node.servedShards < 256; i++) await new Promise((r) => setTimeout(r, 50));
    expect(node.servedShards).toBe(256);
  }, 30_000);

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
