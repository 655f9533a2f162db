import { describe, expect, it } from 'vitest';
import { assignment, Membership, planMoves, targetOwner } from '../../src/cluster/shard-map.js';

const count = (owners: (string | null)[]) => {
  const c = new Map<string, number>();
  for (const o of owners) if (o !== null) c.set(o, (c.get(o) ?? 0) + 1);
  return c;
};

describe('ShardMap: rendezvous hashing', () => {
  const three = ['node-a', 'node-b', 'node-c'];

  it('is deterministic and independent of the order nodes are listed in', () => {
    expect(assignment(256, three)).toEqual(assignment(256, [...three].reverse()));
  });

  it('spreads 256 shards over 3 nodes within a fair margin', () => {
    const owners = count(assignment(256, three));
    expect(owners.size).toBe(3);
    for (const [, n] of owners) {
      expect(n).toBeGreaterThan((256 / 3) * 0.7);
      expect(n).toBeLessThan((256 / 3) * 1.3);
    }
  });

  it('a fourth node takes about a quarter of the shards, all from the others, and nothing else moves', () => {
    const before = assignment(256, three);
    const after = assignment(256, [...three, 'node-d']);
    const moves = planMoves(before, after);
    expect(moves.every((m) => m.to === 'node-d')).toBe(true);
    expect(moves.length).toBeGreaterThan(256 * 0.15);
    expect(moves.length).toBeLessThan(256 * 0.35);
  });

  it('a node that leaves gives up exactly its shards', () => {
    const before = assignment(256, three);
    const after = assignment(256, ['node-a', 'node-c']);
    const moves = planMoves(before, after);
    expect(moves.every((m) => m.from === 'node-b')).toBe(true);
    expect(moves.length).toBe(count(before).get('node-b'));
  });

  it('a draining node is not eligible; no eligible node leaves shards unowned', () => {
    const membership = new Membership([
      { id: 'node-b', draining: true },
      { id: 'node-a', draining: false },
    ]);
    expect(membership.eligible).toEqual(['node-a']);
    expect(new Set(assignment(16, membership.eligible))).toEqual(new Set(['node-a']));
    expect(targetOwner(3, [])).toBeNull();
  });

  it('plans moves from unowned shards too', () => {
    expect(planMoves([null, 'a'], ['a', 'a'])).toEqual([{ shard: 0, from: null, to: 'a' }]);
  });
});
