/**
 * Node benchmarks against a real nats-server (started here, on a free port), each figure beside a
 * baseline measured in the same run:
 *
 * 1. Durable moves/s of 1,000 concurrent simulated calls (node in its own process), against the
 *    pipelined KV put rate of the same server (256 puts in flight, 2 KiB values), and beside
 *    ceilings for any request-per-move design at the same concurrency: a responder that only
 *    echoes, one that does one KV put before replying, one that does a KV put and a stream publish;
 *    and beside the design's floor: a responder that does only what a move must (the activeflow's
 *    XState actor and engine, its journal entry, one fenced write, the reply). bench/responders.ts.
 * 2. `get` and `next` latency p50/p99, against a raw request-reply echo served by another process.
 * 3. Resident memory per live activeflow with 100,000 of them resident (node process RSS).
 * 4. The cost of a move as the history grows (limits raised): early moves against late ones.
 * 5. Loading an activeflow: after a crash (its checkpoint and up to CHECKPOINT_EVERY - 1 entries
 *    replayed), and passivated (its checkpoint, no entries after it) in three rounds, each against
 *    a get of the same activeflows resident just before.
 *
 * Figures depend on the machine; on 2 cores the client, the node and nats-server share them
 * (`--pin` gives the node a core of its own; `--quick` runs 200 calls; `--sync=always` sets the
 * server's sync_interval).
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { startInProcessNode } from './in-process-node.js';
import { measureLoads, printLoads } from './loads.js';
import { ACTIVEFLOW, cpuMicros, pin, spawnAndWait } from './processes.js';
import { readFileSync } from 'node:fs';
import { Kvm } from '@nats-io/kv';
import { jetstreamManager } from '@nats-io/jetstream';
import { ActiveflowClient } from '../src/api/client.js';
import { SUBJECTS } from '../src/api/subjects.js';
import { connectNats } from '../src/nats/connect.js';
import { decodeJson, encodeJson } from '../src/store/codec.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { Limits } from '../machines/index.js';
import { percentile, simulateCalls } from '../src/simulator/call-simulator.js';

const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const quick = process.argv.includes('--quick');

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const line = (label: string, value: string) => process.stdout.write(`  ${label.padEnd(56)} ${value}\n`);

function rssKiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+)/.exec(status)![1]);
}

/**
 * Latencies of several operations measured in alternating blocks of 50, so that each sees the same
 * machine: measured one after the other, the later ones ran on a warmer JIT and a quieter CPU, and
 * their ratio moved by 30% between runs.
 */
async function interleaved<K extends string>(n: number, ops: Record<K, () => Promise<unknown>>): Promise<Record<K, { p50: number; p99: number }>> {
  const names = Object.keys(ops) as K[];
  const xs = Object.fromEntries(names.map((k) => [k, [] as number[]])) as Record<K, number[]>;
  for (const k of names) for (let i = 0; i < 200; i++) await ops[k](); // warm-up
  for (let round = 0; round * 50 < n; round++) {
    for (let j = 0; j < names.length; j++) {
      const k = names[(round + j) % names.length]!;
      for (let i = 0; i < 50; i++) {
        const t = performance.now();
        await ops[k]();
        xs[k].push(performance.now() - t);
      }
    }
  }
  return Object.fromEntries(
    names.map((k) => {
      const v = xs[k].sort((a, b) => a - b);
      return [k, { p50: percentile(v, 50), p99: percentile(v, 99) }];
    }),
  ) as Record<K, { p50: number; p99: number }>;
}

/** `concurrency` loops doing `op` back to back for `seconds`: completed operations per second. */
async function loadFor(concurrency: number, seconds: number, op: (loop: number) => Promise<unknown>): Promise<{ rps: number }> {
  let done = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, loop) => {
      while (performance.now() < end) {
        await op(loop);
        done++;
      }
    }),
  );
  return { rps: done / seconds };
}

/**
 * `--pin`: the node on a core of its own (CPU 1) and nats-server with the calls on the other, so
 * the ratio to the ceilings shows the design rather than three processes sharing two cores.
 */
