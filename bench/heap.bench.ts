/**
 * `npm run bench:heap [-- N]`: the heap an activeflow holds while resident, measured precisely:
 * a node in this process (on a nats-server started here), N activeflows of the bench's 20-action
 * flow created after a warm-up of 1,000, and `heapUsed` after full garbage collections before and
 * after. Resident set size (`npm run bench` part 3) adds the allocator's and the collector's slack,
 * which varies from run to run by more than a field of the actor; this is the part our objects
 * hold, comparable between two versions in one session (run it in each checkout, alternating).
 */
import { ActiveflowClient } from '../src/api/client.js';
import { connectNats } from '../src/nats/connect.js';
import { NatsServer } from '../src/nats/server-process.js';
import { shardMappingConfig } from '../src/nats/shard-mapping.js';
import { startInProcessNode } from './in-process-node.js';

const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) {
  console.error('run it with node --expose-gc (npm run bench:heap does)');
  process.exit(2);
}
const CUSTOMER = '11111111-1111-4111-8111-111111111111';
const N = Number(process.argv[2] ?? 20_000);
const server = await NatsServer.start({ extraConfig: shardMappingConfig(256) });
const nc = await connectNats(server.url, 'bench-heap');
const client = new ActiveflowClient(nc, { requestTimeoutMs: 20_000, retryForMs: 30_000 });
const node = await startInProcessNode(server.url, 'bench-heap', {
  quotas: { running_activeflows: 10_000_000, creations_per_second: 10_000_000, creation_burst: 10_000_000 },
});
try {
  const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: 20 }, (_, i) => ({ type: 'talk', option: { text: `Hello \${name}, step ${i}` } })) });
  const create = async (n: number) => {
    let made = 0;
    await Promise.all(
      Array.from({ length: 200 }, async () => {
        while (made < n) {
          made++;
          await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
        }
      }),
    );
  };
  const settledHeap = async () => {
    await new Promise((r) => setTimeout(r, 1_500)); // checkpoints and index writes done
    gc();
    gc();
    return process.memoryUsage().heapUsed;
  };
  await create(1_000);
  const before = await settledHeap();
  await create(N);
  const after = await settledHeap();
  process.stdout.write(
    `heap held per resident activeflow (${N.toLocaleString('en')} created, after GC): ${Math.round((after - before) / N).toLocaleString('en')} bytes; ${node.residentActors.toLocaleString('en')} resident\n`,
  );
} finally {
  await node.stop();
  await nc.close();
  await server.stop();
}
