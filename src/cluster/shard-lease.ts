/**
 * A lease on one key of a TTL bucket (`af_leases`, whose max_age is the lease TTL; nats-server
 * 2.9 has no per-key TTL). Acquire is a create, renew a revision-checked update, so a holder that
 * missed its TTL can never renew again: the key expired, or another node holds it.
 *
 *   acquire ──▶ held ──renew (every TTL/3)──▶ held
 *                 │ renewal refused, or not confirmed before the safety deadline
 *                 ▼
 *               fenced (onFence runs: stop serving *before* the lease can expire anywhere)
 *
 * A holder that hands a shard over on purpose leaves a *released* marker instead of deleting the
 * key: it has stopped serving and flushed, so the next holder (who takes the marker with a
 * revision-checked update) can serve at once, without fencing every activeflow first. A key that
 * vanished through the TTL says nothing of the kind, and its next holder fences before serving.
 *
 * When the holder knows who is next, it *transfers* instead: the same write puts the lease in the
 * next holder's name (`transferred_from` set), and the announcement alone lets that node serve,
 * without a claim's round trip on the move's critical path. The next holder renews at once, which
 * both confirms the lease and starts its own clock on it. A next holder that never hears of it
 * (it crashed) leaves the lease to expire, and its shard is then taken over with fencing, as after
 * any crash. A node that finds a transfer in its name while listing takes it over the same way.
 */
import type { JetStreamManager } from '@nats-io/jetstream';
import type { KV } from '@nats-io/kv';
import { isMessageGone } from '../errors.js';
import { decodeJson, encodeJson } from '../store/codec.js';

export interface LeaseValue {
  node_id: string;
  acquired_at: string;
  /** Set by a holder that handed the lease over; the lease is free. */
  released_at?: string;
  /** When that holder stopped taking requests for it: the start of the move's pause. */
  stopped_at?: string;
  /** Set by a holder that transferred the lease to `node_id`, who has not confirmed it yet. */
  transferred_from?: string;
  /**
   * On a marker or transfer: the shard was handed over before all its activeflows were fenced
   * (taken after a crash, then moved on before its sweep finished): the next holder fences them.
   */
  fence?: true;
  /** The connection the holder wrote it on (`<server id>/<client id>`): taken at once if the servers see that connection close. */
  conn?: string;
}

export interface LeaseOptions {
  ttlMs: number;
  /** Stop serving this long before the TTL could run out, to absorb clock and network delays. */
  safetyMs: number;
  onFence: (reason: string) => void;
  now?: () => number;
}

export class ShardLease {
  private timer: NodeJS.Timeout | null = null;
  private fenced = false;
  /** A renewal on its way: a release waits for it, or its write would race the release's. */
  private renewing: Promise<number> | null = null;
  /** A renewal was refused: the key is not ours any more. */
  private lost = false;
  private confirmedAt: number;

  /**
   * The fencing token: the revision the lease was created at. Revisions only grow in a bucket, so
   * every new holder's epoch is larger than any earlier holder's, even across deletes.
   */
  readonly epoch: number;

  private constructor(
    private readonly kv: KV,
    readonly key: string,
    readonly value: LeaseValue,
    private revision: number,
    private readonly options: LeaseOptions,
  ) {
    this.confirmedAt = (options.now ?? Date.now)();
    this.epoch = revision;
  }

  /**
   * True when the lease was taken from a holder's released marker: that holder stopped and
   * flushed before releasing, so there is nobody left to fence.
   */
  handedOver = false;
  /** The released marker it was taken from, if any. */
  previous: LeaseValue | null = null;

  /** Takes the lease if nobody holds it; null when someone does. */
  static async acquire(kv: KV, key: string, nodeId: string, options: LeaseOptions): Promise<ShardLease | null> {
    const value: LeaseValue = { node_id: nodeId, acquired_at: new Date().toISOString() };
    const t0 = (options.now ?? Date.now)();
    let revision: number;
    let previous: LeaseValue | null = null;
    try {
      revision = await kv.create(key, encodeJson(value));
    } catch {
      // Held, or released with a marker: only the marker can be taken (revision-checked).
      try {
        const e = await kv.get(key);
        if (e === null || e.operation !== 'PUT') return null;
        const marker = decodeJson(e.value) as LeaseValue;
        const transferredHere = marker.node_id === nodeId && marker.transferred_from !== undefined;
        if (marker.released_at === undefined && !transferredHere) return null;
        revision = await kv.update(key, encodeJson(value), e.revision);
        previous = marker;
      } catch {
        return null;
      }
    }
    const lease = new ShardLease(kv, key, value, revision, options);
    lease.confirmedAt = t0; // the TTL started no later than the request
    lease.handedOver = previous !== null;
    lease.previous = previous;
    return lease;
  }

  /**
   * Takes a released marker seen at `revision` (from a watch): one revision-checked write, the
   * fastest handover. Null when it changed since (someone else took it).
   */
  static async takeReleased(kv: KV, key: string, nodeId: string, revision: number, marker: LeaseValue, options: LeaseOptions): Promise<ShardLease | null> {
    const value: LeaseValue = { node_id: nodeId, acquired_at: new Date().toISOString() };
    const t0 = (options.now ?? Date.now)();
    try {
      const lease = new ShardLease(kv, key, value, await kv.update(key, encodeJson(value), revision), options);
      lease.confirmedAt = t0;
      lease.handedOver = true;
      lease.previous = marker;
      return lease;
    } catch {
      return null;
    }
  }

