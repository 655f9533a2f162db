/**
 * `list` shows each activeflow as it is now, not as its last checkpoint (taken every 32 moves):
 * on two nodes, whichever answers the list reads its own activeflows through their mailboxes and
 * asks the other node for the rest.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, startNats, startNode, until } from '../helpers/nats.js';

const env = {} as { server: NatsServer; nodes: ActiveflowNode[]; client: ActiveflowClient; close: () => Promise<void> };

beforeAll(async () => {
  env.server = await startNats();
  env.nodes = [await startNode(env.server, { nodeId: 'list-a' }), await startNode(env.server, { nodeId: 'list-b' })];
  expect(await until(() => env.nodes.every((n) => n.servedShards > 0) && env.nodes[0]!.servedShards + env.nodes[1]!.servedShards === 256, 15_000)).toBe(true);
  const c = await clientFor(env.server);
  env.client = c.client;
  env.close = () => c.nc.close();
}, 30_000);
afterAll(async () => {
  await env.close?.();
  for (const n of env.nodes ?? []) await n.stop();
  await env.server?.stop();
});

it('lists every activeflow as it is now, whichever node owns it, though none was checkpointed since its creation', async () => {
  const calls = await Promise.all(
    Array.from({ length: 16 }, () => env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: Array.from({ length: 6 }, () => ({ type: 'talk' })) })),
  );
  for (const [i, c] of calls.entries()) {
    let current = c.current_action.id;
    for (let m = 0; m <= i % 4; m++) current = (await env.client.next(c.id, current)).id;
  }
  const listed = new Map<string, { execute_count: number; current_action: { id: string } }>();
  for (let round = 0; round < 4; round++) {
    // a few rounds: the list request goes to either node (a queue group)
    for (const af of (await env.client.listActiveflows({ customer_id: CUSTOMER, status: 'running', page_size: 100 })).result) listed.set(af.id, af);
    for (const c of calls) {
      const now = await env.client.get(c.id);
      expect(listed.get(c.id)).toMatchObject({ execute_count: now.execute_count, current_action: { id: now.current_action.id } });
    }
  }
  // and they are spread over both nodes, so both ways of reading were used
  const owners = new Set(calls.map((c) => env.nodes.findIndex((n) => n.registry.customerOf(c.id) !== undefined)));
  expect(owners).toEqual(new Set([0, 1]));
});
