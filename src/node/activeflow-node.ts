/**
 * A node: hosts the actors of the shards it owns and serves the control API over NATS
 * request-reply, registered with the services framework ($SRV.PING/INFO/STATS).
 *
 *   starting ──▶ serving ──stop()──▶ draining (no new requests; in-flight ones finish) ──▶ stopped
 *
 * Everything is keyed and subscribed by shard (`activeflow.shard.<n>.*.*`): a node serves the shards
 * its leases give it (src/cluster/shard-ownership.ts), every one of them when it runs alone. This file wires the parts and serves the activeflow verbs; the rest
 * is beside it: node-options (defaults), startup-checks, request-pipeline (every request's path),
 * flow-service, admin-endpoints.
 */
import { randomUUID } from 'node:crypto';
import { Svcm, type Service, type ServiceMsg } from '@nats-io/services';
import type { NatsConnection } from '@nats-io/transport-node';
import { ActorRegistry, EgressPolicy, type ActorReply } from '../../actors/index.js';
import { type Activeflow, DEFAULT_LIMITS, Uuid, type StreamEvent } from '../../machines/index.js';
import { ActiveflowClient } from '../api/client.js';
import { decodeReply, parseRequest } from '../api/reply.js';
import { ActiveflowRequests, AdminRequests, ListActiveflowsRequest } from '../api/schemas.js';
import { ACTIVEFLOW_VERBS, SUBJECTS, type ActiveflowVerb } from '../api/subjects.js';
import { systemClock, type HostClock } from '../clock.js';
import { ActiveflowError } from '../errors.js';
import type { Logger } from '../log.js';
import { checkServerVersion, connectWhenUp, watchConnection, type ConnectionState } from '../nats/connect.js';
import { shardMappingConfig, shardOf } from '../nats/shard-mapping.js';
import { ActiveflowIndex } from '../store/activeflow-index.js';
import { openStorage, type Storage } from '../store/buckets.js';
import { encodeJson } from '../store/codec.js';
import { eventsOf, Journal, type Stored } from '../store/journal.js';
import { EventMaterializer, missFromJournal } from '../store/event-materializer.js';
import { currentState } from '../store/current-state.js';
import { FlowStore } from '../store/flow-store.js';
import { HistoryChunks } from '../store/history-chunks.js';
import { StackLists } from '../store/stack-lists.js';
import { SnapshotStore } from '../store/snapshot-store.js';
import { NodeMembership } from '../cluster/membership-registry.js';
import { DisconnectHints, nodeConnectionName } from '../cluster/disconnect-hints.js';
import { DrainMarks } from '../cluster/drain-marks.js';
import { withTimeout } from '../cluster/async-limits.js';
import { ShardOwnership } from '../cluster/shard-ownership.js';
import { NatsEffectRunner } from './effect-runner.js';
import { WebhookDispatcher, type AckFloorStore } from './webhook-dispatcher.js';
import { WebhookLeadership } from './webhook-leadership.js';
import { DeliveryMemory } from './delivery-memory.js';
import { IdleWatchdog } from './idle-watchdog.js';
import { FlowService } from './flow-service.js';
import { adminEndpoints } from './admin-endpoints.js';
import { ACTIVEFLOW_ENDPOINT, EndpointStats } from './endpoint-stats.js';
import { type NodeOptions, type ResolvedNodeOptions, resolveNodeOptions } from './node-options.js';
import { type Handler, RequestPipeline } from './request-pipeline.js';
import { checkClusterConfig, verifyShardMapping, withJetStreamRetry } from './startup-checks.js';
import { NodeMetrics } from '../metrics/node-metrics.js';
import { CreationRate, creationShare } from '../quota/creation-rate.js';
import { CustomerQuotas } from '../quota/customer-quotas.js';
import { FairAdmission } from '../quota/fair-admission.js';
import { QuotaBook } from '../quota/quota-book.js';
import { DEFAULT_QUOTAS, Quotas } from '../quota/quotas.js';
import { RunningCount } from '../quota/running-count.js';
import { RunningReconcile } from '../quota/running-reconcile.js';

/** af_cluster key of the webhook consumer's ack floor. */
const WEBHOOK_FLOOR_KEY = 'webhooks.ack_floor';

