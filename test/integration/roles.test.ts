/**
 * Least privilege, enforced by nats-server: a node, a gateway, a call service and an operator each
 * connect as their role (src/nats/roles.ts) and do their job; what the role must not do is refused
 * by the server as a permission violation.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActiveflowClient } from '../../src/api/client.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import { AccessKeyCache } from '../../src/gateway/access-keys.js';
import { HttpGateway } from '../../src/gateway/http-gateway.js';
import { silentLogger } from '../../src/log.js';
import { accountsConfig } from '../../src/nats/cluster-config.js';
import { connectNats } from '../../src/nats/connect.js';
import { DEV_ROLE_PASSWORDS, inboxPrefixOf, type Role } from '../../src/nats/roles.js';
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
  void (async () => {
    try {
      for await (const _ of sub) {
        /* none */
      }
    } catch {
      /* the violation */
    }
  })();
  await expect.poll(() => who.violations.some((v) => v.includes(`Permissions Violation for Subscription to "${subject}"`)), { timeout: 3_000 }).toBe(true);
}

beforeAll(async () => {
  server = await NatsServer.start({ extraConfig: accountsConfig(256, { system: '"sys-pw"', app: '"app-pw"' }, false) });
  const { ActiveflowNode } = await import('../../src/node/activeflow-node.js');
  node = await ActiveflowNode.start({ ...nodeOptions(server), nodeId: 'role-node', credentials: { user: 'node', pass: password('node') } });
});
afterAll(async () => {
  for (const c of conns) await c.close().catch(() => undefined);
  await node?.stop();
  await server?.stop();
});

/**
 * The JetStream API, verb by verb, against every stream and consumer of the runtime: what each role
 * may do (docs/operations.md, "What the server enforces"), written out here on its own, not read
 * from roles.ts, so that a change to the roles that widens them fails this test.
 */
const STREAMS = [
  'ACTIVEFLOW_EVENTS',
  'WEBHOOK_RETRY',
  ...['af_cluster', 'af_flows', 'af_running', 'af_ended', 'af_index', 'af_history', 'af_leases', 'af_accesskeys', 'af_quotas'].map((b) => `KV_${b}`),
];
/** Stream verbs (one token after the verb: the stream) and consumer verbs (stream, then consumer). */
const STREAM_VERBS = [
  'STREAM.CREATE',
  'STREAM.UPDATE',
  'STREAM.DELETE',
  'STREAM.INFO',
  'STREAM.PURGE',
  'STREAM.MSG.GET',
  'STREAM.MSG.DELETE',
  'STREAM.SNAPSHOT',
  'STREAM.RESTORE',
  'STREAM.LEADER.STEPDOWN',
  'DIRECT.GET',
  'CONSUMER.LIST',
  'CONSUMER.NAMES',
  'CONSUMER.CREATE',
];
const CONSUMER_VERBS = ['CONSUMER.CREATE', 'CONSUMER.DURABLE.CREATE', 'CONSUMER.INFO', 'CONSUMER.DELETE', 'CONSUMER.MSG.NEXT', 'CONSUMER.PAUSE', 'CONSUMER.LEADER.STEPDOWN', 'CONSUMER.UNPIN'];

interface Probe {
  subject: string;
  verb: string;
  stream: string;
  consumer?: string;
}

/**
 * Only nodes use the JetStream API: the gateway and operators read streams through relays that
 * nodes open (src/node/stream-relay.ts), since whoever may create a consumer may have it deliver
 * anywhere. What they keep is answering their relays' flow control, never the nodes' consumer's.
 */
function expectedAllowed(role: Role, p: Probe): boolean {
  if (role === 'node') return true;
  if (p.verb !== 'FC' || role === 'call-service') return false;
  return !(p.stream === 'ACTIVEFLOW_EVENTS' && p.consumer === 'af_webhooks');
}

