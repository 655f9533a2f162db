/**
 * VoIPBIN's full events, materialised from journal entries where a reader needs them (the webhook
 * deliverer, the WebSocket, `activeflow watch`), not stored per move. A reader keeps, per
 * activeflow, what the next entry folds onto (src/store/journal-entry.ts: the public activeflow
 * and its latest history), for the most recent activeflows it saw. An entry that does not follow
 * what it keeps (the reader started mid-journal, or forgot the activeflow) is a miss, answered by
 * `onMiss`: on a node, the activeflow's journal read from its start; elsewhere, a node's `history`.
 */
import type { StreamEvent } from '../../machines/index.js';
import { RecentMap } from '../recent-map.js';
import { foldMessage, foldsOnto, type ReaderState, type StreamMessage } from './journal-entry.js';

/**
 * Activeflows whose fold state a reader keeps, the most recently moved ones (~1 KB each plus their
 * latest executed actions, at most 128: about 4 KB for a 20-action call, 40 MB at the bound). A
 * forgotten one costs its next entry a read of its journal.
 */
export const MATERIALIZED_ACTIVEFLOWS = 10_000;

/** Where a message came from: its activeflow, its customer, its stream sequence. */
export interface MessageAt {
  customerId: string;
  activeflowId: string;
  seq: number;
}

/** The activeflow and customer of a journal subject `activeflow.events.<customer>.<activeflow>`. */
export function subjectIds(subject: string): { customerId: string; activeflowId: string } {
  const parts = subject.split('.');
  return { customerId: parts[2] ?? '', activeflowId: parts[3] ?? '' };
}

export type MissHandler = (at: MessageAt, message: StreamMessage) => Promise<{ events: StreamEvent[]; state: ReaderState | null }>;

export class EventMaterializer {
  private readonly states: RecentMap<string, ReaderState>;

  constructor(
    private readonly onMiss: MissHandler,
    capacity = MATERIALIZED_ACTIVEFLOWS,
  ) {
    this.states = new RecentMap(capacity);
  }

  /** The events a message stands for, in order; messages of one activeflow must come in stream order. */
  async events(at: MessageAt, message: StreamMessage): Promise<StreamEvent[]> {
    const state = this.states.get(at.activeflowId) ?? null;
    if (foldsOnto(state, message)) {
      const folded = foldMessage(state, message);
      if (folded.state !== null) this.states.set(at.activeflowId, folded.state);
      return folded.events;
    }
    const answered = await this.onMiss(at, message);
    if (answered.state !== null) this.states.set(at.activeflowId, answered.state);
    else this.states.delete(at.activeflowId);
    return answered.events;
  }
}

/**
 * A miss answered from the journal itself (a node): the activeflow's messages up to this one,
 * folded from its start.
 */
export function missFromJournal(all: (customerId: string, activeflowId: string, upto: number) => Promise<{ seq: number; message: StreamMessage }[]>): MissHandler {
  return async (at) => {
    let state: ReaderState | null = null;
    let events: StreamEvent[] = [];
    for (const { seq, message } of await all(at.customerId, at.activeflowId, at.seq)) {
      if (!foldsOnto(state, message)) continue; // its start is past the stream's retention
      const folded = foldMessage(state, message);
      state = folded.state;
      if (seq === at.seq) events = folded.events;
    }
    return { events, state };
  };
}
