/**
 * Membership: each node holds a lease `node.<node_id>` in `af_leases` while it runs. The live
 * nodes are the keys present (a dead node's lease vanishes with the bucket's TTL; a stopped node
 * releases it at once). The lease is taken in the background, so a node restarting under the same
 * id, whose previous lease has not expired yet, starts serving at once and joins when it can.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from '../log.js';
import { decodeJson } from '../store/codec.js';
import { DrainMarks } from './drain-marks.js';
import { ShardLease } from './shard-lease.js';
import { Membership } from './shard-map.js';
import { keysNow } from '../store/kv-keys.js';

export interface NodeInfo {
  node_id: string;
  /** False for a drained node whose lease is gone (stopped, or never came back). */
  live: boolean;
  /** Drained by an operator: owns no shard until undrained. */
  draining: boolean;
  acquired_at: string | null;
  /** The lease's fencing epoch. */
  epoch: number | null;
  drained_at?: string;
}

export class NodeMembership {
  private lease: ShardLease | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;
  private listener: (joined: boolean) => void = () => undefined;

  constructor(
    private readonly kv: KV,
    private readonly nodeId: string,
    private readonly leaseTtlMs: number,
    private readonly log: Logger,
  ) {}

  /**
   * Starts trying to hold this node's lease, retrying in the background until it does. The promise
   * settles after the first try: from then on a key `node.<node_id>` is in the bucket, this node's
   * own or the one its previous run left (which the first try found live), for other nodes to see.
   */
  /** Told each time this node joins or stops being a member (its lease taken, lost, released). */
  onChange(listener: (joined: boolean) => void): void {
    this.listener = listener;
  }

  join(): Promise<void> {
    const attempt = async () => {
      if (this.stopped) return;
      const lease = await ShardLease.acquire(this.kv, `node.${this.nodeId}`, this.nodeId, {
        ttlMs: this.leaseTtlMs,
        safetyMs: Math.floor(this.leaseTtlMs / 4),
        onFence: (reason) => {
          this.log.warn({ event: 'node_lease_lost', reason }, 'this node lost its membership lease; taking it again');
          this.lease = null;
          this.listener(false);
          this.schedule(attempt);
        },
      }).catch(() => null);
      if (this.stopped) {
        await lease?.release();
        return;
      }
      if (lease === null) {
        this.schedule(attempt);
        return;
      }
      this.lease = lease;
      lease.keep();
      this.listener(true);
      this.log.info({ event: 'node_joined', epoch: lease.epoch });
    };
    return attempt();
  }

  private schedule(attempt: () => Promise<void>): void {
    if (this.stopped) return;
    this.retry = setTimeout(() => void attempt(), Math.max(100, Math.floor(this.leaseTtlMs / 3)));
    this.retry.unref();
  }

  get joined(): boolean {
    return this.lease !== null && !this.lease.isFenced;
  }

  /** Leaves at once: the lease is released, so the others see this node gone without waiting. */
  async leave(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    const had = this.lease !== null;
    await this.lease?.release();
    this.lease = null;
    if (had) this.listener(false);
  }

  /** The live nodes as the leases show them, and drained ones (live or not) as the marks do. */
  static async list(leases: KV, cluster: KV): Promise<NodeInfo[]> {
    const [live, marks] = await Promise.all([NodeMembership.live(leases), new DrainMarks(cluster).list()]);
    const nodes = live.map((n) => {
      const mark = marks.get(n.node_id);
      return mark === undefined ? n : { ...n, draining: true, drained_at: mark.drained_at };
    });
    for (const mark of marks.values()) {
      if (!live.some((n) => n.node_id === mark.node_id)) {
        nodes.push({ node_id: mark.node_id, live: false, draining: true, acquired_at: null, epoch: null, drained_at: mark.drained_at });
      }
    }
    return nodes.sort((a, b) => a.node_id.localeCompare(b.node_id));
  }

  /** The members that count for the shard assignment: live nodes, drained ones marked. */
  static async current(leases: KV, cluster: KV): Promise<Membership> {
    const nodes = await NodeMembership.list(leases, cluster);
    return new Membership(nodes.filter((n) => n.live).map((n) => ({ id: n.node_id, draining: n.draining })));
  }

  /** The live nodes, as the leases show them. */
  static async live(kv: KV): Promise<NodeInfo[]> {
    const nodes: NodeInfo[] = [];
    for (const key of await keysNow(kv, 'node.*')) {
      const e = await kv.get(key);
      if (e === null || e.operation !== 'PUT') continue;
      const value = decodeJson(e.value) as { node_id: string; acquired_at: string; released_at?: string };
      if (value.released_at !== undefined) continue;
      nodes.push({ node_id: value.node_id, live: true, draining: false, acquired_at: value.acquired_at, epoch: e.revision });
    }
    return nodes.sort((a, b) => a.node_id.localeCompare(b.node_id));
  }
}
