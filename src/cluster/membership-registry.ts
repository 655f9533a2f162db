/**
 * Membership: each node holds a lease `node.<node_id>` in `af_leases` while it runs. The live
 * nodes are the keys present (a dead node's lease vanishes with the bucket's TTL; a stopped node
 * releases it at once). The lease is taken in the background, so a node restarting under the same
 * id, whose previous lease has not expired yet, starts serving at once and joins when it can.
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from '../log.js';
import { decodeJson } from '../store/codec.js';
import { ShardLease } from './shard-lease.js';

export interface NodeInfo {
  node_id: string;
  acquired_at: string;
  /** The lease's fencing epoch. */
  epoch: number;
}

export class NodeMembership {
  private lease: ShardLease | null = null;
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly kv: KV,
    private readonly nodeId: string,
    private readonly leaseTtlMs: number,
    private readonly log: Logger,
  ) {}

  /** Starts trying to hold this node's lease; never waits for it. */
  join(): void {
    const attempt = async () => {
      if (this.stopped) return;
      const lease = await ShardLease.acquire(this.kv, `node.${this.nodeId}`, this.nodeId, {
        ttlMs: this.leaseTtlMs,
        safetyMs: Math.floor(this.leaseTtlMs / 4),
        onFence: (reason) => {
          this.log.warn({ event: 'node_lease_lost', reason }, 'this node lost its membership lease; taking it again');
          this.lease = null;
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
      this.log.info({ event: 'node_joined', epoch: lease.epoch });
    };
    void attempt();
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
    await this.lease?.release();
    this.lease = null;
  }

  /** The live nodes, as the leases show them. */
  static async live(kv: KV): Promise<NodeInfo[]> {
    const nodes: NodeInfo[] = [];
    for await (const key of await kv.keys('node.*')) {
      const e = await kv.get(key);
      if (e === null || e.operation !== 'PUT') continue;
      const value = decodeJson(e.value) as { node_id: string; acquired_at: string };
      nodes.push({ node_id: value.node_id, acquired_at: value.acquired_at, epoch: e.revision });
    }
    return nodes.sort((a, b) => a.node_id.localeCompare(b.node_id));
  }
}
