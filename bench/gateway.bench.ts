/**
 * REST gateway benchmark: `GET /v1.0/activeflows/{id}` through `activeflow gateway` (its own
 * process, keep-alive HTTP clients), against the same read straight over NATS with the bundled
 * client, in the same run. The node and the gateway run as processes; nats-server too. On 2 cores
 * everything (load generator included) shares the CPU: the ratio is the figure to read.
 */
import type { ChildProcess } from 'node:child_process';
import { ACTIVEFLOW, spawnAndWait } from './processes.js';
import { Agent, request } from 'node:http';
import { createServer } from 'node:net';
import { ActiveflowClient } from '../src/api/client.js';
import { SUBJECTS } from '../src/api/subjects.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { percentile } from '../src/simulator/call-simulator.js';

const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const quick = process.argv.includes('--quick');
const SECONDS = quick ? 3 : 8;
const ACTIVEFLOWS = 200;

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const line = (label: string, value: string) => process.stdout.write(`  ${label.padEnd(58)} ${value}\n`);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** `concurrency` loops, each doing `op` back to back for `seconds`: requests/s and latency. */
async function load(concurrency: number, seconds: number, op: (i: number) => Promise<void>): Promise<{ rps: number; p50: number; p99: number; failed: number }> {
  const xs: number[] = [];
  let failed = 0;
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, c) => {
      let i = c;
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await op(i);
          xs.push(performance.now() - t);
        } catch {
          failed++;
        }
        i += concurrency;
      }
    }),
  );
  xs.sort((a, b) => a - b);
  return { rps: xs.length / seconds, p50: percentile(xs, 50), p99: percentile(xs, 99), failed };
}

const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
const children: ChildProcess[] = [];
const nc = await connectNats(server.url, 'bench-gateway');
process.stdout.write(`activeflow REST gateway benchmark (node ${process.version}, nats-server ${nc.info?.version}, ${new Date().toISOString()})${quick ? ' --quick' : ''}\n`);
try {
  const env = { NATS_URL: server.url, LOG_LEVEL: 'info' };
  children.push(await spawnAndWait([...ACTIVEFLOW, 'node'], { ...env, NODE_ID: 'bench-node', SHARD_LEASES: '0' }, '"node_serving"'));
  const port = await freePort();
  children.push(await spawnAndWait([...ACTIVEFLOW, 'gateway'], { ...env, HTTP_PORT: String(port) }, '"gateway_listening"'));
  const client = new ActiveflowClient(nc, { requestTimeoutMs: 5_000, retryForMs: 10_000 });
  const { token } = await client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER, name: 'bench' });
  const ids: string[] = [];
  for (let i = 0; i < ACTIVEFLOWS; i++) {
    const af = await client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'block' }], reference_type: 'api', execute: true });
    ids.push(af.id);
  }
  const agent = new Agent({ keepAlive: true, maxSockets: 256 });
  const httpGet = (id: string) =>
    new Promise<void>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port, path: `/v1.0/activeflows/${id}`, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode}`));
          JSON.parse(body); // a whole answer, as a client would read it
          resolve();
        });
      });
      req.on('error', reject);
      req.end();
    });
  const natsGet = async (id: string) => {
    await client.get(id, CUSTOMER);
  };
  // warm-up both paths (JIT, connections, resident actors)
  await load(32, 1, (i) => httpGet(ids[i % ids.length]!));
  await load(32, 1, (i) => natsGet(ids[i % ids.length]!));
  for (const concurrency of [1, 64]) {
    const nats = await load(concurrency, SECONDS, (i) => natsGet(ids[i % ids.length]!));
    const http = await load(concurrency, SECONDS, (i) => httpGet(ids[i % ids.length]!));
    process.stdout.write(`${concurrency} caller${concurrency === 1 ? '' : 's'} (${concurrency === 1 ? 'latency' : 'keep-alive connections, throughput'}), ${SECONDS} s each:\n`);
    line('NATS request (bundled client): requests/s, p50 / p99', `${fmt(nats.rps)}/s, ${fmt(nats.p50, 2)} / ${fmt(nats.p99, 2)} ms (failed ${nats.failed})`);
    line('REST GET via the gateway: requests/s, p50 / p99', `${fmt(http.rps)}/s, ${fmt(http.p50, 2)} / ${fmt(http.p99, 2)} ms (failed ${http.failed})`);
    line('gateway vs NATS: throughput, p50 latency', `${fmt(http.rps / nats.rps, 2)}x, ${fmt(http.p50 / nats.p50, 2)}x`);
  }
  agent.destroy();
} finally {
  for (const c of children) c.kill('SIGKILL');
  await nc.close();
  await server.stop();
}
