/**
 * The cluster's safety logic as a pure fold: `step(view, event) -> { view, commands }`. Time is an
 * input (every event carries this node's clock), so a test or the simulation (test/sim) drives it
 * exactly as a node does; src/cluster/shard-ownership.ts is the thin shell that turns commands into
 * NATS writes and subscriptions and feeds their results back as events.
 *
 * Per shard this node is involved with:
 *
 *   (absent) ──claim──▶ claiming ──granted──▶ serving ──target is another node──▶ leaving
 *      ▲                  │ refused                │ renewal refused, or           │ settled (in-flight
 *      │                  ▼                        │ no renewal confirmed in time   │ requests done)
 *      └──────────────(absent)◀──── drop ◀─────────┘                                ▼
 *      └───────────────────────────────────────────────────────────────────── releasing ──done──▶ (absent)
 *
 * The rules that keep at most one node serving a shard:
 * - A lease is valid until `sentAt(last confirmed write) + TTL - safety`, on this node's clock: the
 *   server expires it no earlier than `write time + TTL`, and the write was sent before it landed.
 *   No request is served past that instant (`serves()` reads the clock), so a paused process that
 *   wakes up serves nothing before its shell has processed the expiry.
 * - A lease transferred to this node (a handover's announcement) is subscribed to at once but
 *   served only once its first renewal, sent at once, is confirmed: the announcement may have
 *   waited any time (a paused process reads it late), so the transfer itself vouches for nothing
 *   on this node's clock. (The simulation found the earlier rule, serving a transfer at once, let
 *   a node paused past the TTL serve beside the shard's next owner.)
 * - A holder hands a shard over only after it stopped taking requests and the ones in flight
 *   finished (`settled`); only then does its release (a marker, or a transfer to the next owner)
 *   tell the next owner that nothing is left to fence.
 * - A shard taken after its lease ran out (its holder crashed or paused) is `unfenced`: each of its
 *   activeflows is rewritten, revision-checked, before its first use here, so a holder that still
 *   runs fails its next write. Handed over before its sweep finished, it stays unfenced at the next
 *   owner (the marker says `fence`): the simulation found a stolen shard passed on at once, and its
 *   next owner wrote beside the stale holder's loaded copy.
 * - A node whose connection to NATS is lost drops every shard at once (`disconnected`), before
 *   anything can reach it on the next connection; each lease it writes names the connection it was
 *   written on (`conn`). So when the servers report a node's connection closed, the leases still
 *   written on that very connection are safe to take at once (`suspect` with its connection): their
 *   holder serves nothing more on them, dead or alive. A lease renewed on a newer connection is
 *   not taken; it is left to its holder, or to its TTL. This is what makes a crash's failover the
 *   time to hear of it plus one claim, not the rest of the lease.
 */
import type { LeaseValue } from './shard-lease.js';
import { CowMap, CowSet } from './copy-on-write.js';
import { assignment } from './shard-map.js';
import { type Backoff, backoffDelay } from '../retry.js';

/** Between sweeps of a shard whose sweep failed (no jitter: the core is a pure fold). */
const SWEEP_RETRY: Backoff = { firstMs: 500, maxMs: 30_000 };

export interface OwnershipConfig {
  nodeId: string;
  shardCount: number;
  ttlMs: number;
  /** Stop serving this long before a lease could run out (network and scheduling delays). */
  safetyMs: number;
  /** Lease claims in flight at once. */
  claimsAtOnce: number;
  /** Handovers in flight at once: each one's pause is its own settle, release and the next owner's claim. */
  handoffsAtOnce: number;
  /** How soon the shards of a node the server reported disconnected are tried again while its leases run out. */
  suspectRetryMs: number;
}

export function ownershipConfig(nodeId: string, shardCount: number, ttlMs: number): OwnershipConfig {
  return { nodeId, shardCount, ttlMs, safetyMs: Math.floor(ttlMs / 4), claimsAtOnce: 64, handoffsAtOnce: 2, suspectRetryMs: 50 };
}

/** A lease marker seen in an announcement, at the revision it was written. */
export interface SeenMarker {
  revision: number;
  marker: LeaseValue;
}

export interface HeldLease {
  revision: number;
  /** The fencing token: the revision at which this node's tenure began. */
  epoch: number;
  /** The value this node renews (its name and when it took the lease). */
  value: LeaseValue;
  /** When the last confirmed write was sent (this node's clock). */
  confirmedAt: number;
  /** Serve no request at or after this instant. */
  validUntil: number;
  /** A write of this node's confirmed it (false for a transfer until its first renewal returns). */
  confirmed: boolean;
  /** When the last renewal was sent. */
  lastSentAt: number;
  /** The sentAt of the renewal in flight, if any (one at a time: a second would carry a stale revision). */
  renewing: number | null;
  /** Taken from a holder that handed it over (nothing to fence). */
  handedOver: boolean;
  previous: LeaseValue | null;
}

