/**
 * The shell around the ownership core (src/cluster/ownership-core.ts): it feeds the core what this
 * node observes and carries out what the core decides, and holds no decision of its own.
 *
 * Observations, as core events: the members' and drain marks' changes (KV watches on `node.*` and
 * `drain.>`), listings of the members, handover announcements (`activeflow.cluster.v1.released`),
 * the results of its lease writes, the server's disconnect hints, this node's membership, and a
 * `tick` when the core's next deadline comes (one timer, set from `nextWake`; no polling).
 * Commands, carried out against NATS: lease claims, renewals and releases (revision-checked KV
 * writes), subscriptions to a shard's requests, settling a shard before its release (drain the
 * subscription, forget its actors), sweeps of a shard taken after a crash, announcements.
 *
 * Watching `shard.*` instead of announcements would deliver every renewal of every shard lease to
 * every node. An announcement missed is found by the next listing.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Msg, NatsConnection, QueuedIterator, Subscription } from '@nats-io/transport-node';
import type { ActorRegistry } from '../../actors/index.js';
import type { Logger } from '../log.js';
import { shardOf } from '../nats/shard-mapping.js';
import type { SnapshotStore } from '../store/snapshot-store.js';
import { NodeMembership } from './membership-registry.js';
import type { LeaseValue } from './shard-lease.js';
import { SUBJECTS } from '../api/subjects.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import { inPool, Slots, withTimeout } from './async-limits.js';
import { keysNow } from '../store/kv-keys.js';
import { ShardEventBatch } from './shard-event-batch.js';
import { backoffDelay, type Backoff } from '../retry.js';
import {
  creationShards,
  initialView,
  isUnfenced,
  nextWake,
  type OwnershipCommand,
  ownershipConfig,
  type OwnershipEvent,
  type OwnershipView,
  type Renewal,
  serves,
  servingCount,
  servingShards,
  type Steal,
  step,
  takeable,
} from './ownership-core.js';

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

/** Between reopenings of a membership or drain watch that ended: soon, then less often. */
const WATCH_REOPEN: Backoff = { firstMs: 200, maxMs: 2_000 };

/** A handed-over shard is warmed this long after the move, off its critical path. */
const WARM_DELAY_MS = 2_000;

/**
 * A shard taken after a crash is swept (each activeflow loaded and fenced) this long after it is
 * served: the callers' first requests, which fence what they load anyway, go first.
 */
const SWEEP_DELAY_MS = 250;

/**
 * Loads of warms and sweeps at once, for the whole node: after a crash a survivor takes dozens of
 * shards at once, and a sweep per shard, each two loads wide, would compete with the callers' own
 * first requests (up to twice the number of shards taken, in flight at once). The callers' loads
 * fence what they load anyway; the sweep only has to finish eventually.
 */
const WARM_LOADS_AT_ONCE = 4;

export class ShardOwnership {
  private view: OwnershipView;
  private readonly subs = new Map<number, Subscription>();
  private announcements: Subscription | null = null;
  private readonly watches: QueuedIterator<KvWatchEntry>[] = [];
  private wake: { timer: NodeJS.Timeout; at: number } | null = null;
  private readonly queue: OwnershipEvent[] = [];
  /** Renewal answers not given to the core yet (see `renewed`). */
  private readonly renewals: Renewal[] = [];
  private readonly warming = new Slots(WARM_LOADS_AT_ONCE);
  private dispatching = false;
  private closed = false;
  /** The connection the shards are served on; a change means it was lost and made again. */
  private servingOn: string | null = '';
  private infoSeen: unknown = null;
  private readonly done: Promise<void>;
  private finish!: () => void;
  moves = 0;

  /** shards_acquired and shards_released lines, a batch at a time. */
  private readonly batch: ShardEventBatch;

  constructor(private readonly deps: OwnershipDeps) {
    this.batch = new ShardEventBatch(deps.log);
    this.view = initialView(ownershipConfig(deps.nodeId, deps.shardCount, deps.leaseTtlMs), Date.now());
    this.done = new Promise((r) => (this.finish = r));
    deps.membership.onChange((joined) => this.dispatch({ type: 'membership', joined }));
  }

