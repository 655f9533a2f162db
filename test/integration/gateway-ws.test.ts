/**
 * The gateway's WebSocket against a real node: events pushed per topic, only one's own customer,
 * and a client that reconnects (to the same gateway or, after a restart, a new one) resumes with
 * `from_seq` / `from_stream_seq` and gets exactly what it missed: no gap, no duplicate.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { WebSocket } from 'ws';
import { SUBJECTS } from '../../src/api/subjects.js';
import { AccessKeyCache } from '../../src/gateway/access-keys.js';
import { HttpGateway } from '../../src/gateway/http-gateway.js';
import { silentLogger } from '../../src/log.js';
import { CUSTOMER, OTHER_CUSTOMER } from '../helpers/engine.js';
import { useNode } from '../helpers/nats.js';

const env = useNode();
let keys: AccessKeyCache;
let gateway: HttpGateway;
let token: string;
let flowId: string;

interface Pushed {
  type: string;
  topic?: string;
  seq?: number;
  stream_seq?: number;
  data?: Record<string, unknown>;
  error?: { code: string; message: string };
  topics?: string[];
}

/** A client that records what it is sent. */
async function connect(g: HttpGateway, t = token): Promise<{ ws: WebSocket; got: Pushed[]; next: (pred: (m: Pushed) => boolean) => Promise<Pushed> }> {
  const ws = new WebSocket(`${g.url.replace('http', 'ws')}/v1.0/ws?token=${encodeURIComponent(t)}`);
  const got: Pushed[] = [];
  ws.on('message', (d) => got.push(JSON.parse(d.toString()) as Pushed));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = async (pred: (m: Pushed) => boolean) => {
    await expect.poll(() => got.some(pred), { timeout: 5_000 }).toBe(true);
    return got.find(pred)!;
  };
  return { ws, got, next };
}

const SEVEN_TALKS = Array.from({ length: 7 }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } }));

beforeAll(async () => {
  token = (await env.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER })).token;
  keys = await AccessKeyCache.start(env.nc);
  gateway = await HttpGateway.start({ nc: env.nc, keys, log: silentLogger, port: 0 });
  flowId = (await env.client.createFlow({ customer_id: CUSTOMER, actions: SEVEN_TALKS })).id;
});
afterAll(async () => {
  await gateway?.stop();
  keys?.stop();
});

/** A call through its moves: each `next` is one activeflow_updated event. */
async function move(id: string, times: number): Promise<void> {
  for (let i = 0; i < times; i++) {
    const af = await env.client.get(id);
    await env.client.next(id, af.current_action.id);
  }
}

