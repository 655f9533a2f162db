/**
 * What a node reports on `/metrics` (`activeflow node --metrics <port>`): one object the node,
 * its actors, its shard ownership and its webhook dispatcher write to, rendered at scrape time.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Histogram, LATENCY_BUCKETS, MetricRegistry } from './metric-registry.js';

export interface NodeGauges {
  residentActors: () => number;
  ownedShards: () => number;
  shardMoves: () => number;
  /** Seconds since the least recently confirmed lease renewal (0 without leases). */
  leaseRenewalLag: () => number;
  inFlight: () => number;
  /** Requests waiting in fair admission's queues. */
  admissionQueued: () => number;
}

export class NodeMetrics {
  readonly registry = new MetricRegistry();
  readonly requests = this.registry.add(new Counter('activeflow_requests_total', 'Requests answered, by verb and result code.'));
  readonly requestSeconds = this.registry.add(new Histogram('activeflow_request_duration_seconds', 'Time to answer a request, by verb.', LATENCY_BUCKETS));
  readonly moves = this.registry.add(new Counter('activeflow_moves_total', 'Cursor moves (executed actions), by action type.'));
  readonly kvWriteSeconds = this.registry.add(new Histogram('activeflow_kv_write_duration_seconds', 'Time of one revision-checked snapshot write to af_running.', LATENCY_BUCKETS));
  readonly revisionConflicts = this.registry.add(new Counter('activeflow_revision_conflicts_total', 'Snapshot writes refused because another owner wrote first (a fenced former owner).'));
  readonly passivated = this.registry.add(new Counter('activeflow_actors_passivated_total', 'Idle actors dropped from memory (they stay in KV).'));
  readonly limitRejections = this.registry.add(new Counter('activeflow_limit_rejections_total', 'Requests refused with limit_exceeded, by customer (at most 200 customers, then "other") and quota.'));
  readonly webhookLagSeconds = this.registry.add(new Histogram('activeflow_webhook_delivery_lag_seconds', 'From an event to its webhook delivery.', [0.01, 0.05, 0.1, 0.5, 1, 5, 30, 60, 300, 900]));
  readonly idleTimeouts = this.registry.add(new Counter('activeflow_idle_timeouts_total', 'Activeflows ended by the idle watchdog (end_reason timeout).'));
  readonly webhooksGivenUp = this.registry.add(new Counter('activeflow_webhooks_given_up_total', 'Webhook events given up after WEBHOOK_GIVE_UP_MS.'));

  constructor(gauges: NodeGauges) {
    this.registry.add(new Gauge('activeflow_resident_actors', 'Activeflow actors in memory now.', gauges.residentActors));
    this.registry.add(new Gauge('activeflow_owned_shards', 'Shards this node serves now.', gauges.ownedShards));
    this.registry.add(new Gauge('activeflow_shard_moves', 'Shards this node acquired or handed off since it started.', gauges.shardMoves));
    this.registry.add(new Gauge('activeflow_lease_renewal_lag_seconds', 'Seconds since the oldest confirmation among this node\'s shard leases (renewed every TTL/3).', gauges.leaseRenewalLag));
    this.registry.add(new Gauge('activeflow_requests_in_flight', 'Requests being answered now.', gauges.inFlight));
    this.registry.add(new Gauge('activeflow_admission_queued', 'Requests waiting for a turn in fair admission (beyond ADMISSION_CONCURRENCY, or a customer\'s share).', gauges.admissionQueued));
  }
}

/** Serves `GET /metrics` (Prometheus text format) on its own port. */
export async function serveMetrics(metrics: NodeMetrics, port: number, host: string): Promise<{ port: number; stop: () => Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method === 'GET' && (req.url === '/metrics' || req.url?.startsWith('/metrics?'))) {
      const body = metrics.registry.render();
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8', 'content-length': Buffer.byteLength(body) });
      res.end(body);
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
    stop: () => new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    }),
  };
}
