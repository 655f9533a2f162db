/**
 * Which shards this node serves when nodes split them with leases. A reconcile compares the shards
 * it holds with the target owners (ShardMap over the live, non-drained nodes) and moves towards
 * them; it runs every third of the lease TTL, and at once when a member joins or leaves or a drain
 * mark changes (watches on `node.*` and `drain.*`), so a move does not wait for the next tick. A
 * node that hands a shard over also announces it (`activeflow.cluster.v1.released`): the next
 * owner takes it the moment it hears. (Watching `shard.*` instead would deliver every renewal of
 * every shard lease to every node.) An announcement missed is found by the next reconcile.
 *
 *   not owned ──target is me, lease acquired──▶ taking over ──▶ serving
 *   serving ──target is another node──▶ handing off (drain the subscription, finish in-flight,
 *                                        transfer the lease to that node, or leave a marker)
 *   not owned ──a lease transferred here is announced──▶ serving (renews at once to confirm)
 *   serving ──lease fenced (renewal failed)──▶ dropped at once (unsubscribe, forget the actors)
 *
 * Taking a shard by transfer or from a released marker serves at once: its former holder stopped
 * and flushed.
 * Taking one whose lease expired (a crashed or paused holder) also serves at once, but each of its
 * running activeflows is rewritten with a revision-checked update before its first use here (on
 * load, through its mailbox), and a sweep loads them all: a holder that still runs fails its next
 * write and drops its actor, so at most one node ever writes an activeflow. Fencing per activeflow
 * instead of the whole shard up front keeps a crash's failover to the lease TTL plus one write.
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
import { SUBJECTS } from '../api/subjects.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import { inPool, Slots, withTimeout } from './async-limits.js';
import { keysNow } from '../store/kv-keys.js';
import { ShardEventBatch } from './shard-event-batch.js';
import { backoffDelay, type Backoff } from '../retry.js';

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

/** Handoffs one node runs at once (see ShardOwnership.handOffSlots). */
const HANDOFFS_AT_ONCE = 2;

/** How often the shards of a node the server reported disconnected are tried while its leases run out. */
const SUSPECT_POLL_MS = 50;

/** Between reopenings of a membership or drain watch that ended: soon, then less often. */
const WATCH_REOPEN: Backoff = { firstMs: 200, maxMs: 2_000 };

/** A handed-over shard is warmed this long after the move, off its critical path. */
const WARM_DELAY_MS = 2_000;

/**
 * A shard taken after a crash is swept (each activeflow loaded and fenced) this long after it is
 * served: the callers' first requests, which fence what they load anyway, go first.
 */
const SWEEP_DELAY_MS = 250;

export class ShardOwnership {
  private readonly owned = new Map<number, Owned>();
  private readonly taking = new Set<number>();
  /** Takeovers in progress: a stop waits for them (each one, seeing the stop, passes its shard on). */
  private readonly takeovers = new Set<Promise<void>>();
  /** Released markers announced, whoever should take them: a target change may make them ours. */
  private readonly markers = new Map<number, { revision: number; marker: LeaseValue }>();
  /**
   * Who holds each shard's lease, as far as this node knows (listed once at start, then kept from
   * announcements and its own moves). A fast reconcile does not try to take a shard a live node
   * holds: its release will be announced.
   */
  private readonly holders = new Map<number, string>();
  private announcements: Subscription | null = null;
  /** Shards taken from a holder that did not hand them over, whose sweep has not finished. */
  private readonly unfenced = new Set<number>();
  /** Shards being handed off. */
  private readonly leaving = new Map<number, Promise<void>>();
  /**
   * A few handoffs at a time: each shard's pause is its own stop, release, and the new owner's
   * claim; dozens at once queue behind each other at the server and every pause grows.
   */
  private readonly handOffSlots = new Slots(HANDOFFS_AT_ONCE);
  private readonly watches: QueuedIterator<KvWatchEntry>[] = [];
  private target: readonly (string | null)[] = [];
  /** Shards adopted from a node the view still named as their owner, and until when not to hand them back. */
  private readonly keptFrom = new Map<number, { from: string; until: number }>();
  /** When the watch last saw each node renew its membership lease. */
  private readonly renewedAt = new Map<string, number>();
  /** Changes the watch made to the membership view (a listing that overlaps one is discarded). */
  private viewChanges = 0;
  /** The membership as last listed, kept current by the watch between listings. */
  private readonly live = new Set<string>();
  private readonly drained = new Set<string>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again: 'none' | 'fast' | 'full' = 'none';
  private stopped = false;
  /** Nodes the server reported disconnected: treated as gone, though their leases decide. */
  private readonly suspects = new Map<string, number>();
  moves = 0;

