/**
 * The journal entry, over random flows and requests (the property tests' scenarios): what a node
 * stores per move re-derives every state, and readers rebuild VoIPBIN's full events from it.
 * Re-run one case with `FC_SEED=<seed> npx vitest run test/unit/journal-entry.test.ts`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { EngineState, type StreamEvent } from '../../machines/index.js';
import { foldMessage, foldsOnto, JournalEntry, parseStreamMessage, type ReaderState, ReplayDivergence, replayEntry, same } from '../../src/store/journal-entry.js';
import { apply, counterClock, scenarioArb, setup } from '../helpers/random-flows.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;
const runs = (numRuns: number) => ({ numRuns, ...(SEED !== undefined ? { seed: SEED } : {}) });

/** Through JSON and the schema, as a reader gets it from the stream. */
const stored = (e: JournalEntry): JournalEntry => JournalEntry.parse(JSON.parse(JSON.stringify(e)));

/** The parts of a state a move decides (an ended activeflow's unchanged requests are not stored). */
const decided = (s: EngineState) => ({ activeflow: s.activeflow, variables: s.variables, seq: s.seq, version: s.version, pending: s.pending });

function run(scenario: { actions: unknown[]; ref: string; ops: Parameters<typeof apply>[2][] }) {
  const { host, id } = setup(scenario.actions, scenario.ref, counterClock());
  for (const op of scenario.ops) apply(host, id, op);
  return { host, id, entries: host.journal(id).map(stored) };
}

describe('journal entries', () => {
  it('checkpoint + entries equals the uninterrupted state, at every cut', () => {
    fc.assert(
      fc.property(scenarioArb, ({ actions, ref, ops }) => {
        const { host, id, entries } = run({ actions, ref, ops });
        const final = decided(host.state(id)!);
        // every prefix's state, as a checkpoint (through JSON, as KV holds it), then the rest replayed
        let state: EngineState | null = null;
        const prefixes: EngineState[] = [];
        for (const e of entries) {
          state = replayEntry(state, e);
          prefixes.push(state);
        }
        expect(decided(state!)).toEqual(final);
        for (const checkpoint of prefixes) {
          let s = EngineState.parse(JSON.parse(JSON.stringify(checkpoint)));
          for (const e of entries.slice(prefixes.indexOf(checkpoint) + 1)) s = replayEntry(s, e);
          expect(decided(s)).toEqual(final);
        }
      }),
      runs(200),
    );
  });

  it("readers rebuild exactly the events the engine emitted, VoIPBIN's full form, from the entries alone", () => {
    fc.assert(
      fc.property(scenarioArb, ({ actions, ref, ops }) => {
        const { host, id, entries } = run({ actions, ref, ops });
        let reader: ReaderState | null = null;
        let spelled: ReaderState | null = null;
        let state: EngineState | null = null;
        const events: StreamEvent[] = [];
        const spelledEvents: StreamEvent[] = [];
        for (const e of entries) {
          const folded = foldMessage(reader, parseStreamMessage(JSON.parse(JSON.stringify(e))));
          reader = folded.state;
          events.push(...folded.events);
          // the same entry with the executed actions written out (as a writer does when a reader could not derive them)
          const before: EngineState | null = state;
          state = replayEntry(state, e);
          const full = e.kind === 'move' ? { ...e, executed: state.activeflow.executed_actions.slice(before!.activeflow.executed_actions.length) } : e;
          const f2 = foldMessage(spelled, parseStreamMessage(JSON.parse(JSON.stringify(full))));
          spelled = f2.state;
          spelledEvents.push(...f2.events);
        }
        expect(events).toEqual(host.events(id));
        expect(spelledEvents).toEqual(host.events(id));
      }),
      runs(200),
    );
  });

  it('a reader that starts mid-journal is told to read from the start; an event written before the journal is a base', () => {
    const { host, id, entries } = run({
      actions: [{ type: 'talk' }, { type: 'talk' }, { type: 'talk' }],
      ref: 'call',
      ops: [
        { op: 'next', stale: false },
        { op: 'next', stale: false },
      ],
    });
    const second = parseStreamMessage(entries[1]);
    expect(foldsOnto(null, second)).toBe(false);
    expect(() => foldMessage(null, second)).toThrow(/does not follow/);
    // the full event before it (as version 1 stored it) is a base the entry after it folds onto
    const [created, firstMove] = host.events(id);
    const base = foldMessage(null, { kind: 'event', event: created! });
    expect(base.state!.n).toBe(0);
    const renumbered = parseStreamMessage({ ...entries[1], n: 1 });
    expect(foldsOnto(base.state, renumbered)).toBe(true);
    expect(foldMessage(base.state, renumbered).events[0]).toEqual(firstMove);
  });

  it('a move whose recorded outcome the engine no longer gives is a divergence, never a silently different state', () => {
    const { entries } = run({ actions: [{ type: 'talk' }, { type: 'talk' }], ref: 'call', ops: [{ op: 'next', stale: false }] });
    const [created, move] = entries as [JournalEntry, Extract<JournalEntry, { kind: 'move' }>];
    const state = replayEntry(null, created);
    expect(() => replayEntry(state, { ...move, cursor: { ...move.cursor, action_id: created.kind === 'created' ? created.state.activeflow.current_action.id : '' } })).toThrow(ReplayDivergence);
  });

  it('stores far less than the full events: a 20-action call', () => {
    const talk = Array.from({ length: 20 }, (_, i) => ({ type: 'talk', option: { text: `Thank you for calling, this is step ${i} of the menu`, language: 'en-US', gender: 'female' } }));
    const ops = Array.from({ length: 20 }, () => ({ op: 'next' as const, stale: false }));
    const { host, id, entries } = run({ actions: talk, ref: 'call', ops });
    const entryBytes = entries.slice(1).map((e) => JSON.stringify(e).length);
    const eventBytes = host
      .events(id)
      .slice(1)
      .map((e) => JSON.stringify(e).length);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    // the full event grows with the history; an entry does not
    expect(Math.max(...entryBytes)).toBeLessThan(1_000);
    expect(mean(entryBytes)).toBeLessThan(mean(eventBytes) / 3);
  });
});

