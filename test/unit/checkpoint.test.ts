/**
 * A node reads back its own checkpoint of an activeflow it passivated without validating it again
 * (SnapshotStore.load with `own`). That is sound only if validation would change nothing in such a
 * checkpoint: no field dropped, defaulted or reordered. Checked here over random flows and requests
 * (the property tests' scenarios), on the checkpoint exactly as the actor writes it, at every step.
 * Re-run one case with `FC_SEED=<seed> npx vitest run test/unit/checkpoint.test.ts`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { persistedState } from '../../actors/persisted-snapshot.js';
import { EngineState } from '../../machines/index.js';
import { decodeJson, encodeJson } from '../../src/store/codec.js';
import { same } from '../../src/store/journal-entry.js';
import { apply, counterClock, scenarioArb, setup } from '../helpers/random-flows.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;
const runs = (numRuns: number) => ({ numRuns, ...(SEED !== undefined ? { seed: SEED } : {}) });

/** The context of a checkpoint as KV holds it: the actor's persisted form, through JSON. */
const readBack = (state: EngineState): unknown => (decodeJson(encodeJson({ ...(persistedState(state) as object), af_journal: { seq: 1, n: 1 } })) as { context: unknown }).context;

describe("a node's own checkpoint", () => {
  it('is, read back, exactly what validating it gives: same fields, same values, same order', () => {
    let states = 0;
    fc.assert(
      fc.property(scenarioArb, ({ actions, ref, ops }) => {
        const { host, id } = setup(actions, ref, counterClock());
        const check = () => {
          const state = host.state(id);
          if (state === null || state === undefined) return; // deleted
          const back = readBack(state);
          const validated = EngineState.parse(back);
          // `same` compares JSON text, key order included; toEqual names the difference when there is one
          if (!same(validated, back)) expect(validated).toEqual(back);
          expect(same(validated, back)).toBe(true);
          states++;
        };
        check();
        for (const op of ops) {
          apply(host, id, op);
          check();
        }
      }),
      runs(200),
    );
    expect(states).toBeGreaterThan(1_000); // the scenarios reached many states, not a handful
  });

  it('would be changed by validation if a field were missing or out of place (the check above can fail)', () => {
    const { host, id } = setup([{ type: 'talk', option: { text: 'hi' } }], 'call', counterClock());
    const back = readBack(host.state(id)!) as Record<string, unknown>;
    const { recent_requests: _dropped, ...older } = back; // as a snapshot from before request ids
    expect(same(EngineState.parse(older), older)).toBe(false); // a default filled in
    const { activeflow, ...rest } = back;
    const reordered = { ...rest, activeflow }; // the same fields, another order
    expect(same(EngineState.parse(reordered), reordered)).toBe(false);
  });
});