  /** shards_acquired and shards_released lines, a batch at a time. */
  private readonly batch: ShardEventBatch;

  constructor(private readonly deps: OwnershipDeps) {
    this.batch = new ShardEventBatch(deps.log);
  }

  private get listingBoundMs(): number {
    return Math.max(2_000, this.deps.leaseTtlMs * 2);
  }

  /**
   * Watches, lists the members, then reconciles on a timer. Call it before this node joins: when
   * the others see it join and hand it shards, it already knows the membership and takes each one
   * the moment it is released.
   */
  async start(): Promise<void> {
    this.announcements = this.deps.nc.subscribe(SUBJECTS.clusterReleased, {
      callback: (_e, msg) => {
        try {
          const r = decodeJson(msg.data) as { shard: number; revision: number; marker: LeaseValue };
          this.onReleased(r.shard, r.revision, r.marker);
        } catch (e) {
          this.deps.log.debug({ event: 'announcement_unreadable', err: e });
        }
      },
    });
    const watching = [this.watch(this.deps.leases, 'node.*'), this.watch(this.deps.cluster, 'drain.>')];
    await Promise.race([Promise.all(watching.map((w) => w.ready)), new Promise((r) => setTimeout(r, this.listingBoundMs))]);
    await withTimeout(this.listHolders(), this.listingBoundMs, 'listing the shard leases').catch((e: unknown) => this.deps.log.warn({ event: 'holders_unlisted', err: e }));
    await this.reconcile(true).catch((e: unknown) => this.deps.log.warn({ event: 'reconcile_failed', err: e }));
    this.timer = setInterval(() => this.trigger('full'), Math.max(100, Math.floor(this.deps.leaseTtlMs / 3)));
    this.timer.unref();
  }

  private async listHolders(): Promise<void> {
    const keys = await keysNow(this.deps.leases, 'shard.*');
    await inPool(keys, 32, async (key) => {
      const holder = await ShardLease.holder(this.deps.leases, key);
      if (holder !== null) this.holders.set(Number(key.slice('shard.'.length)), holder.node_id);
    });
  }

  /**
   * Runs a reconcile now, or right after the one in progress. `full` lists the members first (the
   * periodic one: only a listing sees a lease that expired); `fast` uses the view the watch keeps.
   */
  trigger(kind: 'fast' | 'full' = 'full'): void {
    if (this.stopped) return;
    if (this.running !== null) {
      if (this.again !== 'full') this.again = kind;
      return;
    }
    this.running = this.reconcile(kind === 'full')
      .catch((e: unknown) => this.deps.log.error({ event: 'reconcile_failed', err: e }))
      .finally(() => {
        this.running = null;
        const again = this.again;
        this.again = 'none';
        if (again !== 'none') this.trigger(again);
      });
  }

  /**
   * Changes to leases and drain marks, as they happen. A watch that ends (a server restart) is
   * opened again; meanwhile the periodic reconcile still runs, so nothing depends on it.
   */
  private watch(kv: KV, key: string): { ready: Promise<void> } {
    let ready!: () => void;
    const readyP = new Promise<void>((r) => (ready = r));
    void (async () => {
      let failures = 0;
      while (!this.stopped) {
        try {
          const iter = await withTimeout(kv.watch({ key, include: 'updates' }), this.listingBoundMs, `watching ${key}`);
          this.watches.push(iter);
          ready();
          for await (const e of iter) {
            if (this.stopped) break;
            failures = 0;
            this.onChange(e);
          }
        } catch (e) {
          if (!this.stopped) this.deps.log.debug({ event: 'watch_restarting', key, err: (e as Error).message });
        }
        if (!this.stopped) await new Promise((r) => setTimeout(r, backoffDelay(WATCH_REOPEN, ++failures)));
      }
    })();
    return { ready: readyP };
  }

