/**
 * An activeflow's moves as they were: the state after each journal entry, re-derived by the engine
 * from the recorded inputs (the dashboard's time travel). Pure.
 */
import type { EngineState } from '../../machines/index.js';
import { type JournalEntry, replayEntry } from '../store/journal-entry.js';

export interface TimelineStep {
  /** The entry's number in the journal. */
  n: number;
  at: string;
  kind: 'created' | 'rebase' | 'move';
  /** What was asked: the verb (or `effect_result`) and its fields, without the clock and the entropy. */
  request: Record<string, unknown> | null;
  /** The state after it. */
  state: EngineState;
}

/** The most recent steps a timeline holds (a long-running activeflow's first ones are left out). */
export const TIMELINE_STEPS = 500;

/** The state after each entry (fences change nothing and are left out), from the journal's first base on. */
export function timeline(entries: readonly JournalEntry[]): TimelineStep[] {
  const steps: TimelineStep[] = [];
  let state: EngineState | null = null;
  for (const entry of entries) {
    if (entry.kind === 'fence') continue;
    if (state === null && entry.kind === 'move') continue; // before the first base: past the stream's retention
    state = replayEntry(state, entry);
    let request: Record<string, unknown> | null = null;
    if (entry.kind === 'move') {
      const { now: _now, entropy: _entropy, request_id: _id, ...asked } = entry.input;
      request = asked;
    }
    steps.push({ n: entry.n, at: entry.at, kind: entry.kind, request, state });
  }
  return steps.slice(-TIMELINE_STEPS);
}
