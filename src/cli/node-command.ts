import { describeConfig, defaultNodeId, readNodeConfig, type NodeConfig } from '../config.js';
import { createLogger } from '../log.js';
import { natsAccess, parseServers } from '../nats/connect.js';
import { ActiveflowNode } from '../node/activeflow-node.js';
import type { Command, CliIo } from './command.js';
import { startGateway } from './gateway-command.js';
import { stopOnSignals } from './signals.js';
import { serveMetrics } from '../metrics/node-metrics.js';

const DAY_MS = 24 * 3600 * 1000;

export async function startNode(config: NodeConfig, io: CliIo): Promise<ActiveflowNode> {
  const nodeId = config.NODE_ID ?? defaultNodeId();
  const log = createLogger();
  try {
    return await ActiveflowNode.start({
      servers: parseServers(config.NATS_URL),
      nodeId,
      shardCount: config.SHARD_COUNT,
      replicas: config.NATS_REPLICAS,
      passivateAfterMs: config.PASSIVATE_AFTER_MS,
      endedRetentionMs: config.ENDED_RETENTION_DAYS * DAY_MS,
      eventRetentionMs: config.EVENT_RETENTION_DAYS * DAY_MS,
      httpTimeoutMs: config.HTTP_TIMEOUT_MS,
      httpMaxResponseBytes: config.HTTP_MAX_RESPONSE_BYTES,
      egressAllow: config.EGRESS_ALLOW,
      webhookGiveUpMs: config.WEBHOOK_GIVE_UP_MS,
      maxIdleMs: config.MAX_IDLE_SECONDS * 1000,
      watchdogIntervalMs: config.WATCHDOG_INTERVAL_MS,
      runningReconcileMs: config.RUNNING_RECONCILE_MS,
      serviceTimeoutMs: config.SERVICE_TIMEOUT_MS,
      leaseTtlMs: config.LEASE_TTL_MS,
      log,
      quotas: {
        running_activeflows: config.QUOTA_RUNNING_ACTIVEFLOWS,
        creations_per_second: config.QUOTA_CREATIONS_PER_SECOND,
        creation_burst: config.QUOTA_CREATION_BURST,
        flows: config.QUOTA_FLOWS,
        variable_keys: config.QUOTA_VARIABLE_KEYS,
        variable_value_bytes: config.QUOTA_VARIABLE_VALUE_BYTES,
        injected_variables_bytes: config.QUOTA_INJECTED_VARIABLES_BYTES,
        variables_bytes: config.QUOTA_VARIABLES_BYTES,
      },
      admission: { concurrency: config.ADMISSION_CONCURRENCY, perCustomer: config.ADMISSION_PER_CUSTOMER, maxQueuedPerCustomer: config.ADMISSION_QUEUE_PER_CUSTOMER },
      ...natsAccess(config),
      ...(config.NATS_SYSTEM_USER !== undefined && config.NATS_SYSTEM_PASSWORD !== undefined ? { systemCredentials: { user: config.NATS_SYSTEM_USER, pass: config.NATS_SYSTEM_PASSWORD } } : {}),
    });
  } catch (e) {
    io.err(`activeflow node: ${(e as Error).message}`);
    throw e;
  }
}

export const nodeCommand: Command = {
  name: 'node',
  usage: 'activeflow node [--http <port>] [--metrics <port>]',
  summary: 'Run a node against the NATS servers in NATS_URL (for operators and tests).',
  help: `Runs one node: it hosts the activeflows of the shards it owns and serves the control API
(activeflow.v1.*, flow.v1.*) over NATS. Logs are JSON lines on stdout (pino).
Ctrl-C or SIGTERM stops it cleanly: in-flight requests finish first.
--http <port> also serves the REST gateway (as \`activeflow gateway\` does) in this process,
on HTTP_HOST. --metrics <port> serves Prometheus metrics at http://<HTTP_HOST>:<port>/metrics
(docs/operations.md lists them; deploy/prometheus.yml scrapes them).

Configuration, from the environment:
${describeConfig()}`,
  async run(args, io) {
    let config: NodeConfig;
    try {
      config = readNodeConfig();
    } catch (e) {
      io.err(`activeflow node: bad configuration: ${(e as Error).message}`);
      return 2;
    }
    const portOption = (name: string): number | undefined | null => {
      const text = args.options.get(name);
      if (text === undefined) return undefined;
      const n = Number(text);
      if (Number.isInteger(n) && n >= 0 && n <= 65_535) return n;
      io.err(`activeflow node: --${name} takes a port number (0-65535), not "${text}"`);
      return null;
    };
    const port = portOption('http');
    const metricsPort = portOption('metrics');
    if (port === null || metricsPort === null) return 2;
    let node: ActiveflowNode;
    try {
      node = await startNode(config, io);
    } catch {
      return 1;
    }
    let gateway: { stop: () => Promise<void> } | null = null;
    if (port !== undefined) {
      try {
        gateway = await startGateway(node.nc, { port, host: config.HTTP_HOST, maxBodyBytes: config.HTTP_MAX_BODY_BYTES, log: createLogger({ component: 'gateway' }) });
      } catch (e) {
        io.err(`activeflow node: the REST gateway did not start: ${(e as Error).message}`);
        await node.stop();
        return 1;
      }
    }
    let metrics: { stop: () => Promise<void> } | null = null;
    if (metricsPort !== undefined) {
      try {
        const served = await serveMetrics(node.metrics, metricsPort, config.HTTP_HOST);
        metrics = served;
        const url = `http://${config.HTTP_HOST}:${served.port}/metrics`;
        createLogger({ component: 'metrics' }).info({ event: 'metrics_listening', url }, `Prometheus metrics at ${url}`);
      } catch (e) {
        io.err(`activeflow node: the metrics endpoint did not start: ${(e as Error).message}`);
        await gateway?.stop();
        await node.stop();
        return 1;
      }
    }
    return stopOnSignals(async () => {
      await gateway?.stop(); // no new REST requests, then the node hands its shards over
      const handedOver = await node.stop();
      await metrics?.stop();
      if (!handedOver) throw new Error('NATS is unreachable: stopped without handing the shards over; their leases expire on their own');
    }, config.STOP_TIMEOUT_MS);
  },
};
