/**
 * A node: hosts the actors of the shards it owns and serves the control API over NATS
 * request-reply, registered with the services framework ($SRV.PING/INFO/STATS).
 *
 *   starting ──▶ serving ──stop()──▶ draining (no new requests; in-flight ones finish) ──▶ stopped
 *
 * Everything is keyed and subscribed by shard (`activeflow.shard.<n>.*.*`). This node owns every
 * shard; the cluster issue hands shards between nodes with leases.
 */
import { randomUUID } from 'node:crypto';
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { ActorRegistry, EgressPolicy, type ActorReply } from '../../actors/index.js';
import { DEFAULT_LIMITS, Uuid, type Limits, type StreamEvent } from '../../machines/index.js';
import { ActiveflowClient } from '../api/client.js';
import { parseRequest, repliesToInbox, respondError, respondOk } from '../api/reply.js';
import { ActiveflowRequests, AdminRequests, FlowCreateRequest, FlowListRequest, FlowRequests, ListActiveflowsRequest, RelayRequests } from '../api/schemas.js';
import { ACTIVEFLOW_VERBS, FLOW_VERBS, RELAY_ROLES, SUBJECTS, type ActiveflowVerb, type FlowVerb } from '../api/subjects.js';
import type { z } from 'zod';
import { systemClock, type HostClock } from '../clock.js';
import { NodeConfig } from '../config.js';
import { ActiveflowError, ensureError } from '../errors.js';
import type { Logger } from '../log.js';
import { checkServerVersion, connectNats, watchConnection, type ConnectionState, type TlsFiles } from '../nats/connect.js';
import { AccessKeyRequests, AccessKeyStore } from '../gateway/access-keys.js';
import { shardMappingConfig, shardOf } from '../nats/shard-mapping.js';
import { ActiveflowIndex } from '../store/activeflow-index.js';
import { openStorage, type Storage } from '../store/buckets.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import { EventLog } from '../store/event-log.js';
import { FlowLimitExceeded, FlowStore } from '../store/flow-store.js';
import { HistoryChunks } from '../store/history-chunks.js';
import { StackLists } from '../store/stack-lists.js';
import { SnapshotStore } from '../store/snapshot-store.js';
import { ClusterAdmin } from '../cluster/cluster-admin.js';
import { NodeMembership } from '../cluster/membership-registry.js';
import { DisconnectHints, nodeConnectionName } from '../cluster/disconnect-hints.js';
import { DrainMarks } from '../cluster/drain-marks.js';
import { ShardLease } from '../cluster/shard-lease.js';
import { ShardOwnership } from '../cluster/shard-ownership.js';
import { StandaloneLease } from '../cluster/standalone-lease.js';
import { NatsEffectRunner } from './effect-runner.js';
import { WebhookDispatcher, type AckFloorStore } from './webhook-dispatcher.js';
import { WebhookLeadership } from './webhook-leadership.js';
import { DeliveryMemory } from './delivery-memory.js';
import { IdleWatchdog } from './idle-watchdog.js';
import { StreamRelay } from './stream-relay.js';
import { retry } from '../retry.js';
import { NodeMetrics } from '../metrics/node-metrics.js';
import { CreationRate } from '../quota/creation-rate.js';
import { CustomerQuotas } from '../quota/customer-quotas.js';
import { FairAdmission, type FairAdmissionOptions } from '../quota/fair-admission.js';
import { QuotaBook } from '../quota/quota-book.js';
import { DEFAULT_QUOTAS, QuotaRequests, Quotas } from '../quota/quotas.js';
import { RunningCount } from '../quota/running-count.js';
import { keysNow } from '../store/kv-keys.js';

/** af_cluster key of the webhook consumer's ack floor. */
const WEBHOOK_FLOOR_KEY = 'webhooks.ack_floor';

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
  /** How long a webhook event is retried before it is given up (WEBHOOK_GIVE_UP_MS). */
  webhookGiveUpMs?: number;
  /** Webhook events the main lane may hold unacknowledged, and retry attempts in flight at once (default 256). */
  webhookMaxPending?: number;
  /** Split the shards with the other nodes by leases, instead of serving them all. */
  shardLeases?: boolean;
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
export type ResolvedNodeOptions = NodeOptions & Required<Pick<NodeOptions, 'leaseTtlMs' | 'maxIdleMs' | 'watchdogIntervalMs' | 'webhookGiveUpMs' | 'admission'>>;

const configDefault = <K extends keyof typeof NodeConfig.shape>(key: K): z.output<(typeof NodeConfig.shape)[K]> => NodeConfig.shape[key].parse(undefined) as z.output<(typeof NodeConfig.shape)[K]>;

