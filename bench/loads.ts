/**
 * How long a `get` takes when it has to load the activeflow, against one already in memory: part 5
 * of `npm run bench`, and `npm run bench:loads` on its own (more rounds). A node in this process,
 * so that the bench can take activeflows out of its memory (passivate them, or forget them as a
 * crash would).
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { CHECKPOINT_EVERY } from '../actors/activeflow-actor.js';
import type { ActiveflowClient } from '../src/api/client.js';
import type { ActiveflowNode } from '../src/node/activeflow-node.js';
import { readFileSync } from 'node:fs';
import { percentile } from '../src/simulator/call-simulator.js';
import { cpuMicros } from './processes.js';

/**
 * The machine's CPU time so far, in ticks: all of it, and what the hypervisor took from this
 * machine's CPUs (`steal`, /proc/stat); null where there is no /proc/stat.
 */
function cpuTicks(): { total: number; steal: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return { total: f.reduce((a, b) => a + b, 0), steal: f[7] ?? 0 };
  } catch {
    return null;
  }
}

/** Below this share of stolen CPU time, a round ran on CPUs of its own for all it could tell. */
const QUIET_STEAL = 0.01;

export interface LoadFigures {
  /**
   * Each round: a bare request-reply through nats-server (the machine's round trip, nothing of
   * ours), a get of each resident activeflow, then of each once passivated (which loads it).
   */
  rounds: { echo: number[]; resident: number[]; passivated: number[]; steal: number | null; serverUsPerLoad: number | null }[];
  /** Loads after a crash: the checkpoint and the 1..CHECKPOINT_EVERY - 1 entries after it replayed. */
  crashed: number[];
}

/**
 * `count` calls of a 40-action flow, each moved a different number of times (1..CHECKPOINT_EVERY - 1
 * entries past its creation checkpoint). First a crash: forgotten without a checkpoint, so each
 * load replays its entries. Then `rounds` rounds of: an echo through nats-server per activeflow;
 * a get of each resident one; all passivated (checkpointed as they leave memory, so a load reads
 * the checkpoint and the journal's last entry); a get of each, which loads it, with the share of
 * CPU time the hypervisor stole meanwhile. Gets one at a time, each activeflow once per pass.
 */
export async function measureLoads(nc: NatsConnection, client: ActiveflowClient, node: ActiveflowNode, customerId: string, count: number, rounds: number, serverPid?: number): Promise<LoadFigures> {
  const flow = await client.createFlow({ customer_id: customerId, actions: Array.from({ length: 40 }, (_, i) => ({ type: 'talk', option: { text: `Hello \${name}, step ${i}` } })) });
  const ids: string[] = [];
  for (let i = 0; i < count; i++) {
    const c = await client.createActiveflow({ customer_id: customerId, flow_id: flow.id, reference_type: 'call' });
    let cur = c.current_action.id;
    for (let m = 0; m < 1 + (i % (CHECKPOINT_EVERY - 1)); m++) cur = (await client.next(c.id, cur)).id;
    ids.push(c.id);
  }
  const timeGets = async () => {
    const xs: number[] = [];
    for (const id of ids) {
      const t = performance.now();
      await client.get(id);
      xs.push(performance.now() - t);
    }
    return xs.sort((a, b) => a - b);
  };
  // A load waits on a few more round trips through nats-server than a resident get; when the
  // machine is busy, those are what grows. The echo shows how the round trip itself fared.
  const echoSubject = `bench.loads.echo.${node.options.nodeId}`;
  const echo = nc.subscribe(echoSubject, {
    callback: (_e, m) => {
      m.respond(m.data);
    },
  });
  const body = new Uint8Array(64);
  const timeEchoes = async () => {
    const xs: number[] = [];
    for (let i = 0; i < ids.length; i++) {
      const t = performance.now();
      await nc.request(echoSubject, body, { timeout: 5_000 });
      xs.push(performance.now() - t);
    }
    return xs.sort((a, b) => a - b);
  };
  // The crash first. (Measured after a passivation, as part 5 did before, it replayed nothing: a
  // passivation writes a checkpoint.)
  await timeGets(); // all resident, and the JIT warm, before the crash
  for (let shard = 0; shard < node.options.shardCount; shard++) node.registry.drop(shard);
  const crashed = await timeGets();
  const out: LoadFigures['rounds'] = [];
  for (let r = 0; r < rounds; r++) {
    const echoes = await timeEchoes();
    const resident = await timeGets();
    await node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    // A shared machine's hypervisor takes its CPUs away now and then, for milliseconds: a load spans
    // two processes and a few round trips, so such a pause lands in its tail first. The share of
    // CPU time stolen while the loads ran says whether the round had its CPUs.
    const before = cpuTicks();
    const serverBefore = serverPid === undefined ? null : cpuMicros(serverPid);
    const passivated = await timeGets();
    const serverUsPerLoad = serverPid === undefined || serverBefore === null ? null : (cpuMicros(serverPid) - serverBefore) / ids.length;
    const after = cpuTicks();
    const steal = before === null || after === null || after.total === before.total ? null : (after.steal - before.steal) / (after.total - before.total);
    out.push({ echo: echoes, resident, passivated, steal, serverUsPerLoad });
  }
  echo.unsubscribe();
  return { rounds: out, crashed };
}

