/**
 * Export -> simulate round trips (src/replay/scenario-export.ts): a run's journals made into an
 * `activeflow simulate` scenario give, simulated, the same events and final state as the run, its
 * on_complete children's included. For every example (IVR menu, queue with fetch_flow and
 * service_stop, an on_complete chain four generations deep) and for random flows.
 */
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { LocalHost } from '../../actors/index.js';
import { exportScenario } from '../../src/replay/scenario-export.js';
import { runScenario, type SimulationOutput } from '../../src/simulate/run-scenario.js';
import { JournalEntry } from '../../src/store/journal-entry.js';
import { apply, counterClock, scenarioArb, setup, world } from '../helpers/random-flows.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;
const EXAMPLES = new URL('../../examples/', import.meta.url).pathname;

/** Every journal a host holds, through JSON and the schema (as a node hands them over). */
function journalsOf(host: LocalHost): Map<string, JournalEntry[]> {
  return new Map(host.ids().map((id) => [id, host.journal(id).map((e) => JournalEntry.parse(JSON.parse(JSON.stringify(e))))]));
}

/** What a run came to: its events and final state, and each child's. */
function outcome(o: SimulationOutput) {
  return { activeflow: o.activeflow, variables: o.variables, events: o.events, children: o.children };
}

describe('an exported run, simulated', () => {
  for (const file of readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'))) {
    it(`gives the same events and final state: examples/${file}`, () => {
      let recorded: { host: LocalHost; id: string } | undefined;
      const original = runScenario(JSON.parse(readFileSync(`${EXAMPLES}${file}`, 'utf8')), undefined, (host, id) => (recorded = { host, id }));
      const { scenario, notes } = exportScenario(recorded!.id, journalsOf(recorded!.host));
      expect(notes).toEqual([]);
      const again = runScenario(JSON.parse(JSON.stringify(scenario)));
      expect(outcome(again)).toEqual(outcome(original));
      if (file === 'on-complete-chain.json') expect(again.children.length).toBeGreaterThan(2);
    });
  }

  it('gives the same events and final state for random flows and requests (fetches, services, pushes, retries)', () => {
    fc.assert(
      fc.property(scenarioArb, ({ actions, ref, ops }) => {
        const { host, id } = setup(actions, ref, counterClock());
        for (const op of ops) apply(host, id, op);
        const { scenario } = exportScenario(id, journalsOf(host));
        const again = runScenario({ ...JSON.parse(JSON.stringify(scenario)) });
        const s = host.state(id)!;
        expect(again.activeflow).toEqual(s.activeflow);
        expect(again.variables).toEqual(s.variables);
        expect(again.events).toEqual(host.events(id));
      }),
      { numRuns: 150, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
    expect(world.flows.length).toBeGreaterThan(0); // the fetch_flow target the random flows use
  });
});