  private onChange(e: KvWatchEntry): void {
    if (e.key.startsWith('node.')) {
      const id = e.key.slice('node.'.length);
      if (e.operation === 'PUT' && (decodeJson(e.value) as LeaseValue).released_at === undefined) {
        this.suspects.delete(id); // it renews: alive after all
        this.renewedAt.set(id, Date.now());
        if (this.live.has(id)) return;
        this.live.add(id); // a node joined
      } else {
        this.renewedAt.delete(id);
        this.live.delete(id); // a node left
      }
    } else if (e.key.startsWith('drain.')) {
      const id = e.key.slice('drain.'.length);
      if (e.operation === 'PUT') this.drained.add(id);
      else this.drained.delete(id);
    }
    this.viewChanges++;
    // At once, not after a reconcile: hand off what is no longer ours, take what was handed over.
    this.recomputeTarget();
    this.applyTarget();
    this.trigger('fast');
  }

  /**
   * A shard handed over (announced by its former owner). Transferred to this node: serve it now.
   * Released with a marker: if ours, take it with one write.
   */
  private onReleased(shard: number, revision: number, marker: LeaseValue): void {
    if (marker.transferred_from !== undefined) {
      if (marker.node_id === this.deps.nodeId) this.adopt(shard, revision, marker);
      else if (!this.owned.has(shard)) this.holders.set(shard, marker.node_id);
      return;
    }
    if (this.stopped || this.owned.has(shard)) return;
    this.holders.delete(shard);
    this.markers.set(shard, { revision, marker });
    // If an attempt is in progress (it saw the lease still held), it takes the marker when it ends.
    if (this.target[shard] === this.deps.nodeId) this.takeMarked(shard);
  }

  private applyTarget(): void {
    if (this.stopped) return;
    for (const shard of this.owned.keys()) if (this.target[shard] !== this.deps.nodeId) void this.handOff(shard);
    for (const shard of this.markers.keys()) if (this.target[shard] === this.deps.nodeId) this.takeMarked(shard);
  }

  /**
   * A hint from the server that a node's connection closed: until its lease is renewed or gone,
   * reconcile often, so its shards are taken the moment the lease runs out (the lease decides).
   */
  suspect(nodeId: string): void {
    if (nodeId === this.deps.nodeId || this.stopped) return;
    const until = Date.now() + this.deps.leaseTtlMs + 1_000;
    this.suspects.set(nodeId, until);
    this.claimSuspects();
    this.deps.log.info({ event: 'node_suspected', suspect: nodeId }, `the server reports node ${nodeId} disconnected; taking its shards as soon as its leases run out`);
    const poll = setInterval(() => {
      if (!this.suspects.has(nodeId) || Date.now() > until || this.stopped) {
        clearInterval(poll);
        this.suspects.delete(nodeId);
        return;
      }
      this.claimSuspects(); // tries its shards again: taken the moment each lease runs out
    }, SUSPECT_POLL_MS);
    poll.unref();
  }

  /** Logs the shards taken and released so far now, instead of at the end of their batch window. */
  flushLog(): void {
    this.batch.flush();
  }

  owns(shard: number): boolean {
    const o = this.owned.get(shard);
    return o !== undefined && !o.lease.isFenced;
  }

  /** Seconds since the least recently confirmed of this node's shard leases (0 with none). */
  get renewalLagSeconds(): number {
    let oldest = Infinity;
    for (const o of this.owned.values()) oldest = Math.min(oldest, o.lease.confirmedAtMs);
    return oldest === Infinity ? 0 : Math.max(0, (Date.now() - oldest) / 1000);
  }

