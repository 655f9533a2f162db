/** Shard leases on a real TTL bucket: exclusive, renewable, expiring, and self-fencing in time. */
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ShardLease } from '../../src/cluster/shard-lease.js';
import { connectNats } from '../../src/nats/connect.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { startNats } from '../helpers/nats.js';

const TTL = 1_000;
let server: NatsServer;
let nc: NatsConnection;
let kv: KV;
let jsm: JetStreamManager;

beforeAll(async () => {
  server = await startNats();
  nc = await connectNats(server.url, 'lease-test');
  await new Kvm(nc).create('af_leases', { ttl: TTL, history: 1 });
  kv = await new Kvm(nc).open('af_leases');
  jsm = await jetstreamManager(nc);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const options = (onFence: (r: string) => void = () => undefined) => ({ ttlMs: TTL, safetyMs: 250, onFence });
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('ShardLease', () => {
  it('is exclusive; release hands it over at once, with a larger epoch', async () => {
    const a = await ShardLease.acquire(kv, 'shard.1', 'node-a', options());
    expect(a).not.toBeNull();
    expect(await ShardLease.acquire(kv, 'shard.1', 'node-b', options())).toBeNull();
    expect(await ShardLease.holder(jsm, 'af_leases', 'shard.1')).toMatchObject({ node_id: 'node-a' });
    expect(await a!.renew()).toBe(true);
    await a!.release();
    const b = await ShardLease.acquire(kv, 'shard.1', 'node-b', options());
    expect(b).not.toBeNull();
    expect(b!.epoch).toBeGreaterThan(a!.epoch);
    await b!.release();
  });

  it("expires with the bucket TTL; the former holder's late renewal is refused and fences it", async () => {
    const reasons: string[] = [];
    const a = await ShardLease.acquire(
      kv,
      'shard.2',
      'node-a',
      options((r) => reasons.push(r)),
    );
    expect(await ShardLease.holder(jsm, 'af_leases', 'shard.2')).toMatchObject({ node_id: 'node-a' });
    await sleep(TTL + 400);
    expect(await ShardLease.holder(jsm, 'af_leases', 'shard.2')).toBeNull(); // expired: nobody
    const b = await ShardLease.acquire(kv, 'shard.2', 'node-b', options());
    expect(b).not.toBeNull();
    expect(await a!.renew()).toBe(false);
    expect(a!.isFenced).toBe(true);
    expect(reasons[0]).toMatch(/renewal refused/);
    await b!.release();
  });

  it('a hand-over released while a renewal is on its way still leaves its marker (it waits for the renewal)', async () => {
    const a = await ShardLease.acquire(kv, 'shard.9', 'node-a', options());
    const renewal = a!.renew(); // not awaited: on its way when the release starts
    await a!.release({ handOver: true });
    await renewal; // it landed first: the release wrote after it, at its revision
    expect(await ShardLease.holder(jsm, 'af_leases', 'shard.9')).toBeNull(); // released, not held until it expires
    const b = await ShardLease.acquire(kv, 'shard.9', 'node-b', options());
    expect(b!.handedOver).toBe(true);
    expect(b!.previous).toMatchObject({ node_id: 'node-a', released_at: expect.any(String) });
    await b!.release();
  });

  it("a transfer puts the lease in the next holder's name: held by it, taken by nobody else, served by it without a claim", async () => {
    const a = await ShardLease.acquire(kv, 'shard.11', 'node-a', options());
    const stoppedAt = new Date();
    const t = await a!.release({ handOver: true, stoppedAt, to: 'node-b' });
    expect(t!.marker).toMatchObject({ node_id: 'node-b', transferred_from: 'node-a', stopped_at: stoppedAt.toISOString() });
    expect(await ShardLease.holder(jsm, 'af_leases', 'shard.11')).toMatchObject({ node_id: 'node-b' });
    expect(await ShardLease.acquire(kv, 'shard.11', 'node-c', options())).toBeNull(); // not a free marker
    const b = ShardLease.adopt(kv, 'shard.11', 'node-b', t!.revision, t!.marker, options());
    expect(b.handedOver).toBe(true);
    expect(await b.renew()).toBe(true); // confirmed, and now in b's own (plain) value
    expect(await ShardLease.holder(jsm, 'af_leases', 'shard.11')).toEqual({ node_id: 'node-b', acquired_at: expect.any(String) });
    await b.release();
  });

  it('a transfer whose announcement was missed is taken by its node when it tries the shard; adopting a stale one is fenced', async () => {
    const a = await ShardLease.acquire(kv, 'shard.12', 'node-a', options());
    const t = await a!.release({ handOver: true, to: 'node-b' });
    const b = await ShardLease.acquire(kv, 'shard.12', 'node-b', options());
    expect(b).not.toBeNull();
    expect(b!.handedOver).toBe(true);
    expect(b!.previous).toMatchObject({ transferred_from: 'node-a' });
    // The announcement arrives late, after b took it another way: adopting it fences at once.
    const reasons: string[] = [];
    const late = ShardLease.adopt(
      kv,
      'shard.12',
      'node-b',
      t!.revision,
      t!.marker,
      options((r) => reasons.push(r)),
    );
    expect(await late.renew()).toBe(false);
    expect(reasons[0]).toMatch(/renewal refused/);
    expect(await b!.renew()).toBe(true);
    await b!.release();
  });

  it('renewals never overlap: one asked for while another is on its way waits for it, and nothing is fenced', async () => {
    const reasons: string[] = [];
    const a = await ShardLease.acquire(
      kv,
      'shard.10',
      'node-a',
      options((r) => reasons.push(r)),
    );
    expect(await Promise.all([a!.renew(), a!.renew(), a!.renew()])).toEqual([true, true, true]);
    expect(a!.isFenced).toBe(false);
    expect(reasons).toEqual([]);
    expect(await a!.renew()).toBe(true);
    await a!.release();
  });

  it('kept, it stays held well past the TTL', async () => {
    const a = await ShardLease.acquire(kv, 'shard.3', 'node-a', options());
    a!.keep();
    await sleep(TTL * 2.5);
    expect(a!.isFenced).toBe(false);
    expect(await ShardLease.acquire(kv, 'shard.3', 'node-b', options())).toBeNull();
    await a!.release();
  });

  it('fences itself before its lease can expire when renewals stop getting through', async () => {
    let fencedAt = 0;
    const a = await ShardLease.acquire(
      kv,
      'shard.4',
      'node-a',
      options(() => (fencedAt = Date.now())),
    );
    a!.keep();
    await sleep(400);
    const lastPossibleExpiry = Date.now() + TTL; // no renewal can be confirmed after the pause starts
    server.signal('SIGSTOP');
    try {
      await sleep(TTL + 200);
    } finally {
      server.signal('SIGCONT');
    }
    expect(a!.isFenced).toBe(true);
    expect(fencedAt).toBeGreaterThan(0);
    expect(fencedAt).toBeLessThan(lastPossibleExpiry); // stopped serving before anyone could take over
  });
});