export type ShardView =
  /** `reconfirm`: the connection was lost while the claim was on its way (it may land later, under the old connection's name). */
  | { phase: 'claiming'; marker: SeenMarker | null; reconfirm?: boolean }
  | { phase: 'serving'; lease: HeldLease; unfenced: boolean; kept: { from: string; until: number } | null }
  | { phase: 'leaving'; lease: HeldLease; stoppedAt: number; settled: boolean; unfenced: boolean }
  | { phase: 'releasing'; marker: LeaseValue | null; to: string | null; stoppedAt: number | null; settledAt: number | null };

export interface OwnershipView {
  readonly cfg: OwnershipConfig;
  readonly now: number;
  readonly started: boolean;
  /** This node holds its membership lease. */
  readonly joined: boolean;
  /** This node's connection to NATS is up (as far as it knows). */
  readonly connected: boolean;
  readonly stopping: boolean;
  readonly stopped: boolean;
  readonly live: ReadonlySet<string>;
  readonly drained: ReadonlySet<string>;
  /** When the watch last saw each node renew its membership lease. */
  readonly renewedAt: ReadonlyMap<string, number>;
  /** Nodes the servers reported disconnected: until when they count as gone, and the connection that closed. */
  readonly suspects: ReadonlyMap<string, Suspect>;
  /** Changes the watch made to the membership view (a listing that overlaps one is discarded). */
  readonly viewChanges: number;
  readonly listing: boolean;
  readonly nextListAt: number;
  /** Who holds each shard's lease as far as this node knows (from announcements, the first listing, its own moves). */
  readonly holders: ReadonlyMap<number, string>;
  /** Released markers announced and not taken yet. */
  readonly markers: ReadonlyMap<number, SeenMarker>;
  readonly shards: ReadonlyMap<number, ShardView>;
  /** Shards whose last claim was refused, and when to try again. */
  readonly retryAt: ReadonlyMap<number, number>;
  readonly target: readonly (string | null)[];
  readonly targetKey: string;
}

export interface Suspect {
  until: number;
  /** The connection the servers saw close (`<server id>/<client id>`), if they said. */
  conn: string | null;
}

export type OwnershipEvent =
  | { type: 'started'; live: readonly string[]; drained: readonly string[]; holders: ReadonlyMap<number, string> }
  | { type: 'tick' }
  | { type: 'listed'; live: readonly string[]; drained: readonly string[]; changes: number }
  | { type: 'list_failed' }
  | { type: 'member'; node: string; up: boolean }
  | { type: 'drain'; node: string; on: boolean }
  | { type: 'membership'; joined: boolean }
  | { type: 'announced'; shard: number; revision: number; marker: LeaseValue }
  | { type: 'claimed'; shard: number; sentAt: number; granted: { revision: number; previous: LeaseValue | null } | null }
  | ({ type: 'renewed' } & Renewal)
  /**
   * Renewals answered together (their shell reads them in one go: renewals of shards taken together
   * are sent together and come back together). Each applied as its `renewed` is, with one decision
   * after the last instead of one after each: with 256 shards that was 256 walks of every shard,
   * 13-25 ms a second in one burst, which every request arriving then waited for. One difference:
   * a shard past its safety deadline whose own answer is in the batch keeps its lease, where one by
   * one an earlier answer's decision could have dropped it first. Safe: its write was confirmed, so
   * its lease holds until that write's sentAt + TTL - safety, and `serves()` served nothing in between.
   */
  | { type: 'renewals'; results: readonly Renewal[] }
  | { type: 'settled'; shard: number }
  | { type: 'release_done'; shard: number; revision: number | null }
  /** A sweep ended (`attempt`: 0 for the first, as the `sweep` command that asked for it says). */
  | { type: 'swept'; shard: number; ok: boolean; attempt: number }
  | { type: 'suspect'; node: string; conn: string | null }
  /** This node's own connection to NATS was lost (it may be reconnecting already). */
  | { type: 'disconnected' }
  /** ...and made again: what it writes from now on is written on the new connection. */
  | { type: 'reconnected' }
  /** List the members now (an operator's rebalance, a drain). */
  | { type: 'reconcile' }
  | { type: 'stop' }
  | { type: 'abandon' };

/** A renewal's answer: the lease's new revision, or null if the write was refused or failed. */
export interface Renewal {
  shard: number;
  sentAt: number;
  revision: number | null;
}