  get ownedCount(): number {
    return this.owned.size;
  }

  get ownedShards(): number[] {
    return [...this.owned.keys()].sort((a, b) => a - b);
  }

  /** One step towards the target: hand off what is no longer ours, then take what is. */
  async reconcile(full = true): Promise<void> {
    if (this.stopped) return;
    if (full) {
      const changesBefore = this.viewChanges;
      const membership = await withTimeout(NodeMembership.current(this.deps.leases, this.deps.cluster), this.listingBoundMs, 'listing the live nodes');
      if (this.viewChanges !== changesBefore) {
        // The watch changed the view while the listing ran: the listing may predate that change
        // (a drain mark written meanwhile), and must not undo it. List again right after.
        this.again = 'full';
      } else {
        this.live.clear();
        this.drained.clear();
        for (const m of membership.members) {
          this.live.add(m.id);
          if (m.draining) this.drained.add(m.id);
        }
        // A key listing can miss a key renewed while it runs: a node the watch saw renew within
        // the TTL is alive whatever the listing says (its expiry is what the listing is for).
        const fresh = Date.now() - this.deps.leaseTtlMs;
        for (const [id, at] of this.renewedAt) {
          if (at >= fresh) this.live.add(id);
          else this.renewedAt.delete(id);
        }
      }
    }
    this.recomputeTarget();
    // Not a member yet (or any more), as this node and the others see it: take nothing.
    if (!this.deps.membership.joined && !this.live.has(this.deps.nodeId)) return;
    await Promise.all([...this.owned.keys()].filter((s) => this.target[s] !== this.deps.nodeId).map((s) => this.handOff(s)));
    // A fast reconcile leaves alone what a live node holds (its release will be announced); a full
    // one tries everything (only a failed create tells that a lease expired).
    const worth = this.wanted(!full);
    if (worth.length > 0) await this.takeOverMany(worth);
  }

  /** Shards the target gives this node that it does not hold (nor is taking), minus, if `skipHeld`, those a live node holds. */
  private wanted(skipHeld: boolean): number[] {
    return this.target.flatMap((owner, shard) => {
      if (owner !== this.deps.nodeId || this.owned.has(shard) || this.taking.has(shard)) return [];
      const holder = this.holders.get(shard);
      const held = holder !== undefined && holder !== this.deps.nodeId && this.live.has(holder) && !this.suspects.has(holder);
      return skipHeld && held ? [] : [shard];
    });
  }

  /**
   * Tries the shards of suspected nodes now, beside any reconcile in progress (one can wait up to
   * its listing's deadline): a failover must not queue behind a slow listing.
   */
  private claimSuspects(): void {
    if (this.stopped || (!this.deps.membership.joined && !this.live.has(this.deps.nodeId))) return;
    this.recomputeTarget();
    const shards = this.wanted(true);
    if (shards.length > 0) void this.takeOverMany(shards).catch((e: unknown) => this.deps.log.warn({ event: 'takeover_failed', err: e }));
  }

  private recomputeTarget(): void {
    const eligible = [...this.live].filter((id) => !this.drained.has(id) && !this.suspects.has(id));
    // This node counts itself while it is joined, even if the listing missed its lease.
    if (this.deps.membership.joined && !this.drained.has(this.deps.nodeId) && !eligible.includes(this.deps.nodeId)) eligible.push(this.deps.nodeId);
    this.target = assignment(this.deps.shardCount, eligible.sort());
  }

  private takeMarked(shard: number): void {
    const seen = this.markers.get(shard);
    if (seen === undefined || this.taking.has(shard) || this.owned.has(shard)) return;
    this.markers.delete(shard);
    if (this.stopped && seen.marker.transferred_from !== undefined && seen.marker.node_id === this.deps.nodeId) {
      this.adopt(shard, seen.revision, seen.marker); // passes it on
      return;
    }
    void this.takeOverMany([shard], new Map([[shard, seen]])).catch((err: unknown) => this.deps.log.warn({ event: 'takeover_failed', shard, err }));
  }

