/**
 * Which shards this node serves, when nodes split them (SHARD_LEASES=1): every reconcile compares
 * the shards it holds with the target owners (ShardMap over the live nodes) and moves towards them.
 *
 *   not owned ──target is me, lease acquired──▶ taking over ──every snapshot rewritten──▶ serving
 *   serving ──target is another node──▶ handing off (unsubscribe, finish in-flight, release)
 *   serving ──lease fenced (renewal failed)──▶ dropped at once (unsubscribe, forget the actors)
 *
 * Taking over rewrites each running snapshot of the shard with a revision-checked update before
 * serving: a former owner that still runs (paused, partitioned) fails its next write and drops
 * its actor, so at most one node ever writes an activeflow.
 */
import type { KV } from '@nats-io/kv';
import type { Msg, NatsConnection, Subscription } from '@nats-io/transport-node';
import type { ActorRegistry } from '../../actors/index.js';
import type { Logger } from '../log.js';
import { shardOf } from '../nats/shard-mapping.js';
import type { SnapshotStore } from '../store/snapshot-store.js';
import { NodeMembership } from './membership-registry.js';
import { ShardLease } from './shard-lease.js';
import { assignment, Membership } from './shard-map.js';

export interface OwnershipDeps {
  nc: NatsConnection;
  leases: KV;
  snapshots: SnapshotStore;
  registry: ActorRegistry;
  membership: NodeMembership;
  nodeId: string;
  shardCount: number;
  leaseTtlMs: number;
  log: Logger;
  serve: (msg: Msg) => void;
}

interface Owned {
  lease: ShardLease;
  sub: Subscription;
}

/** A key listing can hang (a consumer creation that never answers): reconcile gives up on it. */
function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

export class ShardOwnership {
  private readonly owned = new Map<number, Owned>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private stopped = false;
  moves = 0;

  constructor(private readonly deps: OwnershipDeps) {}

  start(): void {
    const tick = () => {
      if (this.running === null && !this.stopped) {
        this.running = this.reconcile().catch((e: unknown) => this.deps.log.error({ event: 'reconcile_failed', err: e })).finally(() => (this.running = null));
      }
    };
    this.timer = setInterval(tick, Math.max(100, Math.floor(this.deps.leaseTtlMs / 3)));
    this.timer.unref();
    tick();
  }

  owns(shard: number): boolean {
    const o = this.owned.get(shard);
    return o !== undefined && !o.lease.isFenced;
  }

  get ownedCount(): number {
    return this.owned.size;
  }

  /** One step towards the target: hand off what is no longer ours, then take what is. */
  async reconcile(): Promise<void> {
    if (!this.deps.membership.joined) return;
    const bound = Math.max(2_000, this.deps.leaseTtlMs * 2);
    const live = (await withTimeout(NodeMembership.live(this.deps.leases), bound, 'listing the live nodes')).map((n) => n.node_id);
    if (!live.includes(this.deps.nodeId)) live.push(this.deps.nodeId);
    const membership = new Membership(live.map((id) => ({ id, draining: false }))); // drain comes with the admin verbs
    const target = assignment(this.deps.shardCount, membership.eligible);
    await Promise.all([...this.owned.keys()].filter((s) => target[s] !== this.deps.nodeId).map((s) => this.handOff(s)));
    const wanted = target.map((owner, shard) => (owner === this.deps.nodeId && !this.owned.has(shard) ? shard : -1)).filter((s) => s >= 0);
    let next = 0;
    const worker = async () => {
      while (next < wanted.length && !this.stopped) await this.takeOver(wanted[next++]!);
    };
    await Promise.all(Array.from({ length: 8 }, worker));
  }

  private async takeOver(shard: number): Promise<void> {
    const lease = await ShardLease.acquire(this.deps.leases, `shard.${shard}`, this.deps.nodeId, {
      ttlMs: this.deps.leaseTtlMs,
      safetyMs: Math.floor(this.deps.leaseTtlMs / 4),
      onFence: (reason) => this.drop(shard, reason),
    });
    if (lease === null) return; // still held: its owner hands it over, or its lease expires
    lease.keep();
    // Fence any former owner: rewrite every running snapshot of the shard with our revision.
    let ids: string[];
    try {
      ids = await withTimeout(this.deps.snapshots.runningIds(new Set([shard])), Math.max(2_000, this.deps.leaseTtlMs * 2), `listing shard ${shard}`);
      for (const id of ids) await this.deps.snapshots.fence(id);
    } catch (e) {
      await lease.release(); // not taken over: let the next reconcile try again
      throw e;
    }
    if (lease.isFenced || this.stopped) {
      await lease.release();
      return;
    }
    const sub = this.deps.nc.subscribe(`activeflow.shard.${shard}.*.*`, { callback: (_e, msg) => this.deps.serve(msg) });
    this.owned.set(shard, { lease, sub });
    // Load each one now: republishes events a crash left out, resumes cycles that were waiting.
    for (const id of ids) void this.deps.registry.get(id).warm().catch((e: unknown) => this.deps.log.error({ event: 'recovery_failed', activeflow_id: id, err: e }));
    this.moves++;
    this.deps.log.info({ event: 'shard_acquired', shard, activeflows: ids.length, epoch: lease.epoch });
  }

  /** Graceful: stop taking requests, let in-flight ones finish, then release the lease. */
  private async handOff(shard: number): Promise<void> {
    const o = this.owned.get(shard);
    if (o === undefined) return;
    this.owned.delete(shard);
    o.sub.unsubscribe();
    await this.deps.registry.release((id) => shardOf(id, this.deps.shardCount) === shard);
    await o.lease.release();
    this.moves++;
    this.deps.log.info({ event: 'shard_released', shard });
  }

  /** Fenced: the lease may be someone else's already, so stop at once. */
  private drop(shard: number, reason: string): void {
    const o = this.owned.get(shard);
    if (o === undefined) return;
    this.owned.delete(shard);
    o.sub.unsubscribe();
    void this.deps.registry.release((id) => shardOf(id, this.deps.shardCount) === shard);
    this.deps.log.warn({ event: 'shard_fenced', shard, reason });
  }

  /** Hands every shard over (a stopping node). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.running;
    await Promise.all([...this.owned.keys()].map((s) => this.handOff(s)));
  }
}
