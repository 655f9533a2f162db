/**
 * The webhook retry lane on its own, against a real JetStream: each activeflow's backlog worked
 * head first, in order; a repeated park (after a crash) delivered once; given up after its time;
 * picked up by a successor; an unreadable message removed instead of blocking the activeflow.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { JetStreamClient } from '@nats-io/jetstream';
import type { StreamEvent } from '../../machines/index.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { silentLogger } from '../../src/log.js';
import { WEBHOOK_RETRY_STREAM, webhookRetrySubject, type Storage } from '../../src/store/buckets.js';
import { RetryLane, type RetryLaneOptions } from '../../src/node/webhook-retry-lane.js';
import { RecentMap } from '../../src/recent-map.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, openStoresFor, startNats, startNode } from '../helpers/nats.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';

let server: NatsServer;
let storage: Storage;
let nc: NatsConnection;
let node: ActiveflowNode;
/** Real events of one finished call, to park under made-up activeflow ids. */
let events: StreamEvent[];

beforeAll(async () => {
  server = await startNats();
  ({ nc, storage } = await openStoresFor(server));
  node = await startNode(server, { nodeId: 'lane-events' });
  const c = await clientFor(server);
  // No webhook_uri: the node's own deliverer must leave the retry stream to the lanes made here.
  const af = await c.client.createActiveflow({
    customer_id: CUSTOMER,
    reference_type: 'call',
    actions: [
      { type: 'talk', option: { text: 'a' } },
      { type: 'talk', option: { text: 'b' } },
    ],
  });
  for (let current = af.current_action.id, i = 0; i < 3; i++) current = (await c.client.next(af.id, current)).id;
  events = (await c.client.history(af.id)).events as StreamEvent[];
  expect(events.length).toBeGreaterThanOrEqual(3);
  await c.nc.close();
});
afterAll(async () => {
  await node?.stop();
  await nc?.close();
  await server?.stop();
});

const options: RetryLaneOptions = { giveUpAfterMs: 60_000, maxBackoffMs: 200, concurrency: 8 };

/** A lane whose attempts answer with `accept`, recording what was delivered. */
function lane(accept: (e: StreamEvent, attempt: number) => boolean, o: Partial<RetryLaneOptions> = {}, settled = new RecentMap<number, true>(100), js: JetStreamClient = storage.js) {
  const delivered: { id: string; seq: number }[] = [];
  let givenUp = 0;
  const l = new RetryLane(
    js,
    storage.jsm,
    settled,
    { ...options, ...o },
    {
      attempt: async (e, attempt) => accept(e, attempt),
      mayAct: () => true,
      delivered: (e) => delivered.push({ id: e.data.id, seq: e.seq }),
      givenUp: () => givenUp++,
    },
    silentLogger,
  );
  return { l, delivered, givenUp: () => givenUp };
}

/** The call's events as another activeflow's. */
const as = (id: string) => events.map((e) => ({ ...e, data: { ...e.data, id } }));
const stored = async (id: string) => (await storage.jsm.streams.info(WEBHOOK_RETRY_STREAM, { subjects_filter: webhookRetrySubject(id) })).state.subjects?.[webhookRetrySubject(id)] ?? 0;