export function resolveNodeOptions(o: NodeOptions): ResolvedNodeOptions {
  return {
    ...o,
    leaseTtlMs: o.leaseTtlMs ?? configDefault('LEASE_TTL_MS'),
    maxIdleMs: o.maxIdleMs ?? configDefault('MAX_IDLE_SECONDS') * 1000,
    watchdogIntervalMs: o.watchdogIntervalMs ?? configDefault('WATCHDOG_INTERVAL_MS'),
    webhookGiveUpMs: o.webhookGiveUpMs ?? configDefault('WEBHOOK_GIVE_UP_MS'),
    admission: o.admission ?? {
      concurrency: configDefault('ADMISSION_CONCURRENCY'),
      perCustomer: configDefault('ADMISSION_PER_CUSTOMER'),
      maxQueuedPerCustomer: configDefault('ADMISSION_QUEUE_PER_CUSTOMER'),
    },
  };
}

export { VERSION } from '../version.js';
import { VERSION } from '../version.js';

export class ActiveflowNode {
  private service: Service | null = null;
  private passivationTimer: NodeJS.Timeout | null = null;
  private readonly inFlight = new Set<Promise<unknown>>();
  private stopping = false;
  private webhooks: WebhookLeadership | null = null;
  private watchdog: IdleWatchdog | null = null;
  private membership: NodeMembership | null = null;
  private ownership: ShardOwnership | null = null;
  private hints: DisconnectHints | null = null;
  private standalone: StandaloneLease | null = null;
  private readonly forwarder: ActiveflowClient;
  private readonly admission: FairAdmission;
  /** Every shard: what this node serves without shard leases. */
  private readonly allShards: ReadonlySet<number>;

  private constructor(
    readonly options: ResolvedNodeOptions,
    readonly nc: NatsConnection,
    private readonly storage: Storage,
    readonly registry: ActorRegistry,
    private readonly snapshots: SnapshotStore,
    private readonly events: EventLog,
    private readonly index: ActiveflowIndex,
    private readonly flows: FlowStore,
    private readonly quotas: QuotaBook,
    /** The running count per customer: taken and given back by creations and ends, read by admins. */
    private readonly running: RunningCount,
    private readonly log: Logger,
    private readonly clock: HostClock,
    /** What `/metrics` shows (`activeflow node --metrics <port>`). */
    readonly metrics: NodeMetrics,
    /** Where HTTP on a customer's behalf may go (fetch, webhook_send, webhooks). */
    private readonly egress: EgressPolicy,
    private readonly connection: ConnectionState,
  ) {
    this.allShards = new Set(Array.from({ length: options.shardCount }, (_, i) => i));
    this.forwarder = new ActiveflowClient(nc);
    this.admission = new FairAdmission(options.admission);
  }

  static async start(given: NodeOptions): Promise<ActiveflowNode> {
    const options = resolveNodeOptions(given);
    const log = options.log.child({ node_id: options.nodeId });
    const clock = options.clock ?? systemClock;
    const nc = await connectNats(options.servers, nodeConnectionName(options.nodeId), options.credentials, options.tls);
    try {
      checkServerVersion(nc, log);
      const connection = watchConnection(nc, log);
      const storage = await withJetStreamRetry(log, () =>
        openStorage(nc, {
          replicas: options.replicas,
          endedRetentionMs: options.endedRetentionMs,
          eventRetentionMs: options.eventRetentionMs,
          leaseTtlMs: options.leaseTtlMs,
        }),
      );
      await checkClusterConfig(storage, options.shardCount);
      await verifyShardMapping(nc, options.shardCount);
      const snapshots = new SnapshotStore(storage.running, storage.ended, options.shardCount, {
        kv: storage.history,
        history: new HistoryChunks(storage.history),
        stacks: new StackLists(storage.history),
      });
      const events = new EventLog(storage.js, storage.jsm);
      const index = new ActiveflowIndex(storage.index);
      const quotas = new QuotaBook(storage.quotas, Quotas.parse({ ...DEFAULT_QUOTAS, ...options.quotas }), log);
      await quotas.start();
      const running = new RunningCount(storage.quotas);
      const flows = new FlowStore(storage.flows);
      const client = new ActiveflowClient(nc);
      const egress = new EgressPolicy(options.egressAllow ?? []);
      const effects = new NatsEffectRunner(nc, client, flows, { timeoutMs: options.httpTimeoutMs, maxResponseBytes: options.httpMaxResponseBytes, egress }, options.serviceTimeoutMs, log);
      let nodeRef: ActiveflowNode | null = null;
      const metrics = new NodeMetrics({
        residentActors: () => nodeRef?.registry.residentCount ?? 0,
        ownedShards: () => nodeRef?.servedShards ?? 0,
        shardMoves: () => nodeRef?.shardMoves ?? 0,
        leaseRenewalLag: () => nodeRef?.ownership?.renewalLagSeconds ?? 0,
        inFlight: () => nodeRef?.inFlightCount ?? 0,
        admissionQueued: () => nodeRef?.admissionQueued ?? 0,
      });
      const registry = new ActorRegistry(
        {
          logFields: (id) => ({ shard: shardOf(id, options.shardCount) }),
          metrics: {
            kvWrite: (seconds) => metrics.kvWriteSeconds.observe(seconds),
            revisionConflict: () => metrics.revisionConflicts.inc(),
            moved: (types) => {
              for (const t of types) metrics.moves.inc({ action_type: t });
            },
          },
          store: snapshots,
          events,
          index,
          effects,
          clock,
          log,
          limits: options.limits ?? DEFAULT_LIMITS,
          admission: new CustomerQuotas(quotas, running, new CreationRate(() => (nodeRef?.servedShards ?? options.shardCount) / options.shardCount), options.limits ?? DEFAULT_LIMITS),
          mustFence: (id) => nodeRef?.ownership?.mustFence(id) ?? false,
          findFlow: async (flowId, customerId) => (await flows.get(flowId, customerId))?.flow ?? null,
          findVariables: async (id) => (await snapshots.load(id))?.state.variables ?? null,
        },
        options.passivateAfterMs,
      );
      const node = new ActiveflowNode(options, nc, storage, registry, snapshots, events, index, flows, quotas, running, log, clock, metrics, egress, connection);
      nodeRef = node;
      await node.serve();
      return node;
    } catch (e) {
      await nc.close().catch(() => undefined);
      throw e;
    }
  }