export { VERSION } from '../version.js';
export { type NodeOptions, type ResolvedNodeOptions, resolveNodeOptions } from './node-options.js';
import { VERSION } from '../version.js';

export class ActiveflowNode {
  private service: Service | null = null;
  private passivationTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  /** Loading every activeflow of a node without shard leases at its start; a stop waits for it. */
  private webhooks: WebhookLeadership | null = null;
  private watchdog: IdleWatchdog | null = null;
  private reconcile: RunningReconcile | null = null;
  private membership: NodeMembership | null = null;
  private ownership: ShardOwnership | null = null;
  private hints: DisconnectHints | null = null;
  private readonly forwarder: ActiveflowClient;
  /** Every request's path: inbox check, fair admission, handler, reply, metrics (request-pipeline.ts). */
  private readonly pipeline: RequestPipeline;
  private readonly endpointStats = new EndpointStats();
  /** Every shard: what this node serves without shard leases. */

  private constructor(
    readonly options: ResolvedNodeOptions,
    readonly nc: NatsConnection,
    private readonly storage: Storage,
    readonly registry: ActorRegistry,
    private readonly snapshots: SnapshotStore,
    private readonly journal: Journal,
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
    this.forwarder = new ActiveflowClient(nc);
    this.pipeline = new RequestPipeline(new FairAdmission(options.admission), metrics, log, this.endpointStats, (id) => this.registry.customerOf(id));
  }

