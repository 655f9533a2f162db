/** A node in the benchmark's own process, on a server it started, for figures measured from inside (loads, heap). */
import { silentLogger } from '../src/log.js';
import type { NodeOptions } from '../src/node/node-options.js';
import { ActiveflowNode } from '../src/node/activeflow-node.js';

/** 256 shards, R1, nothing passivated or expired during a run, silent; `extra` overrides. */
export function startInProcessNode(serverUrl: string, nodeId: string, extra: Partial<NodeOptions> = {}): Promise<ActiveflowNode> {
  return ActiveflowNode.start({
    servers: [serverUrl],
    nodeId,
    shardCount: 256,
    replicas: 1,
    passivateAfterMs: 3_600_000,
    endedRetentionMs: 86_400_000,
    eventRetentionMs: 86_400_000,
    httpTimeoutMs: 5_000,
    httpMaxResponseBytes: 1 << 20,
    serviceTimeoutMs: 5_000,
    log: silentLogger,
    ...extra,
  });
}