export type OwnershipCommand =
  /** List the live and drained nodes; answer `listed` (or `list_failed`). */
  | { type: 'list'; changes: number }
  /**
   * Create the lease key; if it exists, take it only if `takeable` says so (a released marker, a
   * transfer here, this node's own, or, with `steal`, one written on a connection the servers saw
   * close). With `marker`, one update at its revision. Answer `claimed`.
   */
  | { type: 'claim'; shard: number; value: LeaseValue; marker: SeenMarker | null; steal: Steal | null }
  /** Rewrite the lease at its revision; answer `renewed`. */
  | { type: 'renew'; shard: number; value: LeaseValue; revision: number; sentAt: number }
  /** Subscribe to the shard's requests. With `sweep`, load (and so fence) its activeflows soon, then answer `swept`. */
  | { type: 'serve'; shard: number; epoch: number; handedOver: boolean; previous: LeaseValue | null; sweep: boolean }
  /** Stop taking the shard's requests, finish the ones in flight, forget its actors; answer `settled`. */
  | { type: 'settle'; shard: number }
  /**
   * Sweep the shard again after `afterMs` (its last sweep failed: NATS unreachable for a moment), then
   * answer `swept` with this `attempt`. An activeflow whose end a crash interrupted is finished only
   * by a load; without a sweep that succeeds, it would hold its customer's running slot until its
   * next request or its idle timeout (found by the cluster simulation, seed 1151).
   */
  | { type: 'sweep'; shard: number; afterMs: number; attempt: number }
  /** Write the marker (or, with null, delete the key) at `revision`; answer `release_done`. */
  | { type: 'release'; shard: number; revision: number; marker: LeaseValue | null }
  /** Tell the other nodes of a marker written (they may take it at once). */
  | { type: 'announce'; shard: number; revision: number; marker: LeaseValue }
  /** Fenced: unsubscribe and forget the shard's actors at once, no write. */
  | { type: 'drop'; shard: number; reason: string }
  | { type: 'released'; shard: number; to: string | null; stoppedAt: number | null; settledAt: number | null }
  | { type: 'note'; event: string; fields: Record<string, unknown>; message: string }
  /** Everything handed over or dropped after `stop`/`abandon`. */
  | { type: 'stopped' };

export function initialView(cfg: OwnershipConfig, now: number): OwnershipView {
  return {
    cfg,
    now,
    started: false,
    joined: false,
    connected: true,
    stopping: false,
    stopped: false,
    live: new Set(),
    drained: new Set(),
    renewedAt: new Map(),
    suspects: new Map(),
    viewChanges: 0,
    listing: false,
    nextListAt: Infinity,
    holders: new Map(),
    markers: new Map(),
    shards: new Map(),
    retryAt: new Map(),
    target: [],
    targetKey: '\u0000',
  };
}

export interface Steal {
  node: string;
  conn: string;
}

/**
 * Whether a lease key's value may be taken by `nodeId`: a released marker; a lease in its own name
 * (transferred to it, or left from its own earlier connection or run: it dropped that tenure's
 * shards when it lost the connection); or, with `steal`, a lease its holder wrote on the very
 * connection the servers saw close.
 */
export function takeable(value: LeaseValue, nodeId: string, steal: Steal | null = null): boolean {
  if (value.released_at !== undefined || value.node_id === nodeId) return true;
  return steal !== null && value.node_id === steal.node && value.conn === steal.conn;
}

/** Whether this node may serve a request of `shard` at `now` (its clock). */
export function serves(view: OwnershipView, shard: number, now: number): boolean {
  const s = view.shards.get(shard);
  return s !== undefined && s.phase === 'serving' && s.lease.confirmed && now < s.lease.validUntil;
}

/** Whether a shard's activeflows must be fenced before their first use here. */
export function isUnfenced(view: OwnershipView, shard: number): boolean {
  const s = view.shards.get(shard);
  return s !== undefined && s.phase === 'serving' && s.unfenced;
}

/** How many shards this node serves (asked per creation, for its share of the creation rate: no list, no sort). */
export function servingCount(view: OwnershipView): number {
  let n = 0;
  for (const s of view.shards.values()) if (s.phase === 'serving') n++;
  return n;
}

/**
 * The shards this node counts for its share of the creation rate: those it serves or, while shards
 * move to it, those the target gives it, whichever is more. Counted by serving alone, a node that
 * had just joined (a handful served, a quarter on the way) or that had fenced its shards for a
 * moment (a pause under load) sized its buckets at almost nothing, and refused as over quota the
 * creations the shards it was taking brought it: 122 of 240 calls in CI, while the cluster as a
 * whole was far below the rate. While shards move, the nodes' shares may add up to more than one
 * (old owner and new both count a shard in motion): over-admission for seconds, never refusal.
 */
export function creationShards(view: OwnershipView): number {
  let targeted = 0;
  if (view.joined && !view.stopping) for (const owner of view.target) if (owner === view.cfg.nodeId) targeted++;
  return Math.max(servingCount(view), targeted);
}

export function servingShards(view: OwnershipView): number[] {
  const out: number[] = [];
  for (const [shard, s] of view.shards) if (s.phase === 'serving') out.push(shard);
  return out.sort((a, b) => a - b);
}

