/**
 * webhook_uri delivery: in order per activeflow through failures, without one failing endpoint
 * holding up other activeflows' webhooks; an event that cannot be delivered is given up after
 * WEBHOOK_GIVE_UP_MS and the next one goes; one node delivers at a time, and when it dies another
 * takes over without losing or reordering an event.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, startNats, startNode } from '../helpers/nats.js';
import { stopAll, walkCall, webhookReceiver } from '../helpers/webhooks.js';

interface Hit {
  path: string;
  at: number;
  type: string;
  id: string;
  ok: boolean;
}
let closeHttp: () => Promise<void>;
let base: string;
const hits: Hit[] = [];
/** Per path: how many requests to refuse with 503 before answering 200 (Infinity: always). */
const failFirst = new Map<string, number>();
/** Per path: event types always refused. */
const refuseType = new Map<string, string>();

let server: NatsServer;
const nodes: ActiveflowNode[] = [];
let client: ActiveflowClient;
let nc: NatsConnection;

beforeAll(async () => {
  ({ base, close: closeHttp } = await webhookReceiver((path, b) => {
    const left = failFirst.get(path) ?? 0;
    const ok = left <= 0 && refuseType.get(path) !== b.type;
    if (left > 0) failFirst.set(path, left - 1);
    hits.push({ path, at: Date.now(), type: b.type, id: b.data.id, ok });
    return ok;
  }));
  server = await startNats();
  nodes.push(await startNode(server, { nodeId: 'hooks-a', webhookGiveUpMs: 1_500, httpTimeoutMs: 1_000 }));
  ({ client, nc } = await clientFor(server));
});
afterAll(() => stopAll({ nc, nodes, server, closeHttp }));

const delivered = (path: string) => hits.filter((h) => h.path === path && h.ok);

const run = (path: string, moves: number) => walkCall(client, CUSTOMER, `${base}${path}`, moves);

/** The activeflow's events as the stream has them: what its webhook must receive, in this order. */
const typesOf = async (id: string) => (await client.history(id)).events.map((e) => e.type);

