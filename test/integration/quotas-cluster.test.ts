/**
 * Quotas across nodes: a customer's activeflows land on every node's shards, and the running
 * count still holds exactly; an override set through one node applies on the other.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveflowClient } from '../../src/api/client.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { shardOf } from '../../src/nats/shard-mapping.js';
import { clientFor, startNats, startNode, until } from '../helpers/nats.js';

let server: NatsServer;
let nodes: ActiveflowNode[] = [];
let client: ActiveflowClient;
let close: () => Promise<void>;

beforeAll(async () => {
  server = await startNats();
  nodes = [await startNode(server, { nodeId: 'quota-a' }), await startNode(server, { nodeId: 'quota-b' })];
  const c = await clientFor(server);
  client = c.client;
  close = () => c.nc.close();
  expect(await until(async () => nodes.every((n) => n.servedShards > 64) && nodes[0]!.servedShards + nodes[1]!.servedShards === 256, 10_000)).toBe(true);
}, 30_000);
afterAll(async () => {
  await close?.();
  for (const n of nodes) await n.stop();
  await server?.stop();
});

describe('quotas across two nodes', () => {
  it('concurrent creations spread over both nodes take exactly the slots there are', async () => {
    const customer = randomUUID();
    await client.call(SUBJECTS.adminQuotas('set'), { customer_id: customer, quotas: { running_activeflows: 10 } });
    const ids = Array.from({ length: 40 }, () => randomUUID());
    // Both nodes admit some of them (the ids' shards are spread over both).
    const { shards } = await client.call<{ shards: { shard: number; owner: string | null }[] }>(SUBJECTS.adminShards);
    const owners = new Set(ids.map((id) => shards[shardOf(id, 256)]!.owner));
    expect([...owners].sort()).toEqual(['quota-a', 'quota-b']);
    const results = await Promise.allSettled(ids.map((id) => client.createActiveflow({ id, customer_id: customer, reference_type: 'call', actions: [{ type: 'talk' }] })));
    expect(results.filter((r) => r.status === 'fulfilled').length).toBe(10);
    for (const r of results) if (r.status === 'rejected') expect(r.reason).toMatchObject({ code: 'limit_exceeded', quota: 'running_activeflows' });
    expect((await client.listActiveflows({ customer_id: customer, status: 'running' })).result.length).toBe(10);
    expect((await client.call<{ usage: { running_activeflows: number } }>(SUBJECTS.adminQuotas('get'), { customer_id: customer })).usage.running_activeflows).toBe(10);
  });

  it('an override stored through one node is applied by the other within moments', async () => {
    const customer = randomUUID();
    await client.call(SUBJECTS.adminQuotas('set'), { customer_id: customer, quotas: { flows: 1 } });
    await new Promise((r) => setTimeout(r, 1_000)); // the other node's watch delivers it (in ms; a margin for a loaded machine)
    await client.createFlow({ customer_id: customer, actions: [{ type: 'talk' }] });
    // flow.v1.create is served by either node (queue group): ask enough times to reach both.
    for (let i = 0; i < 8; i++) {
      await expect(client.createFlow({ customer_id: customer, actions: [{ type: 'talk' }] })).rejects.toMatchObject({ code: 'limit_exceeded', quota: 'flows' });
    }
  });
});
