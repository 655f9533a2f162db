/**
 * The creations-per-second buckets (src/quota/creation-rate.ts) on a clock and a share the test
 * sets: the burst and the refill at a node's share, and what happens to a bucket when the node's
 * share of the shards changes under it (a node joining, one draining).
 */
import { describe, expect, it } from 'vitest';
import { ActiveflowError } from '../../src/errors.js';
import { CreationRate, creationShare } from '../../src/quota/creation-rate.js';

const Q = { creations_per_second: 100, creation_burst: 256 };

/** How many creations pass, one after another at the same instant, before the first refusal. */
function burst(rate: CreationRate, customer = 'c'): number {
  for (let n = 0; n < 10_000; n++) {
    try {
      rate.take(customer, Q);
    } catch (e) {
      expect(e).toBeInstanceOf(ActiveflowError);
      expect([(e as ActiveflowError).code, (e as ActiveflowError).quota]).toEqual(['limit_exceeded', 'creations_per_second']);
      return n;
    }
  }
  throw new Error('never refused');
}

describe('creations per second', () => {
  it("admits the node's share of the burst, then refills at its share of the rate", () => {
    let now = 0;
    const rate = new CreationRate(
      () => 0.5,
      () => now,
    );
    expect(burst(rate)).toBe(128);
    now += 100; // 100/s x 0.5 share x 0.1 s = 5 creations
    expect(burst(rate)).toBe(5);
    now += 60_000;
    expect(burst(rate)).toBe(128); // full again, never above its size
    expect(burst(rate, 'another')).toBe(128); // each customer has its own
  });

  it('a node with a tiny share still admits a first creation', () => {
    const rate = new CreationRate(
      () => 1 / 1024,
      () => 0,
    );
    expect(burst(rate)).toBe(1);
  });

  it("a newcomer whose share grows keeps its bucket's fill: the burst it admits grows with its shards", () => {
    // A node joins: its first creation comes while it holds 4 of 256 shards, then the rest of its
    // quarter arrives. Counted in tokens, its bucket held 3 and filled at 25/s; the cluster refused
    // the customer's burst there while the other nodes' buckets shrank to their new share.
    const now = 0;
    let shards = 4;
    const rate = new CreationRate(
      () => shards / 256,
      () => now,
    );
    rate.take('c', Q); // 1 of its 4 tokens
    shards = 64; // at the same instant: no refill in between
    expect(burst(rate)).toBe(48); // three quarters of its 64 tokens, not the 3 left of 4
  });

  it("a node whose share shrinks keeps the same fill: the cluster's buckets together never hold more than the burst", () => {
    const now = 0;
    let shards = 128;
    const rate = new CreationRate(
      () => shards / 256,
      () => now,
    );
    for (let i = 0; i < 64; i++) rate.take('c', Q); // half of its 128
    shards = 64;
    expect(burst(rate)).toBe(32); // half of 64
  });

  it('a node that has just fenced every shard still counts the one behind the create in hand', () => {
    // Its bucket was used at full share; then its leases lapsed (servedShards 0) while creates were
    // on their way: sized at a share of nothing, the bucket refused them as limit_exceeded.
    const defaults = { creations_per_second: 1_000, creation_burst: 2_000 };
    let served = 256;
    const rate = new CreationRate(
      () => creationShare(served, 256),
      () => 0,
    );
    rate.take('c', defaults);
    served = 0;
    for (let i = 0; i < 7; i++) rate.take('c', defaults); // its one shard's part of the burst: 2,000 / 256 = 7.8
    expect(() => rate.take('c', defaults)).toThrow(ActiveflowError);
    expect(creationShare(0, 256)).toBe(1 / 256);
    expect(creationShare(64, 256)).toBe(1 / 4);
  });
});
