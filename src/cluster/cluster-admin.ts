/**
 * What operators ask of the cluster as a whole (`activeflow.admin.v1.*`), answered by any node from
 * the leases and drain marks in JetStream: no node needs to be asked about another one's state.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { SUBJECTS } from '../api/subjects.js';
import { ActiveflowError } from '../errors.js';
import { BUCKETS } from '../store/buckets.js';
import { decodeJson } from '../store/codec.js';
import { DrainMarks } from './drain-marks.js';
import { NodeMembership, type NodeInfo } from './membership-registry.js';
import { ShardLease, type LeaseValue } from './shard-lease.js';
import { assignment, planMoves, type Move } from './shard-map.js';

export interface ShardInfo {
  shard: number;
  /** The node holding the shard's lease; null while nobody does (between owners). */
  owner: string | null;
  /** Where the assignment wants it: differs from `owner` while it moves. */
  target: string | null;
  epoch: number | null;
}

export interface ShardsReply {
  shard_count: number;
  shards: ShardInfo[];
  /** Shards held and targeted per node. */
  nodes: { node_id: string; draining: boolean; shards: number; target_shards: number }[];
  /** Shards not where the assignment wants them yet. */
  moving: number;
}

export class ClusterAdmin {
  private readonly marks: DrainMarks;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly leases: KV,
    private readonly cluster: KV,
    private readonly shardCount: number,
  ) {
    this.marks = new DrainMarks(cluster);
  }

  nodes(): Promise<NodeInfo[]> {
    return NodeMembership.list(this.leases, this.cluster);
  }

  /** Who holds each shard now (from the leases), and where the assignment wants it. */
  async shards(): Promise<ShardsReply> {
    const [membership, owners] = await Promise.all([NodeMembership.current(this.leases, this.cluster), this.owners()]);
    const target = assignment(this.shardCount, membership.eligible);
    const shards = owners.map((o, shard) => ({ shard, owner: o?.owner ?? null, target: target[shard] ?? null, epoch: o?.epoch ?? null }));
    const ids = new Set([...membership.members.map((m) => m.id), ...shards.flatMap((s) => (s.owner === null ? [] : [s.owner]))]);
    const nodes = [...ids].sort().map((id) => ({
      node_id: id,
      draining: membership.members.some((m) => m.id === id && m.draining),
      shards: shards.filter((s) => s.owner === id).length,
      target_shards: shards.filter((s) => s.target === id).length,
    }));
    return { shard_count: this.shardCount, shards, nodes, moving: shards.filter((s) => s.owner !== s.target).length };
  }

  private async owners(): Promise<({ owner: string; epoch: number | null } | null)[]> {
    return Promise.all(
      Array.from({ length: this.shardCount }, async (_, shard) => {
        const e = await this.leases.get(`shard.${shard}`);
        if (e === null || e.operation !== 'PUT') return null;
        const value = decodeJson(e.value) as LeaseValue;
        return value.released_at === undefined ? { owner: value.node_id, epoch: e.revision } : null;
      }),
    );
  }

  /**
   * Marks a node drained: every node reconciles at once, and the drained one hands its shards over.
   * Refused when no other node could take them, unless forced.
   */
  async drain(nodeId: string, force: boolean, untilStop = false): Promise<{ node_id: string; draining: true; drained_at: string; until_stop: boolean; moving: number }> {
    const membership = await NodeMembership.current(this.leases, this.cluster);
    // The node's own lease, read by key from the leader: a key listing can miss a key renewed
    // while it runs, and a replica can have expired it.
    const exists = (await ShardLease.holder(this.jsm, BUCKETS.leases, `node.${nodeId}`)) !== null || (await this.marks.get(nodeId)) !== null;
    if (!exists) {
      throw new ActiveflowError('not_found', `no live node "${nodeId}"; \`activeflow nodes\` lists them`);
    }
    const others = membership.eligible.filter((id) => id !== nodeId);
    if (others.length === 0 && !force) {
      throw new ActiveflowError('conflict', `draining "${nodeId}" would leave no node to serve the shards; start another node first, or drain with force (the shards go unserved)`);
    }
    const mark = await this.marks.drain(nodeId, new Date(), untilStop);
    this.nc.publish(SUBJECTS.clusterReconcile);
    const target = assignment(this.shardCount, others);
    const moving = (await this.owners()).filter((o, shard) => o !== null && o.owner !== target[shard]).length;
    return { node_id: nodeId, draining: true, drained_at: mark.drained_at, until_stop: mark.until_stop === true, moving };
  }

  async undrain(nodeId: string): Promise<{ node_id: string; draining: false; was_draining: boolean }> {
    const was = await this.marks.undrain(nodeId);
    this.nc.publish(SUBJECTS.clusterReconcile);
    return { node_id: nodeId, draining: false, was_draining: was };
  }

  /**
   * Every node reconciles now (they also do so every third of the lease TTL): the reply lists the
   * moves that brings, from the leases as they are.
   */
  async rebalance(): Promise<{ moves: Move[] }> {
    const [membership, owners] = await Promise.all([NodeMembership.current(this.leases, this.cluster), this.owners()]);
    this.nc.publish(SUBJECTS.clusterReconcile);
    return {
      moves: planMoves(
        owners.map((o) => o?.owner ?? null),
        assignment(this.shardCount, membership.eligible),
      ),
    };
  }
}
