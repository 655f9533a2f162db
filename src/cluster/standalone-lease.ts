/**
 * The lease `standalone` in af_leases, held by the one node that serves every shard without shard
 * leases (SHARD_LEASES=0). Two such nodes, or one beside nodes that split the shards, would both
 * answer the same requests.
 *
 * Checking for other nodes alone left a race: two nodes started at the same instant each looked,
 * saw nobody, and both served. So each side writes first and looks second: a standalone node takes
 * this lease, then looks for members and shard leases; a node with shard leases takes its shards,
 * then looks for this lease. Both writes go through one stream, so whichever comes second, its
 * writer sees the other's and refuses (at worst both refuse, and say why).
 */
import type { KV } from '@nats-io/kv';
import type { Logger } from '../log.js';
import { ShardLease } from './shard-lease.js';

const KEY = 'standalone';

export class StandaloneLease {
  private stopped = false;
  private retry: NodeJS.Timeout | null = null;

  private constructor(
    private lease: ShardLease | null,
    private readonly kv: KV,
    private readonly nodeId: string,
    private readonly ttlMs: number,
    private readonly log: Logger,
  ) {}

  /** The node serving every shard alone, if any. */
  static async holder(kv: KV): Promise<string | null> {
    return (await ShardLease.holder(kv, KEY))?.node_id ?? null;
  }

  /**
   * Takes the lease, or says who holds it. A lease left by this node's own previous run (a crash,
   * a restart under the same id) is waited out, up to its TTL.
   */
  static async take(kv: KV, nodeId: string, ttlMs: number, log: Logger): Promise<StandaloneLease> {
    const self = new StandaloneLease(null, kv, nodeId, ttlMs, log);
    const deadline = Date.now() + 2 * ttlMs;
    for (;;) {
      const lease = await self.acquire();
      if (lease !== null) {
        self.lease = lease;
        lease.keep();
        return self;
      }
      const holder = await StandaloneLease.holder(kv);
      if (holder !== null && (holder !== nodeId || Date.now() >= deadline)) {
        throw new Error(`another node with SHARD_LEASES=0 is running (${holder}); it serves every shard alone. Stop it first, or start both with SHARD_LEASES=1 to share the shards`);
      }
      await new Promise((r) => setTimeout(r, Math.max(50, Math.floor(ttlMs / 3))));
    }
  }

  private acquire(): Promise<ShardLease | null> {
    return ShardLease.acquire(this.kv, KEY, this.nodeId, {
      ttlMs: this.ttlMs,
      safetyMs: Math.floor(this.ttlMs / 4),
      onFence: (reason) => {
        // Nothing to stop: this node serves without leases. Take it again, so that no other
        // standalone node can start beside this one.
        this.log.warn({ event: 'standalone_lease_lost', reason }, 'this node lost its standalone lease; taking it again');
        this.lease = null;
        this.again();
      },
    }).catch(() => null);
  }

  private again(): void {
    if (this.stopped) return;
    this.retry = setTimeout(
      () => {
        void this.acquire().then(async (lease) => {
          if (this.stopped) {
            await lease?.release();
            return;
          }
          if (lease === null) {
            const holder = await StandaloneLease.holder(this.kv).catch(() => null);
            if (holder !== null && holder !== this.nodeId) {
              this.log.error(
                { event: 'standalone_conflict', holder },
                `another node with SHARD_LEASES=0 (${holder}) started while this one could not renew its lease: both serve every shard; stop one of them`,
              );
            }
            this.again();
            return;
          }
          this.lease = lease;
          lease.keep();
        });
      },
      Math.max(50, Math.floor(this.ttlMs / 3)),
    );
    this.retry.unref();
  }

  async release(): Promise<void> {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    await this.lease?.release();
    this.lease = null;
  }
}