  /**
   * Takes a lease transferred to this node (seen at `revision` in the announcement), serving at
   * once: its clock starts when the announcement arrived, and the renewal sent right away confirms
   * it (a refused one fences, as always). Not null: the write was the former holder's.
   */
  static adopt(kv: KV, key: string, nodeId: string, revision: number, transferred: LeaseValue, options: LeaseOptions): ShardLease {
    const value: LeaseValue = { node_id: nodeId, acquired_at: new Date().toISOString() };
    const lease = new ShardLease(kv, key, value, revision, options);
    lease.handedOver = true;
    lease.previous = transferred;
    return lease;
  }

  /**
   * Who holds a key now, if anyone (a released marker is nobody), read from the bucket's stream
   * leader. Not `kv.get`: that is a direct get any replica answers, and a replica that lags by
   * more than the TTL has already expired the last renewal it holds without having the next one
   * (seen in CI, TTL 1 s under load: a node that had just joined was "no live node").
   */
  static async holder(jsm: JetStreamManager, bucket: string, key: string): Promise<LeaseValue | null> {
    try {
      const msg = await jsm.streams.getMessage(`KV_${bucket}`, { last_by_subj: `$KV.${bucket}.${key}` });
      const operation = msg?.header?.get('KV-Operation') ?? '';
      if (msg === null || operation === 'DEL' || operation === 'PURGE') return null;
      const value = decodeJson(msg.data) as LeaseValue;
      return value.released_at === undefined ? value : null;
    } catch (e) {
      if (isMessageGone(e)) return null;
      throw e;
    }
  }

  /** When the last renewal was confirmed (ms, this host's clock). */
  get confirmedAtMs(): number {
    return this.confirmedAt;
  }

  get isFenced(): boolean {
    return this.fenced;
  }

  /** Until when this holder may act on the lease (the last confirmation + TTL - safety). */
  get validUntilMs(): number {
    return this.confirmedAt + this.options.ttlMs - this.options.safetyMs;
  }

  /** Renews once; false (and fenced) when the renewal is refused. */
  async renew(): Promise<boolean> {
    if (this.fenced) return false;
    // One at a time: a second renewal sent while the first is on its way would carry the revision
    // the first replaces, be refused, and fence a lease that is still ours (a slow server, a busy
    // process: renewals that take longer than TTL/3).
    if (this.renewing !== null) {
      await this.renewing.catch(() => undefined);
      return !this.fenced;
    }
    const t0 = (this.options.now ?? Date.now)();
    const attempt = this.kv.update(this.key, encodeJson(this.value), this.revision);
    this.renewing = attempt;
    try {
      this.revision = await attempt;
      if (!this.fenced) this.confirmedAt = t0;
      return !this.fenced;
    } catch (e) {
      this.lost = true;
      this.fence(`renewal refused: ${(e as Error).message}`);
      return false;
    } finally {
      if (this.renewing === attempt) this.renewing = null;
    }
  }

  /**
   * Renews every TTL/3 and fences itself if no renewal is confirmed before the safety deadline,
   * even while a renewal request hangs (a paused process, a partitioned server).
   */
  keep(): void {
    const tick = async () => {
      const now = (this.options.now ?? Date.now)();
      if (now >= this.validUntilMs) {
        this.fence('no renewal confirmed before the safety deadline');
        return;
      }
      await this.renew();
    };
    this.timer = setInterval(() => void tick(), Math.max(50, Math.floor(this.options.ttlMs / 3)));
    this.timer.unref();
    // The deadline check must not wait behind a hung renewal: a separate watchdog.
    const watchdog = setInterval(
      () => {
        if (!this.fenced && (this.options.now ?? Date.now)() >= this.validUntilMs) this.fence('no renewal confirmed before the safety deadline');
        if (this.fenced) clearInterval(watchdog);
      },
      Math.max(20, Math.floor(this.options.safetyMs / 2)),
    );
    watchdog.unref();
  }

  /** Stops renewing without a write or a fence callback: the lease expires on its own. */
  abandon(): void {
    this.fenced = true;
    if (this.timer) clearInterval(this.timer);
  }

  private fence(reason: string): void {
    if (this.fenced) return;
    this.fenced = true;
    if (this.timer) clearInterval(this.timer);
    this.options.onFence(reason);
  }

  /**
   * Gives the lease up at once, if it is still ours. `handOver` leaves a released marker (or, with
   * `to`, transfers the lease to that node): only for a holder that stopped writing and flushed,
   * so that the next one may skip fencing.
   */
  async release(options: { handOver?: boolean; stoppedAt?: Date; to?: string } = {}): Promise<{ revision: number; marker: LeaseValue } | null> {
    const wasFenced = this.fenced;
    this.fenced = true;
    if (this.timer) clearInterval(this.timer);
    if (wasFenced) return null;
    // A renewal still on its way would move the revision under the release (which would then be
    // refused, leaving the key held until it expires): wait for it, and write after it.
    await this.renewing?.catch(() => undefined);
    if (this.lost) return null;
    if (options.handOver === true) {
      const stopped = options.stoppedAt ? { stopped_at: options.stoppedAt.toISOString() } : {};
      const marker: LeaseValue =
        options.to === undefined
          ? { ...this.value, released_at: new Date().toISOString(), ...stopped }
          : { node_id: options.to, acquired_at: new Date().toISOString(), transferred_from: this.value.node_id, ...stopped };
      const revision = await this.kv.update(this.key, encodeJson(marker), this.revision).catch(() => null);
      return revision === null ? null : { revision, marker };
    }
    await this.kv.delete(this.key, { previousSeq: this.revision }).catch(() => undefined);
    return null;
  }
}
