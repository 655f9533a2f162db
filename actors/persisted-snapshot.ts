/**
 * The persisted form of an activeflow actor, built without XState's `getPersistedSnapshot`: that
 * walks and copies the whole context looking for actor references (this machine has none), which
 * cost ~5% of a node's CPU plus garbage under load. The shape is exactly what XState writes and
 * restores (test/fixtures/golden-snapshot-v1.json; a unit test compares the two).
 */
import type { Actor, Snapshot } from 'xstate';
import type { ActiveflowMachine, EngineState } from '../machines/index.js';
import { checkpointState } from '../src/store/snapshot-store.js';

export function persistedSnapshot(actor: Actor<ActiveflowMachine>): Snapshot<unknown> {
  const s = actor.getSnapshot();
  const persisted: Record<string, unknown> = { status: s.status, value: s.value, historyValue: {}, context: s.context, children: {} };
  if (s.status === 'done') persisted['output'] = s.output;
  return persisted as unknown as Snapshot<unknown>;
}

/** The persisted form of a state the actor was in (a checkpoint of a state already journaled). */
export function persistedState(state: EngineState): Snapshot<unknown> {
  state = checkpointState(state);
  if (state.activeflow.status === 'ended') return { status: 'done', value: 'ended', historyValue: {}, context: state, children: {}, output: state } as unknown as Snapshot<unknown>;
  const value = { running: state.pending === null ? 'idle' : 'awaiting_effect' };
  return { status: 'active', value, historyValue: {}, context: state, children: {} } as unknown as Snapshot<unknown>;
}
