/** A node's defaults come from one place: the configuration's own defaults (src/config.ts). */
import { describe, expect, it } from 'vitest';
import { readNodeConfig } from '../../src/config.js';
import { silentLogger } from '../../src/log.js';
import { resolveNodeOptions } from '../../src/node/activeflow-node.js';

const base = {
  servers: ['nats://127.0.0.1:1'],
  nodeId: 'n',
  shardCount: 256,
  replicas: 1,
  passivateAfterMs: 1,
  endedRetentionMs: 1,
  eventRetentionMs: 1,
  httpTimeoutMs: 1,
  httpMaxResponseBytes: 1,
  serviceTimeoutMs: 1,
  log: silentLogger,
};

describe('node options', () => {
  it('fills in what is not given from the configuration defaults, and keeps what is', () => {
    const config = readNodeConfig({});
    const resolved = resolveNodeOptions(base);
    expect(resolved.leaseTtlMs).toBe(config.LEASE_TTL_MS);
    expect(resolved.maxIdleMs).toBe(config.MAX_IDLE_SECONDS * 1000);
    expect(resolved.watchdogIntervalMs).toBe(config.WATCHDOG_INTERVAL_MS);
    expect(resolved.webhookGiveUpMs).toBe(config.WEBHOOK_GIVE_UP_MS);
    expect(resolved.admission).toEqual({ concurrency: config.ADMISSION_CONCURRENCY, perCustomer: config.ADMISSION_PER_CUSTOMER, maxQueuedPerCustomer: config.ADMISSION_QUEUE_PER_CUSTOMER });
    expect(resolveNodeOptions({ ...base, leaseTtlMs: 750, maxIdleMs: 0 })).toMatchObject({ leaseTtlMs: 750, maxIdleMs: 0 });
  });
});