const pinned = process.argv.includes('--pin');
/** `--sync=always` (or a duration): the server's JetStream sync_interval, for the durability cost (docs/operations.md). */
const sync = process.argv.find((a) => a.startsWith('--sync='))?.slice('--sync='.length);
const server = await NatsServer.start({ extraConfig: shardMappingConfig(256), ...(sync === undefined ? {} : { syncInterval: sync }) });
const nc = await connectNats(server.url, 'bench');
process.stdout.write(
  `activeflow node benchmark (node ${process.version}, nats-server ${nc.info?.version}, ${new Date().toISOString()})${quick ? ' --quick' : ''}${pinned ? ' --pin' : ''}${sync === undefined ? '' : ` --sync=${sync}`}\n`,
);
const client = new ActiveflowClient(nc, { requestTimeoutMs: 20_000, retryForMs: 30_000 });
const children: ChildProcess[] = [];
try {
  // info level: the readiness line (node_serving) is an info log; nothing else logs per request.
  // One customer plays every caller here: its quotas are raised past what the bench creates.
  const nodeProc = await spawnAndWait(
    [...ACTIVEFLOW, 'node'],
    {
      NATS_URL: server.url,
      NODE_ID: 'bench',
      LOG_LEVEL: 'info',
      PASSIVATE_AFTER_MS: String(3_600_000),
      QUOTA_RUNNING_ACTIVEFLOWS: '10000000',
      QUOTA_CREATIONS_PER_SECOND: '10000000',
      QUOTA_CREATION_BURST: '10000000',
    },
    '"node_serving"',
  );
  children.push(nodeProc);

  const latencyOnly = process.argv.includes('--latency-only');
  // The ceilings' and the floor's responders, in a process of their own as the node is (bench/responders.ts).
  const responders = await spawnAndWait(['--import', 'tsx', new URL('./responders.ts', import.meta.url).pathname, server.url], {}, 'responders ready');
  children.push(responders);
  if (pinned) {
    // The node, and the responder that plays its part for the ceilings, on CPU 1; nats-server and
    // the calls (this process) on CPU 0.
    pin([
      [nodeProc.pid!, 1],
      [responders.pid!, 1],
      [server.pid!, 0],
      [process.pid, 0],
    ]);
  }

  // 1. baseline: pipelined KV puts, then 1,000 concurrent calls -------------------------------
  const kv = await new Kvm(nc).create('bench_kv', { history: 1 });
  const value = new Uint8Array(2048).fill(97);
  const PUTS = quick ? 5_000 : 20_000;
  let t0 = performance.now();
  let inFlight: Promise<unknown>[] = [];
  for (let i = 0; i < PUTS; i++) {
    inFlight.push(kv.put(`k${i % 5000}`, value));
    if (inFlight.length === 256) {
      await Promise.all(inFlight);
      inFlight = [];
    }
  }
  await Promise.all(inFlight);
  const putRate = PUTS / ((performance.now() - t0) / 1000);

  const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: 20 }, (_, i) => ({ type: 'talk', option: { text: `Hello \${name}, step ${i}` } })) });
  const CALLS = latencyOnly ? 10 : quick ? 200 : 1_000;
  const jsm = await jetstreamManager(nc);
  // An end's last steps (its ended record, the running key's removal) run just after its reply.
  const endsSettled = async () => {
    for (let i = 0; i < 100 && (await jsm.streams.info('KV_af_running')).state.messages > 0; i++) await new Promise((r) => setTimeout(r, 100));
  };
  // A warm-up of 200 calls first, so that the figures are of a node in its stride, not of its JIT
  // compiling (the first round of calls ran 20-30% slower than the next ones); the floor's
  // responder gets a second of its own below.
  if (!latencyOnly) {
    await simulateCalls(client, { flowId: flow.id, customerId: CUSTOMER, calls: 200, concurrency: 200, digits: [], mediaMs: 0, maxMovesPerCall: 100 });
    await endsSettled();
  }
  // Storage: what the run leaves in activeflow's streams, and what the server wrote to disk for it.
  const ours = ['ACTIVEFLOW_EVENTS', 'KV_af_running', 'KV_af_ended', 'KV_af_history', 'KV_af_index'];
  const streamBytes = async () => Promise.all(ours.map((n) => jsm.streams.info(n).then((i) => i.state.bytes)));
  const storedBytes = async () => (await streamBytes()).reduce((a, b) => a + b, 0);
  const bytesBefore = await streamBytes();
  const diskWrites = () => Number(/write_bytes: (\d+)/.exec(readFileSync(`/proc/${server.pid}/io`, 'utf8'))?.[1] ?? Number.NaN);
  const [storedBefore, writtenBefore] = [await storedBytes(), diskWrites()];
  const cpuBefore = { node: cpuMicros(nodeProc.pid!), server: cpuMicros(server.pid!), client: process.cpuUsage() };
  const report = await simulateCalls(client, { flowId: flow.id, customerId: CUSTOMER, calls: CALLS, concurrency: CALLS, digits: [], mediaMs: 0, maxMovesPerCall: 100 });
  const cpu = {
    node: cpuMicros(nodeProc.pid!) - cpuBefore.node,
    server: cpuMicros(server.pid!) - cpuBefore.server,
    client: ((u) => u.user + u.system)(process.cpuUsage(cpuBefore.client)),
  };
  await endsSettled(); // what is kept is measured once the ends are done
  const [storedAfter, writtenAfter] = [await storedBytes(), diskWrites()];
  const bytesAfter = await streamBytes();
  const perStream = ours.map((n, i) => `${n} ${fmt((bytesAfter[i]! - bytesBefore[i]!) / report.moves)}`).join(', ');
  const moveRate = report.moves / (report.durationMs / 1000);
  // What any design that answers each move over request-reply could reach here, at the same
  // concurrency: ceilings for the ratio above (a move is a request, a reply and durable writes).
  const action = new Uint8Array(200).fill(97);
  const ceiling = async (subject: string) => (await loadFor(CALLS, quick ? 2 : 4, () => nc.request(subject, action, { timeout: 20_000 }))).rps;
  // The design's floor (bench/responders.ts): each loop drives an activeflow of its own, `next` after `next`.
  const floorIds = Array.from({ length: CALLS }, () => randomUUID());
  const floorAt: (string | undefined)[] = [];
  const floor = async (seconds: number) =>
    (
      await loadFor(CALLS, seconds, async (loop) => {
        const body = encodeJson({ id: floorIds[loop], ...(floorAt[loop] === undefined ? {} : { current_action_id: floorAt[loop] }) });
        const answer = decodeJson((await nc.request('bench.floor', body, { timeout: 20_000 })).data) as { id?: string; error?: string };
        if (answer.error !== undefined) throw new Error(`the floor's responder failed: ${answer.error}`);
        floorAt[loop] = answer.id;
      })
    ).rps;
  const [echoRate, durable1Rate, durable2Rate, floorRate] = latencyOnly
    ? [0, 0, 0, 0]
    : [await ceiling('bench.echo'), await ceiling('bench.durable1'), await ceiling('bench.durable2'), await floor(1).then(() => floor(quick ? 2 : 4))];
  process.stdout.write(`\n1. durable moves/s, ${CALLS} concurrent calls of a 20-action flow (each move stored before its reply)\n`);
  line('pipelined KV put, 256 in flight, 2 KiB (baseline)', `${fmt(putRate)} puts/s`);
  line('moves through the node (next, its journal entry stored)', `${fmt(moveRate)} moves/s  (${report.moves} moves, ${report.errors} errors)`);
  line('ratio moves / KV puts (goal >= 0.8)', `${fmt(moveRate / putRate, 2)}x`);
  process.stdout.write(`  ceilings: ${CALLS} concurrent requests to a responder that does only this\n`);
  line('  reply at once (echo)', `${fmt(echoRate)}/s  (${fmt(echoRate / putRate, 2)}x the KV puts)`);
  line('  one KV put, then reply (one durable write)', `${fmt(durable1Rate)}/s  (${fmt(durable1Rate / putRate, 2)}x)`);
  line('  KV put + stream publish, then reply (two writes)', `${fmt(durable2Rate)}/s  (${fmt(durable2Rate / putRate, 2)}x)`);
  line("  the design's floor: a move's actor, engine, entry, write", `${fmt(floorRate)}/s  (${fmt(floorRate / durable1Rate, 2)}x the one-write ceiling)`);
  line("moves / one-write ceiling (the issue's goal >= 0.4x)", `${fmt(moveRate / durable1Rate, 2)}x  (${fmt(moveRate / durable2Rate, 2)}x the two-write ceiling)`);
  line("moves / the design's floor (what the node adds to a move)", `${fmt(moveRate / floorRate, 2)}x`);
  line('next latency under that load p50 / p99', `${fmt(report.p50Ms, 2)} / ${fmt(report.p99Ms, 2)} ms`);
  const perMove = (us: number) => fmt(us / report.moves);
  line(
    'CPU per move: node / nats-server / the calls (this process)',
    `${perMove(cpu.node)} / ${perMove(cpu.server)} / ${perMove(cpu.client)} us  (${fmt((cpu.node + cpu.server + cpu.client) / (report.durationMs * 10), 0)}% of one core in all)`,
  );
  line(
    'storage per move: kept after the run / written to disk by nats-server (goal <= 2 KB kept)',
    `${fmt((storedAfter - storedBefore) / report.moves)} / ${fmt((writtenAfter - writtenBefore) / report.moves)} bytes  (R1; ${CALLS} calls ended, each kept whole in af_ended)`,
  );
  line('  kept, by stream (bytes per move)', perStream);

  // 2. latency against a raw echo ---------------------------------------------------------------
  const af = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
  const N = quick ? 500 : 2_000;
  const payload = new Uint8Array(64);
  // The fair baseline for get: an echo whose reply is as large as get's (an activeflow's JSON).
  const getSize = JSON.stringify(await client.get(af.id)).length;
  const sizedRequest = new TextEncoder().encode(String(getSize));
  // The same get over raw request-reply, the reply left unparsed: the node's own cost alone.
  const getSubject = `activeflow.v1.${af.id}.get`;
  const emptyBody = new TextEncoder().encode('{}');
  const {
    echo: echoLat,
    sized: sizedLat,
    get: getLat,
    rawGet: rawGetLat,
  } = await interleaved(N, {
    echo: () => nc.request('bench.echo', payload, { timeout: 5000 }),
    sized: () => nc.request('bench.echo', sizedRequest, { timeout: 5000 }),
    get: () => client.get(af.id),
    rawGet: () => nc.request(getSubject, emptyBody, { timeout: 5000 }),
  });
  // next: one call walks a long flow (limits raised below are not needed: 20 actions, restart calls)
  const nextXs: number[] = [];
  while (nextXs.length < (quick ? 200 : 1_000)) {
    const call = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
    let current = call.current_action.id;
    for (let i = 0; i < 20; i++) {
      const t = performance.now();
      current = (await client.next(call.id, current)).id;
      nextXs.push(performance.now() - t);
    }
  }
  nextXs.sort((a, b) => a - b);
  process.stdout.write(`\n2. latency, one request at a time (${N} each, the four measured in alternating blocks of 50)\n`);
  line('raw request-reply echo p50 / p99 (baseline)', `${fmt(echoLat.p50, 3)} / ${fmt(echoLat.p99, 3)} ms`);
  line(`raw echo with a ${fmt(getSize)}-byte reply, as get's (baseline)`, `${fmt(sizedLat.p50, 3)} / ${fmt(sizedLat.p99, 3)} ms`);
  line('get p50 / p99', `${fmt(getLat.p50, 3)} / ${fmt(getLat.p99, 3)} ms`);
  line('get p50 / same-size echo p50 (goal <= 1.2x)', `${fmt(getLat.p50 / sizedLat.p50, 2)}x  (${fmt(getLat.p50 / echoLat.p50, 2)}x the 64-byte echo)`);
  line('get over raw request-reply, reply not parsed, p50 / p99', `${fmt(rawGetLat.p50, 3)} / ${fmt(rawGetLat.p99, 3)} ms  (${fmt(rawGetLat.p50 / sizedLat.p50, 2)}x the same-size echo)`);
  line('next p50 / p99 (one journal entry each)', `${fmt(percentile(nextXs, 50), 3)} / ${fmt(percentile(nextXs, 99), 3)} ms  (p50 ${fmt(percentile(nextXs, 50) / echoLat.p50, 2)}x echo)`);

  if (latencyOnly) process.exit(0);
  // 3. memory per live activeflow ---------------------------------------------------------------
  const LIVE = quick ? 10_000 : 100_000;
  const residentActors = async () => (await client.call<{ resident_actors: number }>(SUBJECTS.adminNodeStatus('bench'), {})).resident_actors;
  const residentBefore = await residentActors();
  const rssBefore = rssKiB(nodeProc.pid!);
  let created = 0;
  // A creation the client gave up on (after its retries) is counted and shown, not thrown: on one
  // core under this flood the node may let its shards go for a while (benchmarks.md, "Lease headroom").
  const failed = new Map<string, number>();
  t0 = performance.now();
  await Promise.all(
    Array.from({ length: 500 }, async () => {
      while (created < LIVE) {
        created++;
        await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' }).catch((e: unknown) => {
          const why = e instanceof Error ? e.message : String(e);
          failed.set(why, (failed.get(why) ?? 0) + 1);
        });
      }
    }),
  );
  const failedCount = [...failed.values()].reduce((a, b) => a + b, 0);
  const createSecs = (performance.now() - t0) / 1000;
  await new Promise((r) => setTimeout(r, 2_000));
  const rssAfter = rssKiB(nodeProc.pid!);
  process.stdout.write(`\n3. memory: ${fmt(LIVE)} live activeflows resident in the node (20-action flow)\n`);
  line('node RSS before / after', `${fmt(rssBefore / 1024)} / ${fmt(rssAfter / 1024)} MiB`);
  // Only meaningful if they are all still resident: a node that let its shards go under the flood
  // (its lease renewals too late, see benchmarks.md "Lease headroom") dropped their actors.
  const residentNow = await residentActors();
  line(
    'resident memory per live activeflow',
    `${fmt(((rssAfter - rssBefore) * 1024) / LIVE / 1024, 1)} KiB${residentNow - residentBefore >= LIVE ? '' : `  (NOT VALID: ${fmt(residentNow - residentBefore)} of them resident, the node let shards go during the flood)`}`,
  );
  if (failedCount > 0) {
    line("creations that failed after the client's retries", `${fmt(failedCount)} of ${fmt(LIVE)}`);
    for (const [why, n] of failed) line(`  ${n} x`, why.slice(0, 120));
  }
  line('creation rate (each checkpointed, journaled, indexed)', `${fmt(LIVE / createSecs)} creates/s`);

  // 4. the cost of a move as the history grows ----------------------------------------------------
  const LONG = quick ? 500 : 2_000;
  // A fresh server, so nothing else (recovery of part 3's activeflows) runs beside the long call.
  nodeProc.kill('SIGTERM');
  await new Promise((r) => nodeProc.once('exit', r));
  const longServer = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
  // Parts 4 and 5 run the node in this process: with --pin it gets CPU 1 (with the calls, which it
  // cannot be split from here) and nats-server CPU 0. Left as parts 1-3 pinned them, this process
  // and the server it spawned (a child inherits its parent's CPUs) would share CPU 0 while CPU 1
  // sat idle: the pinned runs' load figures before this were measured that way.
  if (pinned)
    pin([
      [process.pid, 1],
      [longServer.pid!, 0],
    ]);
  const longNc = await connectNats(longServer.url, 'bench-long');
  const longClient = new ActiveflowClient(longNc, { requestTimeoutMs: 20_000, retryForMs: 30_000 });
  const longNode = await startInProcessNode(longServer.url, 'bench-long', {
    limits: Limits.parse({ max_execute_count: 2 * LONG + 20, max_cycle_iterations: 2 * LONG + 20 }),
  });
  // A flow may hold 1,000 actions: at most 999 talks, walked again by a goto back to the first.
  const FIRST = '7a000000-0000-4000-8000-000000000001';
  const talks = Math.min(LONG, 999);
  const longFlow = await longClient.createFlow({
    customer_id: CUSTOMER,
    actions: [
      ...Array.from({ length: talks }, (_, i) => ({ ...(i === 0 ? { id: FIRST } : {}), type: 'talk', option: { text: 'x' } })),
      { type: 'goto', option: { target_id: FIRST, loop_count: Math.ceil(LONG / talks) } },
    ],
  });
  const long = await longClient.createActiveflow({ customer_id: CUSTOMER, flow_id: longFlow.id, reference_type: 'call' });
  const cost: number[] = [];
  let current = long.current_action.id;
  for (let i = 0; i < LONG; i++) {
    const t = performance.now();
    current = (await longClient.next(long.id, current)).id;
    cost.push(performance.now() - t);
  }
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const early = median(cost.slice(10, 110));
  const late = median(cost.slice(LONG - 100));
  process.stdout.write(`\n4. one call, ${LONG} moves (limits raised): next latency by history length\n`);
  line('moves 10-110, median (baseline)', `${fmt(early, 3)} ms`);
  line(`moves ${LONG - 100}-${LONG}, median`, `${fmt(late, 3)} ms  (${fmt(late / early, 2)}x)`);

  // 5. loading an activeflow ----------------------------------------------------------------------
  const LOADS = quick ? 200 : 1_000;
  printLoads(await measureLoads(longNc, longClient, longNode, CUSTOMER, LOADS, quick ? 1 : 3), LOADS, line);
  await longNode.stop();
  await longNc.close();
  await longServer.stop();
} finally {
  for (const c of children) c.kill('SIGKILL');
  await nc.close();
  await server.stop();
}