/** When the shell must call back with a `tick`, if nothing else happens first (null: no deadline). */
export function nextWake(view: OwnershipView): number | null {
  if (!view.started || view.stopped) return null;
  const { ttlMs } = view.cfg;
  let at = view.listing || view.stopping ? Infinity : view.nextListAt;
  for (const s of view.shards.values()) {
    if (s.phase !== 'serving' && s.phase !== 'leaving') continue;
    at = Math.min(at, s.lease.validUntil);
    if (view.connected && s.lease.renewing === null) at = Math.min(at, s.lease.lastSentAt + Math.floor(ttlMs / 3));
    if (s.phase === 'serving' && s.kept !== null) at = Math.min(at, s.kept.until);
  }
  // A retry already due waits for a claim's result (claims at once are capped), not for a timer.
  for (const t of view.retryAt.values()) if (t > view.now) at = Math.min(at, t);
  for (const s of view.suspects.values()) at = Math.min(at, s.until);
  for (const [node, renewed] of view.renewedAt) {
    const stale = renewed + staleAfter(view.cfg);
    if (node !== view.cfg.nodeId && !view.suspects.has(node) && stale > view.now) at = Math.min(at, stale);
  }
  return at === Infinity ? null : at;
}

/** A mutable copy for one step: maps and sets copied, shard entries replaced (never changed in place). */
type Draft = { -readonly [K in keyof OwnershipView]: OwnershipView[K] };

interface Work {
  v: Draft;
  live: CowSet<string>;
  drained: CowSet<string>;
  renewedAt: CowMap<string, number>;
  suspects: CowMap<string, Suspect>;
  holders: CowMap<number, string>;
  markers: CowMap<number, SeenMarker>;
  shards: CowMap<number, ShardView>;
  retryAt: CowMap<number, number>;
  out: OwnershipCommand[];
}

export function step(view: OwnershipView, event: OwnershipEvent, now: number): { view: OwnershipView; commands: OwnershipCommand[] } {
  if (view.stopped) return { view, commands: [] };
  // The maps are copied only if changed (most events change one shard, or nothing but the clock).
  const w: Work = {
    v: { ...view, now: Math.max(view.now, now) },
    live: new CowSet(view.live),
    drained: new CowSet(view.drained),
    renewedAt: new CowMap(view.renewedAt),
    suspects: new CowMap(view.suspects),
    holders: new CowMap(view.holders),
    markers: new CowMap(view.markers),
    shards: new CowMap(view.shards),
    retryAt: new CowMap(view.retryAt),
    out: [],
  };
  const claimAll = apply(w, event);
  if (!w.v.stopped) decide(w, claimAll);
  const v: OwnershipView = {
    ...w.v,
    live: w.live.result(),
    drained: w.drained.result(),
    renewedAt: w.renewedAt.result(),
    suspects: w.suspects.result(),
    holders: w.holders.result(),
    markers: w.markers.result(),
    shards: w.shards.result(),
    retryAt: w.retryAt.result(),
  };
  return { view: v, commands: w.out };
}

const iso = (ms: number): string => new Date(ms).toISOString();

