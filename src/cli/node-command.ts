import { describeConfig, defaultNodeId, readNodeConfig, type NodeConfig } from '../config.js';
import { createLogger } from '../log.js';
import { parseServers } from '../nats/connect.js';
import { ActiveflowNode } from '../node/activeflow-node.js';
import type { Command, CliIo } from './command.js';

const DAY_MS = 24 * 3600 * 1000;

export async function startNode(config: NodeConfig, io: CliIo): Promise<ActiveflowNode> {
  const nodeId = config.NODE_ID ?? defaultNodeId();
  const log = createLogger();
  try {
    return await ActiveflowNode.start({
      servers: parseServers(config.NATS_URL), nodeId, shardCount: config.SHARD_COUNT, replicas: config.NATS_REPLICAS,
      passivateAfterMs: config.PASSIVATE_AFTER_MS, endedRetentionMs: config.ENDED_RETENTION_DAYS * DAY_MS,
      eventRetentionMs: config.EVENT_RETENTION_DAYS * DAY_MS, httpTimeoutMs: config.HTTP_TIMEOUT_MS,
      httpMaxResponseBytes: config.HTTP_MAX_RESPONSE_BYTES, serviceTimeoutMs: config.SERVICE_TIMEOUT_MS, leaseTtlMs: config.LEASE_TTL_MS,
      shardLeases: config.SHARD_LEASES === '1', log,
      ...(config.NATS_USER !== undefined && config.NATS_PASSWORD !== undefined ? { credentials: { user: config.NATS_USER, pass: config.NATS_PASSWORD } } : {}),
      ...(config.NATS_SYSTEM_USER !== undefined && config.NATS_SYSTEM_PASSWORD !== undefined
        ? { systemCredentials: { user: config.NATS_SYSTEM_USER, pass: config.NATS_SYSTEM_PASSWORD } } : {}),
    });
  } catch (e) {
    io.err(`activeflow node: ${(e as Error).message}`);
    throw e;
  }
}

/**
 * Stops on SIGINT/SIGTERM: the node hands its shards over and in-flight requests finish, then the
 * process exits 0. Handing shards over needs NATS: if that does not finish within `deadlineMs`,
 * the process exits 1 instead of hanging until it is killed (its leases expire on their own).
 */
export function stopOnSignals(stop: () => Promise<void>, deadlineMs: number): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const onSignal = () => {
      if (stopping) process.exit(130); // a second Ctrl-C: leave now
      stopping = true;
      const timer = setTimeout(() => {
        process.stderr.write(`activeflow: the stop did not finish within ${deadlineMs} ms (STOP_TIMEOUT_MS; is NATS reachable?); exiting: this node's leases expire on their own\n`);
        process.exit(1);
      }, deadlineMs);
      void stop().then(() => resolve(0), (e: unknown) => {
        process.stderr.write(`activeflow: the stop failed: ${(e as Error).message}\n`);
        resolve(1);
      }).finally(() => clearTimeout(timer));
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
  });
}

export const nodeCommand: Command = {
  name: 'node',
  usage: 'activeflow node',
  summary: 'Run a node against the NATS servers in NATS_URL (for operators and tests).',
  help: `Runs one node: it hosts the activeflows of the shards it owns and serves the control API
(activeflow.v1.*, flow.v1.*) over NATS. Logs are JSON lines on stdout (pino).
Ctrl-C or SIGTERM stops it cleanly: in-flight requests finish first.

Configuration, from the environment:
${describeConfig()}`,
  async run(_args, io) {
    let config: NodeConfig;
    try {
      config = readNodeConfig();
    } catch (e) {
      io.err(`activeflow node: bad configuration: ${(e as Error).message}`);
      return 2;
    }
    let node: ActiveflowNode;
    try {
      node = await startNode(config, io);
    } catch {
      return 1;
    }
    return stopOnSignals(() => node.stop(), config.STOP_TIMEOUT_MS);
  },
};
