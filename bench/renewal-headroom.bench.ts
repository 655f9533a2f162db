/**
 * Lease headroom under a creation flood: how close one node's shard-lease renewals come to the
 * point where it fences itself, while it fills with resident activeflows.
 *
 * A node process on its own nats-server first sits idle for 10 s with its 256 shards: the CPU that
 * costs it (renewing their leases) and the longest its event loop was held meanwhile
 * (`nodejs_eventloop_lag_max_seconds`). Then it takes `--activeflows` creations (default 100,000,
 * `--quick` 10,000) from `--concurrency` callers at once (default 500); every second the bench reads the
 * node's /metrics: `activeflow_lease_renewal_lag_seconds` (the age of its oldest lease
 * confirmation; renewals go every LEASE_TTL_MS/3, and past 3/4 of the TTL the node stops serving,
 * docs/operations.md) and its heap. Then it stops the node (SIGTERM) with all of them resident and
 * times the stop. It prints the largest lag against that cutoff, the shards the node fenced
 * (`shard_fenced` in its log) and the callers' errors. `--pin`: the node on CPU 1 alone, nats-server
 * and the callers on CPU 0.
 *
 * Why: a node with many resident activeflows has a large heap, and its renewals share one event
 * loop and one connection with the requests; this is the figure to size LEASE_TTL_MS by.
 */
import { spawn } from 'node:child_process';
import { ActiveflowClient } from '../src/api/client.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { ACTIVEFLOW, cpuMicros, pin } from './processes.js';

const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const option = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const quick = process.argv.includes('--quick');
const pinned = process.argv.includes('--pin');
const N = option('activeflows', quick ? 10_000 : 100_000);
const CONCURRENCY = option('concurrency', 500);
const TTL_MS = 3_000; // the default LEASE_TTL_MS: the node is started with it
const CUTOFF_S = (TTL_MS * 3) / 4 / 1000;
const IDLE_S = 10;

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const line = (label: string, value: string) => process.stdout.write(`  ${label.padEnd(56)} ${value}\n`);

const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
// Port 0: the node picks a free one and logs its URL (metrics_listening).
const node = spawn(process.execPath, [...ACTIVEFLOW, 'node', '--metrics', '0'], {
  env: {
    ...process.env,
    NATS_URL: server.url,
    NODE_ID: 'headroom',
    LOG_LEVEL: 'info',
    LEASE_TTL_MS: String(TTL_MS),
    PASSIVATE_AFTER_MS: String(3_600_000), // all of them stay resident: the heap is the point
    QUOTA_RUNNING_ACTIVEFLOWS: '10000000',
    QUOTA_CREATIONS_PER_SECOND: '10000000',
    QUOTA_CREATION_BURST: '10000000',
  },
  stdio: ['ignore', 'pipe', 'pipe'],
});
let log = '';
for (const s of [node.stdout!, node.stderr!]) s.on('data', (b: Buffer) => (log += b.toString()));
const fenced = () => (log.match(/"event":"shard_fenced"/g) ?? []).length;
const nc = await connectNats(server.url, 'bench-headroom');
try {
  while (!log.includes('"node_serving"') || !log.includes('"metrics_listening"')) {
    if (node.exitCode !== null) throw new Error(`the node exited: ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  if (pinned)
    pin([
      [node.pid!, 1],
      [server.pid!, 0],
      [process.pid, 0],
    ]);
  process.stdout.write(
    `activeflow lease headroom (node ${process.version}, nats-server ${nc.info?.version}, ${new Date().toISOString()})${pinned ? ' --pin' : ''}\n\n` +
      `${fmt(N)} creations of a 20-action flow, ${CONCURRENCY} at once, into one node (LEASE_TTL_MS ${TTL_MS}: fences past ${CUTOFF_S} s without a confirmed renewal)\n`,
  );
  const metricsUrl = /"event":"metrics_listening","url":"([^"]+)"/.exec(log)![1]!;
  const metric = async (name: string): Promise<number> => {
    const text = await (await fetch(metricsUrl)).text();
    return Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)$`, 'm').exec(text)?.[1] ?? Number.NaN);
  };
  // Idle first: what holding 256 shards costs a node with nothing to do (renewing their leases,
  // 256 writes a second at the default TTL), and the longest its event loop was held meanwhile.
  await new Promise((r) => setTimeout(r, 3_000));
  await metric('nodejs_eventloop_lag_max_seconds'); // a scrape resets the loop-delay histogram
  const idleCpu0 = cpuMicros(node.pid!);
  const idleAt = performance.now();
  await new Promise((r) => setTimeout(r, IDLE_S * 1_000));
  const idleCpuMsPerS = (cpuMicros(node.pid!) - idleCpu0) / (performance.now() - idleAt);
  const idleLoopMax = await metric('nodejs_eventloop_lag_max_seconds');
  line(`idle, ${IDLE_S} s: node CPU / event loop held at most`, `${fmt(idleCpuMsPerS, 1)} ms/s / ${fmt(idleLoopMax * 1_000, 1)} ms`);

  let worstLag = 0;
  let worstAt = 0;
  let heap = 0;
  let created = 0;
  let polling = true;
  const poller = (async () => {
    while (polling) {
      const [lag, used] = await Promise.all([metric('activeflow_lease_renewal_lag_seconds'), metric('nodejs_heap_size_used_bytes')]).catch(() => [Number.NaN, Number.NaN]);
      if (lag > worstLag) [worstLag, worstAt] = [lag, created];
      if (used > heap) heap = used;
      await new Promise((r) => setTimeout(r, 1_000));
    }
  })();

  const client = new ActiveflowClient(nc, { requestTimeoutMs: 20_000, retryForMs: 30_000 });
  const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: 20 }, (_, i) => ({ type: 'talk', option: { text: `Hello \${name}, step ${i}` } })) });
  const errors = new Map<string, number>();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (created < N) {
        created++;
        await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' }).catch((e: unknown) => {
          const key = (e as { code?: string }).code ?? (e as Error).message;
          errors.set(key, (errors.get(key) ?? 0) + 1);
        });
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const fencedInFlood = fenced();
  const stopAt = performance.now();
  node.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => node.once('exit', r));
  const stopMs = performance.now() - stopAt;
  polling = false;
  await poller;

  line('creations / s', `${fmt(N / seconds)}  (${fmt(seconds, 1)} s)`);
  line('callers that failed (by code)', errors.size === 0 ? '0' : JSON.stringify(Object.fromEntries(errors)));
  line('node heap used, largest', `${fmt(heap / 2 ** 20)} MiB`);
  line('renewal lag, largest seen (1 s samples)', `${fmt(worstLag, 2)} s at ${fmt(worstAt)} created  (${fmt(worstLag / CUTOFF_S, 2)}x the ${CUTOFF_S} s cutoff)`);
  line('shards fenced: during the flood / during the stop', `${fencedInFlood} / ${fenced() - fencedInFlood}`);
  line(`stop (SIGTERM) with ${fmt(N)} resident`, `${fmt(stopMs)} ms, exit ${code}`);
} finally {
  node.kill('SIGKILL');
  await nc.close();
  await server.stop();
}