describe('WebSocket /v1.0/ws', () => {
  it('refuses a connection without a valid key', async () => {
    for (const url of [`${gateway.url.replace('http', 'ws')}/v1.0/ws`, `${gateway.url.replace('http', 'ws')}/v1.0/ws?token=afk_wrong`]) {
      const status = await new Promise<number>((resolve) => {
        const ws = new WebSocket(url);
        ws.on('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
        ws.on('open', () => resolve(101));
      });
      expect(status).toBe(401);
    }
  });

  it("pushes an activeflow's events in order, in the public form; refuses another customer's topics and bad messages", async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flowId, reference_type: 'call' });
    const c = await connect(gateway);
    c.ws.send(JSON.stringify({ type: 'subscribe', topics: [`customer_id:${OTHER_CUSTOMER}:activeflow`] }));
    expect((await c.next((m) => m.type === 'error')).error).toMatchObject({ code: 'not_found' });
    c.ws.send('{"type":"subscribe","topics":["nonsense"]}');
    c.ws.send('not json');
    c.ws.send(JSON.stringify({ type: 'subscribe', topics: [`customer_id:${CUSTOMER}:activeflow`], colour: 'red' }));
    await expect.poll(() => c.got.filter((m) => m.type === 'error').length).toBe(4);
    expect(
      c.got
        .filter((m) => m.type === 'error')
        .map((m) => m.error!.message)
        .join('\n'),
    ).toMatch(/topic is customer_id[\s\S]*not valid JSON[\s\S]*colour/);

    const topic = `customer_id:${CUSTOMER}:activeflow:${af.id}`;
    c.ws.send(JSON.stringify({ type: 'subscribe', topics: [topic] }));
    await c.next((m) => m.type === 'subscribed');
    await move(af.id, 3);
    await expect.poll(() => c.got.filter((m) => m.topic === topic).length).toBe(3);
    const pushed = c.got.filter((m) => m.topic === topic);
    expect(pushed.map((m) => m.type)).toEqual(['activeflow_updated', 'activeflow_updated', 'activeflow_updated']);
    expect(pushed.map((m) => m.seq)).toEqual([pushed[0]!.seq, pushed[0]!.seq! + 1, pushed[0]!.seq! + 2]);
    expect(pushed[2]!.data).toMatchObject({ id: af.id, customer_id: CUSTOMER, status: 'running' });
    expect(pushed[2]!.data).not.toHaveProperty('stack_map');
    c.ws.send(JSON.stringify({ type: 'unsubscribe', topics: [topic] }));
    await c.next((m) => m.type === 'unsubscribed');
    await move(af.id, 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(c.got.filter((m) => m.topic === topic)).toHaveLength(3);
    c.ws.close();
  });

  it('resumes with from_seq after a disconnect and across a gateway restart: every event once, none missing', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flowId, reference_type: 'call' });
    const topic = `customer_id:${CUSTOMER}:activeflow:${af.id}`;
    const first = await connect(gateway);
    first.ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], from_seq: 1 }));
    await move(af.id, 2);
    await expect.poll(() => first.got.filter((m) => m.topic === topic).length).toBe(3); // created + 2 moves
    first.ws.close();
    const seen = first.got.filter((m) => m.topic === topic).map((m) => m.seq!);

    await move(af.id, 2); // missed while away
    const port = gateway.port;
    await gateway.stop(); // and the gateway restarts
    gateway = await HttpGateway.start({ nc: env.nc, keys, log: silentLogger, port });
    const second = await connect(gateway);
    second.ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], from_seq: seen.at(-1)! + 1 }));
    await move(af.id, 1); // and one more, live
    await expect.poll(() => second.got.filter((m) => m.topic === topic).length).toBe(3);
    const all = [...seen, ...second.got.filter((m) => m.topic === topic).map((m) => m.seq!)];
    expect(all).toEqual([1, 2, 3, 4, 5, 6]);
    const { events } = await env.client.history(af.id);
    expect(events.map((e) => e.seq)).toEqual(all);
    second.ws.close();
  });

  it('a customer topic follows every activeflow of the customer, and resumes with from_stream_seq', async () => {
    const c = await connect(gateway);
    c.ws.send(JSON.stringify({ type: 'subscribe', topics: [`customer_id:${CUSTOMER}:activeflow`] }));
    await c.next((m) => m.type === 'subscribed');
    const a = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flowId, reference_type: 'call' });
    const b = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flowId, reference_type: 'call' });
    await env.client.createActiveflow({ customer_id: OTHER_CUSTOMER, actions: SEVEN_TALKS, reference_type: 'call' });
    await move(a.id, 1);
    await move(b.id, 1);
    await expect.poll(() => c.got.filter((m) => m.topic?.endsWith(':activeflow')).length).toBe(4);
    const pushed = c.got.filter((m) => m.topic?.endsWith(':activeflow'));
    expect(new Set(pushed.map((m) => m.data!['id']))).toEqual(new Set([a.id, b.id]));
    expect(pushed.every((m) => m.data!['customer_id'] === CUSTOMER)).toBe(true);
    c.ws.close();

    // from the second event on, on a new connection: the last three again, in the same order
    const again = await connect(gateway);
    again.ws.send(JSON.stringify({ type: 'subscribe', topics: [`customer_id:${CUSTOMER}:activeflow`], from_stream_seq: pushed[1]!.stream_seq }));
    await expect.poll(() => again.got.filter((m) => m.topic?.endsWith(':activeflow')).length).toBe(3);
    expect(again.got.filter((m) => m.topic?.endsWith(':activeflow')).map((m) => m.stream_seq)).toEqual(pushed.slice(1).map((m) => m.stream_seq));
    again.ws.close();
  });

  it('rides through a nats-server restart: REST requests succeed (retried inside), the WebSocket keeps pushing', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flowId, reference_type: 'call' });
    const topic = `customer_id:${CUSTOMER}:activeflow:${af.id}`;
    const c = await connect(gateway);
    c.ws.send(JSON.stringify({ type: 'subscribe', topics: [topic], from_seq: 1 }));
    await expect.poll(() => c.got.filter((m) => m.topic === topic).length).toBe(1);
    const statuses: number[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const r = await fetch(`${gateway.url}/v1.0/activeflows/${af.id}`, { headers: { authorization: `Bearer ${token}` } });
        statuses.push(r.status);
        await r.arrayBuffer();
        await new Promise((res) => setTimeout(res, 20));
      }
    })();
    await new Promise((r) => setTimeout(r, 200));
    const beforeRestart = statuses.length;
    await env.server.restart(); // same port and store: clients reconnect
    await new Promise((r) => setTimeout(r, 500));
    await move(af.id, 2);
    polling = false;
    await poller;
    // Callers asked before, during and after the restart (how many depends on the machine's load).
    expect(beforeRestart).toBeGreaterThan(0);
    expect(statuses.length).toBeGreaterThan(beforeRestart + 1);
    expect(statuses.filter((s) => s !== 200)).toEqual([]); // no caller saw the restart
    await expect.poll(() => c.got.filter((m) => m.topic === topic).map((m) => m.seq), { timeout: 10_000 }).toEqual([1, 2, 3]);
    expect(c.ws.readyState).toBe(WebSocket.OPEN);
    c.ws.close();
  }, 30_000);
});

