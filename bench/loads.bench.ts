/**
 * Part 5 of `npm run bench` on its own, with more rounds: a get that loads a passivated activeflow
 * (and one after a crash) against a get of a resident one and a bare echo through nats-server (the
 * machine's own round trip), `--rounds=N` rounds (default 10) of
 * `--loads=N` activeflows (default 1,000) on a fresh nats-server, the node in this process.
 * `--pin`: this process (the node and the calls) on CPU 1, nats-server on CPU 0.
 *
 * Why rounds: a p99 of 1,000 gets is the 10th slowest, and on a shared machine one burst of someone
 * else's work decides it; the rounds, each beside its own resident baseline, show how often.
 */
import { ActiveflowClient } from '../src/api/client.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { startInProcessNode } from './in-process-node.js';
import { measureLoads, printLoads } from './loads.js';
import { pin } from './processes.js';

const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const option = (name: string, fallback: number) => Number(process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? fallback);
const ROUNDS = option('rounds', 10);
const LOADS = option('loads', 1_000);
const pinned = process.argv.includes('--pin');
const line = (label: string, value: string) => process.stdout.write(`  ${label.padEnd(56)} ${value}\n`);

const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
if (pinned)
  pin([
    [process.pid, 1],
    [server.pid!, 0],
  ]);
const nc = await connectNats(server.url, 'bench-loads');
const node = await startInProcessNode(server.url, 'bench-loads');
try {
  process.stdout.write(`activeflow loads (node ${process.version}, nats-server ${nc.info?.version}, ${new Date().toISOString()})${pinned ? ' --pin' : ''}\n`);
  const client = new ActiveflowClient(nc, { requestTimeoutMs: 20_000, retryForMs: 30_000 });
  printLoads(await measureLoads(nc, client, node, CUSTOMER, LOADS, ROUNDS, server.pid), LOADS, line);
} finally {
  await node.stop();
  await nc.close();
  await server.stop();
}
