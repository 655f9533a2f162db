/**
 * The operators' endpoints (`activeflow.admin.v1.*`: nodes, shards, drains, access keys, quotas,
 * customers) and the stream relays (`activeflow.relay.v1.*`), as a table the node registers with
 * the services framework. Every one goes through the request pipeline like any other request.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { parseRequest } from '../api/reply.js';
import { AdminRequests, RelayRequests } from '../api/schemas.js';
import { RELAY_ROLES, SUBJECTS } from '../api/subjects.js';
import type { HostClock } from '../clock.js';
import { ClusterAdmin } from '../cluster/cluster-admin.js';
import { AccessKeyRequests, AccessKeyStore } from '../gateway/access-keys.js';
import type { QuotaBook } from '../quota/quota-book.js';
import { QuotaRequests } from '../quota/quotas.js';
import type { RunningCount } from '../quota/running-count.js';
import { ActiveflowError } from '../errors.js';
import { replayJournal } from '../replay/replay-journal.js';
import type { Storage } from '../store/buckets.js';
import { Journal } from '../store/journal.js';
import { SnapshotStore } from '../store/snapshot-store.js';
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

/** An endpoint whose body `schema` checks before `run` sees it: the one place admin bodies are parsed. */
const checked = <S extends z.ZodType>(name: string, subject: string, schema: S, run: (body: z.infer<S>) => Promise<unknown>): Endpoint => ({
  name,
  subject,
  handler: (m) => run(parseRequest(m, schema)),
});

export function adminEndpoints(d: AdminDeps): Endpoint[] {
  const admin = new ClusterAdmin(d.nc, d.storage.jsm, d.storage.leases, d.storage.cluster, d.options.shardCount);
  const keys = new AccessKeyStore(d.storage.accessKeys);
  const relay = new StreamRelay(d.storage.jsm);
  const quotaReply = async (q: Awaited<ReturnType<QuotaBook['get']>>) => ({ ...q, usage: { running_activeflows: await d.running.of(q.customer_id) } });
  return [
    checked('admin_nodes', SUBJECTS.adminNodes, AdminRequests.nodes, async () => ({ nodes: await admin.nodes() })),
    checked('admin_shards', SUBJECTS.adminShards, AdminRequests.shards, () => admin.shards()),
    checked('admin_drain', SUBJECTS.adminDrain, AdminRequests.drain, (r) => admin.drain(r.node_id, r.force ?? false, r.until_stop ?? false)),
    checked('admin_undrain', SUBJECTS.adminUndrain, AdminRequests.undrain, (r) => admin.undrain(r.node_id)),
    checked('admin_rebalance', SUBJECTS.adminRebalance, AdminRequests.rebalance, () => admin.rebalance()),
    checked('admin_accesskeys_create', SUBJECTS.adminAccessKeys('create'), AccessKeyRequests.create, (r) => keys.create(r.customer_id ?? null, r.name ?? '', d.clock.now())),
    checked('admin_accesskeys_list', SUBJECTS.adminAccessKeys('list'), AccessKeyRequests.list, async (r) => ({ result: await keys.list(r.customer_id) })),
    checked('admin_accesskeys_delete', SUBJECTS.adminAccessKeys('delete'), AccessKeyRequests.delete, (r) => keys.delete(r.id)),
    checked('admin_customers', SUBJECTS.adminCustomers, AdminRequests.customers, async ({ limit = 100 }) => {
      const all = await d.running.all();
      return { customers: all.slice(0, limit), customer_count: all.length, running_activeflows: all.reduce((n, c) => n + c.running_activeflows, 0) };
    }),
    checked('admin_replay', SUBJECTS.adminReplay, AdminRequests.replay, async ({ activeflow_id: id }) => {
      // any node answers: it only reads (the checkpoint, for the customer, then the journal)
      const stored = await new SnapshotStore(d.storage.running, d.storage.ended, d.options.shardCount).load(id);
      if (stored === null) throw new ActiveflowError('not_found', `activeflow ${id} not found`);
      const journal = await new Journal(d.storage.js, d.storage.jsm).all(stored.state.activeflow.customer_id, id);
      return replayJournal(
        id,
        journal.flatMap(({ message }) => (message.kind === 'entry' ? [message.entry] : [])),
      );
    }),
    checked('admin_quotas_get', SUBJECTS.adminQuotas('get'), QuotaRequests.get, async (r) => quotaReply(await d.quotas.get(r.customer_id))),
    checked('admin_quotas_set', SUBJECTS.adminQuotas('set'), QuotaRequests.set, async (r) => quotaReply(await d.quotas.set(r.customer_id, r.quotas as Record<string, number | null>))),
    checked('admin_quotas_reset', SUBJECTS.adminQuotas('reset'), QuotaRequests.reset, async (r) => quotaReply(await d.quotas.reset(r.customer_id))),
    ...RELAY_ROLES.flatMap((role) => [
      checked(`relay_${role}_open`, SUBJECTS.relay(role, 'open'), RelayRequests.open, (r) => relay.open(role, r)),
      checked(`relay_${role}_close`, SUBJECTS.relay(role, 'close'), RelayRequests.close, (r) => relay.close(role, r.token)),
    ]),
  ];
}
