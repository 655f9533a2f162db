/**
 * Which shards this node serves when nodes split them with leases. A reconcile compares the shards
 * it holds with the target owners (ShardMap over the live, non-drained nodes) and moves towards
 * them; it runs every third of the lease TTL, and at once when the leases bucket or a drain mark
 * changes (a watch), so a move does not wait for the next tick.
 *
 *   not owned ──target is me, lease acquired──▶ taking over ──▶ serving
 *   serving ──target is another node──▶ handing off (drain the subscription, finish in-flight,
 *                                        release with a marker)
 *   serving ──lease fenced (renewal failed)──▶ dropped at once (unsubscribe, forget the actors)
 *
 * Taking a shard from a released marker serves at once: its former holder stopped and flushed.
 * Taking one whose lease expired (a crashed or paused holder) first rewrites each running snapshot
 * of the shard with a revision-checked update, so a holder that still runs fails its next write
 * and drops its actor: at most one node ever writes an activeflow.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Msg, NatsConnection, QueuedIterator, Subscription } from '@nats-io/transport-node';
import type { ActorRegistry } from '../../actors/index.js';
import type { Logger } from '../log.js';
import { shardOf } from '../nats/shard-mapping.js';
import type { SnapshotStore } from '../store/snapshot-store.js';
import { NodeMembership } from './membership-registry.js';
import { ShardLease, type LeaseValue } from './shard-lease.js';
import { assignment } from './shard-map.js';
import { decodeJson } from '../store/codec.js';

export interface OwnershipDeps {
  nc: NatsConnection;
  leases: KV;
  /** `af_cluster`: drain marks. */
  cluster: KV;
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
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

async function inPool<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

export class ShardOwnership {
  private readonly owned = new Map<number, Owned>();
  private readonly taking = new Set<number>();
  private readonly watches: QueuedIterator<KvWatchEntry>[] = [];
  private target: readonly (string | null)[] = [];
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;
  /** Nodes the server reported disconnected: treated as gone, though their leases decide. */
  private readonly suspects = new Map<string, number>();
  moves = 0;

  constructor(private readonly deps: OwnershipDeps) {}

  private get listingBoundMs(): number {
    return Math.max(2_000, this.deps.leaseTtlMs * 2);
  }

  start(): void {
    this.timer = setInterval(() => this.trigger(), Math.max(100, Math.floor(this.deps.leaseTtlMs / 3)));
    this.timer.unref();
    void this.watch(this.deps.leases, '>');
    void this.watch(this.deps.cluster, 'drain.>');
    this.trigger();
  }

  /** Runs a reconcile now, or right after the one in progress. */
  trigger(): void {
    if (this.stopped) return;
    if (this.running !== null) {
      this.again = true;
      return;
    }
    this.running = this.reconcile()
      .catch((e: unknown) => this.deps.log.error({ event: 'reconcile_failed', err: e }))
      .finally(() => {
        this.running = null;
        if (this.again) {
          this.again = false;
          this.trigger();
        }
      });
  }

  /**
   * Changes to leases and drain marks, as they happen. A watch that ends (a server restart) is
   * opened again; meanwhile the periodic reconcile still runs, so nothing depends on it.
   */
  private async watch(kv: KV, key: string): Promise<void> {
    while (!this.stopped) {
      try {
        const iter = await withTimeout(kv.watch({ key, include: 'updates' }), this.listingBoundMs, `watching ${key}`);
        this.watches.push(iter);
        for await (const e of iter) {
          if (this.stopped) break;
          this.onChange(e);
        }
      } catch (e) {
        if (!this.stopped) this.deps.log.debug({ event: 'watch_restarting', key, err: (e as Error).message });
      }
      if (!this.stopped) await new Promise((r) => setTimeout(r, 200));
    }
  }