describe('webhook delivery', () => {
  it("keeps each activeflow's order through failures, and a failing endpoint does not hold up the others", async () => {
    failFirst.set('/slow', 4);
    const slow = await run('/slow', 3);
    const fast = await run('/fast', 3);
    const want = await typesOf(slow);
    expect(want.at(-1)).toBe('activeflow_ended');
    await expect.poll(() => delivered('/slow').length, { timeout: 10_000 }).toBe(want.length);
    await expect.poll(() => delivered('/fast').length, { timeout: 10_000 }).toBe(want.length);
    expect(delivered('/slow').map((h) => h.type)).toEqual(want);
    expect(delivered('/fast').map((h) => h.type)).toEqual(await typesOf(fast));
    expect(new Set(delivered('/slow').map((h) => h.id))).toEqual(new Set([slow]));
    // /fast was served while /slow was still being retried: its last event came before /slow's first success.
    expect(delivered('/fast').at(-1)!.at).toBeLessThan(delivered('/slow')[0]!.at);
    expect(fast).not.toBe(slow);
  }, 30_000);

  it('marks each event with whether it has a webhook; an unmarked one (from an older node) is still decoded and delivered', async () => {
    const { jetstream } = await import('@nats-io/jetstream');
    const { randomUUID } = await import('node:crypto');
    const jsm = await jetstream(nc).jetstreamManager();
    const hooked = await run('/marked', 1);
    const plain = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'api', actions: [{ type: 'block' }], execute: true });
    const header = async (id: string) => (await jsm.streams.getMessage('ACTIVEFLOW_EVENTS', { last_by_subj: `activeflow.events.${CUSTOMER}.${id}` }))!.header?.get('Activeflow-Webhook');
    expect(await header(hooked)).toBe('1');
    expect(await header(plain.id)).toBe('0');
    const [first] = (await client.history(hooked)).events;
    const legacyId = randomUUID();
    const legacy = { ...first!, data: { ...first!.data, id: legacyId, webhook_uri: `${base}/legacy` } };
    await jetstream(nc).publish(`activeflow.events.${CUSTOMER}.${legacyId}`, JSON.stringify(legacy)); // no header
    await expect.poll(() => delivered('/legacy').map((h) => h.id), { timeout: 10_000 }).toEqual([legacyId]);
    await client.stop(plain.id);
  }, 30_000);

  it('gives an undeliverable event up after WEBHOOK_GIVE_UP_MS, and delivers the ones after it in order', async () => {
    refuseType.set('/picky', 'activeflow_created');
    const want = (await typesOf(await run('/picky', 2))).slice(1);
    await expect.poll(() => delivered('/picky').length, { timeout: 10_000 }).toBe(want.length);
    expect(delivered('/picky').map((h) => h.type)).toEqual(want);
    const refused = hits.filter((h) => h.path === '/picky' && !h.ok);
    expect(refused.length).toBeGreaterThan(1); // retried before it was given up
    expect(refused.at(-1)!.at - refused[0]!.at).toBeGreaterThanOrEqual(1_000);
  }, 30_000);

  it('one node delivers at a time; when it dies, another takes over and nothing is lost or reordered', async () => {
    nodes.push(await startNode(server, { nodeId: 'hooks-b', webhookGiveUpMs: 60_000, httpTimeoutMs: 1_000 }));
    failFirst.set('/handover', 3); // the first deliveries are being retried when the leader dies
    const id = await run('/handover', 4);
    await expect.poll(() => hits.filter((h) => h.path === '/handover').length, { timeout: 5_000 }).toBeGreaterThan(0);
    await nodes[0]!.nc.close(); // the leader's connection drops: it cannot ack, renew or release
    const want = await typesOf(id);
    // the lease moves within its TTL; its successor waits for the dead node's unacknowledged events to be released (the 5 s ack wait)
    await expect.poll(() => delivered('/handover').at(-1)?.type, { timeout: 30_000, interval: 200 }).toBe('activeflow_ended');
    // At least once: the new deliverer may repeat what the dead one delivered but had not acked,
    // from that point on, in order; nothing is skipped.
    const types = delivered('/handover').map((h) => h.type);
    expect(types.length).toBeGreaterThanOrEqual(want.length);
    expect(types.slice(-want.length)).toEqual(want.slice(-want.length));
    expect(types.slice(0, types.length - want.length)).toEqual(want.slice(0, types.length - want.length));
    expect(delivered('/handover').every((h) => h.id === id)).toBe(true);
  }, 45_000);
});

describe('the webhook consumer', () => {
  it('heals: deleted while events keep coming, it is made again from where it stopped, and no event is lost', async () => {
    const before = await run('/heal-before', 2);
    await expect.poll(() => delivered('/heal-before').length, { timeout: 10_000 }).toBe((await typesOf(before)).length);
    // Its ack floor is recorded every 2 s: wait for a round, then delete it as an intruder would.
    await new Promise((r) => setTimeout(r, 2_500));
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const jsm = await jetstreamManager(nc);
    expect(await jsm.consumers.delete('ACTIVEFLOW_EVENTS', 'af_webhooks')).toBe(true);
    // Events published while the consumer is gone, before the node notices.
    const during = await run('/heal-during', 3);
    await expect.poll(() => delivered('/heal-during').map((h) => h.type), { timeout: 15_000 }).toEqual(await typesOf(during));
    expect((await jsm.consumers.info('ACTIVEFLOW_EVENTS', 'af_webhooks')).name).toBe('af_webhooks');
    // And delivery goes on as before.
    const after = await run('/heal-after', 1);
    await expect.poll(() => delivered('/heal-after').map((h) => h.type), { timeout: 10_000 }).toEqual(await typesOf(after));
  }, 40_000);
});
