/**
 * Webhook order across a change of deliverer. The server redelivers what a dead deliverer held
 * only after the ack wait, while the events it never got go out at once: a new deliverer that
 * started at once would send an activeflow's later events before the earlier ones the dead one
 * held. Here a "ghost" deliverer takes the first event of an activeflow and dies with it; the
 * node that takes the lease over must still deliver every event once, in order. A clean handover
 * (the leader stops) must not wait for that.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AckPolicy, DeliverPolicy, jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ActiveflowClient } from '../../src/api/client.js';
import { connectNats } from '../../src/nats/connect.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { encodeJson } from '../../src/store/codec.js';
import { EVENTS_STREAM, WEBHOOK_CONSUMER } from '../../src/store/buckets.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, openStoresFor, startNats, startNode } from '../helpers/nats.js';
import { stopAll, walkCall, webhookReceiver } from '../helpers/webhooks.js';

interface Hit {
  path: string;
  at: number;
  type: string;
  id: string;
  ok: boolean;
}
const hits: Hit[] = [];
const failing = new Set<string>();
let base: string;
let closeHttp: () => Promise<void>;
let server: NatsServer;
let client: ActiveflowClient;
let nc: NatsConnection;
const nodes: ActiveflowNode[] = [];

beforeAll(async () => {
  ({ base, close: closeHttp } = await webhookReceiver((path, b) => {
    const ok = !failing.has(path);
    hits.push({ path, at: Date.now(), type: b.type, id: b.data.id, ok });
    return ok;
  }));
  server = await startNats();
});
afterAll(() => stopAll({ nc, nodes, server, closeHttp }));

const delivered = (path: string) => hits.filter((h) => h.path === path && h.ok);
const typesOf = async (id: string) => (await client.history(id)).events.map((e) => e.type);

describe('webhook delivery across a change of deliverer', () => {
  it("a deliverer that died holding an activeflow's first event: its successor still delivers every event once, in order", async () => {
    // The ghost holds the webhooks lease (renewed by hand) and owns the main lane's consumer.
    const stores = await openStoresFor(server);
    const ghost = await connectNats(server.url, 'ghost');
    const leaseValue = encodeJson({ node_id: 'ghost', acquired_at: new Date().toISOString() });
    await stores.storage.leases.put('webhooks', leaseValue);
    const renew = setInterval(() => void stores.storage.leases.put('webhooks', leaseValue).catch(() => undefined), 200);
    await (await jetstreamManager(ghost)).consumers.add(EVENTS_STREAM, {
      durable_name: WEBHOOK_CONSUMER,
      deliver_policy: DeliverPolicy.New,
      ack_policy: AckPolicy.Explicit,
      ack_wait: 10_000_000_000,
      max_deliver: -1,
      max_ack_pending: 256,
    });
    nodes.push(await startNode(server, { nodeId: 'heir', httpTimeoutMs: 1_000 }));
    ({ client, nc } = await clientFor(server));
    const id = await walkCall(client, CUSTOMER, `${base}/ghost`, 4);
    const want = await typesOf(id);
    expect(want.at(-1)).toBe('activeflow_ended');

    // The ghost takes the first event, never acknowledges it, and dies; its lease runs out.
    const batch = await jetstream(ghost)
      .consumers.get(EVENTS_STREAM, WEBHOOK_CONSUMER)
      .then((c) => c.fetch({ max_messages: 1, expires: 2_000 }));
    const held: string[] = [];
    for await (const m of batch) held.push((m.json() as { kind: string }).kind);
    expect(held).toEqual(['created']); // the journal's first entry: its activeflow_created event
    clearInterval(renew);
    await ghost.close();
    await stores.nc.close();

    await expect.poll(() => delivered('/ghost').length, { timeout: 30_000, interval: 200 }).toBeGreaterThanOrEqual(want.length);
    await new Promise((r) => setTimeout(r, 500)); // nothing more comes
    expect(delivered('/ghost').map((h) => h.type)).toEqual(want);
  }, 45_000);

  it('a leader that stops hands over at once: its successor delivers what it held, in order, without waiting for the ack wait', async () => {
    nodes.push(await startNode(server, { nodeId: 'second', httpTimeoutMs: 1_000 }));
    failing.add('/handover');
    const id = await walkCall(client, CUSTOMER, `${base}/handover`, 4);
    const want = await typesOf(id);
    // the leader is retrying the first event, and holds the rest behind it
    await expect.poll(() => hits.filter((h) => h.path === '/handover').length, { timeout: 5_000 }).toBeGreaterThan(1);
    await nodes[0]!.stop();
    const stoppedAt = Date.now();
    failing.delete('/handover');
    await expect.poll(() => delivered('/handover').length, { timeout: 10_000, interval: 100 }).toBeGreaterThanOrEqual(want.length);
    // A successor that waited for the server to release the held events would take the ack wait
    // (5 s) and a margin; a clean handover takes a lease tick (a third of the TTL) and a pull.
    expect(delivered('/handover').at(-1)!.at - stoppedAt).toBeLessThan(4_000);
    await new Promise((r) => setTimeout(r, 500));
    expect(delivered('/handover').map((h) => h.type)).toEqual(want);
  }, 30_000);

  it('rides through a nats-server restart: events before, during and after it all arrive, in order', async () => {
    failing.add('/restart'); // the first events wait in the retry lane across the restart
    const before = await walkCall(client, CUSTOMER, `${base}/restart`, 3);
    await expect.poll(() => hits.filter((h) => h.path === '/restart').length, { timeout: 5_000 }).toBeGreaterThan(1);
    await server.restart(); // same port and store: everyone reconnects
    failing.delete('/restart');
    const after = await walkCall(client, CUSTOMER, `${base}/restart`, 3);
    const want = [...(await typesOf(before)).map((t) => `${before}:${t}`), ...(await typesOf(after)).map((t) => `${after}:${t}`)];
    await expect.poll(() => delivered('/restart').length, { timeout: 20_000, interval: 200 }).toBeGreaterThanOrEqual(want.length);
    await new Promise((r) => setTimeout(r, 500));
    const got = delivered('/restart').map((h) => `${h.id}:${h.type}`);
    // per activeflow: every event, in order (the two activeflows' events may interleave)
    for (const id of [before, after]) expect(got.filter((g) => g.startsWith(id))).toEqual(want.filter((w) => w.startsWith(id)));
  }, 45_000);
});
