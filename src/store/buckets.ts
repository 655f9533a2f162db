/**
 * The node's storage (docs/architecture.md, design 3): KV buckets and the event stream, created at start-up
 * (creating an R3 bucket takes ~0.4 s, never per request). KV handles are reopened with `open`,
 * because a handle from `create` reads through direct gets that a lagging replica may answer.
 */
import { jetstream, jetstreamManager, RetentionPolicy, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { type Bucket, Kvm, type KV } from '@nats-io/kv';
import type { NatsConnection } from '@nats-io/transport-node';

export const BUCKETS = {
  cluster: 'af_cluster',
  flows: 'af_flows',
  running: 'af_running',
  ended: 'af_ended',
  index: 'af_index',
  history: 'af_history',
  leases: 'af_leases',
  accessKeys: 'af_accesskeys',
  quotas: 'af_quotas',
} as const;
export const EVENTS_STREAM = 'ACTIVEFLOW_EVENTS';
/** The nodes' durable consumer of EVENTS_STREAM (webhooks): no other role may touch it (roles.ts). */
export const WEBHOOK_CONSUMER = 'af_webhooks';
/** Webhook events of activeflows whose endpoint failed, waiting for their retries (a work queue). */
export const WEBHOOK_RETRY_STREAM = 'WEBHOOK_RETRY';
export const webhookRetrySubject = (activeflowId: string) => `activeflow.webhooks.retry.${activeflowId}`;

export interface StorageOptions {
  replicas: number;
  /** How long ended activeflows are kept in af_ended. */
  endedRetentionMs: number;
  /** How long events are kept in ACTIVEFLOW_EVENTS. */
  eventRetentionMs: number;
  /** The leases' TTL: af_leases's max age (nats-server 2.9 has no per-key TTL). */
  leaseTtlMs: number;
}

export interface Storage {
  js: JetStreamClient;
  jsm: JetStreamManager;
  cluster: KV;
  flows: KV;
  running: KV;
  ended: KV;
  index: KV;
  history: KV;
  leases: KV;
  /** The REST gateway's access keys (hashes only). */
  accessKeys: KV;
  /** Per-customer quota overrides and running counts (src/quota). */
  quotas: KV;
}

async function bucket(kvm: Kvm, name: string, opts: Record<string, unknown>): Promise<KV> {
  await kvm.create(name, opts);
  return kvm.open(name);
}

/**
 * Lets af_running take messages with a TTL (nats-server 2.11+; once on, it cannot be turned off):
 * an ended activeflow's running key is removed by one purge whose marker expires
 * (SnapshotStore.deleteRunning). Buckets made before are updated here. A server that cannot (older,
 * or a cluster mid-upgrade) keeps the bucket as it is, and the store removes keys in two steps.
 */
async function allowMessageTtl(jsm: JetStreamManager, kv: KV): Promise<void> {
  const name = (kv as Bucket).stream;
  const info = await jsm.streams.info(name);
  if (info.config.allow_msg_ttl === true) return;
  await jsm.streams.update(name, { ...info.config, allow_msg_ttl: true }).catch(() => undefined);
}

export async function openStorage(nc: NatsConnection, o: StorageOptions): Promise<Storage> {
  const js = jetstream(nc, { timeout: 5_000 });
  const jsm = await jetstreamManager(nc, { timeout: 5_000 });
  const kvm = new Kvm(js);
  const common = { replicas: o.replicas, history: 1 };
  const [cluster, flows, running, ended, index, history, leases, accessKeys, quotas] = await Promise.all([
    bucket(kvm, BUCKETS.cluster, { ...common }),
    bucket(kvm, BUCKETS.flows, { ...common, history: 5 }),
    bucket(kvm, BUCKETS.running, { ...common }),
    bucket(kvm, BUCKETS.ended, { ...common, ttl: o.endedRetentionMs }),
    bucket(kvm, BUCKETS.index, { ...common, ttl: o.endedRetentionMs }),
    bucket(kvm, BUCKETS.history, { ...common }),
    bucket(kvm, BUCKETS.leases, { ...common, ttl: o.leaseTtlMs }),
    bucket(kvm, BUCKETS.accessKeys, { ...common }),
    bucket(kvm, BUCKETS.quotas, { ...common }),
  ]);
  await allowMessageTtl(jsm, running);
  const stream = {
    name: EVENTS_STREAM,
    subjects: ['activeflow.events.>'],
    num_replicas: o.replicas,
    max_age: o.eventRetentionMs * 1_000_000, // nanoseconds
    duplicate_window: 120 * 1_000_000_000,
    // A load reads the entries after a checkpoint in one batched direct get (src/store/journal.ts).
    allow_direct: true,
  };
  try {
    await jsm.streams.info(EVENTS_STREAM);
    await jsm.streams.update(EVENTS_STREAM, stream);
  } catch {
    await jsm.streams.add(stream);
  }
  const retry = {
    name: WEBHOOK_RETRY_STREAM,
    subjects: [webhookRetrySubject('*')],
    retention: RetentionPolicy.Workqueue,
    num_replicas: o.replicas,
    max_age: o.eventRetentionMs * 1_000_000,
    duplicate_window: 120 * 1_000_000_000, // a republish repeated after a crash is dropped
  };
  try {
    await jsm.streams.info(WEBHOOK_RETRY_STREAM);
  } catch {
    await jsm.streams.add(retry);
  }
  return { js, jsm, cluster, flows, running, ended, index, history, leases, accessKeys, quotas };
}
