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
});
