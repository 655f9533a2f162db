/**
 * The cluster under deterministic simulation (test/sim/cluster-sim.ts): on every node the real
 * ownership core and the real actors (ActorRegistry, ActiveflowActor, the engine, SnapshotStore,
 * Journal, ActiveflowIndex) over simulated servers, the real running-count writes and reconcile
 * decisions; crashes, pauses, partitions, slow links, drains and graceful stops; invariants checked
 * at every step. A failure names its seed and prints the trace before
 * it; `npm run simulate:cluster -- --seed <seed>` replays exactly that run.
 */
import { describe, expect, it } from 'vitest';
import { REGRESSION_SEEDS, runSimulation, type SimResult } from '../sim/cluster-sim.js';
import { MUTATIONS } from '../sim/mutations.js';

/** The seeds every `npm test` runs. */
const CI_SEEDS = 1_000;
/** The seeds that once found a bug first (a mutation of that bug is caught at once), then 1..CI_SEEDS. */
const SEEDS = [...REGRESSION_SEEDS, ...Array.from({ length: CI_SEEDS }, (_, i) => i + 1)];

function explain(r: SimResult, replay: string): string {
  return `seed ${r.seed}: ${r.violation}\n${r.trace.join('\n')}\nreplay: ${replay}`;
}

describe('the cluster simulation', () => {
  it(`holds every invariant over ${SEEDS.length} seeds`, { timeout: 300_000 }, async () => {
    let moves = 0;
    let handovers = 0;
    let steals = 0;
    let crashes = 0;
    let pauses = 0;
    let partitions = 0;
    let corrections = 0;
    let batchedRenewals = 0;
    for (const seed of SEEDS) {
      const r = await runSimulation({ seed, traceLines: 60 });
      if (!r.ok) expect.fail(explain(r, `npm run simulate:cluster -- --seed ${seed}`));
      moves += r.stats.moves;
      handovers += r.stats.handovers;
      steals += r.stats.steals;
      crashes += r.stats.crashes;
      pauses += r.stats.pauses;
      partitions += r.stats.partitions;
      corrections += r.stats.corrections;
      batchedRenewals += r.stats.batchedRenewals;
    }
    // The runs did what they are for: every activeflow finished its moves, through every kind of fault.
    expect(moves).toBe(SEEDS.length * 10 * 16);
    expect(handovers).toBeGreaterThan(CI_SEEDS);
    expect(steals).toBeGreaterThan(CI_SEEDS); // leases taken at once from a connection the servers saw close
    expect(crashes).toBeGreaterThan(CI_SEEDS / 10);
    expect(pauses).toBeGreaterThan(CI_SEEDS / 10);
    expect(partitions).toBeGreaterThan(CI_SEEDS / 10);
    // Faults did leave counts off (a creation or an end cut between its steps), and the reconcile
    // corrected them before each run's quiet point, where every count was checked exact.
    expect(corrections).toBeGreaterThan(CI_SEEDS / 50);
    // Renewal answers delivered at one instant (sent together, or held while a node was paused)
    // reached its core as one `renewals` event: the batched path ran through every kind of fault too.
    expect(batchedRenewals).toBeGreaterThan(CI_SEEDS);
  });

  it('is deterministic: the same seed gives the same run, event for event', async () => {
    const a = await runSimulation({ seed: 4242, traceLines: 100_000 });
    const b = await runSimulation({ seed: 4242, traceLines: 100_000 });
    expect(a.ok).toBe(true);
    expect(b.trace).toEqual(a.trace);
    expect(b.stats).toEqual(a.stats);
    expect((await runSimulation({ seed: 4243, traceLines: 100_000 })).trace).not.toEqual(a.trace);
  });

  for (const [name, mutation] of Object.entries(MUTATIONS)) {
    it(`catches a broken protocol within the CI seeds: ${mutation.what} (${name})`, { timeout: 300_000 }, async () => {
      // The seed that caught it last first (it must be a CI seed), then all of them.
      expect(SEEDS).toContain(mutation.caughtBy);
      for (const seed of [mutation.caughtBy, ...SEEDS]) {
        const r = await runSimulation({ ...mutation, seed, traceLines: 0 });
        if (!r.ok) {
          expect(r.violation).toMatch(mutation.violation ?? /served by|serves shard|holds loaded|after releasing|acknowledged|lost or applied twice|applied twice|read of activeflow/);
          return;
        }
      }
      expect.fail(`mutation ${name} survived ${SEEDS.length} seeds`);
    });
  }
});
