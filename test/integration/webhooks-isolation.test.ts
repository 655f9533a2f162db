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

interface Hit { path: string; at: number; type: string; id: string; seq: number }
let closeHttp: () => Promise<void>;
let base: string;
const delivered: Hit[] = [];
let deadUp = false;

let server: NatsServer;
let node: ActiveflowNode;
let client: ActiveflowClient;
let nc: NatsConnection;

beforeAll(async () => {
  ({ base, close: closeHttp } = await webhookReceiver((path, b) => {
    const ok = path !== '/dead' || deadUp;
    if (ok) delivered.push({ path, at: Date.now(), type: b.type, id: b.data.id, seq: b.data.executed_actions.length });
    return ok;
  }));
  server = await startNats();
  // A small consumer window (8), and retries that would go on for a minute.
  node = await startNode(server, { nodeId: 'hooks-iso', shardLeases: true, webhookGiveUpMs: 60_000, httpTimeoutMs: 1_000, webhookMaxPending: 8 });
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
