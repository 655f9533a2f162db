/**
 * One activeflow hosted on a node: an XState actor behind a mailbox. Requests are handled one at a
 * time, each in the same fixed order:
 *
 *   transition ─▶ journal entry (one durable write, fenced) ─▶ effects ─▶ reply
 *        ▲                                                       │ awaited effect
 *        └────────────────────── effect_result ◀─────────────────┘
 *
 * Life of the handle:
 *
 *   unloaded ──load──▶ running ──end──▶ ended
 *       │                 │ refused or failed write
 *       └──▶ missing      └──────────────▶ dropped (the registry forgets it; the next request reloads)
 *
 * A reply is sent only after the change it reports is stored: a move's journal entry
 * (src/store/journal-entry.ts) is its one durable write, and is also the event readers get. The
 * state is checkpointed to KV every CHECKPOINT_EVERY entries, off the request path, and whenever
 * the actor leaves memory (passivated, handed over, stopped) or ends; a load is the checkpoint plus
 * the entries after it (docs/architecture.md, "The journal").
 */
import { createActor, type Actor } from 'xstate';
import {
  activeflowMachine,
  createActiveflow,
  reduce,
  substituteText,
  type ActiveflowMachine,
  type CreateRequest,
  type Effect,
  type EffectResult,
  type EngineEvent,
  type EngineState,
  type Flow,
  type Limits,
  type Verb,
} from '../machines/index.js';
import type { HostClock } from '../src/clock.js';
import { type CycleStep, driveAsync, replyValue, requestCycle, resumeCycle } from './host-cycle.js';
import { persistedSnapshot, persistedState } from './persisted-snapshot.js';
import { ActiveflowError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import type { ActiveflowIndex } from '../src/store/activeflow-index.js';
import type { Journal, LastEntry } from '../src/store/journal.js';
import { sharedLimits } from '../src/store/shared-limits.js';
import { createdEntry, fenceEntry, moveEntry, ReplayDivergence, rebaseEntry, replayFromStart, replayOnto } from '../src/store/journal-entry.js';
import { RevisionConflict } from '../src/store/revision-conflict.js';
import type { JournalPosition, OwnCheckpoint, Revision, SnapshotStore, StoredActiveflow } from '../src/store/snapshot-store.js';
import { backoffDelay, type Backoff } from '../src/retry.js';
import { VERSION } from '../src/version.js';

/**
 * Journal entries between checkpoints. A load after a crash reads at most this many entries (one
 * leader read each) and replays them; a checkpoint is one KV write of the whole state, ~6 KB for the
 * bench's call, so at 32 it costs ~0.2 KB of writes per move, against ~0.5 KB for the entry itself.
 */
export const CHECKPOINT_EVERY = 32;

const END_PENDING = 1;
const SLOT_RELEASED = 2;
const FORGOTTEN = 4;
const BARE_CHECKPOINT = 8;
/** A settled mailbox: an idle actor's `tail`, shared by all. */
const IDLE: Promise<unknown> = Promise.resolve();
/** The resolution of `lastUsedMs` (idle passivation counts minutes): 2^31 ticks are 397 days. */
const USE_TICK_MS = 16;
const STARTED_MS = Date.now();

export interface EffectRunner {
  /** Performs an awaited effect; failures are results, never throws. */
  perform(effect: Effect): Promise<EffectResult>;
  /** Starts a fire-and-forget effect; it logs its own failures, on the activeflow's logger. */
  launch(effect: Effect, activeflowId: string, log?: Logger): void;
  /**
   * Creates and executes an on_complete child; idempotent (its id is fixed by the parent, and an
   * existing or already started child counts as done). Throws when it cannot be done now.
   */
  startChild(effect: Extract<Effect, { type: 'start_child' }>, log?: Logger): Promise<void>;
}

export interface ActorDeps {
  store: SnapshotStore;
  journal: Journal;
  index: ActiveflowIndex;
  effects: EffectRunner;
  clock: HostClock;
  log: Logger;
  limits: Limits;
  /** Looks a flow up for creation (null when missing, deleted or another customer's). */
  findFlow(flowId: string, customerId: string): Promise<Flow | null>;
  /** Another activeflow as it is now (for `reference_activeflow_id`): its customer and variables, null when unknown. */
  findParent(activeflowId: string): Promise<{ customer_id: string; variables: Record<string, string> } | null>;
  /**
   * True when this node took the activeflow's shard from a holder that did not hand it over (a
   * crash, a pause): a fence entry is appended to its journal before its first use here, so that
   * holder, if it still runs, can never write it again.
   */
  mustFence?(activeflowId: string): boolean;
  /**
   * Whether this node still serves the activeflow's shard. Checked after every load: state read
   * once the lease is gone may already be the next owner's (fenced, and read after its fence), and
   * a write based on it would pass the revision check. (Found by the cluster simulation: a request
   * admitted just before a pause loaded and wrote after the pause, beside the next owner.)
   */
  stillServed?(activeflowId: string): boolean;
  /** Where moves, snapshot writes and conflicts are counted (the node's /metrics). */
  metrics?: ActorMetrics;
  /** Log fields of an activeflow besides its id (its shard). */
  logFields?(activeflowId: string): Record<string, unknown>;
  /** The customer's quotas on creation and the running count (src/quota); none: no quotas. */
  admission?: CreationAdmission;
  /**
   * Runs `fn` after `ms` without holding the process open (an unref'd timer by default); the
   * cluster simulation gives its own clock's timers, so that a run is the same every time.
   */
  later?(ms: number, fn: () => void): void;
}

/** Per-customer admission of creations (src/quota/customer-quotas.ts). */
export interface CreationAdmission {
  /** The limits a new activeflow of this customer keeps (its variable quotas in place). */
  limits(customerId: string): Limits;
  /** Takes a creation token (in memory) unless `child`; throws `limit_exceeded` (creations_per_second). */
  admitRate(customerId: string, child: boolean): void;
  /** Gives that token back: the creation did not happen (its id exists). */
  refundRate(customerId: string, child: boolean): void;
  /** Takes a running slot (the cluster-wide count); throws `limit_exceeded` (running_activeflows). */
  takeSlot(customerId: string): Promise<void>;
  /** Gives a running slot back: a creation that did not happen, or an end. */
  release(customerId: string): Promise<void>;
}

export interface ActorMetrics {
  /** One move's durable write (its journal entry) took this long (seconds). */
  journalWrite(seconds: number): void;
  revisionConflict(): void;
  /** Actions just executed (a cursor move each), by type. */
  moved(types: readonly string[]): void;
}

type Mode =
  | { kind: 'unloaded' }
  | { kind: 'missing' }
  | { kind: 'running'; actor: Actor<ActiveflowMachine> }
  /** `revision`: af_ended's, null until the end's checkpoint is written. */
  | { kind: 'ended'; state: EngineState; revision: Revision | null }
  | { kind: 'dropped' };

/** A request's outcome: a value to send, or an API error. */
export type ActorReply = { ok: true; value: unknown } | { ok: false; error: ActiveflowError };

const ok = (value: unknown): ActorReply => ({ ok: true, value });
const fail = (code: ActiveflowError['code'], message: string): ActorReply => ({ ok: false, error: new ActiveflowError(code, message) });

/** Between tries of the last steps of an end that failed (NATS unreachable for a while). */
const END_RETRY_BACKOFF: Backoff = { firstMs: 250, maxMs: 30_000 };

export class ActiveflowActor {
  private mode: Mode = { kind: 'unloaded' };
  /** The mailbox's last request; the shared IDLE once it is done (one promise fewer per idle actor). */
  private tail: Promise<unknown> = IDLE;
  private queued = 0;
  /** The journal's last entry as this actor knows it: the next append expects exactly it (the fence). */
  private journalSeq = 0;
  private entryN = 0;
  /** The state as of that entry (the actor's may be one transition ahead while its entry is written). */
  private committed: EngineState | null = null;
  /** af_running's revision as the last checkpoint (or the creation) left it; null once refused. */
  private checkpointRevision: Revision | null = null;
  /** Entries since the checkpoint (or since the end's checkpoint). */
  private uncheckpointed = 0;
  /** Checkpoint writes, one at a time, beside the mailbox (never in a request's way); made on first use. */
  private checkpointing: Promise<void> | null = null;
  /**
   * endPending, slotReleased and forgotten, one bit each: an actor is mostly idle in memory, and
   * 100,000 of them are resident per node, so each field counts (8 bytes).
   */
  private bits = 0;
  /** An end whose last steps (checkpoint, index, children, the running key) are not done yet. */
  private get endPending(): boolean {
    return (this.bits & END_PENDING) !== 0;
  }
  private set endPending(on: boolean) {
    this.bits = on ? this.bits | END_PENDING : this.bits & ~END_PENDING;
  }
  /** This end gave its running slot back (see completeEnd). */
  private get slotReleased(): boolean {
    return (this.bits & SLOT_RELEASED) !== 0;
  }
  private set slotReleased(on: boolean) {
    this.bits = on ? this.bits | SLOT_RELEASED : this.bits & ~SLOT_RELEASED;
  }
  /**
   * The running checkpoint at checkpointRevision is the creation's, written by this handle, so
   * nothing of it is stored aside: the end removes it without reading it back. Cleared before any
   * other checkpoint is tried (its split may store history aside, whatever becomes of the write).
   */
  private get bareCheckpoint(): boolean {
    return (this.bits & BARE_CHECKPOINT) !== 0;
  }
  private set bareCheckpoint(on: boolean) {
    this.bits = on ? this.bits | BARE_CHECKPOINT : this.bits & ~BARE_CHECKPOINT;
  }
  /**
   * The revision of the index entry this handle created, while nothing else is known to have written
   * it (0: not known): the end replaces that entry without reading it (ActiveflowIndex.record).
   */
  private indexCreatedAt = 0;
  /** The registry no longer routes requests here (see forget). */
  private get forgotten(): boolean {
    return (this.bits & FORGOTTEN) !== 0;
  }
  /** The wait before the next retry of an end that could not finish (doubles, at most 30 s). */
  private endRetries = 0;
  private requestCounter = 0;
  /**
   * When it was last used, in USE_TICK_MS ticks since this process began: a small integer, stored in
   * the object, where milliseconds since 1970 would each be a separate heap number.
   */
  private usedAt = 0;
  /** Made on first use: most activeflows never log, and two child loggers each were ~5% of their memory. */
  private logger: Logger | null = null;

  constructor(
    readonly id: string,
    private readonly deps: ActorDeps,
    /** Its customer, when this node knows it already (passivated here): a load then reads the checkpoint and the journal at once. */
    knownCustomer?: string,
    /**
     * The checkpoint it left when it was passivated here, current then, in this node's present
     * term on the shard (ActorRegistry forgets it with the shard): a load reads that checkpoint by
     * its revision and nothing of the journal (see `load`).
     */
    private passivatedAt?: OwnCheckpoint,
  ) {
    this.touch();
    this.customerId = knownCustomer;
  }

  private get log(): Logger {
    this.logger ??= this.deps.log.child({ ...this.deps.logFields?.(this.id), activeflow_id: this.id, ...(this.customerId === undefined ? {} : { customer_id: this.customerId }) });
    return this.logger;
  }

  /**
   * A debug line, written only when debug is on: every activeflow logs one at its creation, load
   * and end, and making its logger for a line that is then dropped kept that logger (its bindings,
   * a few hundred bytes) in memory for as long as the activeflow stayed resident.
   */
  private debug(fields: Record<string, unknown>): void {
    if (this.deps.log.isLevelEnabled('debug')) this.log.debug(fields);
  }

  /** The activeflow's customer, once loaded or created (fair admission groups requests by it). */
  customerId: string | undefined;

  /** Every log line of an activeflow names its customer, once it is known. */
  private knowCustomer(customerId: string): void {
    if (this.customerId !== undefined) return;
    this.customerId = customerId;
    this.logger = null; // made again, with the customer, when next needed
  }

  /** When it was last used (milliseconds since 1970, to USE_TICK_MS). */
  get lastUsedMs(): number {
    return STARTED_MS + this.usedAt * USE_TICK_MS;
  }

  private touch(): void {
    this.usedAt = Math.ceil((Date.now() - STARTED_MS) / USE_TICK_MS);
  }

  /**
   * The stream sequence of the journal entry this handle knows to be last: its next append expects
   * exactly it (0 before a load). The cluster simulation checks that no other loaded handle (on
   * another node, or beside this one on the same node) holds the position a successful append was
   * based on.
   */
  get journalAt(): number {
    return this.journalSeq;
  }

  /** True while a request waits or runs (such an actor is never passivated). */
  get busy(): boolean {
    return this.queued > 0;
  }

  /** False once the handle must be forgotten (fenced, failed write, not found). */
  get usable(): boolean {
    return this.mode.kind !== 'dropped' && this.mode.kind !== 'missing';
  }

  get resident(): boolean {
    return this.mode.kind === 'running' || this.mode.kind === 'ended';
  }

  /**
   * Its stored checkpoint when that holds everything (running, every entry checkpointed, the
   * checkpoint not refused), else null: what a passivation leaves for the next load.
   */
  get ownCheckpoint(): OwnCheckpoint | null {
    return this.mode.kind === 'running' && this.uncheckpointed === 0 && this.checkpointRevision !== null && this.journalSeq > 0 ? { ...this.position(), revision: this.checkpointRevision } : null;
  }

  /** True while journal entries are not in a checkpoint yet (passivation waits for one). */
  get dirty(): boolean {
    return this.mode.kind === 'running' && this.uncheckpointed > 0 && this.checkpointRevision !== null;
  }

  /** Runs `fn` after every earlier request of this activeflow (the mailbox). */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    this.queued++;
    this.touch();
    const run = this.tail.then(fn);
    const tail = run
      .catch(() => undefined)
      .finally(() => {
        this.touch();
        if (--this.queued === 0 && this.tail === tail) this.tail = IDLE;
      });
    this.tail = tail;
    return run;
  }

  private position(): JournalPosition {
    return { seq: this.journalSeq, n: this.entryN };
  }

  // -------------------------------------------------------------------------------------------
  // creation

  create(request: CreateRequest): Promise<ActorReply> {
    return this.enqueue(async () => {
      // An id that ended is refused here; one that runs, by the first checkpoint's create below (a
      // read of it here would be a request more per creation, for the one case in which it is
      // there: a client's repeated create).
      if (await this.deps.store.hasEnded(this.id)) return fail('conflict', `activeflow ${this.id} already exists`);
      const flow = request.flow_id !== undefined ? await this.deps.findFlow(request.flow_id, request.customer_id) : null;
      const parentId = request.reference_activeflow_id;
      const parent = parentId !== undefined ? await this.deps.findParent(parentId) : null;
      const admission = this.deps.admission;
      const created = createActiveflow({
        request: { ...request, id: this.id },
        flow,
        parent,
        now: this.deps.clock.now(),
        entropy: this.deps.clock.entropy(),
        limits: sharedLimits(admission?.limits(request.customer_id) ?? this.deps.limits),
      });
      if (!created.ok) return { ok: false, error: ActiveflowError.from(created.error) };
      // Checked once the request is known to be valid, so bad input uses up nothing. An on_complete
      // child (it names its parent) is not held to the creation rate: refusing it would stall the
      // parent's end. The rate is checked in memory first: a flood is refused without a write.
      admission?.admitRate(request.customer_id, parentId !== undefined);
      this.knowCustomer(request.customer_id);
      const actor = createActor(activeflowMachine, { input: created.state });
      actor.start();
      // The first checkpoint claims the id (a create of an existing key is refused) and gives the
      // running key that counts, lists and sweeps read; the created entry follows.
      let revision: Revision;
      try {
        revision = await this.deps.store.create(this.id, persistedSnapshot(actor));
      } catch (e) {
        actor.stop();
        if (e instanceof RevisionConflict) {
          admission?.refundRate(request.customer_id, parentId !== undefined); // a refused creation uses up nothing
          return fail('conflict', `activeflow ${this.id} already exists`);
        }
        throw e;
      }
      // The running slot is taken once the activeflow is stored: a crash between the two leaves it
      // uncounted (one too few: the customer may run one more), never a slot taken for an
      // activeflow that does not exist, which would hold the customer below its quota for good.
      // Refused, it is removed again and was never there: no event, no reply but the refusal.
      try {
        await admission?.takeSlot(request.customer_id);
      } catch (e) {
        actor.stop();
        await this.deps.store
          .deleteRunning(this.id, revision, true)
          .catch((err: unknown) => this.log.warn({ event: 'refused_create_not_removed', err }, 'a refused creation could not be removed; it stays uncounted until it ends'));
        throw e;
      }
      this.mode = { kind: 'running', actor };
      this.checkpointRevision = revision;
      this.bareCheckpoint = true;
      // Written before the created entry: an activeflow whose entry failed (the request answers
      // `unavailable`) exists all the same, holds its running slot, and must be listed with it. The
      // index is what the reconcile counts, so a failed write fails the creation here, before its
      // created entry: the next load finds the entry missing and writes both. (Logged and passed
      // over, as it was, the activeflow ran without an index entry until its end, and the reconcile
      // lowered its customer's count below what ran: found by the cluster simulation.)
      await this.indexOrDrop(created.state, actor);
      // A crash or a failure before this append leaves the checkpoint at entry 0: the next load appends it.
      await this.appendCreated(created.state);
      this.debug({ event: 'activeflow_created' });
      if (request.execute === true) {
        const executed = await this.run('execute', {});
        if (!executed.ok) return executed;
      }
      return ok(this.state()!.activeflow);
    });
  }

  /** The new activeflow's index entry; if it cannot be written, the handle goes (the next request reloads and repairs). */
  private async indexOrDrop(state: EngineState, actor: Actor<ActiveflowMachine>): Promise<void> {
    try {
      this.indexCreatedAt = (await this.deps.index.record(state.activeflow)) ?? 0;
    } catch (e) {
      actor.stop();
      this.mode = { kind: 'dropped' };
      this.log.warn({ event: 'index_write_failed', err: e }, 'the new activeflow is stored but not indexed; its next load indexes it');
      throw new ActiveflowError('unavailable', `activeflow ${this.id} was created but could not be indexed; retry`, { cause: e });
    }
  }

  private async appendCreated(state: EngineState): Promise<void> {
    const entry = createdEntry(state, VERSION);
    this.journalSeq = await this.guard(() => this.deps.journal.append(state.activeflow.customer_id, this.id, entry, 0, state.activeflow.webhook_uri !== ''));
    this.entryN = 1;
    this.committed = state;
  }

  // -------------------------------------------------------------------------------------------
  // requests

  /** A verb that may change the activeflow (the body is already validated). */
  request(verb: Verb, body: Record<string, unknown>, customerId?: string): Promise<ActorReply> {
    return this.enqueue(async () => {
      // A deleted activeflow is the engine's to refuse, so a repeated delete (same request_id)
      // still gets its first answer.
      const refused = await this.ready(customerId, true);
      if (refused) return refused;
      return this.run(verb, body);
    });
  }

  /**
   * Ends the activeflow with end_reason `timeout` if it is still running and has not changed for
   * `maxIdleMs` (checked here, in order with every other request). True when it ended it.
   */
  timeOut(maxIdleMs: number): Promise<boolean> {
    return this.enqueue(async () => {
      if (await this.ready(undefined)) return false;
      const af = this.state()!.activeflow;
      if (af.status !== 'running' || Date.now() - Date.parse(af.tm_update ?? af.tm_create) <= maxIdleMs) return false;
      const reply = await this.run('stop', { reason: 'timeout' });
      return reply.ok;
    });
  }

  /** A read: get, variables_get, substitute. Goes through the mailbox, so it sees every change before it. */
  read<T>(customerId: string | undefined, fn: (state: EngineState) => T): Promise<ActorReply> {
    return this.enqueue(async () => {
      const refused = await this.ready(customerId);
      if (refused) return refused;
      return ok(fn(this.state()!));
    });
  }

  substitute(customerId: string | undefined, data: string): Promise<ActorReply> {
    return this.read(customerId, (s) => ({ data: substituteText(s, data) }));
  }

  /** The current state, if loaded. */
  state(): EngineState | undefined {
    switch (this.mode.kind) {
      case 'running':
        return this.mode.actor.getSnapshot().context;
      case 'ended':
        return this.mode.state;
      default:
        return undefined;
    }
  }

  /** Loads if needed, checks the customer, and finishes an end that is not finished. */
  private async ready(customerId: string | undefined, deletedIsTheEngines = false): Promise<ActorReply | null> {
    if (this.forgotten) return fail('unavailable', `activeflow ${this.id} is moving; retry`);
    if (this.mode.kind === 'unloaded') await this.load();
    if (this.mode.kind === 'dropped') return fail('unavailable', `activeflow ${this.id} is moving; retry`);
    const state = this.state();
    const deleted = state !== undefined && state.activeflow.tm_delete !== null && !deletedIsTheEngines;
    if (state === undefined || deleted || (customerId !== undefined && customerId !== state.activeflow.customer_id)) {
      return fail('not_found', `activeflow ${this.id} not found`);
    }
    if (this.endPending) await this.completeEnd();
    return null;
  }

  /** The request through the one host loop (actors/host-cycle.ts): each transition stored, effects over the network. */
  private async run(verb: Verb, body: Record<string, unknown>): Promise<ActorReply> {
    const requestId = `${this.id}:${++this.requestCounter}`;
    const cycle = requestCycle({ verb, body, requestId, effectRequestId: () => `${requestId}:e`, stamp: () => this.stamp() });
    const { reply, state } = await driveAsync(cycle, (step) => this.take(step));
    if (reply === undefined) throw new Error(`the engine did not answer ${verb}`);
    if (this.uncheckpointed >= CHECKPOINT_EVERY) void this.checkpoint();
    const value = replyValue(reply, state);
    return value.ok ? ok(value.value) : { ok: false, error: ActiveflowError.from(value.error) };
  }

  /** One step of the host loop, on a node: a stored transition, an effect over the network. */
  private take(step: CycleStep): unknown {
    switch (step.kind) {
      case 'transition':
        return this.transition(step.event);
      case 'perform':
        return this.deps.effects.perform(step.effect);
      case 'launch':
        // Children are created by the end's last steps (completeEnd), once the end is stored.
        if (step.effect.type !== 'start_child') this.deps.effects.launch(step.effect, this.id, this.log);
        return undefined;
    }
  }

  private stamp(): { now: string; entropy: string } {
    return { now: this.deps.clock.now(), entropy: this.deps.clock.entropy() };
  }

  // -------------------------------------------------------------------------------------------
  // the write path

  /**
   * Applies one event and appends its journal entry before anything else happens. If the append
   * is refused or fails, the in-memory actor may be ahead of the journal: the handle is dropped
   * (the next request reloads what was stored) and the request fails as `unavailable`.
   */
  private async transition(event: EngineEvent): Promise<EngineState> {
    const mode = this.mode;
    if (mode.kind === 'ended') {
      const next = reduce(mode.state, event);
      if (next.activeflow === mode.state.activeflow) {
        // nothing to store: a refusal, or a repeat answered from memory
        this.mode = { kind: 'ended', state: next, revision: mode.revision };
        return next;
      }
      await this.append(mode.state, next, event);
      this.mode = { kind: 'ended', state: next, revision: mode.revision };
      // The ended record is its checkpoint: written now (an ended activeflow is rarely asked again)
      if (!this.endPending) {
        const revision = await this.guard(() => this.deps.store.writeEnded(this.id, next, this.position(), mode.revision));
        this.mode = { kind: 'ended', state: next, revision };
        this.uncheckpointed = 0;
        await this.recordIndex(next.activeflow);
      }
      return next;
    }
    if (mode.kind !== 'running') throw new ActiveflowError('unavailable', `activeflow ${this.id} is not loaded; retry`);
    const before = mode.actor.getSnapshot().context;
    mode.actor.send(event);
    const snap = mode.actor.getSnapshot();
    const state = snap.context;
    const executed = state.activeflow.executed_actions;
    if (this.deps.metrics !== undefined && executed.length > before.activeflow.executed_actions.length) {
      this.deps.metrics.moved(executed.slice(before.activeflow.executed_actions.length).map((a) => a.type ?? 'pseudo'));
    }
    await this.append(before, state, event);
    if (snap.status === 'done') {
      mode.actor.stop();
      this.mode = { kind: 'ended', state, revision: null };
      // The rest of the end (its checkpoint, index, children, removing the running key) runs after
      // this reply, in the mailbox; until it is done the running key stays, so a load replays the
      // end and finishes it.
      this.endPending = true;
      void this.enqueue(() => this.completeEnd()).catch(() => undefined);
      this.debug({ event: 'activeflow_ended', end_reason: state.activeflow.end_reason });
    }
    return state;
  }

  /** The move's one durable write: its entry, appended only after the entry this actor knows to be last. */
  private async append(before: EngineState, after: EngineState, event: EngineEvent): Promise<void> {
    const entry = moveEntry(before, after, event, this.entryN + 1, VERSION);
    const af = after.activeflow;
    this.journalSeq = await this.guard(() => this.deps.journal.append(af.customer_id, this.id, entry, this.journalSeq, af.webhook_uri !== ''));
    this.entryN = entry.n;
    this.committed = after;
    this.uncheckpointed++;
  }

  /**
   * Writes a checkpoint of the running state if entries are not in one (off the request path: the
   * entries are what is durable). Refused (another owner wrote the key), it stops checkpointing and
   * the handle is dropped at its next request: that owner's fence refuses this one's next entry anyway.
   */
  checkpoint(): Promise<void> {
    this.checkpointing = (this.checkpointing ?? Promise.resolve()).then(async () => {
      if (this.mode.kind !== 'running' || this.uncheckpointed === 0 || this.checkpointRevision === null || this.committed === null) return;
      // the last journaled state and its position, together (a transition may be writing its entry now)
      const position = this.position();
      const taken = this.uncheckpointed;
      this.bareCheckpoint = false;
      try {
        this.checkpointRevision = await this.deps.store.update(this.id, persistedState(this.committed), this.checkpointRevision, position);
        this.uncheckpointed -= taken;
      } catch (e) {
        if (e instanceof RevisionConflict) {
          this.checkpointRevision = null;
          this.log.warn({ event: 'checkpoint_refused' }, 'another node wrote this activeflow since; this handle goes at its next request');
          const mode = this.mode;
          if (this.queued === 0 && mode.kind === 'running') {
            mode.actor.stop();
            this.mode = { kind: 'dropped' };
          }
          return;
        }
        this.log.warn({ event: 'checkpoint_failed', err: e }, 'the checkpoint is tried again after the next moves');
      }
    });
    return this.checkpointing;
  }

  /**
   * The last steps of an end: its checkpoint (af_ended), the index, the on_complete children
   * (created and executed), then the running key goes. Each step may be repeated safely; if one
   * fails, the end stays pending and is finished by a retry (retryEndLater), the next request or the
   * next load, whichever comes first.
   */
  private async completeEnd(): Promise<void> {
    const mode = this.mode;
    // A forgotten handle leaves the end to the shard's next handle (its load finishes it, here or on
    // the next owner): done by both, the running slot would be given back twice.
    if (!this.endPending || mode.kind !== 'ended' || this.forgotten) return;
    const state = mode.state;
    try {
      await this.checkpointing; // one in flight would otherwise race the running key's removal
      if (mode.revision === null) {
        const revision = await this.deps.store.writeEnded(this.id, state, this.position(), null);
        this.mode = { kind: 'ended', state, revision };
        this.uncheckpointed = 0;
      }
      await this.recordIndex(state.activeflow);
      // The running slot goes back before the on_complete child is created, so a customer at its
      // quota can still chain, and before the running key goes: a crash in between repeats it
      // (one too few counted) instead of never giving it back (running-count.ts).
      if (!this.slotReleased) {
        if (this.forgotten) return; // forgotten meanwhile (see above)
        await this.deps.admission?.release(state.activeflow.customer_id);
        this.slotReleased = true; // a retry of a later step does not give it back twice
      }
      for (const effect of state.outbox.effects) {
        if (effect.type === 'start_child') await this.deps.effects.startChild(effect, this.log);
      }
      // (no revision: the running key was rewritten by another owner, whose to remove it is)
      if (this.checkpointRevision !== null) await this.deps.store.deleteRunning(this.id, this.checkpointRevision, this.bareCheckpoint);
      this.endPending = false;
    } catch (e) {
      if (e instanceof RevisionConflict) {
        this.endPending = false;
        this.log.warn({ event: 'revision_conflict', step: 'delete_running' }, 'the running checkpoint was rewritten by another owner after the end');
        return;
      }
      this.log.warn({ event: 'end_incomplete', err: e }, 'the end of this activeflow will be finished later');
      this.retryEndLater();
    }
  }

  /**
   * An ended activeflow is rarely asked again, so a failed last step of its end (NATS unreachable
   * for a moment) is retried on its own, with backoff, rather than wait for a request or a reload.
   * Every step may be repeated, and the running key's removal is revision-checked; a handle the
   * registry has forgotten (its shard lost or handed over) stops retrying, since the shard's next
   * handle loads the activeflow and finishes the end (test/integration/actor-handles.test.ts).
   */
  private retryEndLater(): void {
    const retry = () => {
      if (!this.endPending || this.mode.kind !== 'ended' || this.forgotten) return;
      void this.enqueue(() => this.completeEnd()).catch(() => this.retryEndLater());
    };
    const ms = backoffDelay(END_RETRY_BACKOFF, ++this.endRetries);
    if (this.deps.later !== undefined) this.deps.later(ms, retry);
    else setTimeout(retry, ms).unref();
  }

  /** The index entry of an ended (or deleted) activeflow; the created entry's revision serves once. */
  private async recordIndex(af: EngineState['activeflow']): Promise<void> {
    const created = this.indexCreatedAt;
    this.indexCreatedAt = 0;
    await this.deps.index.record(af, created === 0 ? undefined : created);
  }

  private async guard<T>(write: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const written = await write();
      this.deps.metrics?.journalWrite((performance.now() - started) / 1000);
      return written;
    } catch (e) {
      const previous = this.mode;
      if (previous.kind === 'running') previous.actor.stop();
      this.mode = { kind: 'dropped' };
      if (e instanceof RevisionConflict) {
        this.deps.metrics?.revisionConflict();
        this.log.warn({ event: 'revision_conflict' }, 'another node owns this activeflow now; dropping the actor');
        throw new ActiveflowError('unavailable', `activeflow ${this.id} has moved to another owner; retry`, { cause: e });
      }
      this.log.error({ event: 'store_write_failed', err: e }, 'could not store a change; dropping the actor');
      throw new ActiveflowError('unavailable', `could not store the change to activeflow ${this.id}; retry`, { cause: e });
    }
  }

  // -------------------------------------------------------------------------------------------
  // loading and recovery

  /**
   * Rehydrates: the checkpoint, then the journal entries after it replayed through the engine
   * (src/store/journal-entry.ts checks each against its recorded outcome). Then repairs what a
   * crash may have left: a created entry never appended is appended, an end that did not finish is
   * finished, and a cycle that was waiting on an effect is resumed. A store written before the
   * journal starts its journal here (a `rebase` entry).
   */
  private async load(): Promise<void> {
    // With the customer known (the activeflow was passivated here), the journal's last entry is read
    // beside the checkpoint: one round trip instead of two. A read that raced a checkpoint's write
    // can only be older than that checkpoint, and then the next append is refused and reloads.
    //
    // Passivated here while running, in this node's present term on the shard, with its checkpoint
    // current: that checkpoint is read alone, by its revision (SnapshotStore.load), not the journal
    // nor af_ended, because nobody else has written the activeflow since. Another node could only
    // by holding the shard, which ends this term (the hint goes with it: ActorRegistry); a holder
    // before this term was fenced by this node's first load of it (or handed the shard over
    // settled); and this node's own appends went through the one handle that left the checkpoint.
    // A checkpoint read at another revision or position (the server that answered lacked that one)
    // is read as without the hint: the journal's last entry, then the rest.
    const hinted = this.customerId;
    const known = this.passivatedAt;
    this.passivatedAt = undefined;
    const [stored, hintedLast] = await Promise.all([this.deps.store.load(this.id, known?.revision), hinted === undefined || known !== undefined ? undefined : this.deps.journal.last(hinted, this.id)]);
    this.servedOrThrow();
    if (stored === null) {
      this.mode = { kind: 'missing' };
      return;
    }
    const current = known !== undefined && stored.kind === 'running' && stored.revision === known.revision && stored.position?.seq === known.seq && stored.position.n === known.n;
    const customerId = stored.state.activeflow.customer_id;
    if (hinted !== undefined && hinted !== customerId) {
      this.customerId = undefined; // a wrong hint (it cannot be, ids are unique): the stored one wins
      this.logger = null;
    }
    this.knowCustomer(customerId);
    let last = current ? null : hinted === customerId && hintedLast !== undefined ? hintedLast : await this.deps.journal.last(customerId, this.id);
    let state = stored.state;
    let position = stored.position;
    if (position === null) {
      // written before the journal: its journal starts here, from the snapshot
      ({ state, position } = await this.rebase(stored, last));
      last = { seq: position.seq, n: position.n, kind: 'rebase' };
    }
    this.journalSeq = current ? known.seq : (last?.seq ?? 0);
    this.entryN = current ? known.n : (last?.n ?? 0);
    // Checkpointed at its creation and not moved since: the created entry holds that very state.
    const nothingToReplay = current || (position.n === 0 && last?.kind === 'created');
    if (current) {
      // its checkpoint is where its journal ends (above)
    } else if (last === null && position.n === 0) {
      // Created, but its created entry never made it: appended now, from the first checkpoint. The
      // creation may have stopped before its index entry too, and before its running slot: the
      // entry is written again (a put of the same), so that the reconcile, which counts what the
      // index shows running, sees it and raises the count (src/quota/running-reconcile.ts).
      // (a failed index write fails the load: nothing is appended, and the next load tries both again)
      await this.deps.index.record(state.activeflow);
      await this.appendCreated(state);
    } else if (last === null) {
      // its journal is gone (past the stream's retention, or the stream was made again): it starts
      // again from the checkpoint, which the rebase entry holds
      const entry = rebaseEntry(state, state.seq, this.deps.clock.now(), VERSION);
      this.journalSeq = await this.guard(() => this.deps.journal.append(customerId, this.id, entry, 0, state.activeflow.webhook_uri !== ''));
      this.entryN = 1;
      this.log.warn({ event: 'journal_restarted' }, 'the journal of this activeflow was gone; it starts again from its checkpoint');
      position = { seq: 0, n: 0 };
    }
    if (this.deps.mustFence?.(this.id) === true) await this.fence(customerId, state.activeflow.webhook_uri !== '');
    const entries = nothingToReplay || this.journalSeq <= position.seq ? [] : await this.deps.journal.between(customerId, this.id, position.seq, this.journalSeq);
    this.servedOrThrow();
    try {
      state = replayOnto(
        state,
        entries.map(({ message }) => message),
      );
    } catch (e) {
      if (e instanceof ReplayDivergence)
        this.log.error({ event: 'replay_divergence', err: e }, 'this engine does not re-derive a stored move; the activeflow cannot load until a version that does serves it');
      throw new ActiveflowError('internal', `activeflow ${this.id}: its journal does not replay (${(e as Error).message}); see docs/operations.md, "Upgrading the engine safely"`, { cause: e });
    }
    state = { ...state, limits: sharedLimits(state.limits) }; // one copy of each distinct set in memory
    this.committed = state;
    this.uncheckpointed = entries.length;
    if (stored.kind === 'ended') {
      this.mode = { kind: 'ended', state, revision: stored.revision };
      // an ended record older than its journal (a change to an ended activeflow whose checkpoint failed)
      if (entries.length > 0) await this.writeEndedAgain(state, stored.revision);
      if (stored.runningRevision !== null) {
        this.endPending = true;
        this.checkpointRevision = stored.runningRevision;
        await this.completeEnd();
      }
      return;
    }
    this.checkpointRevision = stored.revision;
    if (state.activeflow.status === 'ended') {
      // the end is in the journal; its last steps are not done
      this.mode = { kind: 'ended', state, revision: null };
      this.endPending = true;
      await this.completeEnd();
      return;
    }
    const actor = createActor(activeflowMachine, { input: state });
    actor.start();
    this.mode = { kind: 'running', actor };
    this.debug({ event: 'actor_rehydrated', entries: entries.length });
    if (entries.length >= CHECKPOINT_EVERY) void this.checkpoint();
    if (state.pending !== null) await this.resumePending(state);
  }

  /**
   * Taken over from a holder that did not hand it over: that holder may still run, and its next
   * append must be refused. A fence entry moves the journal past the last entry it can know (retried
   * if that holder appends in between: its entry is then one to replay).
   */
  private async fence(customerId: string, webhook: boolean): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const fence = fenceEntry(this.entryN + 1, this.deps.clock.now(), VERSION);
      try {
        this.journalSeq = await this.deps.journal.append(customerId, this.id, fence, this.journalSeq, webhook);
        this.entryN = fence.n;
        return;
      } catch (e) {
        if (!(e instanceof RevisionConflict) || attempt >= 5) throw e;
        const last = await this.deps.journal.last(customerId, this.id);
        this.journalSeq = last?.seq ?? 0;
        this.entryN = last?.n ?? 0;
      }
    }
  }

  /** Writes af_ended again at the journal's position, revision-checked. */
  private async writeEndedAgain(state: EngineState, revision: Revision): Promise<void> {
    const written = await this.guard(() => this.deps.store.writeEnded(this.id, state, this.position(), revision));
    this.mode = { kind: 'ended', state, revision: written };
    this.uncheckpointed = 0;
  }

  /**
   * State read after the shard is gone may already be the next owner's: not used (see
   * ActorDeps.stillServed). Nor is state this handle read after the registry forgot it: the shard
   * may have been lost and taken again meanwhile, and a new handle of the same activeflow, on this
   * node, may hold it already; two handles would each take the other's writes for their own.
   */
  private servedOrThrow(): void {
    if (this.forgotten || this.deps.stillServed?.(this.id) === false) throw new ActiveflowError('unavailable', `activeflow ${this.id} is moving to another node; retry`);
  }

  /**
   * The registry no longer routes requests here (the shard's lease was lost, or it was handed over).
   * A request in hand finishes (its writes are checked against the journal); the ones queued behind
   * it are refused as retryable, and reach the registry's new handle.
   */
  forget(): void {
    this.bits |= FORGOTTEN;
  }

  /**
   * Starts the journal of an activeflow stored before it (format 1: a snapshot per move, full events
   * in the stream): a `rebase` entry holds the snapshot's state, and the snapshot's events that
   * never reached the stream come out with it; then a checkpoint names the entry. If a rebase was
   * appended before but its checkpoint not written, the journal from that rebase on is the state.
   */
  private async rebase(stored: StoredActiveflow, last: LastEntry | null): Promise<{ state: EngineState; position: JournalPosition }> {
    const customerId = stored.state.activeflow.customer_id;
    let state = stored.state;
    let position: JournalPosition;
    if (last !== null && last.kind !== 'event') {
      const s = replayFromStart((await this.deps.journal.all(customerId, this.id, last.seq)).map(({ message }) => message));
      if (s === null) throw new ActiveflowError('internal', `activeflow ${this.id}: its journal has no starting entry`);
      state = s;
      position = { seq: last.seq, n: last.n };
    } else {
      const lastEvent = last?.eventSeq ?? 0;
      const entry = rebaseEntry(state, lastEvent, this.deps.clock.now(), VERSION);
      position = { seq: await this.deps.journal.append(customerId, this.id, entry, last?.seq ?? 0, state.activeflow.webhook_uri !== ''), n: 1 };
      // As format 1 did when a move's events were missing from the stream: that move's
      // fire-and-forget effects never started either, and start now.
      const unstarted = state.outbox.events.some((e) => e.seq > lastEvent) && state.outbox.effects.some((e) => !e.await && e.type !== 'start_child');
      if (unstarted && state.activeflow.status === 'running') for (const effect of state.outbox.effects) if (!effect.await) this.take({ kind: 'launch', effect });
      this.log.info({ event: 'journal_started', events_after: lastEvent }, 'an activeflow stored before the journal: its journal starts from its snapshot');
    }
    if (stored.kind === 'running') stored.revision = await this.deps.store.update(this.id, persistedState(state), stored.revision, position);
    else stored.revision = await this.deps.store.writeEnded(this.id, state, position, stored.revision);
    return { state, position };
  }

  /** A cycle that was waiting on an effect when its owner stopped: perform the effect again. */
  private async resumePending(state: EngineState): Promise<void> {
    const pending = state.pending!;
    const effect = state.outbox.effects.find((e) => e.effect_id === pending.effect_id);
    if (effect === undefined) {
      this.log.error({ event: 'pending_effect_lost', effect_id: pending.effect_id }, 'cannot resume a cycle: its effect is not in the snapshot');
      return;
    }
    this.log.info({ event: 'cycle_resumed', effect_type: effect.type, action_id: pending.action_id });
    await driveAsync(resumeCycle(state, effect, { effectRequestId: () => `${this.id}:resume`, stamp: () => this.stamp() }), (step) => this.take(step));
  }

  /** Loads (and repairs) without a request: used when a node takes a shard over. */
  warm(): Promise<void> {
    return this.enqueue(async () => {
      if (this.mode.kind === 'unloaded') await this.load();
    });
  }

  /**
   * Waits for every queued request, then checkpoints (used when stopping or handing a shard over).
   * An end whose last steps failed is tried once more first, rather than left to its retry timer,
   * which a handle forgotten at the handover no longer runs: the next owner would finish it only
   * when it next loads the activeflow (found by the cluster simulation, seed 20315).
   */
  async settle(): Promise<void> {
    while (this.queued > 0) await this.tail;
    if (this.endPending && !this.forgotten) await this.enqueue(() => this.completeEnd()).catch(() => undefined);
    await this.checkpoint();
  }
}
