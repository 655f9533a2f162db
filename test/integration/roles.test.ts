/**
 * Least privilege, enforced by nats-server: a node, a gateway, a call service and an operator each
 * connect as their role (src/nats/roles.ts) and do their job; what the role must not do is refused
 * by the server as a permission violation.
 */
import { Kvm } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActiveflowClient } from '../../src/api/client.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import { AccessKeyCache } from '../../src/gateway/access-keys.js';
import { HttpGateway } from '../../src/gateway/http-gateway.js';
import { silentLogger } from '../../src/log.js';
import { accountsConfig } from '../../src/nats/cluster-config.js';
import { connectNats } from '../../src/nats/connect.js';
import { DEV_ROLE_PASSWORDS, type Role } from '../../src/nats/roles.js';
import { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { nodeOptions } from '../helpers/nats.js';

let server: NatsServer;
let node: ActiveflowNode;
const conns: NatsConnection[] = [];
const password = (role: Role) => DEV_ROLE_PASSWORDS[role].replace(/"/g, '');

/** A connection as `role`, and the permission violations the server reports on it. */
async function as(role: Role): Promise<{ nc: NatsConnection; client: ActiveflowClient; violations: string[] }> {
  const nc = await connectNats(server.url, `roles-${role}`, { user: role, pass: password(role) });
  conns.push(nc);
  const violations: string[] = [];
  void (async () => {
    for await (const s of nc.status()) if (s.type === 'error') violations.push(String((s as { error?: Error }).error?.message));
  })();
  return { nc, client: new ActiveflowClient(nc, { requestTimeoutMs: 1_000, retryForMs: 0 }), violations };
}

/** Publishing `subject` is refused by the server (a request to it also times out). */
async function refusedPublish(who: { nc: NatsConnection; violations: string[] }, subject: string, mapped = subject): Promise<void> {
  who.nc.publish(subject, '{}');
  await who.nc.flush();
  await expect.poll(() => who.violations.some((v) => v.includes(`Permissions Violation for Publish to "${mapped}"`)), { timeout: 3_000 }).toBe(true);
}

async function refusedSubscribe(who: { nc: NatsConnection; violations: string[] }, subject: string): Promise<void> {
  const sub = who.nc.subscribe(subject);
  void (async () => { try { for await (const _ of sub) { /* none */ } } catch { /* the violation */ } })();
  await expect.poll(() => who.violations.some((v) => v.includes(`Permissions Violation for Subscription to "${subject}"`)), { timeout: 3_000 }).toBe(true);
}

beforeAll(async () => {
  server = await NatsServer.start({ extraConfig: accountsConfig(256, { system: '"sys-pw"', app: '"app-pw"' }, false) });
  const { ActiveflowNode } = await import('../../src/node/activeflow-node.js');
  node = await ActiveflowNode.start({ ...nodeOptions(server), shardLeases: true, nodeId: 'role-node', credentials: { user: 'node', pass: password('node') } });
});
afterAll(async () => {
  for (const c of conns) await c.close().catch(() => undefined);
  await node?.stop();
  await server?.stop();
});

describe('NATS roles', () => {
  it('node: serves everything as the node user (shards, buckets, stream, webhooks), and nothing outside its subjects', async () => {
    await expect.poll(() => node.servedShards, { timeout: 10_000 }).toBe(256);
    const svc = await as('call-service');
    const af = await svc.client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'talk', option: { text: 'hi' } }], reference_type: 'call' });
    expect((await svc.client.next(af.id, af.current_action.id)).type).toBe('talk');
    const n = await as('node');
    await refusedPublish(n, 'billing.charge');
    await refusedSubscribe(n, 'billing.>');
  });

  it('call-service: drives activeflows and may answer service actions; no flows to write, no admin, no storage, no events', async () => {
    const svc = await as('call-service');
    const af = await svc.client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'answer' }], reference_type: 'call' });
    expect(await svc.client.get(af.id)).toMatchObject({ id: af.id });
    svc.nc.subscribe('activeflow.service.queue_join'); // allowed: it performs service actions
    await svc.nc.flush();
    await refusedPublish(svc, 'flow.v1.create');
    await refusedPublish(svc, SUBJECTS.adminDrain);
    await refusedPublish(svc, `$KV.af_running.1.${af.id}`);
    await refusedPublish(svc, '$JS.API.CONSUMER.CREATE.ACTIVEFLOW_EVENTS');
    await refusedSubscribe(svc, 'activeflow.events.>');
    await refusedSubscribe(svc, 'activeflow.shard.>');
    expect(svc.violations.filter((v) => v.includes('activeflow.service') || v.includes('activeflow.shard.*.*.next'))).toEqual([]);
  });

  it('gateway: its REST endpoints and WebSocket work; no moves (next), no admin writes, no storage writes', async () => {
    const gw = await as('gateway');
    const op = await as('operator');
    const { token } = await op.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER });
    const keys = await AccessKeyCache.start(await new Kvm(gw.nc).open('af_accesskeys'));
    const g = await HttpGateway.start({ nc: gw.nc, keys, log: silentLogger, port: 0, retryForMs: 500 });
    try {
      const created = await fetch(`${g.url}/v1.0/activeflows`, { method: 'POST', headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, body: JSON.stringify({ actions: [{ type: 'block' }] }) });
      expect(created.status).toBe(200);
      const af = (await created.json()) as { id: string };
      expect((await fetch(`${g.url}/v1.0/activeflows/${af.id}/history`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      expect((await fetch(`${g.url}/v1.0/flows`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
      // The dashboard's cross-customer table (read-only admin verb) is allowed to the gateway.
      expect((await gw.client.call<{ customers: unknown[] }>(SUBJECTS.adminCustomers)).customers).toBeInstanceOf(Array);
      await refusedPublish(gw, `activeflow.v1.${af.id}.next`, `activeflow.shard.${(await import('../../src/nats/shard-mapping.js')).shardOf(af.id, 256)}.${af.id}.next`);
      await refusedPublish(gw, SUBJECTS.adminDrain);
      await refusedPublish(gw, `$KV.af_accesskeys.key.${af.id}`);
      await refusedSubscribe(gw, 'activeflow.shard.>');
      // Replies to other clients are not its to read: only its own inboxes.
      await refusedSubscribe(gw, '_INBOX.>');
      await refusedSubscribe(gw, '_INBOX_call_service.>');
    } finally {
      await g.stop();
      keys.stop();
    }
  });

  it('operator: the admin verbs; no moves, no storage writes, no serving', async () => {
    const op = await as('operator');
    expect((await op.client.call<{ nodes: { node_id: string }[] }>(SUBJECTS.adminNodes)).nodes.map((n) => n.node_id)).toContain('role-node');
    expect((await op.client.call<{ shard_count: number }>(SUBJECTS.adminShards)).shard_count).toBe(256);
    await refusedPublish(op, 'activeflow.v1.create');
    await refusedPublish(op, '$KV.af_leases.shard.1');
    await refusedSubscribe(op, 'activeflow.shard.>');
    await refusedSubscribe(op, 'activeflow.service.>');
    await refusedSubscribe(op, '_INBOX_node.>');
    // Nor may it forge a reply into another client's inbox.
    await refusedPublish(op, '_INBOX_gateway.forged');
  });
});
