/**
 * Replay: an activeflow's recorded journal re-run through this engine, each move compared with its
 * record. Pure: the entries in, a verdict out. A move's entry records what the engine made of its
 * input (the cursor, the status, the variables it changed, the actions it appended and the events
 * it emitted: the reply of a cycle is its event's current action), so the entry this engine builds
 * from the same input and the same state before it must equal the recorded one, field for field.
 */
import { type EngineEvent, type EngineState, reduce as engineReduce } from '../../machines/index.js';
import { type JournalEntry, moveEntry } from '../store/journal-entry.js';
import { VERSION } from '../version.js';

export interface Difference {
  path: string;
  recorded: unknown;
  replayed: unknown;
}

export interface ReplayResult {
  activeflow_id: string;
  outcome: 'identical' | 'diverged' | 'unreadable';
  /** Moves re-run and found identical (before the divergence, if any). */
  moves: number;
  /** Where the replay started: the `created` entry, or a `rebase` (a store written before the journal, or past the stream's retention). */
  from: 'created' | 'rebase' | null;
  /** The engine versions that wrote the record, and this one. */
  recorded_by: string[];
  replayed_by: string;
  divergence?: { n: number; input: EngineEvent; differences: Difference[] };
  /** Why an unreadable record could not be replayed. */
  reason?: string;
}

/** The most differences a divergence lists (the first ones, in field order). */
const MAX_DIFFERENCES = 12;

/** Paths where two JSON values differ, depth first. */
export function differences(recorded: unknown, replayed: unknown, path = '', out: Difference[] = []): Difference[] {
  if (out.length >= MAX_DIFFERENCES) return out;
  if (recorded === replayed) return out;
  const bothObjects = typeof recorded === 'object' && typeof replayed === 'object' && recorded !== null && replayed !== null;
  if (!bothObjects || Array.isArray(recorded) !== Array.isArray(replayed)) {
    out.push({ path: path || '(whole)', recorded, replayed });
    return out;
  }
  const a = recorded as Record<string, unknown>;
  const b = replayed as Record<string, unknown>;
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  for (const k of keys) {
    const p = Array.isArray(recorded) ? `${path}[${k}]` : path ? `${path}.${k}` : k;
    // a field left out and one set to undefined are the same once written as JSON
    differences(a[k], b[k], p, out);
    if (out.length >= MAX_DIFFERENCES) break;
  }
  return out;
}

/**
 * Replays a journal (oldest first; what `history` with `form: "entries"` returns). `reduce` is the
 * engine to replay with: this one, unless a test swaps in a changed rule to see it caught.
 */
export function replayJournal(activeflowId: string, entries: readonly JournalEntry[], reduce: (s: EngineState, e: EngineEvent) => EngineState = engineReduce): ReplayResult {
  const recordedBy = [...new Set(entries.map((e) => e.engine))];
  const result: ReplayResult = { activeflow_id: activeflowId, outcome: 'identical', moves: 0, from: null, recorded_by: recordedBy, replayed_by: VERSION };
  let state: EngineState | null = null;
  for (const entry of entries) {
    if (entry.kind === 'created' || entry.kind === 'rebase') {
      // a later base (a journal started again) replaces the state: it was the whole state then
      state = entry.state;
      result.from ??= entry.kind;
      continue;
    }
    if (state === null) continue; // before the first base (past the stream's retention): nothing to replay from
    if (entry.kind === 'fence') continue;
    const next = reduce(state, entry.input);
    const rebuilt = moveEntry(state, next, entry.input, entry.n, entry.engine);
    const found = differences(entry, rebuilt);
    if (found.length > 0) return { ...result, outcome: 'diverged', divergence: { n: entry.n, input: entry.input, differences: found } };
    state = next;
    result.moves++;
  }
  if (result.from === null)
    return {
      ...result,
      outcome: 'unreadable',
      reason: 'its journal holds no starting entry (created or rebase): it is past the stream retention, or was written before the journal and never loaded since',
    };
  return result;
}

/** A replay's verdict for a person: `identical`, or where and how it diverged. */
export function describeReplay(r: ReplayResult): string {
  const versions = r.recorded_by.some((v) => v !== r.replayed_by) ? ` (recorded by engine ${r.recorded_by.join(', ')}, replayed by ${r.replayed_by})` : '';
  if (r.outcome === 'identical') return `${r.activeflow_id}: identical, ${r.moves} moves from its ${r.from} entry${versions}`;
  if (r.outcome === 'unreadable') return `${r.activeflow_id}: not replayed: ${r.reason}`;
  const d = r.divergence!;
  const { type, now, ...rest } = d.input;
  const request = JSON.stringify(Object.fromEntries(Object.entries(rest).filter(([k]) => k !== 'entropy' && k !== 'request_id')));
  return [
    `${r.activeflow_id}: diverged at entry ${d.n}, after ${r.moves} identical moves${versions}`,
    `  request: ${type} ${request} at ${now}`,
    ...d.differences.map((x) => `  ${x.path}: recorded ${JSON.stringify(x.recorded) ?? 'nothing'}, replayed ${JSON.stringify(x.replayed) ?? 'nothing'}`),
  ].join('\n');
}