  private onChange(e: KvWatchEntry): void {
    if (e.key.startsWith('shard.')) {
      if (e.operation !== 'PUT') return this.trigger();
      const value = decodeJson(e.value) as LeaseValue;
      if (value.released_at === undefined) return; // a renewal or an acquisition: nothing to do
      const shard = Number(e.key.slice('shard.'.length));
      // A handed-over shard: take it at once if it is ours, else the target may have changed.
      if (this.target[shard] === this.deps.nodeId) void this.takeOver(shard).catch((err: unknown) => this.deps.log.warn({ event: 'takeover_failed', shard, err }));
      else this.trigger();
      return;
    }
    if (e.key.startsWith('node.')) {
      const id = e.key.slice('node.'.length);
      if (e.operation === 'PUT') {
        this.suspects.delete(id); // it renews: alive after all
        if (!this.target.includes(id)) this.trigger(); // a node we do not count yet joined
      } else {
        this.trigger(); // a node left
      }
      return;
    }
    this.trigger(); // a drain mark
  }

  /**
   * A hint from the server that a node's connection closed: until its lease is renewed or gone,
   * reconcile often, so its shards are taken the moment the lease runs out (the lease decides).
   */
  suspect(nodeId: string): void {
    if (nodeId === this.deps.nodeId || this.stopped) return;
    const until = Date.now() + this.deps.leaseTtlMs + 1_000;
    this.suspects.set(nodeId, until);
    this.deps.log.info({ event: 'node_suspected', suspect: nodeId }, `the server reports node ${nodeId} disconnected; taking its shards as soon as its leases run out`);
    const poll = setInterval(() => {
      if (!this.suspects.has(nodeId) || Date.now() > until || this.stopped) {
        clearInterval(poll);
        this.suspects.delete(nodeId);
        return;
      }
      this.trigger();
    }, 50);
    poll.unref();
  }

  owns(shard: number): boolean {
    const o = this.owned.get(shard);
    return o !== undefined && !o.lease.isFenced;
  }

  get ownedCount(): number {
    return this.owned.size;
  }

  get ownedShards(): number[] {
    return [...this.owned.keys()].sort((a, b) => a - b);
  }

  /** One step towards the target: hand off what is no longer ours, then take what is. */
  async reconcile(): Promise<void> {
    if (this.stopped) return;
    const membership = await withTimeout(NodeMembership.current(this.deps.leases, this.deps.cluster), this.listingBoundMs, 'listing the live nodes');
    const eligible = membership.eligible.filter((id) => !this.suspects.has(id));
    const drained = membership.members.some((m) => m.id === this.deps.nodeId && m.draining);
    // This node counts itself while it is joined, even if the listing missed its lease.
    if (this.deps.membership.joined && !drained && !eligible.includes(this.deps.nodeId)) eligible.push(this.deps.nodeId);
    if (!this.deps.membership.joined && !eligible.includes(this.deps.nodeId)) {
      this.target = assignment(this.deps.shardCount, eligible.sort());
      return; // not a member yet (or any more): take nothing; keep what we have until we join
    }
    this.target = assignment(this.deps.shardCount, eligible.sort());
    await Promise.all([...this.owned.keys()].filter((s) => this.target[s] !== this.deps.nodeId).map((s) => this.handOff(s)));
    const wanted = this.target.flatMap((owner, shard) => (owner === this.deps.nodeId && !this.owned.has(shard) && !this.taking.has(shard) ? [shard] : []));
    if (wanted.length > 0) await this.takeOverMany(wanted);
  }

  /** A single shard (one handed over to us just now). */
  private takeOver(shard: number): Promise<void> {
    return this.takeOverMany([shard]);
  }

