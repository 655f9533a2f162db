/**
 * What a call's life costs the node, apart from its moves: `activeflow node` in its own process,
 * 3,000 creations of the node bench's 20-action flow, 500 at once, then a stop of each (a move that
 * ends it, then the end's last steps: the ended record, the index, the running key's removal, the
 * running count). The node's and nats-server's CPU time from /proc (the server's includes the
 * calls it carries for this process), per creation and per stop, over several rounds
 * (the first one warms the JIT up). In the node bench's 21-move call these come once per call.
 *
 *   npx tsx bench/lifecycle.bench.ts [--pin] [--rounds=N]
 *
 * `--pin`: the node on CPU 1, nats-server and the callers on CPU 0 (as `node.bench.ts --pin`).
 */
import { ACTIVEFLOW, cpuMicros, pin, spawnAndWait } from './processes.js';
import { ActiveflowClient } from '../src/api/client.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';

const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const N = 3_000;
const AT_ONCE = 500;
const pinned = process.argv.includes('--pin');
const rounds = Number(process.argv.find((a) => a.startsWith('--rounds='))?.slice('--rounds='.length) ?? 4);

async function inPool<T>(items: readonly T[], size: number, f: (x: T) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: size }, async () => {
      while (next < items.length) await f(items[next++]!);
    }),
  );
}

const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
const nc = await connectNats(server.url, 'bench');
process.stdout.write(`activeflow lifecycle benchmark (node ${process.version}, nats-server ${nc.info?.version}, ${new Date().toISOString()})${pinned ? ' --pin' : ''}\n`);
const client = new ActiveflowClient(nc, { requestTimeoutMs: 20_000, retryForMs: 30_000 });
const node = await spawnAndWait(
  [...ACTIVEFLOW, 'node'],
  {
    NATS_URL: server.url,
    NODE_ID: 'bench',
    LOG_LEVEL: 'info',
    PASSIVATE_AFTER_MS: '3600000',
    QUOTA_RUNNING_ACTIVEFLOWS: '10000000',
    QUOTA_CREATIONS_PER_SECOND: '10000000',
    QUOTA_CREATION_BURST: '10000000',
  },
  '"node_serving"',
);
try {
  if (pinned)
    pin([
      [node.pid!, 1],
      [server.pid!, 0],
      [process.pid, 0],
    ]);
  const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: 20 }, (_, i) => ({ type: 'talk', option: { text: `Hello \${name}, step ${i}` } })) });
  process.stdout.write(`  node / nats-server CPU, ${N} of each, ${AT_ONCE} at once (the first round warms up)\n`);
  for (let round = 0; round < rounds; round++) {
    const ids: string[] = [];
    const cpu = () => [cpuMicros(node.pid!), cpuMicros(server.pid!)] as const;
    const per = (from: readonly [number, number]) =>
      cpu()
        .map((c, i) => ((c - from[i]!) / N).toFixed(0))
        .join(' / ');
    let before = cpu();
    await inPool(Array.from({ length: N }), AT_ONCE, async () => {
      ids.push((await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })).id);
    });
    const perCreate = per(before);
    await new Promise((r) => setTimeout(r, 500));
    before = cpu();
    await inPool(ids, AT_ONCE, (id) => client.stop(id));
    await new Promise((r) => setTimeout(r, 1_500)); // the ends' last steps run after the stops' replies
    const perStop = per(before);
    process.stdout.write(`  round ${round + 1}: per creation ${perCreate} us, per stop with its end ${perStop} us\n`);
  }
} finally {
  node.kill('SIGTERM');
  await new Promise((r) => node.once('exit', r));
  await nc.close();
  await server.stop();
}
