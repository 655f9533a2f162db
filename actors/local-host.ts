/**
 * A host for activeflow actors in one process, with no NATS: it performs effects from canned
 * data (HTTP responses, service replies, flows). It is the engine of `activeflow simulate`, and
 * runs the loop every host runs (actors/host-cycle.ts): transition, then effects, then the reply.
 */
import { createActor, type Actor, type Snapshot } from 'xstate';
import {
  activeflowMachine,
  childCreateRequest,
  createActiveflow,
  CreateRequest,
  describeIssues,
  EngineState,
  type Flow,
  materializeEvents,
  reduce,
  substituteText,
  VerbBodies,
  type ActiveflowMachine,
  type Effect,
  type EffectResult,
  type EngineError,
  type EngineEvent,
  type Limits,
  type StreamEvent,
  type Verb,
} from '../machines/index.js';
import type { HostClock } from '../src/clock.js';
import { createdEntry, type JournalEntry, moveEntry, rebaseEntry } from '../src/store/journal-entry.js';
import { VERSION } from '../src/version.js';
import { driveSync, replyValue, requestCycle } from './host-cycle.js';

export type CannedHttp = { status: number; body?: unknown } | { error: string };
export type CannedService = Record<string, unknown> | { error: string };

export interface LocalWorld {
  flows: Flow[];
  /** Keyed `"<METHOD> <url>"`; a list answers successive requests, its last entry repeating. */
  http: Record<string, CannedHttp | CannedHttp[]>;
  /** Keyed by action type; a list answers successive requests, its last entry repeating. */
  services: Record<string, CannedService | CannedService[]>;
}

export type HostReply = { ok: true; result: unknown } | { ok: false; error: EngineError };

export interface PerformedEffect {
  activeflow_id: string;
  effect: Effect;
  result?: EffectResult;
}

export interface ChildRecord {
  activeflow_id: string;
  parent_id: string;
  error?: EngineError;
}

type AnyActor = Actor<ActiveflowMachine>;

export type StoredRecord = { status: 'running'; snapshot: Snapshot<unknown> } | { status: 'ended'; state: unknown };

const invalid = (message: string): HostReply => ({ ok: false, error: { code: 'invalid_argument', message } });

export class LocalHost {
  private readonly actors = new Map<string, AnyActor>();
  /** Final states of ended activeflows (the actor is done; `reduce` answers for them). */
  private readonly endedStates = new Map<string, EngineState>();
  private readonly eventLog = new Map<string, StreamEvent[]>();
  /** Each activeflow's journal, as a node writes it (src/store/journal-entry.ts). */
  private readonly journals = new Map<string, JournalEntry[]>();
  private readonly callCounts = new Map<string, number>();
  private requestCounter = 0;
  readonly effects: PerformedEffect[] = [];
  readonly children: ChildRecord[] = [];

  constructor(
    private readonly world: LocalWorld,
    private readonly clock: HostClock,
    private readonly limits?: Limits,
  ) {}

  /** `activeflow.v1.create`. */
  create(body: unknown, parentIdForChild?: string): HostReply {
    const parsed = CreateRequest.safeParse(body);
    if (!parsed.success) return invalid(describeIssues(parsed.error.issues));
    const request = parsed.data;
    if (request.id !== undefined && this.state(request.id) !== undefined) {
      return { ok: false, error: { code: 'conflict', message: `activeflow ${request.id} already exists` } };
    }
    const flow = request.flow_id === undefined ? null : (this.world.flows.find((f) => f.id === request.flow_id) ?? null);
    const parentId = request.reference_activeflow_id;
    const parentState = parentId === undefined ? undefined : this.state(parentId);
    const created = createActiveflow({
      request,
      flow,
      parent: parentState === undefined ? null : { customer_id: parentState.activeflow.customer_id, variables: parentState.variables },
      now: this.clock.now(),
      entropy: this.clock.entropy(),
      ...(this.limits ? { limits: this.limits } : {}),
    });
    if (!created.ok) return { ok: false, error: created.error };
    const id = created.state.activeflow.id;
    const actor = createActor(activeflowMachine, { input: created.state });
    actor.start();
    this.actors.set(id, actor);
    this.journals.set(id, [createdEntry(created.state, VERSION)]);
    this.record(id, created.state);
    if (parentIdForChild !== undefined) this.children.push({ activeflow_id: id, parent_id: parentIdForChild });
    if (request.execute === true) {
      const executed = this.request(id, 'execute', {});
      if (!executed.ok) return executed;
    }
    return { ok: true, result: this.state(id)!.activeflow };
  }

