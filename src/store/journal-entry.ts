/**
 * The journal entry: what one move of an activeflow stores, and the one durable write of the move
 * (docs/architecture.md, "The journal"). Pure: building an entry from the states before and after
 * a transition, replaying entries onto an engine state, and materialising VoIPBIN's full event form
 * from entries, for every reader, are functions of their arguments.
 *
 * An entry holds what re-derives the move (`input`: the engine event, with its request, `now`,
 * `entropy` and effect result) and what it came to (`cursor`, `status`, the `executed` actions it
 * appended, the `variables` it changed, and the `events` it emitted, each as the public fields that
 * changed since the one before): a reader rebuilds the full form from the entries since the
 * activeflow's `created` entry, which holds the whole initial state, without the engine. An event
 * is ~0.5 KB where the full form was ~3.4 KB for the bench's call and grew with its history.
 */
import { z } from 'zod';
import {
  Action,
  EngineEvent,
  EngineState,
  EVENT_HISTORY_MAX,
  materializeEvents,
  type PublicActiveflow,
  reduce,
  STREAM_EVENT_TYPES,
  StreamEvent,
  Timestamp,
  toPublicWithoutHistory,
  Uuid,
} from '../../machines/index.js';

export const JOURNAL_FORMAT = 2;

/** Public fields (the activeflow without its history) that changed, with their new values. */
const Changes = z.record(z.string(), z.unknown());

/** An event the move emitted: its fields changed since the event before (or the entry's start). */
export const JournalEvent = z.object({
  type: z.enum(STREAM_EVENT_TYPES),
  seq: z.number().int().positive(),
  changes: Changes.optional(),
  /** How much of the history the event carries (its executed_actions are the first this many). */
  executed_count: z.number().int().nonnegative(),
});
export type JournalEvent = z.infer<typeof JournalEvent>;

const Head = {
  v: z.literal(JOURNAL_FORMAT),
  /** The entry's number in its activeflow's journal: contiguous from 1, so a reader sees a gap. */
  n: z.number().int().positive(),
  at: Timestamp,
  /** The engine version that wrote it (a replay across versions says so). */
  engine: z.string(),
};

export const JournalEntry = z.discriminatedUnion('kind', [
  /** The activeflow as created (its first events are in its outbox). */
  z.object({ ...Head, kind: z.literal('created'), state: EngineState }),
  /**
   * A store written before the journal, read for the first time: the state as its snapshot held it.
   * Its outbox's events with `seq > events_after` never reached the stream and come out here.
   */
  z.object({ ...Head, kind: z.literal('rebase'), state: EngineState, events_after: z.number().int().nonnegative() }),
  z.object({
    ...Head,
    kind: z.literal('move'),
    input: EngineEvent,
    cursor: z.object({ stack_id: Uuid, action_id: Uuid }),
    status: z.enum(['running', 'ended']),
    /**
     * Appended to executed_actions by this move; left out when each is the action current before
     * the event that counts it (a plain move: a reader appends that one itself).
     */
    executed: z.array(Action).optional(),
    /** Variables set (a string) or deleted (null) by this move. */
    variables: z.record(z.string(), z.string().nullable()).optional(),
    events: z.array(JournalEvent),
    /** Public fields changed after the last event (or by a move that emitted none). */
    changes: Changes.optional(),
  }),
  /** A new owner took the activeflow over from one that did not hand it over: the old one's next write is refused. */
  z.object({ ...Head, kind: z.literal('fence'), node: z.string().optional() }),
]);
export type JournalEntry = z.infer<typeof JournalEntry>;
export type MoveEntry = Extract<JournalEntry, { kind: 'move' }>;

type Public = Omit<PublicActiveflow, 'executed_actions'>;

/** The first entry of an activeflow's journal. */
export const createdEntry = (state: EngineState, engine: string): JournalEntry => ({ v: JOURNAL_FORMAT, kind: 'created', n: 1, at: state.activeflow.tm_create, engine, state });

/** A journal starting again from a state (a store written before the journal, or a journal past retention). */
export const rebaseEntry = (state: EngineState, eventsAfter: number, at: string, engine: string): JournalEntry => ({
  v: JOURNAL_FORMAT,
  kind: 'rebase',
  n: 1,
  at,
  engine,
  state,
  events_after: eventsAfter,
});

/** A new owner's mark: changes nothing, refuses the former owner's next append. */
export const fenceEntry = (n: number, at: string, engine: string): JournalEntry => ({ v: JOURNAL_FORMAT, kind: 'fence', n, at, engine });

/**
 * Whether two JSON values have the same JSON text (keys in the same order), found by walking them:
 * a move compares a dozen fields per event, and stringifying both sides of each was 2% of a node's
 * CPU under load. An undefined field counts as no field, as in JSON.
 */
