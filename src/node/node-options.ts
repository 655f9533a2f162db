/**
 * What a node is started with (the CLI reads it from the environment, src/config.ts; tests give it
 * directly), and the one place its defaults are filled in: from the configuration's own defaults.
 */
import type { z } from 'zod';
import type { Limits } from '../../machines/index.js';
import type { HostClock } from '../clock.js';
import { NodeConfig } from '../config.js';
import type { Logger } from '../log.js';
import type { TlsFiles } from '../nats/connect.js';
import type { FairAdmissionOptions } from '../quota/fair-admission.js';
import type { Quotas } from '../quota/quotas.js';

export interface NodeOptions {
  servers: string[];
  nodeId: string;
  shardCount: number;
  replicas: number;
  passivateAfterMs: number;
  endedRetentionMs: number;
  eventRetentionMs: number;
  httpTimeoutMs: number;
  httpMaxResponseBytes: number;
  /**
   * Addresses and CIDR ranges the node may call on a customer's behalf although they are
   * loopback, private or link-local (EGRESS_ALLOW; `*`: any). Default: none (public only).
   */
  egressAllow?: readonly string[];
  serviceTimeoutMs: number;
  /** TTL of this node's membership lease. */
  leaseTtlMs?: number;
  /** Default per-customer quotas (QUOTA_*); each customer may be given others in af_quotas. */
  quotas?: Partial<Quotas>;
  /** Fair admission (ADMISSION_*): requests run at once, and requests one customer may queue. */
  admission?: FairAdmissionOptions;
  /** The idle watchdog's ceiling (MAX_IDLE_SECONDS, in ms; 0: none) and its sweep interval. */
  maxIdleMs?: number;
  watchdogIntervalMs?: number;
  /** How often the running counts are checked against the index (RUNNING_RECONCILE_MS). */
  runningReconcileMs?: number;
  /** How long a webhook event is retried before it is given up (WEBHOOK_GIVE_UP_MS). */
  webhookGiveUpMs?: number;
  /** Webhook events the main lane may hold unacknowledged, and retry attempts in flight at once (default 256). */
  webhookMaxPending?: number;
  /** The app user, when the servers require one. */
  credentials?: { user: string; pass: string };
  /** TLS to the servers (NATS_TLS_CA, and a client certificate for mutual TLS). */
  tls?: TlsFiles;
  /** A system-account user: disconnect events hint at dead nodes (see DisconnectHints). */
  systemCredentials?: { user: string; pass: string };
  limits?: Limits;
  clock?: HostClock;
  log: Logger;
}

/** NodeOptions with every default filled in, once, from the configuration's own defaults (src/config.ts). */
export type ResolvedNodeOptions = NodeOptions & Required<Pick<NodeOptions, 'leaseTtlMs' | 'maxIdleMs' | 'watchdogIntervalMs' | 'runningReconcileMs' | 'webhookGiveUpMs' | 'admission'>>;

const configDefault = <K extends keyof typeof NodeConfig.shape>(key: K): z.output<(typeof NodeConfig.shape)[K]> => NodeConfig.shape[key].parse(undefined) as z.output<(typeof NodeConfig.shape)[K]>;

export function resolveNodeOptions(o: NodeOptions): ResolvedNodeOptions {
  return {
    ...o,
    leaseTtlMs: o.leaseTtlMs ?? configDefault('LEASE_TTL_MS'),
    maxIdleMs: o.maxIdleMs ?? configDefault('MAX_IDLE_SECONDS') * 1000,
    watchdogIntervalMs: o.watchdogIntervalMs ?? configDefault('WATCHDOG_INTERVAL_MS'),
    runningReconcileMs: o.runningReconcileMs ?? configDefault('RUNNING_RECONCILE_MS'),
    webhookGiveUpMs: o.webhookGiveUpMs ?? configDefault('WEBHOOK_GIVE_UP_MS'),
    admission: o.admission ?? {
      concurrency: configDefault('ADMISSION_CONCURRENCY'),
      perCustomer: configDefault('ADMISSION_PER_CUSTOMER'),
      maxQueuedPerCustomer: configDefault('ADMISSION_QUEUE_PER_CUSTOMER'),
    },
  };
}
