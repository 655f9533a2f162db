/**
 * Effects for real: fetch and webhook_send against an HTTP server on loopback (timeouts, size
 * limits), service actions against responders on `activeflow.service.<type>`, on_complete
 * children created and executed through the API, and forward_now reaching the call service.
 */
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { decodeJson, encodeJson } from '../../src/store/codec.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, startNats, startNode } from '../helpers/nats.js';

const FINISH = '00000000-0000-0000-0000-000000000002';
let server: NatsServer;
let node: ActiveflowNode;
let nc: NatsConnection;
let client: ActiveflowClient;
let http: Server;
let base: string;
/** A loopback port that was just freed: connecting to it is refused. */
let closedPort: number;
let webhookCalls = 0;
const webhookBodies: { type: string; data: { id: string; status: string } }[] = [];
const received: { method: string; url: string; body: string; headers: IncomingMessage['headers'] }[] = [];

beforeAll(async () => {
  server = await startNats();
  node = await startNode(server, { httpTimeoutMs: 300, httpMaxResponseBytes: 1024, serviceTimeoutMs: 300 });
  ({ nc, client } = await clientFor(server));
  http = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      received.push({ method: req.method!, url: req.url!, body, headers: req.headers });
      if (req.url === '/actions') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify([{ type: 'talk', option: { text: 'fetched' } }]));
      } else if (req.url === '/slow') {
        setTimeout(() => res.writeHead(200).end('[]'), 1_000);
      } else if (req.url === '/huge') {
        res.writeHead(200).end(JSON.stringify([{ type: 'talk', option: { text: 'x'.repeat(5000) } }]));
      } else if (req.url === '/webhook') {
        // The first two deliveries fail: the dispatcher must retry, and keep the order.
        webhookCalls++;
        if (webhookCalls <= 2) res.writeHead(503).end();
        else {
          webhookBodies.push(JSON.parse(body));
          res.writeHead(200).end();
        }
      } else if (req.url === '/broken') {
        res.writeHead(500).end('oops');
      } else {
        res.writeHead(204).end();
      }
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(http.address() as AddressInfo).port}`;
  const spare = createServer();
  await new Promise<void>((r) => spare.listen(0, '127.0.0.1', r));
  closedPort = (spare.address() as AddressInfo).port;
  await new Promise((r) => spare.close(r));
});

afterAll(async () => {
  http?.close();
  await nc?.close();
  await node?.stop();
  await server?.stop();
});

async function runCall(actions: unknown[]) {
  const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions });
  const first = await client.next(af.id, af.current_action.id);
  return { af, first };
}

describe('fetch over HTTP', () => {
  it('pushes the actions a server answers, posting {activeflow_id, reference_id}', async () => {
    const { af, first } = await runCall([{ type: 'fetch', option: { event_url: `${base}/actions`, event_method: 'POST' } }, { type: 'hangup' }]);
    expect(first.option).toEqual({ text: 'fetched' });
    const request = received.find((r) => r.url === '/actions')!;
    expect(JSON.parse(request.body)).toEqual({ activeflow_id: af.id, reference_id: af.reference_id });
    expect(request.headers['content-type']).toBe('application/json; charset=utf-8');
    expect((await client.next(af.id, first.id)).type).toBe('hangup');
  });

  it.each([
    ['a timeout', '/slow', /no answer within 300 ms/],
    ['an oversized response', '/huge', /larger than 1024 bytes/],
    ['a 500', '/broken', /answered 500/],
    ['a refused connection', 'CLOSED/x', /ECONNREFUSED/],
  ])('%s is a critical failure that ends the call with a reason', async (_what, path, reason) => {
    const url = path.startsWith('CLOSED') ? `http://127.0.0.1:${closedPort}/x` : `${base}${path}`;
    const { af, first } = await runCall([{ type: 'fetch', option: { event_url: url } }, { type: 'hangup' }]);
    expect(first.id).toBe(FINISH);
    const ended = await client.get(af.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'error', error: { action_type: 'fetch' } });
    expect(ended.error!.message).toMatch(reason);
  });
});

describe('webhook_send over HTTP', () => {
  it('sends the data with its content type; its failure never stops the flow', async () => {
    const { first } = await runCall([
      { type: 'webhook_send', option: { sync: true, uri: `${base}/hook`, method: 'PUT', data_type: 'text/plain', data: 'hello ${voipbin.activeflow.reference_type}' } },
      { type: 'webhook_send', option: { sync: true, uri: `http://127.0.0.1:${closedPort}/down`, data: 'x' } },
      { type: 'talk' },
    ]);
    expect(first.type).toBe('talk');
    const hook = received.find((r) => r.url === '/hook')!;
    expect([hook.method, hook.body, hook.headers['content-type']]).toEqual(['PUT', 'hello call', 'text/plain']);
  });
});

