/**
 * An activeflow's state as the store holds it now, read by whoever does not host it: its checkpoint
 * and the journal entries after it, replayed, as a load computes it but with none of a load's
 * repairs (no fence, no created entry appended, no end finished: those are its owner's). A
 * checkpoint alone can be up to CHECKPOINT_EVERY moves old, so a reader that copies from another
 * activeflow (a creation's `reference_activeflow_id`, its variables) reads here, never the
 * checkpoint alone.
 */
import type { EngineState } from '../../machines/index.js';
import type { Journal } from './journal.js';
import { replayFromStart, replayOnto } from './journal-entry.js';
import type { SnapshotStore } from './snapshot-store.js';

export async function currentState(store: SnapshotStore, journal: Journal, id: string): Promise<EngineState | null> {
  const stored = await store.load(id);
  if (stored === null) return null;
  const customerId = stored.state.activeflow.customer_id;
  const last = await journal.last(customerId, id);
  if (stored.position === null) {
    // Written before the journal, as a snapshot per move: current, unless a load started its
    // journal (a rebase entry) and the checkpoint naming it did not land; then the journal is.
    if (last === null || last.kind === 'event') return stored.state;
    return replayFromStart((await journal.all(customerId, id, last.seq)).map(({ message }) => message)) ?? stored.state;
  }
  const { seq, n } = stored.position;
  // nothing after the checkpoint (or only the created entry, which holds the checkpoint's state)
  if (last === null || last.seq <= seq || (n === 0 && last.kind === 'created')) return stored.state;
  return replayOnto(
    stored.state,
    (await journal.between(customerId, id, seq, last.seq)).map(({ message }) => message),
  );
}
