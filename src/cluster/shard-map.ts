/**
 * Which node should own which shard: a pure function of the eligible (live, non-draining) nodes,
 * by rendezvous hashing. Each shard goes to the node with the highest score for it, so adding a
 * node moves only the shards it wins (about 1/N) and removing one moves only the shards it had.
 */

export type NodeId = string;
export type ShardId = number;

export interface Member {
  id: NodeId;
  draining: boolean;
}

/** The live nodes of the cluster, as the node leases show them. */
export class Membership {
  readonly eligible: readonly NodeId[];

  constructor(readonly members: readonly Member[]) {
    this.eligible = members
      .filter((m) => !m.draining)
      .map((m) => m.id)
      .sort();
  }
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}

/** murmur3's finaliser, so that similar node names and shard numbers score independently. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b) >>> 0;
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35) >>> 0;
  return (h ^ (h >>> 16)) >>> 0;
}

export function score(shard: ShardId, node: NodeId): number {
  return fmix32(fnv1a(node) ^ Math.imul(shard + 1, 0x9e3779b9));
}

/** The node that should own `shard`; null when no node is eligible. Ties go to the smaller id. */
export function targetOwner(shard: ShardId, eligible: readonly NodeId[]): NodeId | null {
  let best: NodeId | null = null;
  let bestScore = -1;
  for (const node of eligible) {
    const s = score(shard, node);
    if (s > bestScore || (s === bestScore && best !== null && node < best)) {
      best = node;
      bestScore = s;
    }
  }
  return best;
}

/** The target owner of every shard. */
export function assignment(shardCount: number, eligible: readonly NodeId[]): (NodeId | null)[] {
  return Array.from({ length: shardCount }, (_, shard) => targetOwner(shard, eligible));
}

export interface Move {
  shard: ShardId;
  from: NodeId | null;
  to: NodeId | null;
}

/** The moves that turn the current owners into the target ones (unowned shards included). */
export function planMoves(current: readonly (NodeId | null)[], target: readonly (NodeId | null)[]): Move[] {
  const moves: Move[] = [];
  for (let shard = 0; shard < target.length; shard++) {
    const from = current[shard] ?? null;
    const to = target[shard] ?? null;
    if (from !== to) moves.push({ shard, from, to });
  }
  return moves;
}
