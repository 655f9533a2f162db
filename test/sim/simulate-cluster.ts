/**
 * `npm run simulate:cluster -- [--seeds N] [--from S] [--seed S] [--mutation NAME] [--trace N]`
 *
 * Runs the deterministic cluster simulation (test/sim/cluster-sim.ts) over many seeds. A failure
 * prints its seed, the violated invariant and the trace before it, and the command that replays
 * exactly that run. `--mutation` runs a deliberately broken protocol (test/sim/mutations.ts) and
 * reports the first seed that catches it.
 */
import { parseArgs } from 'node:util';
import { REGRESSION_SEEDS, runSimulation, type SimResult } from './cluster-sim.js';
import { MUTATIONS } from './mutations.js';

const HELP = `Usage: npm run simulate:cluster -- [options]

Runs the cluster (the real ownership core and the real actors, journal, stores and index, the
running counts' writes and reconcile) over simulated NATS servers, network and clocks with
crashes, pauses, partitions, slow links, drains and graceful stops, one seed per run, and checks
its invariants at every step.

Options:
  --seeds N         how many seeds to run (default 1000), then the seeds beyond them that
                    catch a mutation no lower seed catches (${REGRESSION_SEEDS.join(', ')})
  --from S          the first seed (default 1)
  --seed S          run this one seed and print its whole trace
  --mutation NAME   run a deliberately broken protocol; passes when a seed catches it
                    (${Object.keys(MUTATIONS).join(', ')})
  --trace N         lines of trace to print with a failure (default 60)
  -h, --help        this text

Exit status: 0 all seeds held (or the mutation was caught), 1 a violation (or a mutation not
caught), 2 bad arguments.`;

async function main(): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({
      options: { seeds: { type: 'string' }, from: { type: 'string' }, seed: { type: 'string' }, mutation: { type: 'string' }, trace: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
    }).values;
  } catch (e) {
    console.error(`${(e as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  const int = (name: string, fallback: number): number => {
    const raw = values[name];
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`--${name} takes a whole number, not "${String(raw)}"`);
    return n;
  };
  let seeds: number;
  let from: number;
  let traceLines: number;
  try {
    seeds = int('seeds', 1000);
    from = int('from', 1);
    traceLines = int('trace', 60);
    if (values.seed !== undefined) {
      from = int('seed', 1);
      seeds = 1;
      traceLines = int('trace', 100_000);
    }
  } catch (e) {
    console.error((e as Error).message);
    return 2;
  }
  const name = values.mutation as string | undefined;
  const mutation = name === undefined ? {} : MUTATIONS[name];
  if (mutation === undefined) {
    console.error(`unknown mutation "${name}"; one of: ${Object.keys(MUTATIONS).join(', ')}`);
    return 2;
  }

  const started = performance.now();
  const totals = { events: 0, moves: 0, handovers: 0, steals: 0, crashes: 0, pauses: 0, partitions: 0, corrections: 0 };
  let failure: SimResult | null = null;
  let ran = 0;
  // The range, then the seeds that once found a bug beyond it (unless one seed was asked for).
  const list = [...Array.from({ length: seeds }, (_, i) => from + i), ...(values.seed === undefined ? REGRESSION_SEEDS.filter((s) => s < from || s >= from + seeds) : [])];
  for (const seed of list) {
    const r = await runSimulation({ ...mutation, seed, traceLines });
    ran++;
    for (const k of Object.keys(totals) as (keyof typeof totals)[]) totals[k] += r.stats[k];
    if (values.seed !== undefined) console.log(r.trace.join('\n'));
    if (!r.ok) {
      failure = r;
      break;
    }
    if (ran % 1000 === 0 && process.stderr.isTTY) process.stderr.write(`\r${ran}/${list.length} seeds held (${((performance.now() - started) / 1000).toFixed(0)} s)`);
  }
  if (process.stderr.isTTY && ran >= 1000) process.stderr.write('\n');
  const seconds = ((performance.now() - started) / 1000).toFixed(1);
  const summary = `${ran} seeds, ${totals.events.toLocaleString('en')} events, ${totals.moves.toLocaleString('en')} acknowledged moves, ${totals.handovers.toLocaleString('en')} handovers, ${totals.steals.toLocaleString('en')} leases taken from closed connections, ${totals.crashes} crashes, ${totals.pauses} pauses, ${totals.partitions} partitions, ${totals.corrections} running-count slots corrected, ${seconds} s`;
  if (name !== undefined) {
    if (failure === null) {
      console.log(`mutation ${name} (${MUTATIONS[name]!.what}) NOT caught: ${summary}`);
      return 1;
    }
    const expected = MUTATIONS[name]!.violation;
    if (expected !== undefined && !expected.test(failure.violation ?? '')) {
      // Something else broke first: not this mutation's catch (a flaw of the protocol or of the simulation).
      console.log(`mutation ${name}: seed ${failure.seed} failed another invariant than ${expected}: ${failure.violation}`);
      console.log(`replay: npm run simulate:cluster -- --mutation ${name} --seed ${failure.seed}`);
      return 1;
    }
    console.log(`mutation ${name} (${MUTATIONS[name]!.what}) caught by seed ${failure.seed}: ${failure.violation}`);
    console.log(`replay: npm run simulate:cluster -- --mutation ${name} --seed ${failure.seed}`);
    return 0;
  }
  if (failure !== null) {
    if (values.seed === undefined) console.log(failure.trace.join('\n'));
    console.log(`\nseed ${failure.seed}: ${failure.violation}`);
    console.log(`replay: npm run simulate:cluster -- --seed ${failure.seed}`);
    return 1;
  }
  console.log(`all invariants held: ${summary}`);
  return 0;
}

process.exitCode = await main();