  private get listingBoundMs(): number {
    return Math.max(2_000, this.deps.leaseTtlMs * 2);
  }

  /**
   * Watches, lists the members and the shard holders, then lets the core act. Call it before this
   * node joins: when the others see it join and hand it shards, it already knows the membership
   * and takes each one the moment it is released.
   */
  async start(): Promise<void> {
    this.servingOn = this.connection();
    void (async () => {
      for await (const s of this.deps.nc.status()) {
        if (this.closed) break;
        if (s.type === 'disconnect' && this.servingOn !== null) {
          this.servingOn = null;
          this.dispatch({ type: 'disconnected' });
        } else if (s.type === 'reconnect') this.checkConnection();
      }
    })();
    this.announcements = this.deps.nc.subscribe(SUBJECTS.clusterReleased, {
      callback: (_e, msg) => {
        try {
          const r = decodeJson(msg.data) as { shard: number; revision: number; marker: LeaseValue };
          this.dispatch({ type: 'announced', shard: r.shard, revision: r.revision, marker: r.marker });
        } catch (e) {
          this.deps.log.debug({ event: 'announcement_unreadable', err: e });
        }
      },
    });
    const watching = [this.watch(this.deps.leases, 'node.*'), this.watch(this.deps.cluster, 'drain.>')];
    await Promise.race([Promise.all(watching.map((w) => w.ready)), new Promise((r) => setTimeout(r, this.listingBoundMs))]);
    const holders = await withTimeout(this.listHolders(), this.listingBoundMs, 'listing the shard leases').catch((e: unknown) => {
      this.deps.log.warn({ event: 'holders_unlisted', err: e });
      return new Map<number, string>();
    });
    const members = await this.listMembers().catch((e: unknown) => {
      this.deps.log.warn({ event: 'members_unlisted', err: e });
      return { live: [], drained: [] };
    });
    this.dispatch({ type: 'started', ...members, holders });
  }

  private async listHolders(): Promise<Map<number, string>> {
    const holders = new Map<number, string>();
    const keys = await keysNow(this.deps.leases, 'shard.*');
    await inPool(keys, 32, async (key) => {
      const e = await this.deps.leases.get(key);
      if (e === null || e.operation !== 'PUT') return;
      const value = decodeJson(e.value) as LeaseValue;
      if (value.released_at === undefined) holders.set(Number(key.slice('shard.'.length)), value.node_id);
    });
    return holders;
  }

  private async listMembers(): Promise<{ live: string[]; drained: string[] }> {
    const membership = await withTimeout(NodeMembership.current(this.deps.leases, this.deps.cluster), this.listingBoundMs, 'listing the live nodes');
    return { live: membership.members.map((m) => m.id), drained: membership.members.filter((m) => m.draining).map((m) => m.id) };
  }

  /** Lists the members now (after a drain, an undrain, a rebalance). */
  trigger(): void {
    this.dispatch({ type: 'reconcile' });
  }

  /**
   * The servers saw a node's connection close (`conn`: `<server id>/<client id>`): its leases
   * written on that connection are taken at once; any other is tried again soon, and taken the
   * moment it runs out.
   */
  suspect(nodeId: string, conn: string | null): void {
    this.dispatch({ type: 'suspect', node: nodeId, conn });
  }

  /** The connection this node's leases are written on, as the servers name it in their events. */
  private connection(): string {
    const info = this.deps.nc.info;
    return info === undefined ? '' : `${info.server_id}/${info.client_id}`;
  }

  /**
   * Checked on every request, synchronously: a request that arrives on a newer connection than the
   * one this node's shards were taken on finds them dropped first. (The status event below says the
   * same, sooner, but an async iterator gives no guarantee it is read before the new connection's
   * first message.)
   */
  private checkConnection(): void {
    // The server's INFO object is replaced on every (re)connection: when it is the one last seen,
    // nothing changed, and a request pays one comparison, not a string built.
    const info = this.deps.nc.info;
    if (info === this.infoSeen) return;
    this.infoSeen = info;
    const now = this.connection();
    if (now === this.servingOn) return;
    if (this.servingOn !== null) this.dispatch({ type: 'disconnected' });
    this.servingOn = now;
    this.dispatch({ type: 'reconnected' });
  }