  /** A verb on one activeflow: validated, applied, its effects performed, then answered. */
  request(id: string, verb: Verb, body: unknown): HostReply {
    const parsed = VerbBodies[verb].safeParse(body ?? {});
    if (!parsed.success) return invalid(describeIssues(parsed.error.issues));
    if (this.state(id) === undefined) return { ok: false, error: { code: 'not_found', message: `activeflow ${id} not found` } };
    const requestId = `r${++this.requestCounter}`;
    const cycle = requestCycle({
      verb,
      body: parsed.data as Record<string, unknown>,
      requestId,
      effectRequestId: () => `r${++this.requestCounter}`,
      stamp: () => ({ now: this.clock.now(), entropy: this.clock.entropy() }),
    });
    // The same loop as a node's (actors/host-cycle.ts), each step taken at once, in memory.
    const { reply, state } = driveSync(cycle, (step) => {
      switch (step.kind) {
        case 'transition':
          return this.dispatch(id, step.event);
        case 'launch':
        case 'perform': {
          const result = this.perform(id, step.effect);
          this.effects.push(result === undefined ? { activeflow_id: id, effect: step.effect } : { activeflow_id: id, effect: step.effect, result });
          return result;
        }
      }
    });
    if (reply === undefined) return { ok: false, error: { code: 'internal', message: `no reply to ${verb}` } };
    const value = replyValue(reply, state);
    return value.ok ? { ok: true, result: value.value } : value;
  }

  get(id: string): HostReply {
    const s = this.state(id);
    if (s === undefined || s.activeflow.tm_delete !== null) return { ok: false, error: { code: 'not_found', message: `activeflow ${id} not found` } };
    return { ok: true, result: s.activeflow };
  }

  variables(id: string): HostReply {
    const s = this.state(id);
    if (s === undefined || s.activeflow.tm_delete !== null) return { ok: false, error: { code: 'not_found', message: `activeflow ${id} not found` } };
    return { ok: true, result: { id, variables: s.variables } };
  }

  substitute(id: string, data: string): HostReply {
    const s = this.state(id);
    if (s === undefined || s.activeflow.tm_delete !== null) return { ok: false, error: { code: 'not_found', message: `activeflow ${id} not found` } };
    return { ok: true, result: { data: substituteText(s, data) } };
  }

  /** The current engine state, live or ended. */
  state(id: string): EngineState | undefined {
    const actor = this.actors.get(id);
    return actor ? actor.getSnapshot().context : this.endedStates.get(id);
  }

  events(id: string): StreamEvent[] {
    return this.eventLog.get(id) ?? [];
  }

  /** The journal entries of an activeflow, oldest first. */
  journal(id: string): readonly JournalEntry[] {
    return this.journals.get(id) ?? [];
  }

  ids(): string[] {
    return [...new Set([...this.actors.keys(), ...this.endedStates.keys()])];
  }

  /**
   * What a host stores for an activeflow: the actor's persisted snapshot while it runs, its final
   * state once it has ended (the actor is done then). JSON-safe.
   */
  exportRecord(id: string): StoredRecord | undefined {
    const actor = this.actors.get(id);
    if (actor !== undefined) return { status: 'running', snapshot: actor.getPersistedSnapshot() };
    const ended = this.endedStates.get(id);
    return ended === undefined ? undefined : { status: 'ended', state: ended };
  }