  static async start(given: NodeOptions): Promise<ActiveflowNode> {
    const options = resolveNodeOptions(given);
    const log = options.log.child({ node_id: options.nodeId });
    const clock = options.clock ?? systemClock;
    const nc = await connectWhenUp(log, options.servers, nodeConnectionName(options.nodeId), options.credentials, options.tls);
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
      const journal = new Journal(storage.js, storage.jsm);
      const index = new ActiveflowIndex(storage.index);
      const quotas = new QuotaBook(storage.quotas, Quotas.parse({ ...DEFAULT_QUOTAS, ...options.quotas }), log);
      await quotas.start();
      const running = new RunningCount(storage.quotas, options.nodeId);
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
            journalWrite: (seconds) => metrics.journalWriteSeconds.observe(seconds),
            revisionConflict: () => metrics.revisionConflicts.inc(),
            moved: (types) => {
              for (const t of types) metrics.moves.inc({ action_type: t });
            },
          },
          store: snapshots,
          journal,
          index,
          effects,
          clock,
          log,
          limits: options.limits ?? DEFAULT_LIMITS,
          admission: new CustomerQuotas(quotas, running, new CreationRate(() => creationShare(nodeRef?.creationShards ?? options.shardCount, options.shardCount)), options.limits ?? DEFAULT_LIMITS),
          mustFence: (id) => nodeRef?.ownership?.mustFence(id) ?? false,
          stillServed: (id) => nodeRef?.ownership?.servesActiveflow(id) ?? true,
          findFlow: async (flowId, customerId) => (await flows.get(flowId, customerId))?.flow ?? null,
          findParent: async (id) => {
            const parent = await currentState(snapshots, journal, id);
            return parent === null ? null : { customer_id: parent.activeflow.customer_id, variables: parent.variables };
          },
        },
        options.passivateAfterMs,
        (id) => shardOf(id, options.shardCount),
      );
      const node = new ActiveflowNode(options, nc, storage, registry, snapshots, journal, index, flows, quotas, running, log, clock, metrics, egress, connection);
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
      statsHandler: this.endpointStats.statsHandler,
    });
    this.service = svc;
    const add = (endpoint: string, subject: string, fn: Handler) =>
      svc.addEndpoint(endpoint, {
        subject,
        handler: (err, msg) => {
          if (err) {
            this.log.error({ event: 'endpoint_failed', endpoint, err });
            return;
          }
          this.pipeline.serve(msg, endpoint, fn);
        },
      });
    const flows = new FlowService(this.flows, this.quotas, this.clock);
    // The verbs of one activeflow (get, next, stop...), as callers address them. The server's shard
    // mapping turns `activeflow.v1.<id>.<verb>` into `activeflow.shard.<n>.<id>.<verb>` before it
    // routes, so this subscription receives nothing while the mapping is there: the requests reach the
    // owner of their shard (ShardOwnership), and are counted under this endpoint. It is here so that
    // `$SRV.INFO` lists the subject and `$SRV.STATS` its figures, and, should a server lack the mapping
    // (the node checks it at start; a server of a cluster could still be set up without it), so that
    // the caller is told so instead of waiting out a timeout.
    add(ACTIVEFLOW_ENDPOINT, SUBJECTS.activeflowVerb('*', '*'), async () => {
      throw new ActiveflowError(
        'internal',
        `the NATS server that took this request does not map activeflow.v1.<id>.<verb> to shards; add to its configuration:\n${shardMappingConfig(this.options.shardCount)}`,
      );
    });
    add('activeflow_create', SUBJECTS.activeflowCreate, (m) => this.createRouted(m));
    add('activeflow_list', SUBJECTS.activeflowList, (m) => this.list(m));
    add('flow_create', SUBJECTS.flowCreate, (m) => flows.create(m));
    add('flow_list', SUBJECTS.flowList, (m) => flows.list(m));
    add('flow_verb', 'flow.v1.*.*', (m) => flows.verb(m));
    for (const e of adminEndpoints({ nc: this.nc, storage: this.storage, options: this.options, clock: this.clock, running: this.running, quotas: this.quotas })) add(e.name, e.subject, e.handler);
    add('admin_node_status', SUBJECTS.adminNodeStatus(this.options.nodeId), async (m) => {
      parseRequest(m, AdminRequests.status);
      return this.status();
    });
    this.membership = new NodeMembership(this.storage.leases, this.options.nodeId, this.options.leaseTtlMs, this.log);
    {
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
        serve: (msg) => this.pipeline.serve(msg as ServiceMsg, ACTIVEFLOW_ENDPOINT, (m) => this.activeflowVerb(m), true),
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
          this.hints = await DisconnectHints.start(this.options.servers, this.options.systemCredentials, this.options.nodeId, (id, conn) => ownership.suspect(id, conn), this.log, this.options.tls);
        } catch (e) {
          throw new Error(
            `cannot listen to disconnect events as NATS_SYSTEM_USER "${this.options.systemCredentials.user}": ${(e as Error).message}; check the user and password of the system account, or unset NATS_SYSTEM_USER`,
            { cause: e },
          );
        }
      }
      await ownership.start(); // knows the members before they see it join
      await this.membership.join();
    }
    let passivating = false;
    this.passivationTimer = setInterval(
      () => {
        if (passivating) return; // checkpoints of the last round still being written
        passivating = true;
        void this.registry
          .passivateIdle(Date.now())
          .then((n) => {
            if (n > 0) this.metrics.passivated.inc(n);
            if (n > 0) this.log.debug({ event: 'actors_passivated', count: n });
          })
          .catch((e: unknown) => this.log.warn({ event: 'passivation_failed', err: e }))
          .finally(() => (passivating = false));
      },
      Math.max(500, Math.floor(this.options.passivateAfterMs / 2)),
    );
    this.passivationTimer.unref();
    this.watchdog = new IdleWatchdog({
      snapshots: this.snapshots,
      flows: this.flows,
      registry: this.registry,
      ownedShards: () => this.ownership?.ownedShards ?? [],
      owns: (shard) => this.ownership?.owns(shard) ?? false,
      ceilingMs: this.options.maxIdleMs,
      intervalMs: this.options.watchdogIntervalMs,
      log: this.log,
      onTimeout: () => this.metrics.idleTimeouts.inc(),
    });
    this.watchdog.start();
    this.reconcile = new RunningReconcile({
      running: this.running,
      index: this.index,
      isReconciler: () => this.ownership?.owns(0) ?? false,
      intervalMs: this.options.runningReconcileMs,
      log: this.log,
      onCorrection: (direction, by) => this.metrics.runningCountCorrections.inc({ direction }, by),
    });
    this.reconcile.start();
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
            // made per term as the memory is not: a new deliverer reads each activeflow's journal afresh
            materializer: new EventMaterializer(missFromJournal((c, a, upto) => this.journal.all(c, a, upto))),
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
    this.log.info({ event: 'node_serving' }, `node ${this.options.nodeId} serving the shards its leases give it`);
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
    if (this.ownership?.owns(Number(shardText)) !== true) throw new ActiveflowError('unavailable', `shard ${shardText} is moving; retry`);
    const v = verb as ActiveflowVerb;
    const body = parseRequest(msg, ActiveflowRequests[v]) as Record<string, unknown> & { customer_id?: string };
    const customerId = body.customer_id; // checked by the actor; the host loop leaves it out of the event
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
        reply = await actor.substitute(customerId, (body as { data: string }).data);
        break;
      case 'history': {
        const found = await actor.read(customerId, (s) => s.activeflow.customer_id);
        if (!found.ok) throw found.error;
        const h = body as { from_seq?: number; limit?: number; form?: 'events' | 'entries' };
        const messages = await this.journal.all(found.value as string, id);
        if (h.form === 'entries') return entriesPage(messages, h.from_seq ?? 1, h.limit ?? 1000);
        return historyPage(eventsOf(messages, h.from_seq ?? 1, h.limit ?? 1000));
      }
      default:
        reply = await actor.request(v, body, customerId);
    }
    if (!reply.ok) throw reply.error;
    return reply.value;
  }

  private async list(msg: ServiceMsg): Promise<unknown> {
    const r = parseRequest(msg, ListActiveflowsRequest);
    const page = await this.index.page(r.customer_id, r, r.page_size ?? 100, r.page_token);
    const found = await Promise.all(page.ids.map((id) => this.current(id, page.running.has(id))));
    return { result: found.filter((af) => af !== null && af.tm_delete === null), next_page_token: page.next_page_token };
  }

  /**
   * An activeflow as it is now, for list. One the index shows running is asked of its owner (a
   * checkpoint can be up to CHECKPOINT_EVERY moves old): through its mailbox when this node serves
   * it, a get otherwise (the page's go out at once). An ended one's record is current. What is
   * stored answers when the owner cannot: its checkpoint and the journal entries after it (a
   * missing activeflow: null).
   */
  private async current(id: string, running: boolean): Promise<Activeflow | null> {
    if (running) {
      try {
        if (this.ownership?.servesActiveflow(id) === true) {
          // ours: as a get would, with no request to ourselves and no admission slot
          const read = await this.registry.get(id).read(undefined, (st) => st.activeflow);
          if (read.ok) return read.value as Activeflow;
        } else {
          return decodeReply(await this.nc.request(SUBJECTS.activeflowVerb(id, 'get'), encodeJson({}), { timeout: LIST_GET_TIMEOUT_MS })) as Activeflow;
        }
      } catch {
        // the owner cannot answer now: what is stored
      }
    }
    const stored = running ? await currentState(this.snapshots, this.journal, id) : (await this.snapshots.load(id))?.state;
    return stored?.activeflow ?? null;
  }

  // lifecycle ------------------------------------------------------------------------------------

  /** This node's own view, for `activeflow.admin.v1.node.<id>.status` (drain --wait polls it). */
  status(): { node_id: string; shards: number[]; resident_actors: number; shard_moves: number; in_flight: number } {
    return {
      node_id: this.options.nodeId,
      shards: this.ownership?.ownedShards ?? [],
      resident_actors: this.registry.residentCount,
      shard_moves: this.shardMoves,
      in_flight: this.pipeline.inFlightCount,
    };
  }

  get inFlightCount(): number {
    return this.pipeline.inFlightCount;
  }

  /** Requests waiting in fair admission's queues now. */
  get admissionQueued(): number {
    return this.pipeline.queued;
  }

  /**
   * Resolves once this node serves every shard, or after `ms` (it shares them with other nodes,
   * or they are still moving), with the shards taken so far logged: `activeflow start` prints its
   * banner after that, so that the banner is the last thing on the screen.
   */
  async servingAll(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.servedShards < this.options.shardCount && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    this.ownership?.flushLog();
  }

  /** Shards this node serves now (every shard without leases). */
  get servedShards(): number {
    return this.ownership?.ownedCount ?? 0;
  }

  /** Shards this node's share of the creation rate counts: served, or on their way to it (all of them before it serves). */
  get creationShards(): number {
    return this.ownership === null ? this.options.shardCount : this.ownership.creationShardCount;
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
    this.pipeline.stop();
    if (this.passivationTimer) clearInterval(this.passivationTimer);
    await this.watchdog?.stop();
    await this.reconcile?.stop();
    this.quotas.stop();
    let handedOver = false;
    if (this.connection.connected) {
      // NATS may go while the shards are handed over: a whole deployment stopped at once gives the
      // server and the node their signals together, and each step then waited out its timeout (19 s
      // measured, past the 10 s a container runtime gives before it kills). Down for NATS_GONE_MS,
      // longer than a reconnect to another server of a cluster takes, the rest is given up.
      const handover = this.handOver();
      const gone = this.connection.downFor(NATS_GONE_MS);
      try {
        handedOver = await Promise.race([handover.then(() => true), gone.down.then(() => false)]);
      } finally {
        gone.cancel();
      }
      if (!handedOver) {
        await this.leaveWithoutNats();
        // What it still waits on fails at once on the closed connection (bounded all the same).
        await withTimeout(handover, NATS_GONE_MS, 'the hand-over').catch(() => undefined);
      }
    } else {
      await this.leaveWithoutNats();
    }
    if (!handedOver) await Promise.allSettled([this.hints?.stop(), this.webhooks?.stop()]);
    await this.egress.close().catch(() => undefined);
    this.log.info({ event: 'node_stopped', ...(handedOver ? {} : { handed_over: false }) });
    return handedOver;
  }

  /** Leave first, so the others count this node out, then hand every shard over: each one is taken by its new owner the moment its released marker is written. */
  private async handOver(): Promise<void> {
    await this.hints?.stop();
    await this.membership?.leave();
    await this.ownership?.stop();
    if (this.ownership !== null) await new DrainMarks(this.storage.cluster).clearUntilStop(this.options.nodeId).catch(() => undefined);
    await this.service?.stop().catch(() => undefined);
    await this.pipeline.settled();
    await this.webhooks?.stop();
    await this.registry.settleAll();
    await this.nc.drain().catch(() => undefined);
  }

  /**
   * Nothing can be handed over without NATS, and waiting for it would only hold the stop up: this
   * node's leases expire on their own and the others fence and take its shards. The connection is
   * closed first, so that whatever waits on NATS or asks it next (a webhook pull, a lease write, the
   * hand-over's next step) fails at once instead of waiting out its timeout.
   */
  private async leaveWithoutNats(): Promise<void> {
    this.log.warn({ event: 'node_stopping_without_nats' }, 'NATS is unreachable: stopping without handing the shards over; their leases expire on their own');
    await this.nc.close().catch(() => undefined);
    this.ownership?.abandon();
    await this.membership?.leave().catch(() => undefined); // its renewals stop (they logged after the stop)
  }
}

/** How long NATS may be unreachable while a stopping node hands its shards over before it gives that up. */
const NATS_GONE_MS = 2_000;

/** How long list waits for an owner's answer before it shows the activeflow's checkpoint instead. */
const LIST_GET_TIMEOUT_MS = 1_000;

/** A reply must stay under NATS's payload limit (1 MiB by default): long histories come in pages. */
const HISTORY_PAGE_BYTES = 768 * 1024;

/** The journal as stored (docs/api.md, "The journal entry"): entries from number `fromN`, and events written before the journal. */
function entriesPage(messages: readonly Stored[], fromN: number, limit: number): { entries: unknown[]; next_from_seq?: number } {
  const page: unknown[] = [];
  let bytes = 0;
  for (const { seq, message } of messages) {
    const body = message.kind === 'entry' ? message.entry : message.event;
    if (message.kind === 'entry' && message.entry.n < fromN) continue;
    const size = JSON.stringify(body).length;
    if (page.length >= limit || (page.length > 0 && bytes + size > HISTORY_PAGE_BYTES)) return message.kind === 'entry' ? { entries: page, next_from_seq: message.entry.n } : { entries: page };
    page.push({ stream_seq: seq, ...body });
    bytes += size;
  }
  return { entries: page };
}

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