  /**
   * The one way in: each event goes through the core, then its commands are carried out. Events
   * raised while one is being handled wait their turn, so the core sees them one at a time.
   */
  private dispatch(event: OwnershipEvent): void {
    if (this.closed) return;
    this.queue.push(event);
    if (this.dispatching) return;
    this.dispatching = true;
    try {
      for (let e = this.queue.shift(); e !== undefined; e = this.queue.shift()) {
        const { view, commands } = step(this.view, e, Date.now());
        this.view = view;
        for (const c of commands) this.execute(c);
      }
    } finally {
      this.dispatching = false;
    }
    this.schedule();
  }

  /**
   * A renewal's answer goes to the core with the others read in the same turn of the event loop
   * (setImmediate runs once the socket's data and the promises it settled are handled): one event
   * for the lot (`renewals`), not one each.
   */
  private renewed(r: Renewal): void {
    this.renewals.push(r);
    if (this.renewals.length > 1) return;
    setImmediate(() => {
      const results = this.renewals.splice(0);
      this.dispatch(results.length === 1 ? { type: 'renewed', ...results[0]! } : { type: 'renewals', results });
    });
  }

  private schedule(): void {
    const at = this.closed ? null : nextWake(this.view);
    if (this.wake !== null && this.wake.at === at) return;
    if (this.wake !== null) clearTimeout(this.wake.timer);
    this.wake = null;
    if (at === null) return;
    const timer = setTimeout(
      () => {
        this.wake = null;
        this.dispatch({ type: 'tick' });
      },
      Math.max(0, at - Date.now()),
    );
    timer.unref();
    this.wake = { timer, at };
  }

  private execute(c: OwnershipCommand): void {
    const { leases, log } = this.deps;
    switch (c.type) {
      case 'list': {
        void this.listMembers().then(
          (m) => this.dispatch({ type: 'listed', ...m, changes: c.changes }),
          (e: unknown) => {
            log.warn({ event: 'reconcile_failed', err: e });
            this.dispatch({ type: 'list_failed' });
          },
        );
        return;
      }
      case 'claim': {
        const sentAt = Date.now();
        void this.claim(c.shard, { ...c.value, conn: this.connection() }, c.marker, c.steal).then((granted) => this.dispatch({ type: 'claimed', shard: c.shard, sentAt, granted }));
        return;
      }
      case 'renew':
        void leases.update(`shard.${c.shard}`, encodeJson({ ...c.value, conn: this.connection() }), c.revision).then(
          (revision) => this.renewed({ shard: c.shard, sentAt: c.sentAt, revision }),
          () => this.renewed({ shard: c.shard, sentAt: c.sentAt, revision: null }),
        );
        return;
      case 'sweep':
        this.warmLater(c.shard, c.afterMs, c.attempt);
        return;
      case 'serve': {
        const sub = this.deps.nc.subscribe(`activeflow.shard.${c.shard}.*.*`, { callback: (_e, msg) => this.deps.serve(msg) });
        this.subs.get(c.shard)?.unsubscribe();
        this.subs.set(c.shard, sub);
        // Load each one: fences it, replays the moves since its checkpoint, resumes cycles that were
        // waiting. Off the critical path: a handed-over shard has nothing to repair, and after a
        // crash the callers' own requests come first.
        this.warmLater(c.shard, c.sweep ? SWEEP_DELAY_MS : WARM_DELAY_MS, c.sweep ? 0 : null);
        this.moves++;
        // A handed-over shard was unserved from its former owner's stop to now (same-clock caveat).
        const stopped = c.previous?.stopped_at;
        const pauseMs = stopped === undefined ? undefined : Date.now() - Date.parse(stopped);
        this.batch.add('shards_acquired', {
          shard: c.shard,
          handed_over: c.handedOver,
          epoch: c.epoch,
          ...(pauseMs === undefined ? {} : { pause_ms: pauseMs, from: c.previous!.transferred_from ?? c.previous!.node_id }),
        });
        return;
      }
      case 'settle': {
        // Its requests are refused as `unavailable` (retryable) from now on. The subscription is
        // drained in the background: requests the server had already sent before it saw the
        // unsubscribe are answered "moving, retry" without touching anything.
        const sub = this.subs.get(c.shard);
        this.subs.delete(c.shard);
        void sub?.drain().catch(() => sub.unsubscribe());
        void this.deps.registry
          .release(c.shard)
          .catch((err: unknown) => log.warn({ event: 'handoff_failed', shard: c.shard, err }))
          .finally(() => this.dispatch({ type: 'settled', shard: c.shard }));
        return;
      }
      case 'release': {
        const key = `shard.${c.shard}`;
        const write = c.marker === null ? leases.delete(key, { previousSeq: c.revision }).then(() => null) : leases.update(key, encodeJson(c.marker), c.revision);
        void write.then(
          (revision) => this.dispatch({ type: 'release_done', shard: c.shard, revision }),
          () => this.dispatch({ type: 'release_done', shard: c.shard, revision: null }),
        );
        return;
      }
      case 'announce':
        this.deps.nc.publish(SUBJECTS.clusterReleased, encodeJson({ shard: c.shard, revision: c.revision, marker: c.marker }));
        return;
      case 'drop': {
        this.subs.get(c.shard)?.unsubscribe();
        this.subs.delete(c.shard);
        this.deps.registry.drop(c.shard);
        log.warn({ event: 'shard_fenced', shard: c.shard, reason: c.reason });
        return;
      }
      case 'released':
        this.moves++;
        this.batch.add('shards_released', {
          shard: c.shard,
          ...(c.to === null ? {} : { to: c.to }),
          ...(c.stoppedAt === null || c.settledAt === null ? {} : { settle_ms: c.settledAt - c.stoppedAt, release_ms: Date.now() - c.settledAt }),
        });
        return;
      case 'note':
        log.info({ event: c.event, ...c.fields }, ...(c.message === '' ? [] : [c.message]));
        return;
      case 'stopped':
        this.finish();
        return;
    }
  }