function probes(): Probe[] {
  return STREAMS.flatMap((stream) => [
    ...STREAM_VERBS.map((verb) => ({ subject: `$JS.API.${verb}.${stream}`, verb, stream })),
    ...['af_webhooks', 'mine_1'].flatMap((consumer) => [
      ...CONSUMER_VERBS.map((verb) => ({ subject: `$JS.API.${verb}.${stream}.${consumer}`, verb, stream, consumer })),
      { subject: `$JS.ACK.${stream}.${consumer}.1.1.1.1.1`, verb: 'ACK', stream, consumer },
      { subject: `$JS.FC.${stream}.${consumer}.x`, verb: 'FC', stream, consumer },
    ]),
  ]);
}

describe('NATS roles', () => {
  it.each(['gateway', 'operator', 'call-service', 'node'] as const)(
    '%s: every JetStream API verb on every stream and consumer, allowed or refused as documented',
    async (role) => {
      const who = await as(role);
      const all = probes();
      const subjects = all.map((p) => p.subject);
      expect(subjects.length).toBeGreaterThan(250);
      // Bodies that no verb accepts (a consumer or a stream named in the body differs from the
      // subject's): an allowed request is answered with an API error and changes nothing.
      for (const subject of subjects)
        who.nc.publish(subject, JSON.stringify({ stream_name: 'NOPE', name: 'NOPE', config: { name: 'NOPE', durable_name: 'NOPE' } }), { reply: `${inboxPrefixOf(role)}.matrix` });
      await who.nc.flush();
      await new Promise((r) => setTimeout(r, 1_500));
      const refused = new Set(who.violations.map((v) => /Permissions Violation for Publish to "([^"]+)"/.exec(v)?.[1]).filter((x) => x !== undefined));
      const wrong = all.filter((p) => refused.has(p.subject) === expectedAllowed(role, p)).map((p) => `${p.subject}: ${refused.has(p.subject) ? 'refused' : 'allowed'}`);
      expect(wrong).toEqual([]);
      if (role !== 'node') expect(refused.size).toBeGreaterThan(200);
      // Nothing was harmed: the nodes' consumer and every stream are still there.
      const { jetstreamManager } = await import('@nats-io/jetstream');
      const jsm = await jetstreamManager((await as('node')).nc);
      expect((await jsm.consumers.info('ACTIVEFLOW_EVENTS', 'af_webhooks')).name).toBe('af_webhooks');
      expect((await jsm.streams.names().next()).sort()).toEqual([...STREAMS].sort());
    },
    30_000,
  );

  it("no role but the node can point a consumer at a subject: a push consumer to the call service's subjects is refused, and nothing arrives there", async () => {
    const { jetstreamManager, jetstream } = await import('@nats-io/jetstream');
    const svc = await as('call-service');
    const received: string[] = [];
    const sub = svc.nc.subscribe('activeflow.service.stolen', {
      callback: (_e, m) => {
        received.push(m.subject);
      },
    });
    await svc.nc.flush();
    for (const role of ['gateway', 'operator'] as const) {
      const who = await as(role);
      const jsm = await jetstreamManager(who.nc, { checkAPI: false, timeout: 1_000 });
      await expect(jsm.consumers.add('ACTIVEFLOW_EVENTS', { name: `steal_${role}`, deliver_subject: 'activeflow.service.stolen', filter_subject: 'activeflow.events.>' })).rejects.toThrow();
      await expect(jsm.consumers.delete('ACTIVEFLOW_EVENTS', 'af_webhooks')).rejects.toThrow();
      await expect(
        jetstream(who.nc, { timeout: 1_000 })
          .consumers.get('ACTIVEFLOW_EVENTS', 'af_webhooks')
          .then((c) => c.next({ expires: 1_000 })),
      ).rejects.toThrow();
      await expect.poll(() => who.violations.filter((v) => v.includes('CONSUMER')).length, { timeout: 3_000 }).toBeGreaterThanOrEqual(2);
    }
    // Events are written meanwhile; none reaches the call service's subject.
    const af = await svc.client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'talk', option: { text: 'x' } }], reference_type: 'call' });
    await svc.client.next(af.id, af.current_action.id);
    await new Promise((r) => setTimeout(r, 500));
    sub.unsubscribe();
    expect(received).toEqual([]);
    const { jetstreamManager: m } = await import('@nats-io/jetstream');
    const names = await (await m((await as('node')).nc)).consumers.list('ACTIVEFLOW_EVENTS').next();
    expect(names.map((c) => c.name)).not.toContain('steal_gateway');
    expect(names.map((c) => c.name)).toContain('af_webhooks');
  });

  it('gateway and operator read the events through relays, each only its own, only what it may read; the call service none', async () => {
    const { RelayReader } = await import('../../src/nats/relay-reader.js');
    const svc = await as('call-service');
    const af = await svc.client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'talk', option: { text: 'x' } }], reference_type: 'call' });
    for (const role of ['gateway', 'operator'] as const) {
      const who = await as(role);
      const reader = await RelayReader.open(who.nc, role, { stream: 'events', filter: `activeflow.events.${CUSTOMER}.${af.id}`, deliver: 'all' });
      const first = await reader[Symbol.asyncIterator]().next();
      expect(first.done).toBe(false);
      expect(first.value?.subject).toBe(`activeflow.events.${CUSTOMER}.${af.id}`);
      reader.stop();
      // Another role's relay: neither its open nor its deliveries.
      const other = role === 'gateway' ? 'operator' : 'gateway';
      await refusedPublish(who, SUBJECTS.relay(other, 'open'));
      await refusedSubscribe(who, SUBJECTS.relayDeliver(other, '>'));
    }
    // What a relay may read is checked by the node, whatever the request says.
    const gw = await as('gateway');
    const refused = async (role: 'gateway' | 'operator', body: Record<string, unknown>, message: RegExp) => {
      const who = role === 'gateway' ? gw : await as('operator');
      await expect(who.client.call(SUBJECTS.relay(role, 'open'), { token: 'abcdefghijklmnop1234', deliver: 'all', ...body })).rejects.toMatchObject({
        code: 'invalid_argument',
        message: expect.stringMatching(message),
      });
    };
    await refused('gateway', { stream: 'events', filter: 'activeflow.events.>' }, /filter/); // every customer's
    await refused('gateway', { stream: 'accesskeys', filter: '$KV.af_leases.>' }, /filter/);
    await refused('operator', { stream: 'accesskeys', filter: '$KV.af_accesskeys.key.*' }, /operator role reads events only/);
    await refused('gateway', { stream: 'events', filter: `activeflow.events.${CUSTOMER}.*`, deliver_subject: 'activeflow.service.x' }, /deliver_subject/);
    await refused('gateway', { stream: 'events', filter: `activeflow.events.${CUSTOMER}.*`, token: 'a.b.c.d.e.f.g.h.i.j.k' }, /token/);
    // The call service may neither open a relay nor receive a relay's deliveries.
    await refusedPublish(svc, SUBJECTS.relay('gateway', 'open'));
    await refusedSubscribe(svc, 'activeflow.deliver.>');
  });

  it('a node answers only to inboxes: a request naming another reply subject is neither run nor answered', async () => {
    const svc = await as('call-service');
    const af = await svc.client.createActiveflow({
      customer_id: CUSTOMER,
      actions: [
        { type: 'talk', option: { text: 'x' } },
        { type: 'talk', option: { text: 'y' } },
      ],
      reference_type: 'call',
    });
    const received: string[] = [];
    const sub = svc.nc.subscribe('activeflow.service.redirected', {
      callback: (_e, m) => {
        received.push(m.string());
      },
    });
    await svc.nc.flush();
    const gw = await as('gateway');
    gw.nc.publish(SUBJECTS.activeflowVerb(af.id, 'get'), '{}', { reply: 'activeflow.service.redirected' });
    gw.nc.publish(SUBJECTS.activeflowVerb(af.id, 'stop'), '{}', { reply: 'activeflow.service.redirected' });
    await gw.nc.flush();
    await new Promise((r) => setTimeout(r, 1_000));
    sub.unsubscribe();
    expect(received).toEqual([]);
    expect((await svc.client.get(af.id)).status).toBe('running'); // the stop was not run
  });

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
    const keys = await AccessKeyCache.start(gw.nc);
    const g = await HttpGateway.start({ nc: gw.nc, keys, log: silentLogger, port: 0, retryForMs: 500 });
    try {
      const created = await fetch(`${g.url}/v1.0/activeflows`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ actions: [{ type: 'block' }] }),
      });
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