/** Applies one event; true when the claims that follow may try shards a live node holds (a fresh listing). */
function apply(w: Work, e: OwnershipEvent): boolean {
  const { v } = w;
  const self = v.cfg.nodeId;
  switch (e.type) {
    case 'started':
      v.started = true;
      replaceMembers(w, e.live, e.drained);
      for (const [shard, node] of e.holders) w.holders.set(shard, node);
      v.nextListAt = v.now + listEvery(v);
      return true;
    case 'tick':
      return false;
    case 'reconcile':
      if (!v.listing) v.nextListAt = v.now;
      return false;
    case 'listed':
      v.listing = false;
      if (v.stopping) return false;
      if (e.changes !== v.viewChanges) {
        // The watch changed the view while the listing ran: the listing may predate that change
        // (a drain mark written meanwhile), and must not undo it. List again at once.
        v.nextListAt = v.now;
        return false;
      }
      replaceMembers(w, e.live, e.drained);
      v.nextListAt = v.now + listEvery(v);
      return true;
    case 'list_failed':
      v.listing = false;
      v.nextListAt = v.now + listEvery(v);
      return false;
    case 'member':
      if (e.node === self && v.stopping) return false;
      if (e.up) {
        w.suspects.delete(e.node); // it renews: alive after all
        w.renewedAt.set(e.node, v.now);
        if (w.live.has(e.node)) return false;
        w.live.add(e.node);
      } else {
        w.renewedAt.delete(e.node);
        if (!w.live.delete(e.node)) return false;
      }
      v.viewChanges++;
      return false;
    case 'drain':
      if (e.on) w.drained.add(e.node);
      else w.drained.delete(e.node);
      v.viewChanges++;
      return false;
    case 'membership':
      v.joined = e.joined;
      return false;
    case 'announced':
      onAnnounced(w, e.shard, e.revision, e.marker);
      return false;
    case 'claimed':
      onClaimed(w, e.shard, e.sentAt, e.granted);
      return false;
    case 'renewed':
      onRenewed(w, e);
      return false;
    case 'renewals':
      for (const r of e.results) onRenewed(w, r);
      return false;
    case 'settled': {
      const s = w.shards.get(e.shard);
      if (s?.phase === 'leaving') w.shards.set(e.shard, { ...s, settled: true });
      return false;
    }
    case 'release_done': {
      const s = w.shards.get(e.shard);
      if (s?.phase !== 'releasing') return false;
      w.shards.delete(e.shard);
      if (e.revision !== null && s.to !== null) w.holders.set(e.shard, s.to);
      else if (w.holders.get(e.shard) === self) w.holders.delete(e.shard);
      if (e.revision !== null && s.marker !== null) w.out.push({ type: 'announce', shard: e.shard, revision: e.revision, marker: s.marker });
      w.out.push({ type: 'released', shard: e.shard, to: s.to, stoppedAt: s.stoppedAt, settledAt: s.settledAt });
      return false;
    }
    case 'swept': {
      const s = w.shards.get(e.shard);
      if (s?.phase !== 'serving' || !s.unfenced) return false;
      if (e.ok) w.shards.set(e.shard, { ...s, unfenced: false });
      else w.out.push({ type: 'sweep', shard: e.shard, afterMs: backoffDelay(SWEEP_RETRY, e.attempt + 1), attempt: e.attempt + 1 });
      return false;
    }
    case 'disconnected':
      // Nothing is served on the next connection on the strength of this one: the servers may
      // report this connection closed, and the others then take the leases written on it. Each
      // shard stops being served now and is confirmed again, on the new connection, by a renewal
      // (which fails if its lease was taken meanwhile). Its actors stay: nobody else could write
      // while the lease was this node's.
      for (const [shard, s] of [...w.shards]) {
        if (s.phase === 'serving') w.shards.set(shard, { ...s, lease: { ...s.lease, confirmed: false, renewing: null } });
        else if (s.phase === 'leaving') drop(w, shard, "this node's connection to NATS was lost");
        // A claim on its way may still land, after the reconnection, under the old connection's
        // name (which the others may take at once): served only once a renewal confirms it.
        else if (s.phase === 'claiming') w.shards.set(shard, { ...s, reconfirm: true });
      }
      w.retryAt.clear();
      v.connected = false;
      return false;
    case 'reconnected':
      v.connected = true;
      for (const [shard, s] of [...w.shards]) {
        if (s.phase === 'serving' && !s.lease.confirmed && s.lease.renewing === null) w.shards.set(shard, { ...s, lease: renew(w, shard, s.lease) });
      }
      return false;
    case 'suspect':
      if (e.node === self || v.stopping) return false;
      w.suspects.set(e.node, { until: v.now + v.cfg.ttlMs + 1_000, conn: e.conn });
      // Its shards are tried at once, then every suspectRetryMs until its leases run out.
      for (const [shard, holder] of w.holders) if (holder === e.node) w.retryAt.delete(shard);
      w.out.push({
        type: 'note',
        event: 'node_suspected',
        fields: { suspect: e.node },
        message: `the server reports node ${e.node} disconnected; taking its shards as soon as its leases run out`,
      });
      return false;
    case 'stop':
      v.stopping = true;
      w.live.delete(self); // it has left: each shard goes straight to its next owner among the others
      return false;
    case 'abandon':
      for (const [shard, s] of [...w.shards]) {
        if (s.phase === 'serving' || s.phase === 'leaving') w.out.push({ type: 'drop', shard, reason: 'abandoned: NATS is unreachable' });
      }
      w.shards.clear();
      v.stopping = true;
      v.stopped = true;
      w.out.push({ type: 'stopped' });
      return false;
  }
}

/** How long after a member's last renewal seen it counts as stopped: two renewal periods. */
function staleAfter(cfg: OwnershipConfig): number {
  return Math.floor((cfg.ttlMs * 2) / 3);
}

function listEvery(v: Draft): number {
  return Math.max(100, Math.floor(v.cfg.ttlMs / 3));
}

function replaceMembers(w: Work, live: readonly string[], drained: readonly string[]): void {
  w.live.clear();
  w.drained.clear();
  for (const id of live) w.live.add(id);
  for (const id of drained) w.drained.add(id);
  if (w.v.stopping) w.live.delete(w.v.cfg.nodeId);
  // A key listing can miss a key renewed while it runs: a node the watch saw renew within the TTL
  // is alive whatever the listing says (its expiry is what the listing is for).
  const fresh = w.v.now - w.v.cfg.ttlMs;
  for (const [id, at] of [...w.renewedAt]) {
    if (at >= fresh) {
      if (!(w.v.stopping && id === w.v.cfg.nodeId)) w.live.add(id);
    } else w.renewedAt.delete(id);
  }
}