  /** Creates the lease; if it exists, takes it only if it is a released marker or transferred here (revision-checked). */
  private async claim(
    shard: number,
    value: LeaseValue,
    marker: { revision: number; marker: LeaseValue } | null,
    steal: Steal | null,
  ): Promise<{ revision: number; previous: LeaseValue | null } | null> {
    const { leases } = this.deps;
    const key = `shard.${shard}`;
    try {
      if (marker !== null) return { revision: await leases.update(key, encodeJson(value), marker.revision), previous: marker.marker };
      try {
        return { revision: await leases.create(key, encodeJson(value)), previous: null };
      } catch {
        const e = await leases.get(key);
        if (e === null || e.operation !== 'PUT') return null;
        const previous = decodeJson(e.value) as LeaseValue;
        if (!takeable(previous, this.deps.nodeId, steal)) return null;
        return { revision: await leases.update(key, encodeJson(value), e.revision), previous };
      }
    } catch {
      return null;
    }
  }

  /**
   * Changes to leases and drain marks, as they happen. A watch that ends (a server restart) is
   * opened again; meanwhile the periodic listing still runs, so nothing depends on it.
   */
  private watch(kv: KV, key: string): { ready: Promise<void> } {
    let ready!: () => void;
    const readyP = new Promise<void>((r) => (ready = r));
    void (async () => {
      let failures = 0;
      while (!this.closed) {
        try {
          const iter = await withTimeout(kv.watch({ key, include: 'updates' }), this.listingBoundMs, `watching ${key}`);
          this.watches.push(iter);
          ready();
          for await (const e of iter) {
            if (this.closed) break;
            failures = 0;
            this.onChange(e);
          }
        } catch (e) {
          if (!this.closed) this.deps.log.debug({ event: 'watch_restarting', key, err: (e as Error).message });
        }
        if (!this.closed) await new Promise((r) => setTimeout(r, backoffDelay(WATCH_REOPEN, ++failures)));
      }
    })();
    return { ready: readyP };
  }

  private onChange(e: KvWatchEntry): void {
    if (e.key.startsWith('node.')) {
      const up = e.operation === 'PUT' && (decodeJson(e.value) as LeaseValue).released_at === undefined;
      this.dispatch({ type: 'member', node: e.key.slice('node.'.length), up });
    } else if (e.key.startsWith('drain.')) {
      this.dispatch({ type: 'drain', node: e.key.slice('drain.'.length), on: e.operation === 'PUT' });
    }
  }