export function same(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!same(a[i] ?? null, b[i] ?? null)) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  const kx = Object.keys(x);
  const ky = Object.keys(y);
  let i = 0;
  let j = 0;
  for (;;) {
    while (i < kx.length && x[kx[i]!] === undefined) i++;
    while (j < ky.length && y[ky[j]!] === undefined) j++;
    if (i === kx.length || j === ky.length) return i === kx.length && j === ky.length;
    if (kx[i] !== ky[j] || !same(x[kx[i]!], y[ky[j]!])) return false;
    i++;
    j++;
  }
}

/** Nothing changed: undefined, so an entry leaves the field out. */
const orNone = <T extends object>(o: T): T | undefined => (Object.keys(o).length === 0 ? undefined : o);

/** The fields of `to` (but its history, which entries hold as `executed` or derive) that differ from `from`'s. */
function changesOf(from: Record<string, unknown>, to: Record<string, unknown>): Record<string, unknown> | undefined {
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(to)) if (key !== 'executed_actions' && !same(from[key], to[key])) out[key] = to[key];
  return orNone(out);
}

function variableChanges(from: Record<string, string>, to: Record<string, string>): Record<string, string | null> | undefined {
  if (from === to) return undefined;
  const out: Record<string, string | null> = {};
  for (const [k, v] of Object.entries(to)) if (from[k] !== v) out[k] = v;
  for (const k of Object.keys(from)) if (!(k in to)) out[k] = null;
  return orNone(out);
}

/** The entry of one transition: `before` is the state it was applied to, `after` what it gave. */
export function moveEntry(before: EngineState, after: EngineState, input: EngineEvent, n: number, engine: string): MoveEntry {
  const af = after.activeflow;
  const executedBefore = before.activeflow.executed_actions.length;
  const appended = af.executed_actions.slice(executedBefore);
  let previous = toPublicWithoutHistory(before.activeflow) as Record<string, unknown>;
  const events: JournalEvent[] = [];
  // What a reader would append by itself: per event that counts one more, the action current before it.
  const derivable: unknown[] = [];
  let counted = executedBefore;
  for (const e of after.outbox.events) {
    // Its fields but the history (changesOf passes over it): compared in place, not copied without
    // it, which an object rest did at several microseconds per event.
    const data = e.data as Record<string, unknown>;
    const count = e.executed_count ?? af.executed_actions.length;
    if (count === counted + 1) derivable.push(previous['current_action']);
    else if (count !== counted) derivable.push(null, null); // never matches
    counted = count;
    const changes = changesOf(previous, data);
    events.push({ type: e.type, seq: e.seq, ...(changes ? { changes } : {}), executed_count: count });
    previous = data;
  }
  const derived = counted === af.executed_actions.length && derivable.length === appended.length && appended.every((a, i) => same(a, derivable[i]));
  const changes = changesOf(previous, toPublicWithoutHistory(af) as Record<string, unknown>);
  const variables = variableChanges(before.variables, after.variables);
  return {
    v: JOURNAL_FORMAT,
    kind: 'move',
    n,
    at: input.now,
    engine,
    input,
    cursor: { stack_id: af.current_stack_id, action_id: af.current_action.id },
    status: af.status,
    ...(derived ? {} : { executed: appended }),
    ...(variables ? { variables } : {}),
    events,
    ...(changes ? { changes } : {}),
  };
}

/** Thrown when a move's recorded outcome is not what the engine makes of its input (a rule changed). */
export class ReplayDivergence extends Error {
  override readonly name = 'ReplayDivergence';
}

/**
 * The engine state after an entry. A move is re-derived by the engine from its input; its recorded
 * cursor and status are checked, so a state is never silently rebuilt by different rules.
 */
export function replayEntry(state: EngineState | null, entry: JournalEntry): EngineState {
  switch (entry.kind) {
    case 'created':
    case 'rebase':
      return entry.state;
    case 'fence':
      if (state === null) throw new Error(`journal entry ${entry.n} (fence) has no state before it`);
      return state;
    case 'move': {
      if (state === null) throw new Error(`journal entry ${entry.n} (move) has no state before it`);
      const next = reduce(state, entry.input);
      const af = next.activeflow;
      if (af.current_action.id !== entry.cursor.action_id || af.current_stack_id !== entry.cursor.stack_id || af.status !== entry.status) {
        throw new ReplayDivergence(
          `entry ${entry.n} (${entry.input.type}): recorded cursor ${entry.cursor.stack_id}/${entry.cursor.action_id} ${entry.status}, the engine gives ${af.current_stack_id}/${af.current_action.id} ${af.status}`,
        );
      }
      return next;
    }
  }
}

/**
 * A state with a run of its activeflow's stream messages replayed onto it (a checkpoint and the
 * entries after it). Events written before the journal are passed over: a rebase holds them.
 */
export function replayOnto(state: EngineState, messages: readonly StreamMessage[]): EngineState {
  let out = state;
  for (const m of messages) if (m.kind === 'entry') out = replayEntry(out, m.entry);
  return out;
}

