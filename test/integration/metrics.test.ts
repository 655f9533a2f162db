/**
 * `/metrics` on a real node: Prometheus text whose names are all there and whose values move when
 * activeflows move (requests, moves by action type, journal writes, actors, shards).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { boundedLabel, serveMetrics } from '../../src/metrics/node-metrics.js';
import { CUSTOMER } from '../helpers/engine.js';
import { useNode } from '../helpers/nats.js';

const env = useNode({ nodeId: 'metrics-node', quotas: { flows: 1 } });
let endpoint: { port: number; stop: () => Promise<void> };

beforeAll(async () => {
  endpoint = await serveMetrics(env.node.metrics, 0, '127.0.0.1');
});
afterAll(async () => {
  await endpoint?.stop();
});

async function scrape(): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${endpoint.port}/metrics`);
  expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
  const out = new Map<string, number>();
  for (const line of (await res.text()).split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    // Labels in name order, whatever order the exposition gives them in.
    const key = line.slice(0, at).replace(
      /\{(.*)\}$/,
      (_, labels: string) =>
        `{${labels
          .split(/,(?=[a-z_]+=")/)
          .sort()
          .join(',')}}`,
    );
    out.set(key, Number(line.slice(at + 1)));
  }
  return out;
}

describe('/metrics', () => {
  it('has every metric, and the values move as activeflows move', async () => {
    await expect.poll(() => env.node.servedShards, { timeout: 10_000 }).toBe(256);
    const before = await scrape();
    expect(before.get('activeflow_owned_shards')).toBe(256);
    expect(before.get('activeflow_shard_moves_total')).toBeGreaterThanOrEqual(256);
    expect(before.get('activeflow_lease_renewal_lag_seconds')).toBeLessThan(1); // TTL 1 s, renewed every third

    const flow = await env.client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'answer' }, { type: 'talk', option: { text: 'hi' } }, { type: 'talk', option: { text: 'bye' } }] });
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
    let current = af.current_action.id;
    for (let i = 0; i < 4; i++) current = (await env.client.next(af.id, current)).id;
    await expect(env.client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'answer' }] })).rejects.toMatchObject({ code: 'limit_exceeded' });
    const after = await scrape();

    expect(after.get('activeflow_moves_total{action_type="answer"}')).toBe(1);
    expect(after.get('activeflow_moves_total{action_type="talk"}')).toBe(2);
    expect(after.get('activeflow_requests_total{code="ok",verb="next"}')).toBe(4);
    expect(after.get('activeflow_requests_total{code="ok",verb="create"}')).toBe(1);
    expect(after.get('activeflow_request_duration_seconds_count{verb="next"}')).toBe(4);
    expect(after.get('activeflow_request_duration_seconds_bucket{le="+Inf",verb="next"}')).toBe(4);
    expect(after.get('activeflow_journal_write_duration_seconds_count')).toBe(5); // the created entry, three moves and the end
    expect(after.get(`activeflow_limit_rejections_total{customer_id="${CUSTOMER}",quota="flows"}`)).toBe(1);
    expect(after.get('activeflow_requests_total{code="limit_exceeded",verb="flow_create"}')).toBe(1);
    expect(after.get('activeflow_resident_actors')).toBeGreaterThanOrEqual(1);
    // Another writer appends to a resident activeflow's journal: the node's next write is refused.
    const { openStoresFor } = await import('../helpers/nats.js');
    const { Journal } = await import('../../src/store/journal.js');
    const stores = await openStoresFor(env.server);
    const other = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
    const step = await env.client.next(other.id, other.current_action.id);
    const journal = new Journal(stores.storage.js, stores.storage.jsm);
    const last = (await journal.last(CUSTOMER, other.id))!;
    await journal.append(CUSTOMER, other.id, { v: 2, kind: 'fence', n: 3, at: '2026-11-27T10:00:00.000000Z', engine: 'test' }, last.seq, false);
    await env.client.next(other.id, step.id); // refused once (conflict), retried by the client after a reload
    await stores.nc.close();
    expect((await scrape()).get('activeflow_revision_conflicts_total')).toBe(1);

    const text = await (await fetch(`http://127.0.0.1:${endpoint.port}/metrics`)).text();
    const names = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => `${m[1]} ${m[2]}`);
    expect(names).toEqual(
      expect.arrayContaining([
        'activeflow_requests_total counter',
        'activeflow_request_duration_seconds histogram',
        'activeflow_moves_total counter',
        'activeflow_journal_write_duration_seconds histogram',
        'activeflow_revision_conflicts_total counter',
        'activeflow_actors_passivated_total counter',
        'activeflow_limit_rejections_total counter',
        'activeflow_webhook_delivery_lag_seconds histogram',
        'activeflow_webhooks_given_up_total counter',
        'activeflow_resident_actors gauge',
        'activeflow_owned_shards gauge',
        'activeflow_shard_moves_total counter',
        'activeflow_lease_renewal_lag_seconds gauge',
        'activeflow_requests_in_flight gauge',
        'activeflow_admission_queued gauge',
        // prom-client's process and event-loop metrics
        'process_cpu_seconds_total counter',
        'process_resident_memory_bytes gauge',
        'nodejs_eventloop_lag_p99_seconds gauge',
        'nodejs_gc_duration_seconds histogram',
      ]),
    );
  });
});

describe('deploy/prometheus.yml and deploy/grafana/activeflow.json', () => {
  it('scrape the ports local-cluster gives the nodes, and chart only metrics the node has', async () => {
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    const prom = parse(readFileSync(new URL('../../deploy/prometheus.yml', import.meta.url), 'utf8')) as { scrape_configs: { job_name: string; static_configs?: { targets: string[] }[] }[] };
    const local = prom.scrape_configs.find((j) => j.job_name === 'activeflow-local')!;
    expect(local.static_configs![0]!.targets).toEqual(['127.0.0.1:9464', '127.0.0.1:9465', '127.0.0.1:9466']);
    expect(readFileSync(new URL('../../deploy/local-cluster', import.meta.url), 'utf8')).toContain('--metrics $((9463 + n + offset))');
    const text = await env.node.metrics.registry.metrics();
    const have = new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]!));
    const dashboard = readFileSync(new URL('../../deploy/grafana/activeflow.json', import.meta.url), 'utf8');
    const used = new Set([...dashboard.matchAll(/(?:activeflow|process|nodejs)_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, '')));
    expect(used.size).toBeGreaterThan(8);
    for (const name of used) expect(have.has(name), name).toBe(true);
  });
});

describe('boundedLabel', () => {
  it('keeps the first values of an unbounded label and folds the rest into "other"', () => {
    const label = boundedLabel(200);
    const seen = Array.from({ length: 250 }, (_, i) => label(`c${i}`));
    expect(seen.slice(0, 200)).toEqual(Array.from({ length: 200 }, (_, i) => `c${i}`));
    expect(new Set(seen.slice(200))).toEqual(new Set(['other']));
    expect(label('c3')).toBe('c3'); // a value already seen keeps its own series
  });
});