describe('service actions over NATS', () => {
  it("queue_join: the service's reply pushes its stack; service_stop from the queue ends the wait", async () => {
    const seen: unknown[] = [];
    const serviceId = '5e000000-0000-4000-8000-0000000000aa';
    const sub = nc.subscribe('activeflow.service.queue_join', {
      callback: (_e, m) => {
        seen.push(decodeJson(m.data));
        m.respond(encodeJson({ service_id: serviceId, variables: { 'voipbin.queuecall.id': serviceId }, push_actions: [{ type: 'play', option: { stream_urls: ['hold.wav'] } }, { type: 'empty' }] }));
      },
    });
    await nc.flush();
    const { af, first } = await runCall([
      { type: 'queue_join', option: { queue_id: '9e000000-0000-4000-8000-000000000001' } },
      { type: 'talk', option: { text: 'after ${voipbin.queuecall.id}' } },
    ]);
    sub.unsubscribe();
    expect(first.type).toBe('play');
    expect(seen[0]).toMatchObject({ activeflow_id: af.id, customer_id: CUSTOMER, reference_type: 'call', action: { type: 'queue_join' } });
    await client.serviceStop(af.id, serviceId);
    expect((await client.next(af.id, first.id)).option).toEqual({ text: `after ${serviceId}` });
  });

  it('no responders for a critical service ends the call; a service error on a non-critical one is skipped', async () => {
    const critical = await runCall([{ type: 'message_send' }, { type: 'talk' }]);
    expect(critical.first.id).toBe(FINISH);
    expect((await client.get(critical.af.id)).error!.message).toMatch(/no responders on activeflow\.service\.message_send/);
    const sub = nc.subscribe('activeflow.service.email_send', {
      callback: (_e, m) => {
        m.respond(encodeJson({ error: { code: 'unavailable', message: 'smtp down' } }));
      },
    });
    await nc.flush();
    const skipped = await runCall([{ type: 'email_send' }, { type: 'talk' }]);
    sub.unsubscribe();
    expect(skipped.first.type).toBe('talk');
  });

  it('a service that does not answer in time is a failure', async () => {
    const sub = nc.subscribe('activeflow.service.connect', { callback: () => undefined });
    await nc.flush();
    const { af, first } = await runCall([{ type: 'connect' }, { type: 'talk' }]);
    sub.unsubscribe();
    expect(first.id).toBe(FINISH);
    expect((await client.get(af.id)).error!.message).toMatch(/did not answer within 300 ms/);
  });
});

describe('on_complete and forward_now', () => {
  it("starts the on_complete activeflow through the API and executes it, with the parent's variables", async () => {
    const child = await client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'variable_set', option: { key: 'seen', value: '${order}' } }] });
    const parent = await client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'empty' }], on_complete_flow_id: child.id });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: parent.id, reference_type: 'api', variables: { order: 'A-7' }, execute: true });
    expect(af.on_complete_activeflow_id).not.toBe('00000000-0000-0000-0000-000000000000');
    let kid: Awaited<ReturnType<typeof client.get>> | undefined;
    for (let i = 0; i < 100; i++) {
      kid = await client.get(af.on_complete_activeflow_id).catch(() => undefined);
      if (kid?.status === 'ended') break;
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(kid).toMatchObject({ status: 'ended', end_reason: 'finished', reference_activeflow_id: af.id, flow_id: child.id });
    expect((await client.variables(kid!.id)).variables).toMatchObject({ seen: 'A-7', 'voipbin.activeflow.complete_count': '1' });
  });

  it('forward_now asks the call service to move now', async () => {
    const asked: unknown[] = [];
    const sub = nc.subscribe('activeflow.service.action_next', {
      callback: (_e, m) => {
        asked.push(decodeJson(m.data));
      },
    });
    await nc.flush();
    const { af, first } = await runCall([{ type: 'talk' }, { type: 'hangup' }]);
    const hangupId = (await client.get(af.id)).stack_map['00000000-0000-0000-0000-000000000001']!.actions[1]!.id;
    await client.forward(af.id, hangupId, true);
    for (let i = 0; i < 50 && asked.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    sub.unsubscribe();
    expect(asked).toEqual([{ activeflow_id: af.id, reference_type: 'call', reference_id: af.reference_id, force: true }]);
    expect((await client.next(af.id, first.id)).id).toBe(hangupId);
  });
});

describe('webhook_uri', () => {
  it("receives every event of its activeflow, in order, in VoIPBIN's wrapped form, through failures", async () => {
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', webhook_uri: `${base}/webhook`, actions: [{ type: 'answer' }] });
    const a = await client.next(af.id, af.current_action.id);
    await client.next(af.id, a.id);
    for (let i = 0; i < 200 && webhookBodies.length < 5; i++) await new Promise((r) => setTimeout(r, 25));
    expect(webhookCalls).toBeGreaterThanOrEqual(7); // two failures, then five deliveries
    expect(webhookBodies.map((b) => b.type)).toEqual(['activeflow_created', 'activeflow_updated', 'activeflow_updated', 'activeflow_updated', 'activeflow_ended']);
    expect(webhookBodies.every((b) => b.data.id === af.id)).toBe(true);
    expect(webhookBodies[0]!.data).not.toHaveProperty('stack_map');
    expect(webhookBodies.at(-1)!.data.status).toBe('ended');
  }, 30_000);
});