describe('WebSocket limits and revocation', () => {
  /** The consumers of the events stream right now (each WebSocket topic is one). */
  const consumerCount = async () => {
    const { jetstreamManager } = await import('@nats-io/jetstream');
    return (await (await jetstreamManager(env.nc)).streams.info('ACTIVEFLOW_EVENTS')).state.consumer_count;
  };

  it('a deleted access key closes its WebSockets at every gateway within a second, with a code and a reason', async () => {
    const { token: t, id } = await env.client.call<{ token: string; id: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER });
    const keys2 = await AccessKeyCache.start(env.nc);
    const second = await HttpGateway.start({ nc: env.nc, keys: keys2, log: silentLogger, port: 0 });
    try {
      const clients = [await connect(gateway, t), await connect(second, t)];
      for (const c of clients) {
        c.ws.send(JSON.stringify({ type: 'subscribe', topics: [`customer_id:${CUSTOMER}:activeflow`] }));
        await c.next((m) => m.type === 'subscribed');
      }
      const closes = clients.map(
        (c) => new Promise<{ code: number; reason: string; at: number }>((resolve) => c.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() }))),
      );
      const other = await connect(gateway); // another key's socket stays open
      const revokedAt = Date.now();
      await env.client.call(SUBJECTS.adminAccessKeys('delete'), { id });
      for (const closed of await Promise.all(closes)) {
        expect([closed.code, closed.reason]).toEqual([1008, 'access key revoked']);
        expect(closed.at - revokedAt).toBeLessThan(1_000);
      }
      expect(other.ws.readyState).toBe(WebSocket.OPEN);
      other.ws.close();
    } finally {
      await second.stop();
      keys2.stop();
    }
  });

  it('the topic limit holds against subscribes sent all at once, and a closed socket leaves no consumer behind', async () => {
    // The sockets the test before closed take their consumers away in the background: counted
    // once the count stops changing (it was read mid-way once: 3 where 1 was left).
    let before = await consumerCount();
    for (let settled = false; !settled; ) {
      await new Promise((r) => setTimeout(r, 300));
      const now = await consumerCount();
      settled = now === before;
      before = now;
    }
    const c = await connect(gateway);
    const burst = Array.from({ length: 12 }, (_, b) => ({
      type: 'subscribe',
      topics: Array.from({ length: 100 }, (_, i) => `customer_id:${CUSTOMER}:activeflow:${(b * 100 + i).toString(16).padStart(12, '0').padStart(36, '5e000000-0000-4000-8000-')}`),
    }));
    for (const m of burst) c.ws.send(JSON.stringify(m)); // all at once, none awaited
    await expect.poll(() => c.got.filter((m) => m.type === 'subscribed' || m.type === 'error').length, { timeout: 20_000 }).toBe(12);
    expect(c.got.filter((m) => m.type === 'subscribed').length).toBe(1);
    expect(c.got.filter((m) => m.error?.code === 'limit_exceeded').length).toBe(11);
    expect(await consumerCount()).toBe(before + 100);
    c.ws.close();
    await expect.poll(consumerCount, { timeout: 5_000 }).toBe(before);
  }, 30_000);
});
