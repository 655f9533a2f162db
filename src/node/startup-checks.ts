/**
 * What a node checks before it serves: JetStream answers, the cluster's shard count is its own, the
 * server maps activeflow ids to the shards it computes. Each refusal says what to change.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import { SUBJECTS } from '../api/subjects.js';
import type { Logger } from '../log.js';
import { shardMappingConfig, shardOf } from '../nats/shard-mapping.js';
import { retry } from '../retry.js';
import type { Storage } from '../store/buckets.js';
import { decodeJson, encodeJson } from '../store/codec.js';

/** JetStream answers only some seconds after a cold start of its server: retry its first calls. */
export async function withJetStreamRetry<T>(log: Logger, fn: () => Promise<T>): Promise<T> {
  try {
    return await retry(fn, {
      backoff: { firstMs: 100, maxMs: 1_000 },
      forMs: 30_000,
      onRetry: (e, attempt) => {
        if (attempt === 1 || attempt % 10 === 0) log.warn({ event: 'jetstream_not_ready', err: (e as Error).message }, 'waiting for JetStream');
      },
    });
  } catch (e) {
    throw new Error(`JetStream did not answer for 30 s (${(e as Error).message}); is nats-server running with jetstream enabled?`, { cause: e });
  }
}

const CLUSTER_KEY = 'config';

/** The shard count is the cluster's, fixed at its first start; a node configured otherwise refuses. */
export async function checkClusterConfig(storage: Storage, shardCount: number): Promise<void> {
  const config = { shard_count: shardCount, created_at: new Date().toISOString(), format_version: 1 };
  try {
    await storage.cluster.create(CLUSTER_KEY, encodeJson(config));
    return;
  } catch {
    // exists already: compare
  }
  const entry = await storage.cluster.get(CLUSTER_KEY);
  const stored = entry ? (decodeJson(entry.value) as typeof config) : null;
  if (stored !== null && stored.shard_count !== shardCount) {
    throw new Error(
      `this cluster has ${stored.shard_count} shards (since ${stored.created_at}) but this node is configured with SHARD_COUNT=${shardCount}; start it with SHARD_COUNT=${stored.shard_count} (changing the count is an offline migration)`,
    );
  }
}

/**
 * The server must map `activeflow.v1.<id>.<verb>` to the same shard as `shardOf(id)`: sends probes
 * and refuses to start, saying what to add to the configuration, when the mapping is missing or
 * different. Several probes, because one id lands on the same shard under many wrong counts
 * (with 64 shards instead of 256, a quarter of all ids do).
 */
export async function verifyShardMapping(nc: NatsConnection, shardCount: number): Promise<void> {
  const probes = Array.from({ length: 16 }, () => randomUUID());
  const seen = new Map<string, number>();
  let allSeen!: () => void;
  const complete = new Promise<void>((r) => (allSeen = r));
  const sub = nc.subscribe('activeflow.shard.*.*.mapping_probe', {
    callback: (_e, m) => {
      const t = m.subject.split('.');
      seen.set(t[3]!, Number(t[2]));
      if (seen.size === probes.length) allSeen();
    },
  });
  await nc.flush();
  for (const id of probes) nc.publish(SUBJECTS.activeflowVerb(id, 'mapping_probe'));
  await nc.flush();
  // Every probe back, or two seconds: a missing mapping delivers none of them.
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([complete, new Promise((r) => (timer = setTimeout(r, 2_000)))]);
  clearTimeout(timer);
  sub.unsubscribe();
  if (seen.size === 0) {
    throw new Error(`the NATS server does not map activeflow.v1.<id>.<verb> to shards; add this to its configuration (nats-server.conf has it):\n${shardMappingConfig(shardCount)}`);
  }
  const wrong = probes.find((id) => seen.has(id) && seen.get(id) !== shardOf(id, shardCount));
  if (wrong !== undefined || seen.size < probes.length) {
    throw new Error(
      `the NATS server maps activeflows to other shards than SHARD_COUNT=${shardCount} gives (its mapping uses another shard count than SHARD_COUNT=${shardCount}); use:\n${shardMappingConfig(shardCount)}`,
    );
  }
}
