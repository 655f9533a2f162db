/**
 * Reading a journal's entries after a checkpoint (a load's read): one batched direct get, checked
 * to reach the last entry the leader named, else one leader read per entry. Against a real server.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { Storage } from '../../src/store/buckets.js';
import { Journal } from '../../src/store/journal.js';
import type { JournalEntry } from '../../src/store/journal-entry.js';
import { CUSTOMER } from '../helpers/engine.js';
import { openStoresFor, startNats } from '../helpers/nats.js';

const A = 'aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa';
const B = 'bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb';
const env = {} as { server: NatsServer; nc: NatsConnection; storage: Storage };
const fence = (n: number): JournalEntry => ({ v: 2, kind: 'fence', n, at: '2026-12-05T00:00:00.000000Z', engine: 'test' });

beforeAll(async () => {
  env.server = await startNats();
  ({ nc: env.nc, storage: env.storage } = await openStoresFor(env.server));
}, 30_000);
afterAll(async () => {
  await env.nc?.close();
  await env.server?.stop();
});

describe('the entries after a checkpoint', () => {
  it("come in one batched direct get, only this activeflow's, in order; an incomplete answer falls back to the leader", async () => {
    const journal = new Journal(env.storage.js, env.storage.jsm);
    let lastA = 0;
    let lastB = 0;
    for (let n = 1; n <= 40; n++) {
      lastA = await journal.append(CUSTOMER, A, fence(n), lastA, false);
      if (n % 3 === 0) lastB = await journal.append(CUSTOMER, B, fence(n / 3), lastB, false); // interleaved
    }
    const all = await journal.all(CUSTOMER, A);
    const cut = all[9]!.seq; // a checkpoint after entry 10
    const realGetBatch = env.storage.jsm.direct.getBatch.bind(env.storage.jsm.direct);
    const batch = vi.spyOn(env.storage.jsm.direct, 'getBatch');
    const read = await journal.between(CUSTOMER, A, cut, lastA);
    expect(read.map((m) => (m.message as { entry: JournalEntry }).entry.n)).toEqual(Array.from({ length: 30 }, (_, i) => i + 11));
    expect(read).toEqual(all.slice(10));
    expect(batch).toHaveBeenCalledTimes(1);
    // a lagging replica answers short of what the leader named as last: read from the leader instead
    batch.mockImplementationOnce((stream, opts) => realGetBatch(stream, { ...opts, batch: 5 }));
    expect(await journal.between(CUSTOMER, A, cut, lastA)).toEqual(all.slice(10));
    expect(batch).toHaveBeenCalledTimes(2);
    // nothing after the checkpoint: no read at all
    expect(await journal.between(CUSTOMER, A, lastA, lastA)).toEqual([]);
    expect(batch).toHaveBeenCalledTimes(2);
    batch.mockRestore();
  });

  it('a whole journal, longer than a batch: batch after batch, its last entry the only leader read, no consumer', async () => {
    const journal = new Journal(env.storage.js, env.storage.jsm);
    const C = 'cccccccc-cccc-4ccc-8ccc-cccccccccccc';
    let last = 0;
    for (let n = 1; n <= 600; n++) last = await journal.append(CUSTOMER, C, fence(n), last, false);
    const batch = vi.spyOn(env.storage.jsm.direct, 'getBatch');
    const leader = vi.spyOn(env.storage.jsm.streams, 'getMessage');
    const consumers = vi.spyOn(env.storage.js.consumers, 'get');
    try {
      const all = await journal.all(CUSTOMER, C);
      expect(all.map((m) => (m.message as { entry: JournalEntry }).entry.n)).toEqual(Array.from({ length: 600 }, (_, i) => i + 1));
      expect(all.at(-1)!.seq).toBe(last);
      expect(batch).toHaveBeenCalledTimes(3); // 256 + 256 + 88
      expect(leader).toHaveBeenCalledTimes(1); // the last entry's sequence
      expect(consumers).not.toHaveBeenCalled();
      // up to a sequence: that far and no further, and no leader read at all
      expect((await journal.all(CUSTOMER, C, all[299]!.seq)).length).toBe(300);
      expect(leader).toHaveBeenCalledTimes(1);
      expect(await journal.all(CUSTOMER, 'dddddddd-dddd-4ddd-8ddd-dddddddddddd')).toEqual([]); // none
    } finally {
      batch.mockRestore();
      leader.mockRestore();
      consumers.mockRestore();
    }
  });
});