/** The figures as `npm run bench` prints them: each round, then a summary of the rounds' p99s. */
export function printLoads(f: LoadFigures, count: number, line: (label: string, value: string) => void): void {
  const ms = (x: number) => x.toFixed(3);
  const p = (xs: number[]) => `${ms(percentile(xs, 50))} / ${ms(percentile(xs, 99))}`;
  process.stdout.write(`\n5. loading an activeflow: get of ${count} activeflows, each once, one at a time; ${f.rounds.length} round${f.rounds.length === 1 ? '' : 's'}\n`);
  const pct = (x: number | null) => (x === null ? 'unknown' : `${(100 * x).toFixed(1)}%`);
  f.rounds.forEach(({ echo, resident, passivated, steal, serverUsPerLoad }, r) => {
    line(`round ${r + 1}: echo through nats-server p50 / p99`, `${p(echo)} ms`);
    line(`round ${r + 1}: resident, get p50 / p99 (baseline)`, `${p(resident)} ms`);
    const server = serverUsPerLoad === null ? '' : `, nats-server CPU ${serverUsPerLoad.toFixed(0)} us per load`;
    line(`round ${r + 1}: passivated, load p50 / p99 (goal p99 < 5 ms)`, `${p(passivated)} ms  (CPU time stolen meanwhile ${pct(steal)}${server})`);
  });
  if (f.rounds.length > 1) {
    const p99s = f.rounds.map((r) => percentile(r.passivated, 99)).sort((a, b) => a - b);
    const resident99 = f.rounds.map((r) => percentile(r.resident, 99)).sort((a, b) => a - b);
    line('rounds with a passivated load p99 under 5 ms', `${p99s.filter((x) => x < 5).length} of ${p99s.length}`);
    line('passivated load p99, min / median / max of rounds', `${ms(p99s[0]!)} / ${ms(p99s[p99s.length >> 1]!)} / ${ms(p99s.at(-1)!)} ms`);
    line('resident get p99, min / median / max of rounds', `${ms(resident99[0]!)} / ${ms(resident99[resident99.length >> 1]!)} / ${ms(resident99.at(-1)!)} ms`);
    const quiet = f.rounds.filter((r) => r.steal !== null && r.steal < QUIET_STEAL).map((r) => percentile(r.passivated, 99));
    line(
      `rounds with less than ${100 * QUIET_STEAL}% of the CPUs stolen: under 5 ms`,
      `${quiet.filter((x) => x < 5).length} of ${quiet.length}${quiet.length === 0 ? '' : ` (p99 at most ${ms(Math.max(...quiet))} ms)`}`,
    );
    const echo50 = f.rounds.map((r) => percentile(r.echo, 50)).sort((a, b) => a - b);
    line('echo p50, min / median / max of rounds', `${ms(echo50[0]!)} / ${ms(echo50[echo50.length >> 1]!)} / ${ms(echo50.at(-1)!)} ms`);
  }
  line(`load after a crash, 1-${CHECKPOINT_EVERY - 1} entries replayed, p50 / p99`, `${p(f.crashed)} ms`);
}
