/**
 * What a node reports on `/metrics` (`activeflow node --metrics <port>`), with prom-client: the
 * runtime's counters, histograms and gauges, and the client's default process and event-loop
 * metrics (CPU, memory, event-loop lag, GC), in one registry per node.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

export interface NodeGauges {
  residentActors: () => number;
  ownedShards: () => number;
  /** Shards acquired or handed off since the node started (only grows). */
  shardMoves: () => number;
  /** Seconds since the least recently confirmed lease renewal (0 without leases). */
  leaseRenewalLag: () => number;
  inFlight: () => number;
  /** Requests waiting in fair admission's queues. */
  admissionQueued: () => number;
}

/** Seconds, from a sub-millisecond request to a stuck one. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * A label whose values are not bounded by the code (a customer id): past `max` distinct values, new
 * ones are counted as `other`, so a scrape cannot grow without limit.
 */
export function boundedLabel(max: number): (value: string) => string {
  const seen = new Set<string>();
  return (value) => {
    if (seen.has(value)) return value;
    if (seen.size >= max) return 'other';
    seen.add(value);
    return value;
  };
}

export class NodeMetrics {
  readonly registry = new Registry();
  private readonly registers = [this.registry];
  readonly requests = new Counter({ name: 'activeflow_requests_total', help: 'Requests answered, by verb and result code.', labelNames: ['verb', 'code'] as const, registers: this.registers });
  readonly requestSeconds = new Histogram({
    name: 'activeflow_request_duration_seconds',
    help: 'Time to answer a request, by verb.',
    labelNames: ['verb'] as const,
    buckets: LATENCY_BUCKETS,
    registers: this.registers,
  });
  readonly moves = new Counter({ name: 'activeflow_moves_total', help: 'Cursor moves (executed actions), by action type.', labelNames: ['action_type'] as const, registers: this.registers });
  readonly journalWriteSeconds = new Histogram({
    name: 'activeflow_journal_write_duration_seconds',
    help: "Time of one move's durable write: its journal entry, appended only after the entry its writer knows to be last.",
    buckets: LATENCY_BUCKETS,
    registers: this.registers,
  });
  readonly revisionConflicts = new Counter({
    name: 'activeflow_revision_conflicts_total',
    help: 'Snapshot writes refused because another owner wrote first (a fenced former owner).',
    registers: this.registers,
  });
  readonly passivated = new Counter({ name: 'activeflow_actors_passivated_total', help: 'Idle actors dropped from memory (they stay in KV).', registers: this.registers });
  readonly limitRejections = new Counter({
    name: 'activeflow_limit_rejections_total',
    help: 'Requests refused with limit_exceeded, by customer (at most 200 customers, then "other") and quota.',
    labelNames: ['customer_id', 'quota'] as const,
    registers: this.registers,
  });
  /** customer_id values of limitRejections, bounded. */
  readonly rejectedCustomer = boundedLabel(200);
  readonly webhookLagSeconds = new Histogram({
    name: 'activeflow_webhook_delivery_lag_seconds',
    help: 'From an event to its webhook delivery.',
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900],
    registers: this.registers,
  });
  readonly runningCountCorrections = new Counter({
    name: 'activeflow_running_count_corrections_total',
    help: 'Slots by which a reconcile corrected the per-customer running counts, up or down (src/quota/running-reconcile.ts).',
    labelNames: ['direction'] as const,
    registers: this.registers,
  });
  readonly idleTimeouts = new Counter({ name: 'activeflow_idle_timeouts_total', help: 'Activeflows ended by the idle watchdog (end_reason timeout).', registers: this.registers });
  readonly webhooksGivenUp = new Counter({ name: 'activeflow_webhooks_given_up_total', help: 'Webhook events given up after WEBHOOK_GIVE_UP_MS.', registers: this.registers });

  constructor(gauges: NodeGauges) {
    const gauge = (name: string, help: string, read: () => number) =>
      new Gauge({
        name,
        help,
        registers: this.registers,
        collect() {
          this.set(read());
        },
      });
    gauge('activeflow_resident_actors', 'Activeflow actors in memory now.', gauges.residentActors);
    gauge('activeflow_owned_shards', 'Shards this node serves now.', gauges.ownedShards);
    gauge('activeflow_lease_renewal_lag_seconds', "Seconds since the oldest confirmation among this node's shard leases (renewed every TTL/3).", gauges.leaseRenewalLag);
    gauge('activeflow_requests_in_flight', 'Requests being answered now.', gauges.inFlight);
    gauge('activeflow_admission_queued', "Requests waiting for a turn in fair admission (beyond ADMISSION_CONCURRENCY, or a customer's share).", gauges.admissionQueued);
    // Only grows: a counter, brought up to the node's own count at each scrape.
    let counted = 0;
    new Counter({
      name: 'activeflow_shard_moves_total',
      help: 'Shards this node acquired or handed off since it started.',
      registers: this.registers,
      collect() {
        const now = gauges.shardMoves();
        if (now > counted) this.inc(now - counted);
        counted = Math.max(counted, now);
      },
    });
    collectDefaultMetrics({ register: this.registry });
  }

  /** The current value of a counter without labels (for tests and the CLI). */
  static async valueOf(counter: Counter): Promise<number> {
    return (await counter.get()).values[0]?.value ?? 0;
  }
}

/** Serves `GET /metrics` (Prometheus text format) on its own port. */
export async function serveMetrics(metrics: NodeMetrics, port: number, host: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      void metrics.registry.metrics().then(
        (body) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType, 'content-length': Buffer.byteLength(body) });
          res.end(body);
        },
        (e: unknown) => {
          res.writeHead(500, { 'content-type': 'text/plain' }).end(`metrics failed: ${(e as Error).message}\n`);
        },
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain' }).end('metrics are at /metrics\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
