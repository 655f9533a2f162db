/**
 * The operators' endpoints (`activeflow.admin.v1.*`: nodes, shards, drains, access keys, quotas,
 * customers) and the stream relays (`activeflow.relay.v1.*`), as a table the node registers with
 * the services framework. Every one goes through the request pipeline like any other request.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { parseRequest } from '../api/reply.js';
import { AdminRequests, RelayRequests } from '../api/schemas.js';
import { RELAY_ROLES, SUBJECTS } from '../api/subjects.js';
import type { HostClock } from '../clock.js';
import { ClusterAdmin } from '../cluster/cluster-admin.js';
import { AccessKeyRequests, AccessKeyStore } from '../gateway/access-keys.js';
import type { QuotaBook } from '../quota/quota-book.js';
import { QuotaRequests } from '../quota/quotas.js';
import type { RunningCount } from '../quota/running-count.js';
import type { Storage } from '../store/buckets.js';
import type { ResolvedNodeOptions } from './node-options.js';
import type { Handler } from './request-pipeline.js';
import { StreamRelay } from './stream-relay.js';

export interface Endpoint {
  name: string;
  subject: string;
  handler: Handler;
}

export interface AdminDeps {
  nc: NatsConnection;
  storage: Storage;
  options: ResolvedNodeOptions;
  clock: HostClock;
  running: RunningCount;
  quotas: QuotaBook;
}

export function adminEndpoints(d: AdminDeps): Endpoint[] {
  const endpoints: Endpoint[] = [];
  const admin = new ClusterAdmin(d.nc, d.storage.leases, d.storage.cluster, d.options.shardCount, d.options.shardLeases === true ? null : d.options.nodeId);
  endpoints.push({
    name: 'admin_nodes',
    subject: SUBJECTS.adminNodes,
    handler: async (m) => {
      parseRequest(m, AdminRequests.nodes);
      return { nodes: await admin.nodes() };
    },
  });
  endpoints.push({
    name: 'admin_shards',
    subject: SUBJECTS.adminShards,
    handler: async (m) => {
      parseRequest(m, AdminRequests.shards);
      return admin.shards();
    },
  });
  endpoints.push({
    name: 'admin_drain',
    subject: SUBJECTS.adminDrain,
    handler: async (m) => {
      const r = parseRequest(m, AdminRequests.drain);
      return admin.drain(r.node_id, r.force ?? false, r.until_stop ?? false);
    },
  });
  endpoints.push({ name: 'admin_undrain', subject: SUBJECTS.adminUndrain, handler: async (m) => admin.undrain(parseRequest(m, AdminRequests.undrain).node_id) });
  endpoints.push({
    name: 'admin_rebalance',
    subject: SUBJECTS.adminRebalance,
    handler: async (m) => {
      parseRequest(m, AdminRequests.rebalance);
      return admin.rebalance();
    },
  });
  const keys = new AccessKeyStore(d.storage.accessKeys);
  endpoints.push({
    name: 'admin_accesskeys_create',
    subject: SUBJECTS.adminAccessKeys('create'),
    handler: async (m) => {
      const r = parseRequest(m, AccessKeyRequests.create);
      return keys.create(r.customer_id ?? null, r.name ?? '', d.clock.now());
    },
  });
  endpoints.push({
    name: 'admin_accesskeys_list',
    subject: SUBJECTS.adminAccessKeys('list'),
    handler: async (m) => ({ result: await keys.list(parseRequest(m, AccessKeyRequests.list).customer_id) }),
  });
  endpoints.push({ name: 'admin_accesskeys_delete', subject: SUBJECTS.adminAccessKeys('delete'), handler: async (m) => keys.delete(parseRequest(m, AccessKeyRequests.delete).id) });
  const quotaReply = async (q: Awaited<ReturnType<QuotaBook['get']>>) => ({ ...q, usage: { running_activeflows: await d.running.of(q.customer_id) } });
  endpoints.push({
    name: 'admin_customers',
    subject: SUBJECTS.adminCustomers,
    handler: async (m) => {
      const { limit = 100 } = parseRequest(m, AdminRequests.customers);
      const all = await d.running.all();
      return { customers: all.slice(0, limit), customer_count: all.length, running_activeflows: all.reduce((n, c) => n + c.running_activeflows, 0) };
    },
  });
  endpoints.push({ name: 'admin_quotas_get', subject: SUBJECTS.adminQuotas('get'), handler: async (m) => quotaReply(await d.quotas.get(parseRequest(m, QuotaRequests.get).customer_id)) });
  endpoints.push({
    name: 'admin_quotas_set',
    subject: SUBJECTS.adminQuotas('set'),
    handler: async (m) => {
      const r = parseRequest(m, QuotaRequests.set);
      return quotaReply(await d.quotas.set(r.customer_id, r.quotas as Record<string, number | null>));
    },
  });
  endpoints.push({ name: 'admin_quotas_reset', subject: SUBJECTS.adminQuotas('reset'), handler: async (m) => quotaReply(await d.quotas.reset(parseRequest(m, QuotaRequests.reset).customer_id)) });
  const relay = new StreamRelay(d.storage.jsm);
  for (const role of RELAY_ROLES) {
    endpoints.push({ name: `relay_${role}_open`, subject: SUBJECTS.relay(role, 'open'), handler: (m) => relay.open(role, parseRequest(m, RelayRequests.open)) });
    endpoints.push({ name: `relay_${role}_close`, subject: SUBJECTS.relay(role, 'close'), handler: (m) => relay.close(role, parseRequest(m, RelayRequests.close).token) });
  }
  return endpoints;
}