  /**
   * Acquires the leases it can, fences the activeflows of the shards nobody handed over (one key
   * listing for many shards at once, as at a cluster's start or after a crash), then serves.
   */
  private takeOverMany(shards: readonly number[], markers?: Map<number, { revision: number; marker: LeaseValue }>): Promise<void> {
    const p = this.takeOver(shards, markers);
    this.takeovers.add(p);
    void p.finally(() => this.takeovers.delete(p)).catch(() => undefined);
    return p;
  }

  private async takeOver(shards: readonly number[], markers?: Map<number, { revision: number; marker: LeaseValue }>): Promise<void> {
    const mine = shards.filter((s) => !this.taking.has(s) && !this.owned.has(s));
    for (const s of mine) this.taking.add(s);
    try {
      await inPool(mine, 64, async (shard) => {
        if (this.stopped) return;
        const options = { ttlMs: this.deps.leaseTtlMs, safetyMs: Math.floor(this.deps.leaseTtlMs / 4), onFence: (reason: string) => this.drop(shard, reason) };
        const seen = markers?.get(shard);
        const lease =
          seen !== undefined
            ? await ShardLease.takeReleased(this.deps.leases, `shard.${shard}`, this.deps.nodeId, seen.revision, seen.marker, options)
            : await ShardLease.acquire(this.deps.leases, `shard.${shard}`, this.deps.nodeId, options);
        if (lease === null) {
          // Still held: its owner hands it over (the watch brings the marker), or its lease expires.
          this.taking.delete(shard);
          this.takeMarked(shard);
          return;
        }
        if (this.target[shard] !== this.deps.nodeId && !this.stopped) {
          await this.passOn(shard, lease); // the target moved on while this node was taking it
          return;
        }
        lease.keep();
        await this.serveShard(shard, lease);
      });
    } finally {
      for (const s of mine) this.taking.delete(s);
    }
  }

  /**
   * Serves a shard whose lease was transferred to this node, with no write first (the former
   * owner's was the claim). A node that is stopping, or whose target for the shard is another
   * node, passes it on instead (so it neither serves what it should not nor waits out a TTL).
   */
  private adopt(shard: number, revision: number, transferred: LeaseValue): void {
    if (this.owned.has(shard)) return;
    if (this.taking.has(shard)) {
      // An attempt of our own is on its way; when it fails (it saw the former holder) it takes
      // this transfer as a marker, with one revision-checked write.
      this.markers.set(shard, { revision, marker: transferred });
      return;
    }
    const options = { ttlMs: this.deps.leaseTtlMs, safetyMs: Math.floor(this.deps.leaseTtlMs / 4), onFence: (reason: string) => this.drop(shard, reason) };
    const lease = ShardLease.adopt(this.deps.leases, `shard.${shard}`, this.deps.nodeId, revision, transferred, options);
    // A transfer from the very node the target names means that node is leaving (its drain mark or
    // its leave has not reached this node's view yet: the announcement is quicker than the watch).
    // Serve it, rather than hand it straight back for the leaving node to pass on again.
    const target = this.target[shard];
    const leaving = target !== undefined && target !== null && target === transferred.transferred_from;
    if (leaving) this.keptFrom.set(shard, { from: transferred.transferred_from!, until: Date.now() + this.deps.leaseTtlMs });
    if (this.stopped || (target !== this.deps.nodeId && !leaving)) {
      void this.passOn(shard, lease);
      return;
    }
    lease.keep();
    void lease.renew(); // confirms it, and puts it in this node's name
    void this.serveShard(shard, lease);
  }

