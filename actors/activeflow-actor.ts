/**
 * One activeflow hosted on a node: an XState actor behind a mailbox. Requests are handled one at a
 * time, each in the same fixed order:
 *
 *   transition ─▶ persist (revision-checked) ─▶ publish events ─▶ effects ─▶ reply
 *        ▲                                                          │ awaited effect
 *        └──────────────────────── effect_result ◀──────────────────┘
 *
 * Life of the handle:
 *
 *   unloaded ──load──▶ running ──end──▶ ended
 *       │                 │ revision conflict, write failure
 *       └──▶ missing      └──────────────▶ dropped (the registry forgets it; the next request reloads)
 *
 * A reply is sent only after the change it reports is stored. Events are published after the
 * store write; if that fails, they stay in the persisted outbox and are published before the next
 * transition, or by whoever loads the activeflow next (`recover`).
 */
import { createActor, type Actor } from 'xstate';
import {
  activeflowMachine,
  createActiveflow,
  materializeEvents,
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
  type StreamEvent,
  type Verb,
} from '../machines/index.js';
import type { HostClock } from '../src/clock.js';
import { type CycleStep, driveAsync, replyValue, requestCycle, resumeCycle } from './host-cycle.js';
import { persistedSnapshot } from './persisted-snapshot.js';
import { ActiveflowError } from '../src/errors.js';
import type { Logger } from '../src/log.js';
import type { ActiveflowIndex } from '../src/store/activeflow-index.js';
import type { EventLog } from '../src/store/event-log.js';
import { RevisionConflict } from '../src/store/revision-conflict.js';
import type { Revision, SnapshotStore } from '../src/store/snapshot-store.js';
import { backoffDelay, type Backoff } from '../src/retry.js';

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
  events: EventLog;
  index: ActiveflowIndex;
  effects: EffectRunner;
  clock: HostClock;
  log: Logger;
  limits: Limits;
  /** Looks a flow up for creation (null when missing, deleted or another customer's). */
  findFlow(flowId: string, customerId: string): Promise<Flow | null>;
  /** The variables of another activeflow (for `reference_activeflow_id`), null when unknown. */
  findVariables(activeflowId: string): Promise<Record<string, string> | null>;
  /**
   * True when this node took the activeflow's shard from a holder that did not hand it over (a
   * crash, a pause): the snapshot is rewritten (revision-checked) before its first use here, so
   * that holder, if it still runs, can never write it again.
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
}

/** Per-customer admission of creations (src/quota/customer-quotas.ts). */
export interface CreationAdmission {
  /** The limits a new activeflow of this customer keeps (its variable quotas in place). */
  limits(customerId: string): Limits;
  /** Takes a creation token (in memory) unless `child`; throws `limit_exceeded` (creations_per_second). */
  admitRate(customerId: string, child: boolean): void;
  /** Takes a running slot (the cluster-wide count); throws `limit_exceeded` (running_activeflows). */
  takeSlot(customerId: string): Promise<void>;
  /** Gives a running slot back: a creation that did not happen, or an end. */
  release(customerId: string): Promise<void>;
}

export interface ActorMetrics {
  /** One snapshot write took this long (seconds). */
  kvWrite(seconds: number): void;
  revisionConflict(): void;
  /** Actions just executed (a cursor move each), by type. */
  moved(types: readonly string[]): void;
}

type Mode =
  | { kind: 'unloaded' }
  | { kind: 'missing' }
  | { kind: 'running'; actor: Actor<ActiveflowMachine>; revision: Revision }
  | { kind: 'ended'; state: EngineState; revision: Revision }
  | { kind: 'dropped' };

/** A request's outcome: a value to send, or an API error. */
export type ActorReply = { ok: true; value: unknown } | { ok: false; error: ActiveflowError };

const ok = (value: unknown): ActorReply => ({ ok: true, value });
const fail = (code: ActiveflowError['code'], message: string): ActorReply => ({ ok: false, error: new ActiveflowError(code, message) });

/** Between tries of the last steps of an end that failed (NATS unreachable for a while). */
const END_RETRY_BACKOFF: Backoff = { firstMs: 250, maxMs: 30_000 };

export class ActiveflowActor {
  private mode: Mode = { kind: 'unloaded' };
  private tail: Promise<unknown> = Promise.resolve();
  private queued = 0;
  private unpublished: { customerId: string; events: StreamEvent[] } | null = null;
  /** An end whose events are not out yet: its running key is deleted once they are. */
  private endPending: Revision | null = null;
  /** The wait before the next retry of an end that could not finish (doubles, at most 30 s). */
  private endRetries = 0;
  private requestCounter = 0;
  lastUsedMs: number;
  /** Made on first use: most activeflows never log, and two child loggers each were ~5% of their memory. */
  private logger: Logger | null = null;