  /** Logs the shards taken and released so far now, instead of at the end of their batch window. */
  flushLog(): void {
    this.batch.flush();
  }

  /** Whether this node serves the shard now (its lease valid on this node's clock). */
  owns(shard: number): boolean {
    this.checkConnection();
    return serves(this.view, shard, Date.now());
  }

  /** Whether this node serves an activeflow's shard now. */
  servesActiveflow(activeflowId: string): boolean {
    return this.owns(shardOf(activeflowId, this.deps.shardCount));
  }

  /** Whether an activeflow must be fenced before its first use here (its shard taken after a crash, not swept yet). */
  mustFence(activeflowId: string): boolean {
    return isUnfenced(this.view, shardOf(activeflowId, this.deps.shardCount));
  }

  /** Seconds since the least recently confirmed of this node's shard leases (0 with none). */
  get renewalLagSeconds(): number {
    const now = Date.now();
    let oldest = Infinity;
    for (const s of this.view.shards.values()) if (s.phase === 'serving') oldest = Math.min(oldest, Number.isFinite(s.lease.confirmedAt) ? s.lease.confirmedAt : now);
    return oldest === Infinity ? 0 : Math.max(0, (now - oldest) / 1000);
  }

  get ownedCount(): number {
    return servingCount(this.view);
  }

  /**
   * Shards whose warm-up (or sweep) is due or under way: each loads the shard's running
   * activeflows in the background, so a test that plays another writer waits for none to be left.
   */
  get warmsPending(): number {
    return this.pendingWarms;
  }

  private pendingWarms = 0;

  /** The shards this node's share of the creation rate counts (ownership-core's creationShards). */
  get creationShardCount(): number {
    return creationShards(this.view);
  }

  get ownedShards(): number[] {
    return servingShards(this.view);
  }

  /** Warms the shard after `ms`; a sweep (`attempt` not null) answers `swept` to the core. */
  private warmLater(shard: number, ms: number, attempt: number | null): void {
    this.pendingWarms++;
    setTimeout(
      () =>
        void this.warm(shard)
          .then((ok) => {
            if (attempt !== null && !this.closed) this.dispatch({ type: 'swept', shard, ok, attempt });
          })
          .finally(() => this.pendingWarms--),
      ms,
    ).unref();
  }

  /** Loads every running activeflow of a shard through its actor (which fences it when it must). True when all loaded. */
  private async warm(shard: number): Promise<boolean> {
    try {
      const ids = await withTimeout(this.deps.snapshots.runningIdsOfShard(shard), this.listingBoundMs, `listing shard ${shard}`);
      let failed = 0;
      await inPool(ids, 2, (id) =>
        this.warming.run(async () => {
          if (!this.owns(shard)) return;
          await this.deps.registry
            .get(id)
            .warm()
            .catch((e: unknown) => {
              failed++;
              // The shard moved on while it loaded (the load was refused as moving): the next
              // owner warms it, nothing is wrong. Any other failure is one.
              if (!this.owns(shard)) this.deps.log.info({ event: 'warm_interrupted', shard, activeflow_id: id }, 'shard moved on while it was warmed');
              else this.deps.log.error({ event: 'recovery_failed', activeflow_id: id, err: e });
            });
        }),
      );
      return failed === 0 && this.owns(shard);
    } catch (e) {
      this.deps.log.warn({ event: 'warm_failed', shard, err: e }, 'shard not warmed; its activeflows load (and fence) on their next request');
      return false;
    }
  }

  private close(): void {
    this.closed = true;
    if (this.wake !== null) clearTimeout(this.wake.timer);
    this.wake = null;
    for (const w of this.watches) w.stop();
    this.announcements?.unsubscribe();
    this.batch.flush();
  }

  /**
   * Stops serving every shard without a write (NATS is unreachable): the leases are left to expire,
   * and whoever takes a shard next fences it, as after a crash.
   */
  abandon(): void {
    this.dispatch({ type: 'abandon' });
    this.close();
  }

  /** Hands every shard over (a stopping node; it left the membership first), and returns when all are. */
  async stop(): Promise<void> {
    this.dispatch({ type: 'stop' });
    await this.done;
    this.close();
  }
}