function computeTarget(w: Work): readonly (string | null)[] {
  const { v } = w;
  const self = v.cfg.nodeId;
  const eligible = [...w.live].filter((id) => !w.drained.has(id) && !w.suspects.has(id));
  // This node counts itself while it is joined, even if the listing missed its lease.
  if (v.joined && !v.stopping && !w.drained.has(self) && !eligible.includes(self)) eligible.push(self);
  eligible.sort();
  const key = eligible.join('\u0000');
  if (key !== v.targetKey) {
    v.target = assignment(v.cfg.shardCount, eligible);
    v.targetKey = key;
  }
  return v.target;
}

/** The live node other than this one that the target gives a shard to, if any: where a handover transfers it. */
function nextOwner(w: Work, shard: number): string | null {
  const next = w.v.target[shard];
  return next !== null && next !== undefined && next !== w.v.cfg.nodeId && w.live.has(next) ? next : null;
}

function onRenewed(w: Work, e: Renewal): void {
  const { v } = w;
  const s = w.shards.get(e.shard);
  if (s === undefined || (s.phase !== 'serving' && s.phase !== 'leaving') || s.lease.renewing !== e.sentAt) return;
  if (e.revision === null) {
    drop(w, e.shard, 'renewal refused');
    return;
  }
  const lease: HeldLease = {
    ...s.lease,
    revision: e.revision,
    renewing: null,
    confirmedAt: Math.max(s.lease.confirmedAt, e.sentAt),
    validUntil: s.lease.confirmed ? Math.max(s.lease.validUntil, e.sentAt + v.cfg.ttlMs - v.cfg.safetyMs) : e.sentAt + v.cfg.ttlMs - v.cfg.safetyMs,
    confirmed: true,
  };
  w.shards.set(e.shard, { ...s, lease });
}

function onAnnounced(w: Work, shard: number, revision: number, marker: LeaseValue): void {
  const { v } = w;
  const self = v.cfg.nodeId;
  const s = w.shards.get(shard);
  if (marker.transferred_from !== undefined) {
    if (marker.node_id !== self) {
      if (s === undefined || s.phase === 'claiming') w.holders.set(shard, marker.node_id);
      return;
    }
    // Transferred here: serve it now (the former holder's write was the claim).
    if (s?.phase === 'claiming') {
      // A claim of our own is on its way: when it is refused (it saw the former holder) it takes
      // this transfer as a marker, with one revision-checked write.
      w.markers.set(shard, { revision, marker });
      return;
    }
    if (s !== undefined) return;
    computeTarget(w);
    const lease: HeldLease = {
      revision,
      epoch: revision,
      value: { node_id: self, acquired_at: iso(v.now) },
      confirmedAt: -Infinity,
      // Not served until the renewal sent now confirms it; dropped if that takes a TTL.
      validUntil: v.now + v.cfg.ttlMs,
      confirmed: false,
      lastSentAt: v.now,
      renewing: null,
      handedOver: true,
      previous: marker,
    };
    // A transfer from the very node the target names means that node is leaving (its drain mark or
    // its leave has not reached this node's view yet: the announcement is quicker than the watch).
    // Serve it, rather than hand it straight back for the leaving node to pass on again.
    const target = v.target[shard];
    const leaving = target !== undefined && target !== null && target === marker.transferred_from;
    if (v.stopping || (target !== self && !leaving)) {
      passOn(w, shard, lease);
      return;
    }
    const unfenced = marker.fence === true;
    w.shards.set(shard, { phase: 'serving', lease: renew(w, shard, lease), unfenced, kept: leaving ? { from: marker.transferred_from, until: v.now + v.cfg.ttlMs } : null });
    served(w, shard, lease, unfenced);
    return;
  }
  if (v.stopping || s !== undefined) {
    if (s?.phase === 'claiming') w.markers.set(shard, { revision, marker });
    return;
  }
  w.holders.delete(shard);
  w.markers.set(shard, { revision, marker });
}