describe('webhook retry lane', () => {
  it('works a backlog head first, in order, through failures; empties the stream and lets the activeflow go', async () => {
    const id = randomUUID();
    let failures = 3;
    const { l, delivered } = lane(() => failures-- <= 0);
    await l.start();
    for (const e of as(id)) expect(await l.park(id, e)).toBe(true);
    expect(l.holds(id)).toBe(true);
    await expect.poll(() => delivered.length, { timeout: 10_000 }).toBe(events.length);
    expect(delivered.map((d) => d.seq)).toEqual(events.map((e) => e.seq));
    await expect.poll(() => l.holds(id)).toBe(false);
    expect(await stored(id)).toBe(0);
    await l.stop();
  });

  it('a park repeated after a crash (same event again) is delivered once, and the lane still lets go', async () => {
    const id = randomUUID();
    let open = false;
    const { l, delivered } = lane(() => open);
    await l.start();
    const [first, second] = as(id);
    await l.park(id, first!);
    await l.park(id, first!); // the server drops the duplicate; the count says 2
    await l.park(id, second!);
    expect(await stored(id)).toBe(2);
    open = true;
    await expect.poll(() => l.holds(id), { timeout: 10_000 }).toBe(false);
    expect(delivered.map((d) => d.seq)).toEqual([first!.seq, second!.seq]);
    await l.stop();
  });

  it('gives an event up after its time and goes on with the next', async () => {
    const id = randomUUID();
    const [first, second] = as(id);
    const { l, delivered, givenUp } = lane((e) => e.seq !== first!.seq, { giveUpAfterMs: 500 });
    await l.start();
    await l.park(id, first!);
    await l.park(id, second!);
    await expect.poll(() => delivered.length, { timeout: 10_000 }).toBe(1);
    expect(delivered[0]!.seq).toBe(second!.seq);
    expect(givenUp()).toBe(1);
    await l.stop();
  });

  it('a successor picks up the backlog a stopped lane left, in order, with nothing delivered twice', async () => {
    const id = randomUUID();
    const a = lane(() => false);
    await a.l.start();
    for (const e of as(id)) await a.l.park(id, e);
    await a.l.stop();
    expect(await stored(id)).toBe(events.length);
    const b = lane(() => true);
    await b.l.start();
    expect(b.l.holds(id)).toBe(true);
    await expect.poll(() => b.delivered.filter((d) => d.id === id).length, { timeout: 10_000 }).toBe(events.length);
    expect(b.delivered.filter((d) => d.id === id).map((d) => d.seq)).toEqual(events.map((e) => e.seq));
    expect(a.delivered).toEqual([]);
    await b.l.stop();
  });

  it('a head this node sent in an earlier term, whose deletion failed, is deleted and not sent again', async () => {
    const id = randomUUID();
    const [first, second] = as(id);
    const a = lane(() => false);
    await a.l.start();
    await a.l.park(id, first!);
    await a.l.park(id, second!);
    await a.l.stop();
    const head = await storage.jsm.streams.getMessage(WEBHOOK_RETRY_STREAM, { next_by_subj: webhookRetrySubject(id), seq: 0 } as never);
    const settled = new RecentMap<number, true>(100);
    settled.set(head!.seq, true); // as the earlier term leaves it: sent, its deletion failed
    const b = lane(() => true, {}, settled);
    await b.l.start();
    await expect.poll(() => b.l.holds(id), { timeout: 10_000 }).toBe(false);
    expect(b.delivered.filter((d) => d.id === id).map((d) => d.seq)).toEqual([second!.seq]);
    expect(settled.get(head!.seq)).toBeUndefined();
    expect(await stored(id)).toBe(0);
    await b.l.stop();
  });

  it('an event parked while the lane drains the one before it is not stranded, however slowly its write lands', async () => {
    const id = randomUUID();
    // The real JetStream, each park's write landing 200 ms late (a slow or reconnecting server).
    const slow = new Proxy(storage.js, {
      get: (target, key, receiver) =>
        key === 'publish'
          ? async (...args: Parameters<JetStreamClient['publish']>) => {
              await new Promise((r) => setTimeout(r, 200));
              return target.publish(...args);
            }
          : Reflect.get(target, key, receiver),
    });
    const { l, delivered } = lane(() => true, {}, undefined, slow);
    await l.start();
    const all = as(id);
    for (const e of all) await l.park(id, e); // the worker empties the lane while the next write is on its way
    await expect.poll(() => delivered.filter((d) => d.id === id).length, { timeout: 10_000 }).toBe(all.length);
    expect(delivered.filter((d) => d.id === id).map((d) => d.seq)).toEqual(all.map((e) => e.seq));
    await expect.poll(() => l.holds(id)).toBe(false);
    expect(await stored(id)).toBe(0);
    await l.stop();
  });

  it('removes an unreadable message instead of blocking the activeflow behind it', async () => {
    const id = randomUUID();
    await storage.js.publish(webhookRetrySubject(id), 'not json');
    const { l, delivered } = lane(() => true);
    await l.start();
    expect(l.holds(id)).toBe(true);
    const [first] = as(id);
    await l.park(id, first!);
    await expect.poll(() => delivered.filter((d) => d.id === id).length, { timeout: 10_000 }).toBe(1);
    await expect.poll(() => l.holds(id)).toBe(false);
    expect(await stored(id)).toBe(0);
    await l.stop();
  });
});
