/**
 * Fair admission benchmark: a quiet customer walks calls with `next`, one request after another,
 * alone and while another customer floods the same node with writes (800 requests in flight).
 * Four node settings in the same run: admission off (limits no flood reaches: the baseline), a
 * node-wide limit alone (256), the default (256, and 32 per customer while others are active), and
 * a tighter share (8). The node is its own process; the
 * load generator shares the 2 cores, so read the ratios, not the absolute figures.
 */
import type { ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { ActiveflowClient } from '../src/api/client.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { percentile, simulateCalls } from '../src/simulator/call-simulator.js';
import { ACTIVEFLOW, spawnAndWait } from './processes.js';

const quick = process.argv.includes('--quick');
const FLOOD_SECONDS = quick ? 3 : 6;
const FLOODERS = 800;
const QUIET_CALLS = 90; // one activeflow may move 100 times
const fmt = (n: number, d = 1) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const talks = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } }));

async function quiet(client: ActiveflowClient, customer: string, until: () => boolean): Promise<number[]> {
  const ms: number[] = [];
  while (until()) {
    const af = await client.createActiveflow({ customer_id: customer, reference_type: 'call', actions: talks(QUIET_CALLS + 2) });
    let current = af.current_action.id;
    for (let i = 0; i < QUIET_CALLS && until(); i++) {
      const t = performance.now();
      current = (await client.next(af.id, current)).id;
      ms.push(performance.now() - t);
      await new Promise((r) => setTimeout(r, 5)); // a call service asks, plays, asks again
    }
  }
  return ms.sort((a, b) => a - b);
}

async function scenario(server: NatsServer, label: string, concurrency: number, perCustomer: number): Promise<void> {
  const node = await spawnAndWait(
    [...ACTIVEFLOW, 'node'],
    {
      NATS_URL: server.url,
      NODE_ID: `fair-${concurrency}-${perCustomer}`,
      SHARD_LEASES: '0',
      LOG_LEVEL: 'info',
      ADMISSION_CONCURRENCY: String(concurrency),
      ADMISSION_PER_CUSTOMER: String(perCustomer),
      ADMISSION_QUEUE_PER_CUSTOMER: '100000',
      QUOTA_CREATIONS_PER_SECOND: '100000',
      QUOTA_CREATION_BURST: '100000',
    },
    '"node_serving"',
  );
  const nc = await connectNats(server.url, 'bench-fairness');
  try {
    const client = new ActiveflowClient(nc, { requestTimeoutMs: 10_000, retryForMs: 10_000 });
    const quietCustomer = randomUUID();
    const floodCustomer = randomUUID();
    let end = performance.now() + 2_000;
    await quiet(client, quietCustomer, () => performance.now() < end); // warm-up
    end = performance.now() + FLOOD_SECONDS * 1000;
    const alone = await quiet(client, quietCustomer, () => performance.now() < end);
    const targets = await Promise.all(Array.from({ length: 200 }, () => client.createActiveflow({ customer_id: floodCustomer, reference_type: 'call', actions: talks(2) })));
    let flooding = true;
    const floodMs: number[] = [];
    let failed = 0;
    const workers = Array.from({ length: FLOODERS }, async (_, w) => {
      for (let i = 0; flooding; i++) {
        const t = performance.now();
        try {
          await client.setVariables(targets[w % targets.length]!.id, { n: String(i) });
          floodMs.push(performance.now() - t);
        } catch {
          failed++;
        }
      }
    });
    await new Promise((r) => setTimeout(r, 1_000));
    end = performance.now() + FLOOD_SECONDS * 1000;
    const during = await quiet(client, quietCustomer, () => performance.now() < end);
    flooding = false;
    await Promise.all(workers);
    floodMs.sort((a, b) => a - b);
    const p = (xs: number[], q: number) => fmt(percentile(xs, q));
    process.stdout.write(`${label}:\n`);
    process.stdout.write(`  quiet customer's next alone             p50 / p99  ${p(alone, 50)} / ${p(alone, 99)} ms  (${alone.length} calls)\n`);
    process.stdout.write(
      `  quiet customer's next while one floods  p50 / p99  ${p(during, 50)} / ${p(during, 99)} ms  (${during.length} calls)  p99 ratio ${fmt(percentile(during, 99) / percentile(alone, 99), 2)}x\n`,
    );
    process.stdout.write(`  flooding customer's writes              p50 / p99  ${p(floodMs, 50)} / ${p(floodMs, 99)} ms  ${fmt(floodMs.length / (FLOOD_SECONDS + 1), 0)}/s  (failed ${failed})\n`);
    // One customer alone, as many calls as a busy trunk: the share must not cost it throughput.
    const flow = await client.createFlow({ customer_id: floodCustomer, actions: talks(20) });
    await new Promise((r) => setTimeout(r, 1_500)); // the quiet customer is no longer active
    const alone1k = await simulateCalls(client, { flowId: flow.id, customerId: floodCustomer, calls: 1_000, concurrency: 1_000, digits: [], mediaMs: 0, maxMovesPerCall: 100 });
    process.stdout.write(
      `  one customer alone, 1,000 calls at once  ${fmt(alone1k.moves / (alone1k.durationMs / 1000), 0)} moves/s, next p50 / p99 ${fmt(alone1k.p50Ms)} / ${fmt(alone1k.p99Ms)} ms  (errors ${alone1k.errors})\n`,
    );
  } finally {
    await nc.close();
    node.kill('SIGTERM');
    await new Promise((r) => (node as ChildProcess).once('exit', r));
  }
}

process.stdout.write(`activeflow fair admission benchmark (node ${process.version}, ${new Date().toISOString()})${quick ? ' --quick' : ''}\n`);
const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
try {
  await scenario(server, 'admission off (baseline: no limit)', 1_000_000, 1_000_000);
  await scenario(server, 'a node limit only (ADMISSION_CONCURRENCY=256, no share)', 256, 256);
  await scenario(server, 'default (ADMISSION_CONCURRENCY=256, ADMISSION_PER_CUSTOMER=32)', 256, 32);
  await scenario(server, 'tight share (ADMISSION_PER_CUSTOMER=8)', 256, 8);
} finally {
  await server.stop();
}