  constructor(
    readonly id: string,
    private readonly deps: ActorDeps,
  ) {
    this.lastUsedMs = Date.now();
  }

  private get log(): Logger {
    this.logger ??= this.deps.log.child({ ...this.deps.logFields?.(this.id), activeflow_id: this.id, ...(this.customerId === undefined ? {} : { customer_id: this.customerId }) });
    return this.logger;
  }

  /** This end gave its running slot back (see completeEnd). */
  private slotReleased = false;

  /** The activeflow's customer, once loaded or created (fair admission groups requests by it). */
  customerId: string | undefined;

  /** Every log line of an activeflow names its customer, once it is known. */
  private knowCustomer(customerId: string): void {
    if (this.customerId !== undefined) return;
    this.customerId = customerId;
    this.logger = null; // made again, with the customer, when next needed
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

  /** Runs `fn` after every earlier request of this activeflow (the mailbox). */
  private enqueue<T>(fn: () => Promise<T>): Promise<T> {
    this.queued++;
    this.lastUsedMs = Date.now();
    const run = this.tail.then(fn);
    this.tail = run
      .catch(() => undefined)
      .finally(() => {
        this.queued--;
        this.lastUsedMs = Date.now();
      });
    return run;
  }

  // -------------------------------------------------------------------------------------------
  // creation

  create(request: CreateRequest): Promise<ActorReply> {
    return this.enqueue(async () => {
      if (await this.deps.store.exists(this.id)) return fail('conflict', `activeflow ${this.id} already exists`);
      const flow = request.flow_id !== undefined ? await this.deps.findFlow(request.flow_id, request.customer_id) : null;
      const parentId = request.reference_activeflow_id;
      const parentVariables = parentId !== undefined ? await this.deps.findVariables(parentId) : null;
      const admission = this.deps.admission;
      const created = createActiveflow({
        request: { ...request, id: this.id },
        flow,
        parentVariables,
        now: this.deps.clock.now(),
        entropy: this.deps.clock.entropy(),
        limits: admission?.limits(request.customer_id) ?? this.deps.limits,
      });
      if (!created.ok) return { ok: false, error: ActiveflowError.from(created.error) };
      // Checked once the request is known to be valid, so bad input uses up nothing. An on_complete
      // child (it names its parent) is not held to the creation rate: refusing it would stall the
      // parent's end. The rate is checked in memory first: a flood is refused without a write.
      admission?.admitRate(request.customer_id, parentId !== undefined);
      this.knowCustomer(request.customer_id);
      const actor = createActor(activeflowMachine, { input: created.state });
      actor.start();
      let revision: Revision;
      try {
        revision = await this.deps.store.create(this.id, persistedSnapshot(actor));
      } catch (e) {
        actor.stop();
        if (e instanceof RevisionConflict) return fail('conflict', `activeflow ${this.id} already exists`);
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
          .deleteRunning(this.id, revision)
          .catch((err: unknown) => this.log.warn({ event: 'refused_create_not_removed', err }, 'a refused creation could not be removed; it stays uncounted until it ends'));
        throw e;
      }
      this.mode = { kind: 'running', actor, revision };
      await this.publish(created.state.activeflow.customer_id, materializeEvents(created.state));
      // The index is advisory (for list): a failed write is logged, and the end writes it again.
      await this.deps.index.record(created.state.activeflow).catch((e: unknown) => this.log.warn({ event: 'index_write_failed', err: e }));
      this.log.debug({ event: 'activeflow_created' });
      if (request.execute === true) {
        const executed = await this.run('execute', {});
        if (!executed.ok) return executed;
      }
      return ok(this.state()!.activeflow);
    });
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

  /** Loads if needed, checks the customer, and publishes events a failed publish left behind. */
  private async ready(customerId: string | undefined, deletedIsTheEngines = false): Promise<ActorReply | null> {
    if (this.mode.kind === 'unloaded') await this.load();
    if (this.mode.kind === 'dropped') return fail('unavailable', `activeflow ${this.id} is moving; retry`);
    const state = this.state();
    const deleted = state !== undefined && state.activeflow.tm_delete !== null && !deletedIsTheEngines;
    if (state === undefined || deleted || (customerId !== undefined && customerId !== state.activeflow.customer_id)) {
      return fail('not_found', `activeflow ${this.id} not found`);
    }
    if (this.unpublished !== null) {
      const { customerId: c, events } = this.unpublished;
      try {
        await this.deps.events.publish(c, this.id, events);
      } catch {
        return fail('unavailable', `the event stream is not reachable; activeflow ${this.id} waits for it, retry`);
      }
      this.unpublished = null;
    }
    if (this.endPending !== null) await this.completeEnd();
    return null;
  }

  /** The request through the one host loop (actors/host-cycle.ts): each transition stored, effects over the network. */
  private async run(verb: Verb, body: Record<string, unknown>): Promise<ActorReply> {
    const requestId = `${this.id}:${++this.requestCounter}`;
    const cycle = requestCycle({ verb, body, requestId, effectRequestId: () => `${requestId}:e`, stamp: () => this.stamp() });
    const { reply, state } = await driveAsync(cycle, (step) => this.take(step));
    if (reply === undefined) throw new Error(`the engine did not answer ${verb}`);
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
   * Applies one event and stores the result before anything else happens. If the store write
   * fails, the in-memory actor may be ahead of the store: the handle is dropped (the next request
   * reloads what was stored) and the request fails as `unavailable`.
   */
  private async transition(event: EngineEvent): Promise<EngineState> {
    const mode = this.mode;
    if (mode.kind === 'ended') {
      const next = reduce(mode.state, event);
      if (next.activeflow !== mode.state.activeflow) {
        const revision = await this.guard(() => this.deps.store.writeEnded(this.id, next, mode.revision));
        this.mode = { kind: 'ended', state: next, revision };
        await this.deps.index.record(next.activeflow);
      } else {
        this.mode = { kind: 'ended', state: next, revision: mode.revision };
      }
      await this.publish(next.activeflow.customer_id, materializeEvents(next));
      return next;
    }
    if (mode.kind !== 'running') throw new ActiveflowError('unavailable', `activeflow ${this.id} is not loaded; retry`);
    const executedBefore = mode.actor.getSnapshot().context.activeflow.executed_actions.length;
    mode.actor.send(event);
    const snap = mode.actor.getSnapshot();
    const state = snap.context;
    const executed = state.activeflow.executed_actions;
    if (this.deps.metrics !== undefined && executed.length > executedBefore) {
      this.deps.metrics.moved(executed.slice(executedBefore).map((a) => a.type ?? 'pseudo'));
    }
    if (snap.status === 'done') {
      mode.actor.stop();
      const revision = await this.guard(() => this.deps.store.writeEnded(this.id, state, null));
      this.mode = { kind: 'ended', state, revision };
      await this.publish(state.activeflow.customer_id, materializeEvents(state));
      // The rest of the end (index, children, removing the running key) runs after this reply,
      // in the mailbox; until it is done the running key stays, so recovery finds and finishes it.
      this.endPending = mode.revision;
      if (this.unpublished === null) void this.enqueue(() => this.completeEnd()).catch(() => undefined);
      else this.retryEndLater(); // its events first, then the rest
      this.log.debug({ event: 'activeflow_ended', end_reason: state.activeflow.end_reason });
      return state;
    }
    const revision = await this.guard(() => this.deps.store.update(this.id, persistedSnapshot(mode.actor), mode.revision));
    this.mode = { kind: 'running', actor: mode.actor, revision };
    await this.publish(state.activeflow.customer_id, materializeEvents(state));
    return state;
  }

  /**
   * The last steps of an end, once its events are out: the index, the on_complete children
   * (created and executed), then the running key goes. Each step may be repeated safely; if one
   * fails, the end stays pending and is finished by a retry (retryEndLater), the next request or the
   * next load, whichever comes first.
   */
  private async completeEnd(): Promise<void> {
    const runningRevision = this.endPending;
    const state = this.state();
    if (runningRevision === null || state === undefined || this.unpublished !== null) return;
    try {
      await this.deps.index.record(state.activeflow);
      // The running slot goes back before the on_complete child is created, so a customer at its
      // quota can still chain, and before the running key goes: a crash in between repeats it
      // (one too few counted) instead of never giving it back (running-count.ts).
      if (!this.slotReleased) {
        await this.deps.admission?.release(state.activeflow.customer_id);
        this.slotReleased = true; // a retry of a later step does not give it back twice
      }
      for (const effect of state.outbox.effects) {
        if (effect.type === 'start_child') await this.deps.effects.startChild(effect, this.log);
      }
      await this.deps.store.deleteRunning(this.id, runningRevision);
      this.endPending = null;
    } catch (e) {
      if (e instanceof RevisionConflict) {
        this.endPending = null;
        this.log.warn({ event: 'revision_conflict', step: 'delete_running' }, 'the running snapshot was rewritten by another owner after the end');
        return;
      }
      this.log.warn({ event: 'end_incomplete', err: e }, 'the end of this activeflow will be finished later');
      this.retryEndLater();
    }
  }

  /**
   * An ended activeflow is rarely asked again, so a failed last step of its end (NATS unreachable
   * for a moment) is retried on its own, with backoff, rather than wait for a request or a reload.
   * Every step may be repeated, and the running key's removal is revision-checked, so a retry after
   * the shard moved away is refused rather than wrong.
   */
  private retryEndLater(): void {
    const timer = setTimeout(
      () => {
        if (this.endPending === null || this.mode.kind !== 'ended') return;
        void this.enqueue(async () => {
          if (this.unpublished !== null) {
            const { customerId, events } = this.unpublished;
            await this.deps.events.publish(customerId, this.id, events);
            this.unpublished = null;
          }
          await this.completeEnd();
        }).catch(() => this.retryEndLater());
      },
      backoffDelay(END_RETRY_BACKOFF, ++this.endRetries),
    );
    timer.unref();
  }

  private async guard<T>(write: () => Promise<T>): Promise<T> {
    const started = performance.now();
    try {
      const written = await write();
      this.deps.metrics?.kvWrite((performance.now() - started) / 1000);
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

  /** Publishes events; on failure keeps them to publish before the next transition. */
  private async publish(customerId: string, events: StreamEvent[]): Promise<void> {
    if (events.length === 0) return;
    try {
      await this.deps.events.publish(customerId, this.id, events);
    } catch (e) {
      this.log.warn({ event: 'event_publish_failed', err: e, seq: events.map((x) => x.seq) }, 'events kept for the next attempt');
      this.unpublished = { customerId, events: [...(this.unpublished?.events ?? []), ...events] };
    }
  }

  // -------------------------------------------------------------------------------------------
  // loading and recovery

  /**
   * Rehydrates from the store, then repairs what a crash may have left: events stored in the
   * snapshot but missing from the stream are republished (the server drops duplicates), an end
   * that did not finish is finished, and a cycle that was waiting on an effect is resumed.
   */
  private async load(): Promise<void> {
    if (this.deps.mustFence?.(this.id) === true) await this.deps.store.fence(this.id);
    const stored = await this.deps.store.load(this.id);
    if (this.deps.stillServed?.(this.id) === false) throw new ActiveflowError('unavailable', `activeflow ${this.id} is moving to another node; retry`);
    if (stored === null) {
      this.mode = { kind: 'missing' };
      return;
    }
    const { state } = stored;
    this.knowCustomer(state.activeflow.customer_id);
    const lastSeq = await this.deps.events.lastSeq(state.activeflow.customer_id, this.id);
    // A transition's fire-and-forget effects start only after its events are out: if those events
    // never reached the stream, its effects never started either, and they start now. (After the
    // events, a crash can still fall between them and the effects: that window is a few lines of
    // synchronous code, not a round trip.)
    const unstarted = state.outbox.events.length > 0 && state.outbox.events.every((e) => e.seq > lastSeq) && state.outbox.effects.some((e) => !e.await && e.type !== 'start_child');
    if (lastSeq < state.seq) {
      const missing = materializeEvents(state).filter((e) => e.seq > lastSeq);
      if (missing.length === 0 || missing[0]!.seq !== lastSeq + 1) {
        this.log.error({ event: 'event_gap', stream_seq: lastSeq, snapshot_seq: state.seq }, 'events are missing from the stream and the snapshot no longer holds them');
      }
      await this.deps.events.publish(state.activeflow.customer_id, this.id, missing);
      this.log.info({ event: 'events_republished', from_seq: lastSeq + 1, to_seq: state.seq });
    }
    if (unstarted) {
      // The awaited one, if any, is resumed below with its cycle.
      for (const effect of state.outbox.effects) if (!effect.await) this.take({ kind: 'launch', effect });
      this.log.info({ event: 'effects_restarted', seq: state.seq }, "the last change's fire-and-forget effects had not started: started now");
    }
    if (stored.kind === 'ended') {
      this.mode = { kind: 'ended', state, revision: stored.revision };
      if (stored.runningRevision !== null) {
        this.endPending = stored.runningRevision;
        await this.completeEnd();
      }
      return;
    }
    const actor = createActor(activeflowMachine, { snapshot: stored.snapshot as never, input: state });
    actor.start();
    this.mode = { kind: 'running', actor, revision: stored.revision };
    this.log.debug({ event: 'actor_rehydrated', revision: stored.revision });
    if (state.pending !== null) await this.resumePending(state);
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

  /** Waits for every queued request (used when stopping or handing a shard over). */
  async settle(): Promise<void> {
    while (this.queued > 0) await this.tail;
  }
}
