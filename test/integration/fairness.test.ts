/**
 * Fair admission on a real node: while one customer floods it with writes, another customer's
 * calls (`next`, one after another, as a call service asks) are served within a turn of the round
 * instead of behind the flood. The figures are printed; `npm run bench:fairness` measures them
 * with the admission on and off.
 */
import { randomUUID } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { SHARDS, useNode } from '../helpers/nats.js';
import { shardOf } from '../../src/nats/shard-mapping.js';

const env = useNode({ admission: { concurrency: 256, perCustomer: 8, maxQueuedPerCustomer: 10_000 }, quotas: { creations_per_second: 10_000, creation_burst: 10_000 } });
const QUIET = randomUUID();
const FLOOD = randomUUID();
const talks = (n: number) => Array.from({ length: n }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } }));
const pct = (xs: number[], p: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;

/** Walks a fresh activeflow of the quiet customer with `next`, one call after another; the latencies in ms. */
async function quietCalls(n: number): Promise<number[]> {
  const af = await env.client.createActiveflow({ customer_id: QUIET, reference_type: 'call', actions: talks(n + 5) });
  const ms: number[] = [];
  let current = af.current_action.id;
  for (let i = 0; i < n; i++) {
    const t = performance.now();
    const action = await env.client.next(af.id, current);
    ms.push(performance.now() - t);
    current = action.id;
  }
  return ms;
}

describe('fair admission', () => {
  it("a quiet customer's next stays fast while another customer floods the node", async () => {
    await quietCalls(10); // warm up
    const alone = await quietCalls(60);

    const targets = await Promise.all(Array.from({ length: 100 }, () => env.client.createActiveflow({ customer_id: FLOOD, reference_type: 'call', actions: talks(2) })));
    let flooding = true;
    const floodMs: number[] = [];
    const worker = async (w: number) => {
      for (let i = 0; flooding; i++) {
        const t = performance.now();
        await env.client.setVariables(targets[w % targets.length]!.id, { n: String(i) });
        floodMs.push(performance.now() - t);
      }
    };
    const workers = Array.from({ length: 800 }, (_, w) => worker(w));
    await new Promise((r) => setTimeout(r, 1_000)); // the flood's queue builds up
    const during = await quietCalls(60);
    flooding = false;
    await Promise.all(workers);

    const figures = {
      quiet_alone_p50_ms: pct(alone, 50),
      quiet_alone_p99_ms: pct(alone, 99),
      quiet_during_flood_p50_ms: pct(during, 50),
      quiet_during_flood_p99_ms: pct(during, 99),
      flood_p50_ms: pct(floodMs, 50),
      flood_requests: floodMs.length,
    };
    console.log(JSON.stringify(Object.fromEntries(Object.entries(figures).map(([k, v]) => [k, Math.round(v * 10) / 10]))));
    // The flood waits its turns: its requests took far longer than the quiet customer's.
    expect(figures.flood_p50_ms).toBeGreaterThan(5 * figures.quiet_during_flood_p50_ms);
    // The quiet customer jumped the flood's queue: its slowest call beat the flood's median.
    expect(figures.quiet_during_flood_p99_ms).toBeLessThan(figures.flood_p50_ms);
  }, 60_000);
});

describe('fair admission: whose request', () => {
  it("a request naming no customer, to an activeflow passivated here, still counts as its customer's", async () => {
    const af = await env.client.createActiveflow({ customer_id: QUIET, reference_type: 'call', actions: talks(3) });
    expect(env.node.registry.customerOf(af.id)).toBe(QUIET);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    expect(env.node.residentActors).toBe(0);
    expect(env.node.registry.customerOf(af.id)).toBe(QUIET); // `next` has no customer_id: this is its key
    await env.client.next(af.id, af.current_action.id); // loaded again: resident, and still known
    expect(env.node.registry.customerOf(af.id)).toBe(QUIET);
    // Handed to another node: forgotten here.
    await env.node.registry.release(shardOf(af.id, SHARDS));
    expect(env.node.registry.peek(af.id)).toBeUndefined();
    expect(env.node.registry.customerOf(af.id)).toBeUndefined();
  });
});
