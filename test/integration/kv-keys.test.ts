/**
 * Listing the live members while their leases are renewed: `keysNow` answers every key, every time,
 * in one request. (`kv.keys()` walks a consumer instead: on this machine, under CPU load and with keys
 * rewritten in a loop, a walk ran on for seconds delivering the rewrites, and a drain once found no
 * other live node through it.)
 */
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNats } from '../../src/nats/connect.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { keysNow, liveKeys, purgeKeys, valueAt, valuesNow } from '../../src/store/kv-keys.js';
import { startNats } from '../helpers/nats.js';

let server: NatsServer;
let nc: NatsConnection;
let kv: KV;
const NODES = ['node.a', 'node.b', 'node.c', 'node.d'];

beforeAll(async () => {
  server = await startNats();
  nc = await connectNats(server.url, 'kv-keys-test');
  await new Kvm(nc).create('af_leases', { ttl: 120_000, history: 1 });
  kv = await new Kvm(nc).open('af_leases');
  for (let s = 0; s < 256; s++) await kv.put(`shard.${s}`, '{}');
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

describe('keysNow', () => {
  it('lists every key of the filter while each is rewritten in a tight loop, and skips none', async () => {
    for (const k of NODES) await kv.put(k, '{}');
    let renewing = true;
    const renewals = Promise.all(
      NODES.map(async (k) => {
        while (renewing) await kv.put(k, '{}');
      }),
    );
    let listings = 0;
    const until = Date.now() + 4_000;
    try {
      for (; listings < 300 && Date.now() < until; listings++) {
        expect(await keysNow(kv, 'node.*')).toEqual(NODES);
      }
    } finally {
      renewing = false;
      await renewals;
    }
    expect(listings).toBeGreaterThan(10);
  }, 30_000);

  it('lists a deleted key (its marker) so callers can read and skip it, and nothing of another filter', async () => {
    await kv.put('marks.x', '{}');
    await kv.delete('marks.x');
    await kv.put('marks.y', '{}');
    expect(await keysNow(kv, 'marks.*')).toEqual(['marks.x', 'marks.y']);
    expect((await kv.get('marks.x'))?.operation).toBe('DEL');
    expect(await keysNow(kv, 'none.*')).toEqual([]);
    expect((await keysNow(kv, 'shard.*')).length).toBe(256);
  });
});

describe('liveKeys and valuesNow: one bounded pass', () => {
  it('finish while every key is rewritten in a tight loop, with every key once and its value', async () => {
    const keys = Array.from({ length: 50 }, (_, i) => `busy.${i}`);
    for (const k of keys) await kv.put(k, 'v0');
    let writing = true;
    let n = 0;
    const writer = (async () => {
      while (writing) await kv.put(keys[n++ % keys.length]!, `v${n}`);
    })();
    try {
      for (let i = 0; i < 20; i++) {
        expect((await liveKeys(kv, 'busy.*')).sort()).toEqual([...keys].sort());
        const values = await valuesNow(kv, 'busy.*');
        expect([...values.keys()].sort()).toEqual([...keys].sort());
        for (const v of values.values()) expect(new TextDecoder().decode(v)).toMatch(/^v\d+$/);
      }
    } finally {
      writing = false;
      await writer;
    }
    expect(n).toBeGreaterThan(100); // the keys really were being rewritten meanwhile
  }, 30_000);

  it('leave deleted keys out; an empty or purged key space answers at once', async () => {
    await kv.put('gone.a', '1');
    await kv.put('gone.b', '2');
    await kv.delete('gone.a');
    expect(await liveKeys(kv, 'gone.*')).toEqual(['gone.b']);
    expect([...(await valuesNow(kv, 'gone.*')).entries()].map(([k, v]) => [k, new TextDecoder().decode(v)])).toEqual([['gone.b', '2']]);
    const t = performance.now();
    expect(await liveKeys(kv, 'never.*')).toEqual([]);
    await purgeKeys(kv, 'gone.>');
    expect(await keysNow(kv, 'gone.*')).toEqual([]); // no marker left either
    expect(await valuesNow(kv, 'gone.*')).toEqual(new Map());
    expect(performance.now() - t).toBeLessThan(2_000); // not a timeout's wait
  });
});

describe('valueAt: a key at one revision, by a direct get', () => {
  it("answers that revision's value, and nothing for another key's revision, a rewritten revision or a delete marker", async () => {
    const first = await kv.put('at.a', 'one');
    const other = await kv.put('at.b', 'other');
    expect(new TextDecoder().decode((await valueAt(kv, 'at.a', first))!)).toBe('one');
    expect(await valueAt(kv, 'at.a', other)).toBeNull(); // at.b's
    const second = await kv.put('at.a', 'two');
    expect(await valueAt(kv, 'at.a', first)).toBeNull(); // one value per key is kept: the old one is gone
    expect(new TextDecoder().decode((await valueAt(kv, 'at.a', second))!)).toBe('two');
    await kv.delete('at.a');
    const marker = (await kv.get('at.a'))!;
    expect(marker.operation).toBe('DEL');
    expect(await valueAt(kv, 'at.a', marker.revision)).toBeNull();
    expect(await valueAt(kv, 'at.a', marker.revision + 1_000)).toBeNull(); // past the stream's end
  });
});