  /** Brings a stored record back (a restart, a passivation round trip); validates it first. */
  importRecord(record: StoredRecord): string {
    const id = this.restore(record);
    // Its journal starts here, as a store written before the journal does when a node first reads it.
    const state = this.state(id)!;
    this.journals.set(id, [rebaseEntry(state, state.seq, state.activeflow.tm_update ?? state.activeflow.tm_create, VERSION)]);
    return id;
  }

  private restore(record: StoredRecord): string {
    if (record.status === 'ended') {
      const state = EngineState.parse(record.state);
      this.actors.get(state.activeflow.id)?.stop();
      this.actors.delete(state.activeflow.id);
      this.endedStates.set(state.activeflow.id, state);
      return state.activeflow.id;
    }
    const state = EngineState.parse((record.snapshot as unknown as { context: unknown }).context);
    const id = state.activeflow.id;
    this.actors.get(id)?.stop();
    const actor = createActor(activeflowMachine, { snapshot: { ...(record.snapshot as object), context: state } as never, input: state });
    actor.start();
    this.actors.set(id, actor);
    this.endedStates.delete(id);
    return id;
  }

  /** The XState state value of a live actor (for inspection); undefined once it has ended. */
  stateValue(id: string): unknown {
    return this.actors.get(id)?.getSnapshot().value;
  }

  private dispatch(id: string, event: EngineEvent): EngineState {
    const actor = this.actors.get(id);
    const before = this.state(id)!;
    let state: EngineState;
    if (actor !== undefined) {
      actor.send(event);
      const snap = actor.getSnapshot();
      state = snap.context;
      if (snap.status === 'done') {
        actor.stop();
        this.actors.delete(id);
        this.endedStates.set(id, state);
      }
    } else {
      state = reduce(this.endedStates.get(id)!, event);
      this.endedStates.set(id, state);
    }
    // As a node: every transition of a running activeflow is an entry; of an ended one, only those that change it.
    if (actor !== undefined || state.activeflow !== before.activeflow) {
      const journal = this.journals.get(id)!;
      journal.push(moveEntry(before, state, event, journal.length + 1, VERSION));
    }
    this.record(id, state);
    return state;
  }

  private record(id: string, state: EngineState): void {
    if (state.outbox.events.length === 0) return;
    const log = this.eventLog.get(id) ?? [];
    log.push(...materializeEvents(state));
    this.eventLog.set(id, log);
  }

  private perform(id: string, effect: Effect): EffectResult | undefined {
    switch (effect.type) {
      case 'http_request': {
        const canned = this.next(this.world.http, `${effect.method} ${effect.url}`);
        if (canned === undefined) return { kind: 'failure', message: `no response for "${effect.method} ${effect.url}" (add it to the scenario's "http")` };
        if ('error' in canned) return { kind: 'failure', message: canned.error };
        return { kind: 'http', status: canned.status, body: canned.body ?? null };
      }
      case 'service_request': {
        const canned = this.next(this.world.services, effect.action_type);
        if (canned === undefined) return { kind: 'failure', message: `no responders on ${effect.subject} (add "${effect.action_type}" to the scenario's "services")` };
        if (typeof canned['error'] === 'string') return { kind: 'failure', message: canned['error'] };
        return { kind: 'service', reply: canned };
      }
      case 'flow_get':
        return { kind: 'flow', flow: this.world.flows.find((f) => f.id === effect.flow_id) ?? null };
      case 'start_child': {
        const created = this.create(childCreateRequest(effect), id);
        if (!created.ok) {
          this.children.push({ activeflow_id: effect.activeflow_id, parent_id: id, error: created.error });
          return undefined;
        }
        this.request(effect.activeflow_id, 'execute', {});
        return undefined;
      }
      case 'reference_action_next':
        return undefined; // there is no live call here: recorded in `effects`
    }
  }

  private next<T>(table: Record<string, T | T[]>, key: string): T | undefined {
    if (!Object.hasOwn(table, key)) return undefined;
    const entry = table[key]!;
    if (!Array.isArray(entry)) return entry;
    const n = this.callCounts.get(key) ?? 0;
    this.callCounts.set(key, n + 1);
    return entry[Math.min(n, entry.length - 1)];
  }
}