  /**
   * Acquires the leases it can, fences the activeflows of the shards nobody handed over (one key
   * listing for many shards at once, as at a cluster's start or after a crash), then serves.
   */
  private async takeOverMany(shards: readonly number[]): Promise<void> {
    const mine = shards.filter((s) => !this.taking.has(s) && !this.owned.has(s));
    for (const s of mine) this.taking.add(s);
    const acquired = new Map<number, ShardLease>();
    try {
      await inPool(mine, 16, async (shard) => {
        if (this.stopped) return;
        const lease = await ShardLease.acquire(this.deps.leases, `shard.${shard}`, this.deps.nodeId, {
          ttlMs: this.deps.leaseTtlMs,
          safetyMs: Math.floor(this.deps.leaseTtlMs / 4),
          onFence: (reason) => this.drop(shard, reason),
        });
        if (lease === null) return; // still held: its owner hands it over, or its lease expires
        lease.keep();
        acquired.set(shard, lease);
      });
      // Nobody handed these over (their holder crashed or paused): fence every running activeflow.
      const unclean = [...acquired].filter(([, l]) => !l.handedOver).map(([s]) => s);
      const fenced = new Map<number, string[]>();
      if (unclean.length > 0) {
        try {
          const listing = unclean.length <= 4
            ? Promise.all(unclean.map(async (s) => (await this.deps.snapshots.runningIdsOfShard(s)).map((id) => [s, id] as const))).then((l) => l.flat())
            : this.deps.snapshots.runningIds(new Set(unclean)).then((l) => l.map((id) => [shardOf(id, this.deps.shardCount), id] as const));
          const ids = await withTimeout(listing, this.listingBoundMs, `listing ${unclean.length} shards`);
          await withTimeout(inPool(ids, 32, ([, id]) => this.deps.snapshots.fence(id)), this.listingBoundMs * 4, 'fencing');
          for (const s of unclean) fenced.set(s, []);
          for (const [s, id] of ids) fenced.get(s)!.push(id);
        } catch (e) {
          // Not taken over: release without a marker, so the next try fences again.
          await Promise.all(unclean.map((s) => acquired.get(s)!.release()));
          for (const s of unclean) acquired.delete(s);
          this.deps.log.warn({ event: 'takeover_failed', shards: unclean.length, err: e });
        }
      }
      for (const [shard, lease] of acquired) {
        if (lease.isFenced || this.stopped) {
          await lease.release({ handOver: true }); // fenced, or handed to us: nobody else can write
          continue;
        }
        const sub = this.deps.nc.subscribe(`activeflow.shard.${shard}.*.*`, { callback: (_e, msg) => this.deps.serve(msg) });
        this.owned.set(shard, { lease, sub });
        this.moves++;
        const ids = fenced.get(shard) ?? null;
        this.deps.log.info({ event: 'shard_acquired', shard, handed_over: lease.handedOver, fenced: ids?.length ?? 0, epoch: lease.epoch });
        // Load each one now: republishes events a crash left out, resumes cycles that were waiting.
        void this.warm(shard, ids);
      }
    } finally {
      for (const s of mine) this.taking.delete(s);
    }
  }

  private async warm(shard: number, known: string[] | null): Promise<void> {
    try {
      const ids = known ?? await withTimeout(this.deps.snapshots.runningIdsOfShard(shard), this.listingBoundMs, `listing shard ${shard}`);
      await inPool(ids, 4, async (id) => {
        if (this.owns(shard)) await this.deps.registry.get(id).warm().catch((e: unknown) => this.deps.log.error({ event: 'recovery_failed', activeflow_id: id, err: e }));
      });
    } catch (e) {
      this.deps.log.warn({ event: 'warm_failed', shard, err: e }, 'shard not warmed; its activeflows load on their next request');
    }
  }

  /**
   * Graceful: stop taking requests (drain the subscription, so messages already on their way are
   * still answered), let in-flight ones finish, then release with a marker for the next owner.
   */
  private async handOff(shard: number): Promise<void> {
    const o = this.owned.get(shard);
    if (o === undefined) return;
    await o.sub.drain().catch(() => o.sub.unsubscribe());
    this.owned.delete(shard);
    await this.deps.registry.release((id) => shardOf(id, this.deps.shardCount) === shard);
    await o.lease.release({ handOver: true });
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

  /** Hands every shard over (a stopping node; it left the membership first). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watches) w.stop();
    await this.running;
    while (this.taking.size > 0) await new Promise((r) => setTimeout(r, 10));
    await Promise.all([...this.owned.keys()].map((s) => this.handOff(s)));
  }
}
