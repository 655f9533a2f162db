/**
 * `npm run bench`: engine throughput and snapshot cost, each against a baseline measured in the
 * same run (figures vary with the machine; ratios are what to compare).
 *
 * 1. Moves/s: the same `next` requests through an XState actor, and straight through the plain
 *    reducer (`reduce`) that the actor calls. The ratio is XState's overhead.
 * 2. A long flow (5,000 moves with raised limits): the cost of a move early and late, to see how
 *    it grows with the history.
 * 3. Snapshot of a 100-move activeflow: size, getPersistedSnapshot + JSON time, restore time
 *    (JSON parse + zod validation + actor start), against a plain JSON round trip of the context.
 */
import { createActor } from 'xstate';
import { activeflowMachine, createActiveflow, EngineState, FINISH, Limits, reduce, START, type EngineEvent, type EngineState as State } from '../machines/index.js';

const NOW = '2026-11-27T10:00:00.000000Z';
const CUSTOMER = '11111111-1111-4111-8111-111111111111';

function initial(moves: number, limits?: Partial<Limits>): State {
  const actions = Array.from({ length: moves }, (_, i) => ({
    id: `00000000-0000-4000-8000-${String(i + 1).padStart(12, '0')}`,
    type: i % 2 === 0 ? 'talk' : 'play',
    option: i % 2 === 0 ? { text: `Hello \${name}, this is step ${i}`, language: 'en-US' } : { stream_urls: ['https://media.example.test/a.wav'] },
  }));
  const created = createActiveflow({
    request: { customer_id: CUSTOMER, reference_type: 'call', actions: actions as never, variables: { name: 'Ada' } },
    flow: null,
    parent: null,
    now: NOW,
    entropy: 'bench-create',
    ...(limits ? { limits: Limits.parse(limits) } : {}),
  });
  if (!created.ok) throw new Error(created.error.message);
  return created.state;
}

const nextEvent = (n: number, current: string): EngineEvent => ({ type: 'next', request_id: `r${n}`, now: NOW, entropy: `e${n}`, current_action_id: current });

function currentOf(state: State): string {
  return state.activeflow.current_action.id;
}

/** Drives `flows` activeflows of `moves` moves each; returns moves per second. */
function viaReducer(flows: number, moves: number): number {
  const base = initial(moves);
  const t0 = performance.now();
  let total = 0;
  for (let f = 0; f < flows; f++) {
    let s = base;
    for (let i = 0; i < moves; i++) {
      s = reduce(s, nextEvent(i, currentOf(s)));
      total++;
    }
  }
  return total / ((performance.now() - t0) / 1000);
}

function viaActor(flows: number, moves: number): number {
  const base = initial(moves);
  const t0 = performance.now();
  let total = 0;
  for (let f = 0; f < flows; f++) {
    const actor = createActor(activeflowMachine, { input: base });
    actor.start();
    for (let i = 0; i < moves; i++) {
      actor.send(nextEvent(i, currentOf(actor.getSnapshot().context)));
      total++;
    }
    actor.stop();
  }
  return total / ((performance.now() - t0) / 1000);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

function line(label: string, value: string): void {
  process.stdout.write(`  ${label.padEnd(52)} ${value}\n`);
}

// ------------------------------------------------------------------------------------------------
process.stdout.write(`activeflow engine benchmark (node ${process.version}, ${new Date().toISOString()})\n\n`);

const FLOWS = 300;
const MOVES = 100; // the default life of an activeflow is at most 101 moves
viaReducer(50, MOVES);
viaActor(50, MOVES); // warm-up
const reducerRuns: number[] = [];
const actorRuns: number[] = [];
for (let r = 0; r < 5; r++) {
  reducerRuns.push(viaReducer(FLOWS, MOVES));
  actorRuns.push(viaActor(FLOWS, MOVES));
}
const reducerRate = median(reducerRuns);
const actorRate = median(actorRuns);
process.stdout.write(`1. moves/s, ${FLOWS} activeflows x ${MOVES} next requests (median of 5)\n`);
line('plain reducer (baseline)', `${fmt(reducerRate)} moves/s`);
line('XState actor', `${fmt(actorRate)} moves/s`);
line('ratio actor / reducer', `${fmt(actorRate / reducerRate, 2)}x`);

// ------------------------------------------------------------------------------------------------
const LONG = 5000;
{
  let s = initial(LONG, { max_execute_count: LONG + 10, max_cycle_iterations: LONG + 10 });
  const cost: number[] = [];
  for (let i = 0; i < LONG; i++) {
    const t0 = performance.now();
    s = reduce(s, nextEvent(i, currentOf(s)));
    cost.push(performance.now() - t0);
  }
  const window = (from: number) => median(cost.slice(from, from + 500)) * 1000;
  process.stdout.write(`\n2. one long flow: ${LONG} moves (limits raised), cost of a move by history length\n`);
  line('moves 0-500 (baseline), median', `${fmt(window(0), 1)} us`);
  line(`moves ${LONG - 500}-${LONG}, median`, `${fmt(window(LONG - 500), 1)} us`);
  line('ratio late / early', `${fmt(window(LONG - 500) / window(0), 2)}x`);
  line('final executed_actions', `${s.activeflow.executed_actions.length}`);
}

// ------------------------------------------------------------------------------------------------
{
  const actor = createActor(activeflowMachine, { input: initial(120) });
  actor.start();
  for (let i = 0; i < 100; i++) actor.send(nextEvent(i, currentOf(actor.getSnapshot().context)));
  const ctx = actor.getSnapshot().context;
  if (ctx.activeflow.execute_count !== 100 || ctx.activeflow.current_action.id === FINISH || ctx.activeflow.current_action.id === START) {
    throw new Error('the snapshot benchmark expected a running activeflow after 100 moves');
  }
  const N = 2000;
  let json = '';
  let t0 = performance.now();
  for (let i = 0; i < N; i++) json = JSON.stringify(actor.getPersistedSnapshot());
  const snapUs = ((performance.now() - t0) / N) * 1000;
  t0 = performance.now();
  for (let i = 0; i < N; i++) JSON.stringify(ctx);
  const plainUs = ((performance.now() - t0) / N) * 1000;
  t0 = performance.now();
  for (let i = 0; i < N; i++) {
    const persisted = JSON.parse(json);
    const state = EngineState.parse(persisted.context);
    const restored = createActor(activeflowMachine, { snapshot: persisted, input: state });
    restored.start();
  }
  const restoreUs = ((performance.now() - t0) / N) * 1000;
  t0 = performance.now();
  for (let i = 0; i < N; i++) JSON.parse(json);
  const parseUs = ((performance.now() - t0) / N) * 1000;
  process.stdout.write('\n3. snapshot of a 100-move activeflow (120-action flow)\n');
  line('persisted snapshot size', `${fmt(Buffer.byteLength(json) / 1024, 1)} KiB`);
  line('JSON of the bare context (baseline)', `${fmt(plainUs, 1)} us`);
  line('getPersistedSnapshot + JSON', `${fmt(snapUs, 1)} us  (${fmt(snapUs / plainUs, 2)}x)`);
  line('JSON.parse only (baseline)', `${fmt(parseUs, 1)} us`);
  line('restore: parse + zod validation + actor start', `${fmt(restoreUs, 1)} us  (${fmt(restoreUs / parseUs, 2)}x)`);
}