  private async serve(): Promise<void> {
    const svc = await new Svcm(this.nc).add({
      name: 'activeflow',
      version: VERSION,
      description: 'activeflow runtime: control API for activeflows and flows',
      metadata: { node_id: this.options.nodeId, shard_count: String(this.options.shardCount) },
    });
    this.service = svc;
    const handle = (fn: (msg: ServiceMsg) => Promise<unknown>) => (err: Error | null, msg: ServiceMsg) => {
      if (err) {
        this.log.error({ event: 'endpoint_failed', err });
        return;
      }
      this.track(this.admitted(msg, () => this.answer(msg, fn)));
    };
    svc.addEndpoint('activeflow_create', { subject: SUBJECTS.activeflowCreate, handler: handle((m) => this.createRouted(m)) });
    svc.addEndpoint('activeflow_list', { subject: SUBJECTS.activeflowList, handler: handle((m) => this.list(m)) });
    svc.addEndpoint('flow_create', { subject: SUBJECTS.flowCreate, handler: handle((m) => this.flowCreate(m)) });
    svc.addEndpoint('flow_list', { subject: SUBJECTS.flowList, handler: handle((m) => this.flowList(m)) });
    svc.addEndpoint('flow_verb', { subject: 'flow.v1.*.*', handler: handle((m) => this.flowVerb(m)) });
    const admin = new ClusterAdmin(this.nc, this.storage.leases, this.storage.cluster, this.options.shardCount, this.options.shardLeases === true ? null : this.options.nodeId);
    svc.addEndpoint('admin_nodes', {
      subject: SUBJECTS.adminNodes,
      handler: handle(async (m) => {
        parseRequest(m, AdminRequests.nodes);
        return { nodes: await admin.nodes() };
      }),
    });
    svc.addEndpoint('admin_shards', {
      subject: SUBJECTS.adminShards,
      handler: handle(async (m) => {
        parseRequest(m, AdminRequests.shards);
        return admin.shards();
      }),
    });
    svc.addEndpoint('admin_drain', {
      subject: SUBJECTS.adminDrain,
      handler: handle(async (m) => {
        const r = parseRequest(m, AdminRequests.drain);
        return admin.drain(r.node_id, r.force ?? false, r.until_stop ?? false);
      }),
    });
    svc.addEndpoint('admin_undrain', { subject: SUBJECTS.adminUndrain, handler: handle(async (m) => admin.undrain(parseRequest(m, AdminRequests.undrain).node_id)) });
    svc.addEndpoint('admin_rebalance', {
      subject: SUBJECTS.adminRebalance,
      handler: handle(async (m) => {
        parseRequest(m, AdminRequests.rebalance);
        return admin.rebalance();
      }),
    });
    const keys = new AccessKeyStore(this.storage.accessKeys);
    svc.addEndpoint('admin_accesskeys_create', {
      subject: SUBJECTS.adminAccessKeys('create'),
      handler: handle(async (m) => {
        const r = parseRequest(m, AccessKeyRequests.create);
        return keys.create(r.customer_id ?? null, r.name ?? '', this.clock.now());
      }),
    });
    svc.addEndpoint('admin_accesskeys_list', {
      subject: SUBJECTS.adminAccessKeys('list'),
      handler: handle(async (m) => ({ result: await keys.list(parseRequest(m, AccessKeyRequests.list).customer_id) })),
    });
    svc.addEndpoint('admin_accesskeys_delete', { subject: SUBJECTS.adminAccessKeys('delete'), handler: handle(async (m) => keys.delete(parseRequest(m, AccessKeyRequests.delete).id)) });
    const quotaReply = async (q: Awaited<ReturnType<QuotaBook['get']>>) => ({ ...q, usage: { running_activeflows: await this.running.of(q.customer_id) } });
    svc.addEndpoint('admin_customers', {
      subject: SUBJECTS.adminCustomers,
      handler: handle(async (m) => {
        const { limit = 100 } = parseRequest(m, AdminRequests.customers);
        const all = await this.running.all();
        return { customers: all.slice(0, limit), customer_count: all.length, running_activeflows: all.reduce((n, c) => n + c.running_activeflows, 0) };
      }),
    });
    svc.addEndpoint('admin_quotas_get', { subject: SUBJECTS.adminQuotas('get'), handler: handle(async (m) => quotaReply(await this.quotas.get(parseRequest(m, QuotaRequests.get).customer_id))) });
    svc.addEndpoint('admin_quotas_set', {
      subject: SUBJECTS.adminQuotas('set'),
      handler: handle(async (m) => {
        const r = parseRequest(m, QuotaRequests.set);
        return quotaReply(await this.quotas.set(r.customer_id, r.quotas as Record<string, number | null>));
      }),
    });
    svc.addEndpoint('admin_quotas_reset', {
      subject: SUBJECTS.adminQuotas('reset'),
      handler: handle(async (m) => quotaReply(await this.quotas.reset(parseRequest(m, QuotaRequests.reset).customer_id))),
    });
    const relay = new StreamRelay(this.storage.jsm);
    for (const role of RELAY_ROLES) {
      svc.addEndpoint(`relay_${role}_open`, { subject: SUBJECTS.relay(role, 'open'), handler: handle((m) => relay.open(role, parseRequest(m, RelayRequests.open))) });
      svc.addEndpoint(`relay_${role}_close`, { subject: SUBJECTS.relay(role, 'close'), handler: handle((m) => relay.close(role, parseRequest(m, RelayRequests.close).token)) });
    }
    svc.addEndpoint('admin_node_status', {
      subject: SUBJECTS.adminNodeStatus(this.options.nodeId),
      handler: handle(async (m) => {
        parseRequest(m, AdminRequests.status);
        return this.status();
      }),
    });
    this.membership = new NodeMembership(this.storage.leases, this.options.nodeId, this.options.leaseTtlMs, this.log);
    if (this.options.shardLeases === true) {
      // Shards come and go with leases: plain subscriptions, one per owned shard.
      const ownership = new ShardOwnership({
        nc: this.nc,
        leases: this.storage.leases,
        cluster: this.storage.cluster,
        snapshots: this.snapshots,
        registry: this.registry,
        membership: this.membership,
        nodeId: this.options.nodeId,
        shardCount: this.options.shardCount,
        leaseTtlMs: this.options.leaseTtlMs,
        log: this.log,
        serve: (msg) => this.track(this.admitted(msg as ServiceMsg, () => this.answer(msg as ServiceMsg, (m) => this.activeflowVerb(m), true))),
      });
      this.ownership = ownership;
      this.nc.subscribe(SUBJECTS.clusterReconcile, { callback: () => ownership.trigger() });
      const marks = new DrainMarks(this.storage.cluster);
      if (await marks.clearUntilStop(this.options.nodeId)) this.log.info({ event: 'drain_cleared' }, "removed this node's drain mark, which lasted until it stopped");
      const mark = await marks.get(this.options.nodeId);
      if (mark !== null)
        this.log.warn(
          { event: 'node_drained', drained_at: mark.drained_at },
          `this node is drained (since ${mark.drained_at}): it serves no shard until \`activeflow undrain ${this.options.nodeId}\``,
        );
      if (this.options.systemCredentials !== undefined) {
        try {
          this.hints = await DisconnectHints.start(this.options.servers, this.options.systemCredentials, this.options.nodeId, (id) => ownership.suspect(id), this.log, this.options.tls);
        } catch (e) {
          throw new Error(
            `cannot listen to disconnect events as NATS_SYSTEM_USER "${this.options.systemCredentials.user}": ${(e as Error).message}; check the user and password of the system account, or unset NATS_SYSTEM_USER`,
            { cause: e },
          );
        }
      }
      await refuseBesideStandalone(this.storage, this.options.nodeId);
      await ownership.start(); // knows the members before they see it join
      await this.membership.join();
      // Again, now that its membership key is written: a standalone node starting this very moment
      // either sees it or has already written its own lease (StandaloneLease).
      await refuseBesideStandalone(this.storage, this.options.nodeId).catch(async (e: unknown) => {
        await this.membership?.leave();
        await ownership.stop();
        throw e;
      });
    } else {
      const standalone = await StandaloneLease.take(this.storage.leases, this.options.nodeId, this.options.leaseTtlMs, this.log);
      this.standalone = standalone;
      await refuseBesideLeasedNodes(this.storage, this.options.nodeId).catch(async (e: unknown) => {
        await standalone.release();
        throw e;
      });
      void this.membership.join();
      // Shard endpoints: no queue group, because only the owner of a shard subscribes to it.
      const shards = svc.addGroup('activeflow.shard', '');
      for (const shard of this.allShards) {
        shards.addEndpoint(`shard_${shard}`, { subject: `${shard}.*.*`, handler: handle((m) => this.activeflowVerb(m)), metadata: { shard: String(shard) } });
      }
    }
    this.passivationTimer = setInterval(
      () => {
        const n = this.registry.passivateIdle(Date.now());
        if (n > 0) this.metrics.passivated.inc(n);
        if (n > 0) this.log.debug({ event: 'actors_passivated', count: n });
      },
      Math.max(500, Math.floor(this.options.passivateAfterMs / 2)),
    );
    this.passivationTimer.unref();
    this.watchdog = new IdleWatchdog({
      snapshots: this.snapshots,
      flows: this.flows,
      registry: this.registry,
      ownedShards: () => this.ownership?.ownedShards ?? [...this.allShards],
      owns: (shard) => this.ownership?.owns(shard) ?? true,
      ceilingMs: this.options.maxIdleMs,
      intervalMs: this.options.watchdogIntervalMs,
      log: this.log,
      onTimeout: () => this.metrics.idleTimeouts.inc(),
    });
    this.watchdog.start();
    const webhookMemory = new DeliveryMemory(); // across this node's terms as deliverer
    this.webhooks = new WebhookLeadership(
      this.storage.leases,
      this.options.nodeId,
      this.options.leaseTtlMs,
      () =>
        new WebhookDispatcher(
          this.storage.js,
          this.storage.jsm,
          {
            memory: webhookMemory,
            egress: this.egress,
            floor: this.webhookFloor,
            timeoutMs: this.options.httpTimeoutMs,
            giveUpAfterMs: this.options.webhookGiveUpMs,
            ...(this.options.webhookMaxPending === undefined ? {} : { concurrency: this.options.webhookMaxPending }),
            onDelivered: (lag) => this.metrics.webhookLagSeconds.observe(lag),
            onGivenUp: () => this.metrics.webhooksGivenUp.inc(),
          },
          this.log,
        ),
      this.log,
    );
    await this.webhooks.start();
    const serving = this.ownership === null ? `all ${this.allShards.size} shards` : 'the shards its leases give it';
    this.log.info({ event: 'node_serving', shard_leases: this.ownership !== null }, `node ${this.options.nodeId} serving ${serving}`);
    if (this.ownership === null) this.track(this.recover()); // with leases, each takeover recovers its shard
  }