function onClaimed(w: Work, shard: number, sentAt: number, granted: { revision: number; previous: LeaseValue | null } | null): void {
  const { v } = w;
  const s = w.shards.get(shard);
  if (s?.phase !== 'claiming') return;
  w.shards.delete(shard);
  if (granted === null) {
    // Still held: its owner hands it over (the announcement brings the marker), or its lease runs
    // out (found by the next try: soon for a suspected holder, else with the periodic listing).
    const holder = w.holders.get(shard);
    const soon = holder !== undefined && w.suspects.has(holder);
    if (!w.markers.has(shard)) w.retryAt.set(shard, v.now + (soon ? v.cfg.suspectRetryMs : listEvery(v)));
    return;
  }
  w.retryAt.delete(shard);
  const lease: HeldLease = {
    revision: granted.revision,
    epoch: granted.revision,
    value: { node_id: v.cfg.nodeId, acquired_at: iso(sentAt) },
    confirmedAt: sentAt,
    validUntil: sentAt + v.cfg.ttlMs - v.cfg.safetyMs,
    confirmed: true,
    lastSentAt: sentAt,
    renewing: null,
    // Handed over: taken from a released marker or a transfer here, whose holder stopped and flushed.
    // Taken from a lease of its own earlier tenure, or from a closed connection: fenced first.
    handedOver: granted.previous !== null && (granted.previous.released_at !== undefined || (granted.previous.transferred_from !== undefined && granted.previous.node_id === v.cfg.nodeId)),
    previous: granted.previous,
  };
  const target = computeTarget(w);
  if (v.stopping || target[shard] !== v.cfg.nodeId) {
    passOn(w, shard, lease); // the target moved on while this node was taking it
    return;
  }
  if (s.reconfirm === true) {
    // Written before the connection was lost, maybe landed after: confirmed again on this one.
    const pending = { ...lease, confirmed: false, validUntil: v.now + v.cfg.ttlMs };
    // Renewed now if connected, else as soon as the connection is back (`reconnected`).
    w.shards.set(shard, { phase: 'serving', lease: v.connected ? renew(w, shard, pending) : pending, unfenced: mustFence(pending), kept: null });
    served(w, shard, pending, mustFence(pending));
    return;
  }
  w.shards.set(shard, { phase: 'serving', lease, unfenced: mustFence(lease), kept: null });
  served(w, shard, lease, mustFence(lease));
}

/** Fenced before use: taken without a handover, or handed over by a holder that had not fenced it all yet. */
function mustFence(lease: HeldLease): boolean {
  return !lease.handedOver || lease.previous?.fence === true;
}

function served(w: Work, shard: number, lease: HeldLease, unfenced: boolean): void {
  w.holders.set(shard, w.v.cfg.nodeId);
  w.markers.delete(shard);
  w.out.push({ type: 'serve', shard, epoch: lease.epoch, handedOver: lease.handedOver, previous: lease.previous, sweep: unfenced });
}

/** Sends a renewal now; the lease as it is while the renewal is on its way. */
function renew(w: Work, shard: number, lease: HeldLease): HeldLease {
  const sentAt = w.v.now;
  w.out.push({ type: 'renew', shard, value: lease.value, revision: lease.revision, sentAt });
  return { ...lease, renewing: sentAt, lastSentAt: sentAt };
}

/**
 * A lease this node got on a view it no longer shares (it is stopping or the target moved on):
 * passed straight on, to the shard's target if there is one, without serving. A handed-over lease
 * stays handed over (its stop time travels with it); one taken after a crash is deleted (nothing
 * to vouch for: the next owner fences).
 */
function passOn(w: Work, shard: number, lease: HeldLease): void {
  const to = lease.handedOver ? nextOwner(w, shard) : null;
  const stopped = lease.previous?.stopped_at;
  const carry = { ...(stopped === undefined ? {} : { stopped_at: stopped }), ...(lease.previous?.fence === true ? { fence: true as const } : {}) };
  const marker: LeaseValue | null = !lease.handedOver
    ? null
    : to !== null
      ? { node_id: to, acquired_at: iso(w.v.now), transferred_from: w.v.cfg.nodeId, ...carry }
      : { ...lease.value, released_at: iso(w.v.now), ...carry };
  w.shards.set(shard, { phase: 'releasing', marker, to, stoppedAt: null, settledAt: null });
  w.out.push({ type: 'release', shard, revision: lease.revision, marker });
  w.out.push({ type: 'note', event: 'shard_passed_on', fields: { shard, to }, message: '' });
}

function drop(w: Work, shard: number, reason: string): void {
  w.shards.delete(shard);
  if (w.holders.get(shard) === w.v.cfg.nodeId) w.holders.delete(shard);
  w.out.push({ type: 'drop', shard, reason });
}

