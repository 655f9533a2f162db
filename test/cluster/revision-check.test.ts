/**
 * The check the single-writer guarantee rests on: a revision-checked KV update is accepted for
 * exactly one of several concurrent writers, even when they write through different servers of a
 * cluster. Shard leases, fencing, journal appends and running counts all rely on it.
 *
 * nats-server before 2.9.21 checked `Nats-Expected-Last-Subject-Sequence` outside the Raft
 * proposal (nats-io/nats-server#4320): on Debian's 2.9.10 this test accepts several writers in
 * almost every round. Run it against another binary with
 * `NATS_SERVER_BIN=/path/to/nats-server npx vitest run test/cluster/revision-check.test.ts`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstream } from '@nats-io/jetstream';
import { Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { connectNats } from '../../src/nats/connect.js';
import { NatsCluster } from '../../src/nats/nats-cluster.js';
import { isRevisionConflict } from '../../src/store/revision-conflict.js';

const ROUNDS = 200;
const WRITERS_PER_SERVER = 2;
let cluster: NatsCluster;
let conns: NatsConnection[] = [];
let kvs: KV[] = [];

beforeAll(async () => {
  cluster = await NatsCluster.start();
  conns = await Promise.all(cluster.urls.map((url, i) => connectNats([url], `rev-check-${i}`)));
  // A cold cluster's JetStream answers after its meta leader is elected: retry until it does.
  for (const deadline = Date.now() + 45_000; ; ) {
    try {
      await new Kvm(jetstream(conns[0]!, { timeout: 5_000 })).create('rev_check', { replicas: 3, history: 1 });
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  kvs = await Promise.all(conns.map((nc) => new Kvm(jetstream(nc, { timeout: 10_000 })).open('rev_check')));
}, 60_000);

afterAll(async () => {
  await Promise.all(conns.map((nc) => nc.close()));
  await cluster?.stop();
});

describe('revision-checked KV updates in a 3-server R3 bucket', () => {
  it(`accept exactly one of ${3 * WRITERS_PER_SERVER} concurrent writers, through three servers, in each of ${ROUNDS} rounds`, async () => {
    const accepted: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const key = `k${round % 8}`;
      const base = await kvs[round % 3]!.put(key, `base-${round}`);
      const writers = kvs.flatMap((kv, server) => Array.from({ length: WRITERS_PER_SERVER }, (_, w) => ({ kv, value: `r${round}-s${server}-w${w}` })));
      const results = await Promise.allSettled(writers.map((w) => w.kv.update(key, w.value, base)));
      const winners = writers.filter((_, i) => results[i]!.status === 'fulfilled');
      const odd = results.filter((r) => r.status === 'rejected' && !isRevisionConflict(r.reason));
      expect(
        odd.map((r) => String((r as PromiseRejectedResult).reason)),
        `round ${round}: failures that are not revision conflicts`,
      ).toEqual([]);
      accepted.push(winners.length);
      // The stored value is the one writer's that was told it won.
      if (winners.length === 1) expect((await kvs[0]!.get(key))?.string()).toBe(winners[0]!.value);
    }
    const histogram: Record<number, number> = {};
    for (const n of accepted) histogram[n] = (histogram[n] ?? 0) + 1;
    expect(histogram, 'rounds by how many writers were accepted').toEqual({ 1: ROUNDS });
  }, 120_000);
});