  /**
   * A lease this node got on a view it no longer shares (it is stopping or drained, or the target
   * moved on while it was taking it): passed straight on, to the shard's target if there is one,
   * without serving. A handed-over lease stays handed over (its stop time travels with it).
   */
  private async passOn(shard: number, lease: ShardLease): Promise<void> {
    // A stopping node has left its own view (stop() drops itself from the members first), so its
    // target names the next owner among the others: transferred there, not left as a marker.
    const to = this.nextOwner(shard);
    if (!lease.handedOver) {
      await lease.release(); // taken after a crash: nothing to vouch for; the next owner fences
      return;
    }
    const stopped = lease.previous?.stopped_at;
    const released = await lease.release({ handOver: true, ...(stopped === undefined ? {} : { stoppedAt: new Date(stopped) }), ...(to === undefined ? {} : { to }) });
    if (released === null) return;
    if (to !== undefined) this.holders.set(shard, to);
    this.deps.nc.publish(SUBJECTS.clusterReleased, encodeJson({ shard, ...released }));
    this.deps.log.info({ event: 'shard_passed_on', shard, to: to ?? null });
  }

  /** The live node other than this one that the target gives a shard to, if any: where a handoff transfers it. */
  private nextOwner(shard: number): string | undefined {
    const next = this.target[shard];
    return next !== null && next !== undefined && next !== this.deps.nodeId && this.live.has(next) ? next : undefined;
  }

  /** Whether an activeflow must be fenced before its first use here (see the top of this file). */
  mustFence(activeflowId: string): boolean {
    return this.unfenced.size > 0 && this.unfenced.has(shardOf(activeflowId, this.deps.shardCount));
  }

  /** Subscribes to a shard whose lease is ours. */
  private async serveShard(shard: number, lease: ShardLease): Promise<void> {
    if (lease.isFenced || this.stopped) {
      await lease.release({ handOver: lease.handedOver }); // not served: as clean as we found it
      return;
    }
    if (!lease.handedOver) this.unfenced.add(shard);
    const sub = this.deps.nc.subscribe(`activeflow.shard.${shard}.*.*`, { callback: (_e, msg) => this.deps.serve(msg) });
    this.owned.set(shard, { lease, sub });
    this.holders.set(shard, this.deps.nodeId);
    this.markers.delete(shard);
    this.moves++;
    // A handed-over shard was unserved from its former owner's stop to now (same-clock caveat).
    const stopped = lease.previous?.stopped_at;
    const pauseMs = stopped === undefined ? undefined : Date.now() - Date.parse(stopped);
    this.batch.add('shards_acquired', {
      shard,
      handed_over: lease.handedOver,
      epoch: lease.epoch,
      ...(pauseMs === undefined ? {} : { pause_ms: pauseMs, from: lease.previous!.node_id }),
    });
    // Load each one: fences it, republishes events a crash left out, resumes cycles that were
    // waiting. Off the critical path: a handed-over shard has nothing to repair, and after a crash
    // the callers' own requests come first.
    setTimeout(() => void this.warm(shard), lease.handedOver ? WARM_DELAY_MS : SWEEP_DELAY_MS).unref();
  }

  private async warm(shard: number): Promise<void> {
    try {
      const ids = await withTimeout(this.deps.snapshots.runningIdsOfShard(shard), this.listingBoundMs, `listing shard ${shard}`);
      let failed = 0;
      await inPool(ids, 2, async (id) => {
        if (this.owns(shard)) {
          await this.deps.registry
            .get(id)
            .warm()
            .catch((e: unknown) => {
              failed++;
              this.deps.log.error({ event: 'recovery_failed', activeflow_id: id, err: e });
            });
        }
      });
      // Every running activeflow of the shard is fenced now (or fences on its next load).
      if (failed === 0 && this.owns(shard)) this.unfenced.delete(shard);
    } catch (e) {
      this.deps.log.warn({ event: 'warm_failed', shard, err: e }, 'shard not warmed; its activeflows load (and fence) on their next request');
    }
  }

