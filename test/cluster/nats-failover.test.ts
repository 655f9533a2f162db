/**
 * A 3-server NATS JetStream cluster with R3 buckets and stream (issue 4, test 5): kill -9 the
 * server that leads the snapshot bucket while calls are moving. The node rides through the
 * election (requests answered `unavailable` meanwhile are retried by the client) and no
 * acknowledged move is lost or applied twice.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jetstreamManager } from '@nats-io/jetstream';
import { pino } from 'pino';
import type { NatsConnection } from '@nats-io/transport-node';
import { isTransient } from '../../src/errors.js';
import { ActiveflowClient } from '../../src/api/client.js';
import { connectNats } from '../../src/nats/connect.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { NatsCluster } from '../../src/nats/nats-cluster.js';
import { startNode, until } from '../helpers/nats.js';

const FINISH = '00000000-0000-0000-0000-000000000002';
let cluster: NatsCluster;
let node: ActiveflowNode;
let nc: NatsConnection;
/** The node's error log: shown if a request fails as `internal`, which must not happen here. */
const errors: string[] = [];
let client: ActiveflowClient;

beforeAll(async () => {
  cluster = await NatsCluster.start();
  node = await startNode(cluster.servers[0]!, { servers: cluster.urls, replicas: 3, log: pino({ level: 'error' }, { write: (line: string) => void errors.push(line) }) });
  nc = await connectNats(cluster.urls, 'cluster-test');
  client = new ActiveflowClient(nc, { requestTimeoutMs: 3_000, retryForMs: 45_000 });
}, 60_000);

afterAll(async () => {
  await nc?.close();
  await node?.stop();
  await cluster?.stop();
});

describe('on a 3-server JetStream cluster', () => {
  it('keeps every acknowledged move when the KV leader is killed mid-flow', async () => {
    const jsm = await jetstreamManager(nc, { timeout: 2_000 });
    // Just after the killed server is back, a stream info request now and then gets no answer at all
    // (seen under load: one unanswered for 20 s, the next answered in milliseconds): the server may
    // not have registered the stream's info endpoint yet, and nats-server's own tests ask again with
    // short timeouts for that reason (nats-io/nats-server#4519). So do the test's reads here.
    const streamInfo = async (name: string) => {
      const deadline = Date.now() + 30_000;
      for (;;) {
        try {
          return await jsm.streams.info(name);
        } catch (e) {
          if (!isTransient(e) || Date.now() > deadline) throw e;
        }
      }
    };
    const info = await streamInfo('KV_af_running');
    expect(info.config.num_replicas).toBe(3);
    const STEPS = 20;
    const flow = await client.createFlow({ customer_id: CUSTOMER, actions: Array.from({ length: STEPS }, (_, i) => ({ type: 'talk', option: { text: `${i}` } })) });
    const calls = await Promise.all(Array.from({ length: 10 }, () => client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })));
    const acked = new Map<string, string[]>(calls.map((c) => [c.id, []]));
    let moves = 0;
    let killed: string | null = null;
    await Promise.all(
      calls.map(async (call) => {
        let current = call.current_action.id;
        for (;;) {
          const action = await client.next(call.id, current).catch((e: unknown) => {
            throw new Error(`${(e as Error).message}; the node logged:\n${errors.filter((l) => l.includes('request_failed')).join('')}`, { cause: e });
          });
          acked.get(call.id)!.push(action.id);
          if (action.id === FINISH) return;
          current = action.id;
          if (++moves === 60 && killed === null) {
            const leader = (await streamInfo('KV_af_running')).cluster!.leader!;
            killed = leader;
            cluster.byName(leader).signal('SIGKILL');
          }
        }
      }),
    );
    expect(killed).not.toBeNull();
    const expected = [...flow.actions.map((a) => a.id), FINISH];
    for (const call of calls) expect(acked.get(call.id)).toEqual(expected);
    await cluster.byName(killed!).restart();
    for (const call of calls) {
      expect(await client.get(call.id)).toMatchObject({ status: 'ended', end_reason: 'finished', execute_count: STEPS + 1 });
      const { events } = await client.history(call.id);
      expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    }
    // Each end removed its running key with one purge whose marker expires (a message TTL, on the
    // replicated bucket too, across the restarted server): nothing of the ten is left there.
    expect((await streamInfo('KV_af_running')).config.allow_msg_ttl).toBe(true);
    expect(await until(async () => (await streamInfo('KV_af_running')).state.messages === 0, 20_000)).toBe(true);
  }, 120_000);
});