/** After every event: renewals and fences, handovers, claims, the periodic listing, the end of a stop. */
function decide(w: Work, claimAll: boolean): void {
  const { v } = w;
  if (!v.started) {
    if (v.stopping && w.shards.size === 0) {
      v.stopped = true;
      w.out.push({ type: 'stopped' });
    }
    return;
  }
  const { nodeId: self, ttlMs } = v.cfg;
  for (const [node, s] of [...w.suspects]) if (v.now >= s.until) w.suspects.delete(node);
  // A member whose membership renewals stopped reaching the watch (one comes every TTL/3) is paused
  // or dead: its leases run out within a TTL of its last renewal. Its shards are tried from then
  // on every suspectRetryMs, so a paused node's shards move a claim after they expire, not at the
  // next listing. (Its renewal arriving clears it: then it was only late.)
  for (const [node, renewed] of w.renewedAt) {
    if (node === self || w.suspects.has(node) || v.now < renewed + staleAfter(v.cfg) || v.now >= renewed + ttlMs + 1_000) continue;
    w.suspects.set(node, { until: renewed + ttlMs + 1_000, conn: null });
    for (const [shard, holder] of w.holders) if (holder === node) w.retryAt.delete(shard);
  }
  const target = computeTarget(w);
  const renewEvery = Math.floor(ttlMs / 3);

  let handing = 0;
  for (const s of w.shards.values()) if (s.phase === 'leaving' || s.phase === 'releasing') handing++;
  // No copy of the entries to walk: the loop changes only the shard it is at (a JS Map's iteration
  // allows that), and a CowMap's first change leaves the base, which an iteration may be over, as it was.
  for (const [shard, s] of w.shards) {
    if (s.phase !== 'serving' && s.phase !== 'leaving') continue;
    if (v.now >= s.lease.validUntil) {
      drop(w, shard, 'no renewal confirmed before the safety deadline');
      continue;
    }
    let lease = s.lease;
    if (s.phase === 'leaving') {
      if (s.settled && lease.renewing === null) {
        // Settled: in-flight requests are done and its actors forgotten. Straight to the next
        // owner when there is one; a marker for whoever the target names later.
        const to = nextOwner(w, shard);
        const stopped = iso(s.stoppedAt);
        const fence = s.unfenced ? { fence: true as const } : {};
        const marker: LeaseValue =
          to !== null ? { node_id: to, acquired_at: iso(v.now), transferred_from: self, stopped_at: stopped, ...fence } : { ...lease.value, released_at: iso(v.now), stopped_at: stopped, ...fence };
        w.shards.set(shard, { phase: 'releasing', marker, to, stoppedAt: s.stoppedAt, settledAt: v.now });
        w.out.push({ type: 'release', shard, revision: lease.revision, marker });
        continue;
      }
      if (v.connected && !s.settled && lease.renewing === null && v.now >= lease.lastSentAt + renewEvery) w.shards.set(shard, { ...s, lease: renew(w, shard, lease) });
      continue;
    }
    if (v.connected && lease.renewing === null && v.now >= lease.lastSentAt + renewEvery) lease = renew(w, shard, lease);
    let kept = s.kept;
    if (kept !== null && (v.stopping || v.now >= kept.until || target[shard] !== kept.from)) kept = null;
    if (target[shard] !== self && kept === null && handing < v.cfg.handoffsAtOnce) {
      handing++;
      w.shards.set(shard, { phase: 'leaving', lease, stoppedAt: v.now, settled: false, unfenced: s.unfenced });
      w.out.push({ type: 'settle', shard });
      continue;
    }
    if (lease !== s.lease || kept !== s.kept) w.shards.set(shard, { ...s, lease, kept });
  }

  // Not a member yet (or any more), as this node and the others see it, or not connected: take nothing.
  if (!v.stopping && v.connected && (v.joined || w.live.has(self))) {
    let claiming = 0;
    for (const s of w.shards.values()) if (s.phase === 'claiming') claiming++;
    for (const [shard, seen] of [...w.markers]) {
      if (claiming >= v.cfg.claimsAtOnce) break;
      if (target[shard] !== self || w.shards.has(shard)) continue;
      w.markers.delete(shard);
      claiming++;
      w.shards.set(shard, { phase: 'claiming', marker: seen });
      w.out.push({ type: 'claim', shard, value: { node_id: self, acquired_at: iso(v.now) }, marker: seen, steal: null });
    }
    for (const shard of [...w.retryAt.keys()]) if (target[shard] !== self || w.shards.has(shard)) w.retryAt.delete(shard);
    for (let shard = 0; shard < target.length && claiming < v.cfg.claimsAtOnce; shard++) {
      if (target[shard] !== self || w.shards.has(shard)) continue;
      const retry = w.retryAt.get(shard);
      if (retry !== undefined && v.now < retry) continue;
      // Without a fresh listing, leave alone what a live node holds: its release will be announced.
      const holder = w.holders.get(shard);
      if (!claimAll && retry === undefined && holder !== undefined && holder !== self && w.live.has(holder) && !w.suspects.has(holder)) continue;
      w.retryAt.delete(shard);
      claiming++;
      w.shards.set(shard, { phase: 'claiming', marker: null });
      const suspect = holder === undefined ? undefined : w.suspects.get(holder);
      const steal = holder !== undefined && suspect?.conn != null ? { node: holder, conn: suspect.conn } : null;
      w.out.push({ type: 'claim', shard, value: { node_id: self, acquired_at: iso(v.now) }, marker: null, steal });
    }
  }
  if (v.stopping) {
    w.retryAt.clear();
    if (w.shards.size === 0) {
      v.stopped = true;
      w.out.push({ type: 'stopped' });
    }
    return;
  }
  if (!v.listing && v.now >= v.nextListAt) {
    v.listing = true;
    w.out.push({ type: 'list', changes: v.viewChanges });
  }
}
