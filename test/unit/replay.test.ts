/**
 * Replay (src/replay/replay-journal.ts): a recorded journal re-run through the engine. Random flows
 * replay identical; an engine whose rule was changed (a reducer swapped in here, the test-only
 * switch) is caught at the first move the rule changes, with the request and what differs.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type EngineEvent, type EngineState, reduce } from '../../machines/index.js';
import { JournalEntry } from '../../src/store/journal-entry.js';
import { exportRun, RunExport } from '../../src/replay/journal-export.js';
import { describeReplay, differences, replayJournal } from '../../src/replay/replay-journal.js';
import { apply, counterClock, scenarioArb, setup } from '../helpers/random-flows.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;

function recorded(scenario: { actions: unknown[]; ref: string; ops: Parameters<typeof apply>[2][] }) {
  const { host, id } = setup(scenario.actions, scenario.ref, counterClock());
  for (const op of scenario.ops) apply(host, id, op);
  // through JSON and the schema, as `history` with form "entries" hands it over
  return { id, entries: host.journal(id).map((e) => JournalEntry.parse(JSON.parse(JSON.stringify(e)))) };
}

describe('replay', () => {
  it('replays the journal of random flows and requests as identical', () => {
    fc.assert(
      fc.property(scenarioArb, (scenario) => {
        const { id, entries } = recorded(scenario);
        const r = replayJournal(id, entries);
        expect(r.outcome).toBe('identical');
        expect(r.from).toBe('created');
        expect(r.moves).toBe(entries.filter((e) => e.kind === 'move').length);
        expect(describeReplay(r)).toMatch(/identical/);
      }),
      { numRuns: 200, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });

  it('reports a changed engine rule as a divergence at the first move it changes, with the request and the differences', () => {
    const talks = Array.from({ length: 6 }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } }));
    const { id, entries } = recorded({ actions: talks, ref: 'call', ops: Array.from({ length: 6 }, () => ({ op: 'next' as const, stale: false })) });
    // the test-only switch: an engine whose third move also sets a variable
    const changed = (s: EngineState, e: EngineEvent): EngineState => {
      const next = reduce(s, e);
      return next.activeflow.execute_count === 3 && s.activeflow.execute_count === 2 ? { ...next, variables: { ...next.variables, rule: 'new' } } : next;
    };
    const r = replayJournal(id, entries, changed);
    expect(r.outcome).toBe('diverged');
    const third = entries.filter((e) => e.kind === 'move')[2]!;
    expect(r.divergence!.n).toBe(third.n);
    expect(r.moves).toBe(2);
    expect(r.divergence!.differences).toEqual([{ path: 'variables', recorded: undefined, replayed: { rule: 'new' } }]);
    const text = describeReplay(r);
    expect(text).toContain(`diverged at entry ${third.n}, after 2 identical moves`);
    expect(text).toContain('request: next {"current_action_id"');
    expect(text).toContain('variables: recorded nothing, replayed {"rule":"new"}');
  });

  it('says which engine versions wrote and replayed a record, and what it cannot replay', () => {
    const { id, entries } = recorded({ actions: [{ type: 'talk' }], ref: 'call', ops: [{ op: 'next', stale: false }] });
    const older = entries.map((e) => ({ ...e, engine: '0.0.9' }));
    expect(describeReplay(replayJournal(id, older))).toMatch(/recorded by engine 0\.0\.9, replayed by /);
    const noStart = replayJournal(id, entries.slice(1));
    expect(noStart.outcome).toBe('unreadable');
    expect(describeReplay(noStart)).toMatch(/no starting entry/);
  });

  it('an export drops secrets everywhere alike (scenario and journal), says where, and still replays identical', () => {
    const { host, id } = setup([{ type: 'talk' }, { type: 'talk' }], 'call', counterClock());
    host.request(id, 'variables_set', { variables: { Authorization: 'Bearer abc', plain: 'x' } });
    apply(host, id, { op: 'next', stale: false });
    const entries = host.journal(id).map((e) => JournalEntry.parse(JSON.parse(JSON.stringify(e))));
    const x = exportRun(id, new Map([[id, entries]]), '2026-12-05T00:00:00.000000Z');
    expect(JSON.stringify(x)).not.toContain('Bearer abc');
    expect(JSON.stringify(x)).toContain('"plain":"x"');
    const parsed = RunExport.parse(JSON.parse(JSON.stringify(x)));
    expect(parsed.exported.redacted).toEqual(expect.arrayContaining(['steps[0].variables.Authorization', 'journal[1].input.variables.Authorization', 'journal[1].variables.Authorization']));
    expect(replayJournal(id, parsed.journal).outcome).toBe('identical');
    expect(JSON.stringify(exportRun(id, new Map([[id, entries]]), 'now', []))).toContain('Bearer abc');
  });

  it('lists differences by path, a field left out being the same as one undefined', () => {
    expect(differences({ a: 1, b: { c: [1, 2] } }, { a: 1, b: { c: [1, 3] }, d: undefined })).toEqual([{ path: 'b.c[1]', recorded: 2, replayed: 3 }]);
    expect(differences(1, 2)).toEqual([{ path: '(whole)', recorded: 1, replayed: 2 }]);
  });
});