describe('same (the comparison a move entry is built with)', () => {
  // JSON values with undefined fields and holes too, as JSON.stringify meets them in a state.
  const value = fc.letrec((tie) => ({
    leaf: fc.oneof(fc.constant(null), fc.constant(undefined), fc.boolean(), fc.integer({ min: -3, max: 3 }), fc.constantFrom('', 'a', 'b', 'é')),
    arr: fc.array(tie('node'), { maxLength: 3 }),
    obj: fc.dictionary(fc.constantFrom('a', 'b', 'c'), tie('node'), { maxKeys: 3 }),
    node: fc.oneof({ depthSize: 'small' }, tie('leaf'), tie('arr'), tie('obj')),
  })).node;

  it('is true exactly when the two have the same JSON text (key order counts)', () => {
    fc.assert(
      fc.property(value, value, (a, b) => {
        expect(same(a, b)).toBe(JSON.stringify(a) === JSON.stringify(b));
        // a copy through JSON is the same, whatever undefined fields the original had
        expect(same(a, a === undefined ? undefined : JSON.parse(JSON.stringify(a)))).toBe(true);
      }),
      runs(2000),
    );
  });

  it('tells apart what differs only in key order, and a missing field from an undefined one not', () => {
    expect(same({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(false);
    expect(same({ a: 1, b: undefined }, { a: 1 })).toBe(true);
    expect(same([undefined], [null])).toBe(true);
    expect(same([1], { 0: 1 })).toBe(false);
    expect(same({ a: [1, { b: 'x' }] }, { a: [1, { b: 'y' }] })).toBe(false);
  });
});