  /** The webhook consumer's ack floor, kept in af_cluster so that a lost consumer is made again from it. */
  private readonly webhookFloor: AckFloorStore = {
    get: async () => {
      const e = await this.storage.cluster.get(WEBHOOK_FLOOR_KEY);
      return e === null || e.operation !== 'PUT' ? null : Number(e.string());
    },
    set: async (seq) => {
      await this.storage.cluster.put(WEBHOOK_FLOOR_KEY, String(seq));
    },
  };

  /** Loads every running activeflow of the owned shards, republishing events a crash left out. */
  private async recover(): Promise<void> {
    const ids = await this.snapshots.runningIds(this.allShards);
    if (ids.length === 0) return;
    this.log.info({ event: 'recovery_started', activeflows: ids.length });
    let next = 0;
    const worker = async () => {
      while (next < ids.length && !this.stopping) {
        const id = ids[next++]!;
        await this.registry
          .get(id)
          .warm()
          .catch((e: unknown) => this.log.error({ event: 'recovery_failed', activeflow_id: id, err: e }));
      }
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    this.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    this.log.info({ event: 'recovery_finished', activeflows: ids.length });
  }

  /**
   * Runs a request through fair admission (src/quota/fair-admission.ts). Operators' requests skip
   * it, so a flooded node still answers `activeflow nodes` and a drain; so do relays (a gateway's
   * readers are nobody's customer); so does the routing step of
   * `activeflow.v1.create`, which only waits for the shard owner: holding a place while it waits
   * for a place (maybe on this very node) could leave every place waiting.
   */
  private admitted(msg: ServiceMsg, run: () => Promise<void>): Promise<void> {
    if (!repliesToInbox(msg)) {
      // Not run, not answered: its answer would go where the requester chose (docs/operations.md).
      this.metrics.requests.inc({ verb: verbOf(msg.subject), code: 'reply_refused' });
      this.log.debug({ event: 'request_reply_refused', subject: msg.subject, reply: msg.reply });
      return Promise.resolve();
    }
    if (msg.subject.startsWith('activeflow.admin.') || msg.subject.startsWith('activeflow.relay.') || msg.subject === SUBJECTS.activeflowCreate) return run();
    return this.admission
      .run(() => this.customerKey(msg), run)
      .catch((e: unknown) => {
        const error = ensureError(e);
        if (error.code === 'limit_exceeded') this.metrics.limitRejections.inc({ customer_id: this.metrics.rejectedCustomer(this.customerKey(msg)), quota: error.quota ?? 'other' });
        this.metrics.requests.inc({ verb: verbOf(msg.subject), code: error.code });
        respondError(msg, error);
      });
  }

  /** Whose request it is: the body's customer_id, else the customer of the resident activeflow it names. */
  private customerKey(msg: ServiceMsg): string {
    // Asked for every request: a scan for the field, not a parse of the body (a create may be 1 MiB).
    const named = CUSTOMER_FIELD.exec(msg.string())?.[1]?.toLowerCase();
    if (named !== undefined) return named;
    const t = msg.subject.split('.');
    return (t[0] === 'activeflow' && t[1] === 'shard' ? this.registry.customerOf(t[3] ?? '') : undefined) ?? 'unknown';
  }

  private track(p: Promise<unknown>): void {
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /**
   * `whileStopping`: a shard's requests are still served while a stopping node hands its shards
   * over one by one (each shard stops when its own handoff starts), not refused from the first
   * moment of the stop.
   */
  private async answer(msg: ServiceMsg, fn: (msg: ServiceMsg) => Promise<unknown>, whileStopping = false): Promise<void> {
    const started = performance.now();
    const verb = verbOf(msg.subject);
    let code = 'ok';
    try {
      if (this.stopping && !whileStopping) throw new ActiveflowError('unavailable', 'the node is stopping; retry');
      respondOk(msg, await fn(msg));
    } catch (e) {
      const error = ensureError(e);
      code = error.code;
      if (error.code === 'internal') this.log.error({ event: 'request_failed', subject: msg.subject, err: e });
      if (error.code === 'limit_exceeded') this.metrics.limitRejections.inc({ customer_id: this.metrics.rejectedCustomer(this.customerKey(msg)), quota: error.quota ?? 'other' });
      respondError(msg, error);
    }
    this.metrics.requests.inc({ verb, code });
    this.metrics.requestSeconds.observe({ verb }, (performance.now() - started) / 1000);
  }

  // activeflows ----------------------------------------------------------------------------------

  /** `activeflow.v1.create`: any node takes it and routes it to the owner of the new id's shard. */
  private async createRouted(msg: ServiceMsg): Promise<unknown> {
    const request = parseRequest(msg, ActiveflowRequests.create);
    const id = request.id ?? randomUUID();
    return this.forwarder.call(SUBJECTS.activeflowVerb(id, 'create'), { ...request, id });
  }

  private async activeflowVerb(msg: ServiceMsg): Promise<unknown> {
    const [, , shardText, id, verb] = msg.subject.split('.') as [string, string, string, string, string];
    if (!Uuid.safeParse(id).success || id !== id.toLowerCase()) throw new ActiveflowError('invalid_argument', `"${id}" is not an activeflow id (a lower-case UUID)`);
    if (!(ACTIVEFLOW_VERBS as readonly string[]).includes(verb)) {
      throw new ActiveflowError('invalid_argument', `unknown verb "${verb}"; the verbs are ${ACTIVEFLOW_VERBS.join(', ')}`);
    }
    if (Number(shardText) !== shardOf(id, this.options.shardCount))
      throw new ActiveflowError('internal', `activeflow ${id} arrived on shard ${shardText}, expected ${shardOf(id, this.options.shardCount)}`);
    if (this.ownership !== null && !this.ownership.owns(Number(shardText))) throw new ActiveflowError('unavailable', `shard ${shardText} is moving; retry`);
    const v = verb as ActiveflowVerb;
    const body = parseRequest(msg, ActiveflowRequests[v]) as Record<string, unknown> & { customer_id?: string };
    const { customer_id: customerId, ...rest } = body;
    const actor = this.registry.get(id);
    let reply: ActorReply;
    switch (v) {
      case 'create':
        reply = await actor.create({ ...(body as object), id } as never);
        break;
      case 'get':
        reply = await actor.read(customerId, (s) => s.activeflow);
        break;
      case 'variables_get':
        reply = await actor.read(customerId, (s) => ({ id, variables: s.variables }));
        break;
      case 'substitute':
        reply = await actor.substitute(customerId, (rest as { data: string }).data);
        break;
      case 'history': {
        const found = await actor.read(customerId, (s) => s.activeflow.customer_id);
        if (!found.ok) throw found.error;
        const h = rest as { from_seq?: number; limit?: number };
        return historyPage(await this.events.history(found.value as string, id, h.from_seq ?? 1, h.limit ?? 1000));
      }
      default:
        reply = await actor.request(v, rest, customerId);
    }
    if (!reply.ok) throw reply.error;
    return reply.value;
  }

  private async list(msg: ServiceMsg): Promise<unknown> {
    const r = parseRequest(msg, ListActiveflowsRequest);
    const page = await this.index.page(r.customer_id, r, r.page_size ?? 100, r.page_token);
    const result = [];
    for (const id of page.ids) {
      const stored = await this.snapshots.load(id);
      if (stored !== null && stored.state.activeflow.tm_delete === null) result.push(stored.state.activeflow);
    }
    return { result, next_page_token: page.next_page_token };
  }

  // flows ----------------------------------------------------------------------------------------

  private async flowCreate(msg: ServiceMsg): Promise<unknown> {
    const r = parseRequest(msg, FlowCreateRequest);
    try {
      return await this.flows.create(r, randomUUID(), this.clock.now(), this.clock.entropy(), this.quotas.of(r.customer_id).flows);
    } catch (e) {
      if (e instanceof FlowLimitExceeded) throw new ActiveflowError('limit_exceeded', e.message, { quota: 'flows' });
      throw e;
    }
  }

  private async flowList(msg: ServiceMsg): Promise<unknown> {
    const r = parseRequest(msg, FlowListRequest);
    return this.flows.list(r.customer_id, r.page_size ?? 100, r.page_token);
  }

  private async flowVerb(msg: ServiceMsg): Promise<unknown> {
    const [, , id, verb] = msg.subject.split('.') as [string, string, string, string];
    if (!Uuid.safeParse(id).success) throw new ActiveflowError('invalid_argument', `"${id}" is not a flow id (a UUID)`);
    if (!(FLOW_VERBS as readonly string[]).includes(verb)) throw new ActiveflowError('invalid_argument', `unknown verb "${verb}"; the verbs are ${FLOW_VERBS.join(', ')}`);
    const v = verb as FlowVerb;
    const body = parseRequest(msg, FlowRequests[v]) as { customer_id?: string };
    const notFound = new ActiveflowError('not_found', `flow ${id} not found`);
    const flowId = id.toLowerCase();
    switch (v) {
      case 'get': {
        const found = await this.flows.get(flowId, body.customer_id);
        if (found === null) throw notFound;
        return found.flow;
      }
      case 'update': {
        const { customer_id: c, ...patch } = body as Record<string, unknown> & { customer_id?: string };
        const flow = await this.flows.update(flowId, c, patch as never, this.clock.now(), this.clock.entropy());
        if (flow === null) throw notFound;
        return flow;
      }
      case 'delete': {
        const flow = await this.flows.delete(flowId, body.customer_id, this.clock.now());
        if (flow === null) throw notFound;
        return flow;
      }
    }
  }

  // lifecycle ------------------------------------------------------------------------------------

  /** This node's own view, for `activeflow.admin.v1.node.<id>.status` (drain --wait polls it). */
  status(): { node_id: string; shard_leases: boolean; shards: number[]; resident_actors: number; shard_moves: number; in_flight: number } {
    return {
      node_id: this.options.nodeId,
      shard_leases: this.ownership !== null,
      shards: this.ownership?.ownedShards ?? [...this.allShards],
      resident_actors: this.registry.residentCount,
      shard_moves: this.shardMoves,
      in_flight: this.inFlight.size,
    };
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Requests waiting in fair admission's queues now. */
  get admissionQueued(): number {
    return this.admission.queued;
  }

  /** Shards this node serves now (every shard without leases). */
  get servedShards(): number {
    return this.ownership?.ownedCount ?? this.allShards.size;
  }

  /** Shards acquired or handed off so far (with leases). */
  get shardMoves(): number {
    return this.ownership?.moves ?? 0;
  }

  get residentActors(): number {
    return this.registry.residentCount;
  }

  /**
   * Stops taking requests, hands the shards over, lets in-flight ones finish, and closes the
   * connection; false when NATS was unreachable, so the shards were left to expire instead.
   */
  async stop(): Promise<boolean> {
    if (this.stopping) return true;
    this.stopping = true;
    if (this.passivationTimer) clearInterval(this.passivationTimer);
    await this.watchdog?.stop();
    this.quotas.stop();
    if (!this.connection.connected) {
      // Nothing can be handed over without NATS, and waiting for it would only hold the stop up:
      // this node's leases expire on their own and the others fence and take its shards.
      this.log.warn({ event: 'node_stopping_without_nats' }, 'NATS is unreachable: stopping without handing the shards over; their leases expire on their own');
      this.ownership?.abandon();
      // Closed first: whatever still waits on NATS (a webhook pull, a lease write) fails at once.
      await this.nc.close().catch(() => undefined);
      await Promise.allSettled([this.hints?.stop(), this.webhooks?.stop()]);
      await this.egress.close().catch(() => undefined);
      this.log.info({ event: 'node_stopped', handed_over: false });
      return false;
    }
    // Leave first, so the others count this node out, then hand every shard over: each one is
    // taken by its new owner the moment its released marker is written.
    await this.hints?.stop();
    await this.membership?.leave();
    await this.ownership?.stop();
    await this.standalone?.release();
    if (this.ownership !== null) await new DrainMarks(this.storage.cluster).clearUntilStop(this.options.nodeId).catch(() => undefined);
    await this.service?.stop().catch(() => undefined);
    await Promise.allSettled([...this.inFlight]);
    await this.webhooks?.stop();
    await this.registry.settleAll();
    await this.nc.drain().catch(() => undefined);
    await this.egress.close().catch(() => undefined);
    this.log.info({ event: 'node_stopped' });
    return true;
  }
}

/**
 * A node with shard leases beside one that serves every shard without them: both would answer the
 * same requests. Refused at start, saying what to change.
 */
async function refuseBesideStandalone(storage: Storage, nodeId: string): Promise<void> {
  const holder = await StandaloneLease.holder(storage.leases);
  if (holder !== null && holder !== nodeId) {
    throw new Error(`a node with SHARD_LEASES=0 is running (${holder}); it serves every shard alone. Stop it first, or restart it with SHARD_LEASES=1 to share the shards`);
  }
}

/**
 * A node without shard leases serves every shard: beside nodes that split them, both would answer
 * the same requests. Refused at start, saying what to change.
 */
async function refuseBesideLeasedNodes(storage: Storage, nodeId: string): Promise<void> {
  const others = (await NodeMembership.live(storage.leases)).filter((n) => n.node_id !== nodeId);
  const leased = others.length > 0 ? [] : await shardLeaseHolders(storage);
  if (others.length > 0 || leased.length > 0) {
    const who = [...new Set([...others.map((n) => n.node_id), ...leased])].join(', ');
    throw new Error(`other nodes are running (${who}); a node with SHARD_LEASES=0 serves every shard alone. Start this node with SHARD_LEASES=1 to share the shards with them, or stop them first`);
  }
}

async function shardLeaseHolders(storage: Storage): Promise<string[]> {
  const holders: string[] = [];
  for (const key of await keysNow(storage.leases, 'shard.*')) {
    const holder = await ShardLease.holder(storage.leases, key);
    if (holder !== null) holders.push(holder.node_id);
  }
  return holders;
}

/** A reply must stay under NATS's payload limit (1 MiB by default): long histories come in pages. */
const HISTORY_PAGE_BYTES = 768 * 1024;

function historyPage(events: StreamEvent[]): { events: StreamEvent[]; next_from_seq?: number } {
  const page: StreamEvent[] = [];
  let bytes = 0;
  for (const e of events) {
    const size = JSON.stringify(e).length;
    if (page.length > 0 && bytes + size > HISTORY_PAGE_BYTES) return { events: page, next_from_seq: e.seq };
    page.push(e);
    bytes += size;
  }
  return { events: page };
}

/** JetStream answers only some seconds after a cold start of its server: retry its first calls. */
async function withJetStreamRetry<T>(log: Logger, fn: () => Promise<T>): Promise<T> {
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
async function checkClusterConfig(storage: Storage, shardCount: number): Promise<void> {
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
async function verifyShardMapping(nc: NatsConnection, shardCount: number): Promise<void> {
  const probes = Array.from({ length: 16 }, () => randomUUID());
  const seen = new Map<string, number>();
  const sub = nc.subscribe('activeflow.shard.*.*.mapping_probe', {
    callback: (_e, m) => {
      const t = m.subject.split('.');
      seen.set(t[3]!, Number(t[2]));
    },
  });
  await nc.flush();
  for (const id of probes) nc.publish(SUBJECTS.activeflowVerb(id, 'mapping_probe'));
  await nc.flush();
  for (let i = 0; i < 100 && seen.size < probes.length; i++) await new Promise((r) => setTimeout(r, 20));
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

const KNOWN_VERBS = new Set<string>(ACTIVEFLOW_VERBS);

/** A bounded label for a request's subject: the verb, never an id. */
function verbOf(subject: string): string {
  const t = subject.split('.');
  if (t[0] === 'activeflow' && t[1] === 'shard') return KNOWN_VERBS.has(t[4] ?? '') ? t[4]! : 'other';
  if (t[0] === 'activeflow' && t[1] === 'v1') return t[2] === 'create' ? 'create_routed' : t[2] === 'list' ? 'list' : 'other';
  if (t[0] === 'flow' && t[1] === 'v1') return t.length === 3 ? `flow_${t[2]}` : `flow_${['get', 'update', 'delete'].includes(t[3] ?? '') ? t[3] : 'other'}`;
  if (t[0] === 'activeflow' && t[1] === 'admin') return 'admin';
  return 'other';
}

/** A request body's customer_id, found without parsing the body (see customerKey). */
const CUSTOMER_FIELD = /"customer_id"\s*:\s*"([0-9a-fA-F-]{36})"/;