  /**
   * Graceful: stop taking the shard's requests, let the ones already started finish, then release
   * with a marker and announce it. The subscription is drained in the background: requests the
   * server had already sent before it saw the unsubscribe are answered "moving, retry" without
   * touching anything, so the release need not wait for them to be read (under load that backlog
   * held a handoff up to a quarter of a second).
   */
  private handOff(shard: number): Promise<void> {
    // Kept from a node that handed it over while this node's view still named it (see adopt): not
    // handed straight back while the view catches up (one lease TTL), unless this node is stopping.
    const kept = this.keptFrom.get(shard);
    if (kept !== undefined && !this.stopped) {
      if (Date.now() < kept.until && this.target[shard] === kept.from) return Promise.resolve();
      this.keptFrom.delete(shard);
    }
    const inProgress = this.leaving.get(shard);
    if (inProgress !== undefined) return inProgress;
    const o = this.owned.get(shard);
    if (o === undefined) return Promise.resolve();
    const p = this.handOffSlots
      .run(() => this.release(shard, o))
      .catch((e: unknown) => this.deps.log.warn({ event: 'handoff_failed', shard, err: e }))
      .finally(() => this.leaving.delete(shard));
    this.leaving.set(shard, p);
    return p;
  }

  private async release(shard: number, o: Owned): Promise<void> {
    if (this.owned.get(shard) !== o) return; // fenced while it waited for a slot: dropped already
    if (o.lease.isFenced || Date.now() >= o.lease.validUntilMs) {
      // Its lease ran out before its turn came (a paused process, a stalled server): there is
      // nothing left to hand over, and a release write would only wait to be refused.
      this.drop(shard, 'its lease ran out before it could be handed over');
      o.lease.abandon();
      return;
    }
    const stoppedAt = new Date();
    this.owned.delete(shard); // from now on its requests are refused as `unavailable`, retryable
    const drained = o.sub.drain().catch(() => o.sub.unsubscribe());
    await this.deps.registry.release((id) => shardOf(id, this.deps.shardCount) === shard);
    this.unfenced.delete(shard);
    const settledAt = Date.now();
    // Straight to the next owner when there is one; a marker for whoever the target names later.
    const to = this.nextOwner(shard);
    const released = await o.lease.release({ handOver: true, stoppedAt, ...(to === undefined ? {} : { to }) });
    if (released !== null && to !== undefined) this.holders.set(shard, to);
    if (released !== null) this.deps.nc.publish(SUBJECTS.clusterReleased, encodeJson({ shard, ...released }));
    this.moves++;
    this.batch.add('shards_released', { shard, ...(to === undefined ? {} : { to }), settle_ms: settledAt - stoppedAt.getTime(), release_ms: Date.now() - settledAt });
    await drained;
  }

  /** Fenced: the lease may be someone else's already, so stop at once. */
  private drop(shard: number, reason: string): void {
    const o = this.owned.get(shard);
    if (o === undefined) return;
    this.owned.delete(shard);
    this.unfenced.delete(shard);
    o.sub.unsubscribe();
    void this.deps.registry.release((id) => shardOf(id, this.deps.shardCount) === shard);
    this.deps.log.warn({ event: 'shard_fenced', shard, reason });
  }

  /**
   * Stops serving every shard without a write (NATS is unreachable): the leases are left to expire,
   * and whoever takes a shard next fences it, as after a crash.
   */
  abandon(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watches) w.stop();
    for (const [shard, o] of [...this.owned]) {
      o.lease.abandon();
      this.owned.delete(shard);
      this.unfenced.delete(shard);
      o.sub.unsubscribe();
    }
    this.announcements?.unsubscribe();
    this.batch.flush();
  }

  /** Hands every shard over (a stopping node; it left the membership first). */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    for (const w of this.watches) w.stop();
    await this.running;
    // It has left the membership: each shard goes straight to its next owner among the others.
    this.live.delete(this.deps.nodeId);
    this.recomputeTarget();
    await Promise.allSettled([...this.takeovers]); // takeovers in progress finish (each passes its shard on)
    await Promise.all([...this.owned.keys()].map((s) => this.handOff(s)));
    await Promise.all([...this.leaving.values()]);
    this.batch.flush();
    // Heard until now: a shard transferred here meanwhile is passed on, not left to expire.
    this.announcements?.unsubscribe();
  }
}
