/**
 * Dead webhook endpoints do not hold up healthy ones: many activeflows whose endpoint refuses
 * everything, more than the webhook consumer may hold unacknowledged, and then one activeflow with
 * a healthy endpoint, whose events must arrive at once. When the dead endpoint comes back, its
 * activeflows' events arrive too, each activeflow's in order.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsConnection } from '@nats-io/transport-node';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER, OTHER_CUSTOMER } from '../helpers/engine.js';
import { clientFor, startNats, startNode } from '../helpers/nats.js';
import { walkCall, webhookReceiver } from '../helpers/webhooks.js';

interface Hit {
  path: string;
  at: number;
  type: string;
  id: string;
  seq: number;
}
let closeHttp: () => Promise<void>;
let base: string;
const delivered: Hit[] = [];
let deadUp = false;
let flakyRefusals = 0;
/** Refused attempts per activeflow. */
const refused = new Map<string, number>();

let server: NatsServer;
let node: ActiveflowNode;
let client: ActiveflowClient;
let nc: NatsConnection;

beforeAll(async () => {
  ({ base, close: closeHttp } = await webhookReceiver((path, b) => {
    if (path === '/flaky' && flakyRefusals > 0) {
      flakyRefusals--;
      return false;
    }
    const ok = !path.startsWith('/dead') || deadUp;
    if (!ok) refused.set(b.data.id, (refused.get(b.data.id) ?? 0) + 1);
    if (ok) delivered.push({ path, at: Date.now(), type: b.type, id: b.data.id, seq: b.data.executed_actions.length });
    return ok;
  }));
  server = await startNats();
  // A small consumer window (8), and retries that would go on for a minute.
  node = await startNode(server, { nodeId: 'hooks-iso', webhookGiveUpMs: 60_000, httpTimeoutMs: 1_000, webhookMaxPending: 8 });
  ({ client, nc } = await clientFor(server));
});
afterAll(async () => {
  await nc?.close();
  await node?.stop();
  await server?.stop();
  await closeHttp();
});

const run = (customer: string, path: string, moves: number) => walkCall(client, customer, `${base}${path}`, moves);

describe('webhook isolation', () => {
  it('a healthy endpoint that fails once is retried on its own schedule, not behind 40 dead ones', async () => {
    // The dead ones are all in the retry lane, being retried for a minute, far more than its window.
    const dead = await Promise.all(Array.from({ length: 40 }, () => run(CUSTOMER, '/dead-early', 3)));
    // every one of them has failed its first attempt, so the retry lane holds them all
    await expect.poll(() => dead.every((id) => (refused.get(id) ?? 0) >= 1), { timeout: 10_000, interval: 100 }).toBe(true);
    flakyRefusals = 1;
    const started = Date.now();
    const flaky = await run(OTHER_CUSTOMER, '/flaky', 3);
    const want = (await client.history(flaky)).events.map((e) => e.type);
    await expect.poll(() => delivered.filter((h) => h.path === '/flaky').length, { timeout: 15_000, interval: 100 }).toBe(want.length);
    expect(delivered.filter((h) => h.path === '/flaky').map((h) => h.type)).toEqual(want);
    expect(delivered.filter((h) => h.path === '/flaky').at(-1)!.at - started).toBeLessThan(5_000);
    expect(dead).toHaveLength(40);
  }, 30_000);

  it('40 activeflows with a dead endpoint (5 times the consumer window) do not delay a healthy one; revived, they arrive in order', async () => {
    const dead = await Promise.all(Array.from({ length: 40 }, () => run(CUSTOMER, '/dead', 3)));
    const started = Date.now();
    const healthy = await run(OTHER_CUSTOMER, '/healthy', 3);
    const want = (await client.history(healthy)).events.map((e) => e.type);
    await expect.poll(() => delivered.filter((h) => h.path === '/healthy').length, { timeout: 10_000, interval: 100 }).toBe(want.length);
    const healthyHits = delivered.filter((h) => h.path === '/healthy');
    expect(healthyHits.map((h) => h.type)).toEqual(want);
    // Well within the retries' minute: it did not wait for the dead ones to be given up.
    expect(healthyHits.at(-1)!.at - started).toBeLessThan(5_000);

    deadUp = true;
    const perFlow = (await client.history(dead[0]!)).events.length;
    await expect.poll(() => delivered.filter((h) => h.path === '/dead').length, { timeout: 40_000, interval: 250 }).toBeGreaterThanOrEqual(dead.length * perFlow);
    for (const id of dead) {
      // Every event, in the stream's order, none skipped (and, with no crash here, none twice).
      const got = delivered.filter((h) => h.id === id);
      expect(got.map((h) => h.type)).toEqual((await client.history(id)).events.map((e) => e.type));
      const lengths = got.map((h) => h.seq); // the history grows event by event
      expect(lengths).toEqual([...lengths].sort((a, b) => a - b));
    }
  }, 60_000);
});
