/**
 * Startup benchmark: the process time (user + system CPU) of `activeflow --help` and of
 * `activeflow get <id>` against a running node, run from the compiled dist/ and through tsx, the
 * two alternated in one run. The goal: under 0.3 s compiled (docs/benchmarks.md, "Startup").
 */
import { execFileSync } from 'node:child_process';
import { ActiveflowClient } from '../src/api/client.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { ACTIVEFLOW, spawnAndWait } from './processes.js';

const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const ROUNDS = process.argv.includes('--quick') ? 3 : 7;
const BIN = ACTIVEFLOW.at(-1)!;

/** One run's process time and wall time, in seconds, from bash's `time` (the child's rusage). */
function timed(how: 'dist' | 'tsx', args: string[], env: Record<string, string>): { cpu: number; wall: number } {
  const out = execFileSync('bash', ['-c', 'TIMEFORMAT="%3U %3S %3R"; { time node "$@" > /dev/null; } 2>&1', 'timed', BIN, ...args], {
    env: { ...process.env, ...env, ACTIVEFLOW_RUN: how },
    encoding: 'utf8',
  });
  const [user, sys, real] = out.trim().split('\n').at(-1)!.split(' ').map(Number) as [number, number, number];
  return { cpu: user + sys, wall: real };
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const range = (xs: number[]) => `${Math.min(...xs).toFixed(2)}-${Math.max(...xs).toFixed(2)}`;

execFileSync(process.execPath, [new URL('../scripts/build.mjs', import.meta.url).pathname], { stdio: 'inherit' });
const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
const node = await spawnAndWait(ACTIVEFLOW.concat('node'), { NATS_URL: server.url, NODE_ID: 'startup-bench', LOG_LEVEL: 'info' }, '"node_serving"');
try {
  const nc = await connectNats(server.url, 'startup-bench');
  const af = await new ActiveflowClient(nc).createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'talk', option: { text: 'hi' } }], reference_type: 'call' });
  await nc.close();
  const cases: [string, string[]][] = [
    ['activeflow --help', ['--help']],
    ['activeflow get <id>', ['get', af.id]],
  ];
  const env = { NATS_URL: server.url };
  process.stdout.write(`startup: ${ROUNDS} rounds, dist and tsx alternated; process time = user + system CPU of the command\n`);
  for (const [label, args] of cases) {
    const runs = { dist: [] as { cpu: number; wall: number }[], tsx: [] as { cpu: number; wall: number }[] };
    timed('dist', args, env); // warm the file cache
    timed('tsx', args, env);
    for (let i = 0; i < ROUNDS; i++) {
      for (const how of i % 2 === 0 ? (['dist', 'tsx'] as const) : (['tsx', 'dist'] as const)) runs[how].push(timed(how, args, env));
    }
    for (const how of ['dist', 'tsx'] as const) {
      const cpu = runs[how].map((r) => r.cpu);
      const wall = runs[how].map((r) => r.wall);
      process.stdout.write(`  ${label.padEnd(22)} ${how.padEnd(5)} process ${median(cpu).toFixed(2)} s (${range(cpu)})   wall ${median(wall).toFixed(2)} s (${range(wall)})\n`);
    }
    process.stdout.write(`  ${''.padEnd(22)} dist/tsx process time ${(median(runs.dist.map((r) => r.cpu)) / median(runs.tsx.map((r) => r.cpu))).toFixed(2)}x\n`);
  }
} finally {
  node.kill('SIGTERM');
  await new Promise((r) => node.once('exit', r));
  await server.stop();
}