/**
 * The state a run of one activeflow's stream messages comes to, replayed from its last starting
 * entry (`created` or `rebase`) on. Null when the run has no starting entry.
 */
export function replayFromStart(messages: readonly StreamMessage[]): EngineState | null {
  let base = -1;
  messages.forEach((m, i) => {
    if (m.kind === 'entry' && (m.entry.kind === 'rebase' || m.entry.kind === 'created')) base = i;
  });
  const start = messages[base];
  return start?.kind === 'entry' ? replayOnto(replayEntry(null, start.entry), messages.slice(base + 1)) : null;
}

// ---------------------------------------------------------------------------------------------
// readers: the full event form from entries

/** What a reader keeps per activeflow to materialise its next entry's events. */
export interface ReaderState {
  /** The last entry folded (0 after an event written before the journal). */
  n: number;
  pub: Public;
  /** The latest EVENT_HISTORY_MAX executed actions, and how many there are in all. */
  recent: Action[];
  executed: number;
}

/** A message of the events stream: a journal entry, or an event written before the journal. */
export type StreamMessage = { kind: 'entry'; entry: JournalEntry } | { kind: 'event'; event: StreamEvent };

/** Reads a stream message (throws on one that is neither). */
export function parseStreamMessage(value: unknown): StreamMessage {
  if (typeof value === 'object' && value !== null && (value as { v?: unknown }).v === JOURNAL_FORMAT) return { kind: 'entry', entry: JournalEntry.parse(value) };
  return { kind: 'event', event: StreamEvent.parse(value) };
}

/** True when the message can be folded onto `state` (or needs none: it carries its own base). */
export function foldsOnto(state: ReaderState | null, m: StreamMessage): boolean {
  if (m.kind === 'event') return true;
  const e = m.entry;
  if (e.kind === 'created' || e.kind === 'rebase') return true;
  return state !== null && e.n === state.n + 1;
}

function fromState(state: EngineState, n: number): ReaderState {
  const history = state.activeflow.executed_actions;
  return { n, pub: toPublicWithoutHistory(state.activeflow), recent: history.slice(-EVENT_HISTORY_MAX), executed: history.length };
}

function eventOf(type: StreamEvent['type'], seq: number, at: string, pub: Public, recent: Action[], total: number, count: number): StreamEvent {
  // `recent` ends at `total`; the event carries the history up to `count`, its latest EVENT_HISTORY_MAX.
  const end = recent.length - (total - count);
  const omitted = Math.max(0, count - EVENT_HISTORY_MAX);
  const executed = recent.slice(Math.max(0, end - (count - omitted)), end);
  return { type, seq, at, data: { ...pub, executed_actions: executed, ...(omitted > 0 ? { executed_actions_omitted: omitted } : {}) } } as StreamEvent;
}

/**
 * Folds one message onto a reader's state: the events it stands for, in VoIPBIN's full form, and
 * the state after it. Throws when it does not fold (check `foldsOnto`): the reader must read the
 * activeflow's journal from its start.
 */
export function foldMessage(state: ReaderState | null, m: StreamMessage): { state: ReaderState | null; events: StreamEvent[] } {
  if (m.kind === 'event') {
    const { executed_actions, executed_actions_omitted, ...pub } = m.event.data;
    return { state: { n: 0, pub, recent: executed_actions.slice(-EVENT_HISTORY_MAX), executed: (executed_actions_omitted ?? 0) + executed_actions.length }, events: [m.event] };
  }
  const e = m.entry;
  if (e.kind === 'created') return { state: fromState(e.state, e.n), events: materializeEvents(e.state) };
  if (e.kind === 'rebase') return { state: fromState(e.state, e.n), events: materializeEvents(e.state).filter((x) => x.seq > e.events_after) };
  if (state === null || e.n !== state.n + 1) throw new Error(`journal entry ${e.n} does not follow ${state === null ? 'nothing' : `entry ${state.n}`}`);
  if (e.kind === 'fence') return { state: { ...state, n: e.n }, events: [] };
  let recent = state.recent;
  let total = state.executed;
  if (e.executed !== undefined && e.executed.length > 0) {
    recent = [...recent, ...e.executed];
    total += e.executed.length;
  }
  let pub = state.pub;
  const events: StreamEvent[] = [];
  for (const x of e.events) {
    if (e.executed === undefined && x.executed_count === total + 1) {
      // a plain move: the action it executed is the one current before it
      recent = [...recent, pub.current_action];
      total++;
    }
    if (x.changes !== undefined) pub = { ...pub, ...(x.changes as Partial<Public>) };
    events.push(eventOf(x.type, x.seq, e.at, pub, recent, total, x.executed_count));
  }
  if (e.changes !== undefined) pub = { ...pub, ...(e.changes as Partial<Public>) };
  return { state: { n: e.n, pub, recent: recent.length > EVENT_HISTORY_MAX ? recent.slice(-EVENT_HISTORY_MAX) : recent, executed: total }, events };
}
