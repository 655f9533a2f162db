/**
 * The ownership core's cost of a node's lease renewals (src/cluster/ownership-core.ts, pure: no
 * NATS). One node holds all `--shards` (default 256) and renews each every second; the bench times,
 * per round, handing the core the round's renewal answers one event each (`renewed`) and as one
 * event (`renewals`, what the shell does with the answers read in one turn of the event loop),
 * the two alternated, 400 rounds each. docs/benchmarks.md, "An idle node's lease renewals".
 */
import { initialView, nextWake, type OwnershipCommand, type OwnershipEvent, type OwnershipView, ownershipConfig, type Renewal, step } from '../src/cluster/ownership-core.js';

const shards = Number(process.argv.find((a) => a.startsWith('--shards='))?.split('=')[1] ?? 256);
const ROUNDS = 400;

let now = 1_000_000;
let view: OwnershipView = initialView(ownershipConfig('n1', shards, 3_000), now);
let commands: OwnershipCommand[] = [];
const feed = (e: OwnershipEvent) => {
  const r = step(view, e, now);
  view = r.view;
  commands.push(...r.commands);
};
feed({ type: 'membership', joined: true });
feed({ type: 'started', live: ['n1'], drained: [], holders: new Map() });
while (commands.some((c) => c.type === 'claim')) {
  const claims = commands.filter((c) => c.type === 'claim');
  commands = [];
  for (const c of claims) feed({ type: 'claimed', shard: c.shard, sentAt: now, granted: { revision: 1, previous: null } });
}
commands = [];

const times = { one: [] as number[], batch: [] as number[] };
for (let round = 0; round < 2 * ROUNDS; round++) {
  now += 1_000;
  feed({ type: 'tick' });
  const answers: Renewal[] = commands.flatMap((c) => (c.type === 'renew' ? [{ shard: c.shard, sentAt: c.sentAt, revision: round + 2 }] : []));
  commands = [];
  if (answers.length !== shards) throw new Error(`round ${round}: ${answers.length} renewals due, expected ${shards}`);
  const batched = round % 2 === 1;
  const t = performance.now();
  if (batched) feed({ type: 'renewals', results: answers });
  else for (const a of answers) feed({ type: 'renewed', ...a });
  nextWake(view); // the shell asks once per dispatch
  (batched ? times.batch : times.one).push(performance.now() - t);
  commands = [];
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${[...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.99)]!.toFixed(2)}`;
process.stdout.write(`ownership core: ${shards} lease renewals answered (node ${process.version}, ${new Date().toISOString()}), ${ROUNDS} rounds each, alternated\n`);
process.stdout.write(
  `  one event per answer ('renewed')   median ${median(times.one).toFixed(2)} ms a round (min-p99 ${range(times.one)}), ${((1000 * median(times.one)) / shards).toFixed(1)} us an answer\n`,
);
process.stdout.write(`  one event for the lot ('renewals') median ${median(times.batch).toFixed(2)} ms a round (min-p99 ${range(times.batch)})\n`);
