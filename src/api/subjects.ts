/** The control API's subjects: a contract outside clients use (docs/architecture.md, design 2). */

export const SUBJECTS = {
  activeflowCreate: 'activeflow.v1.create',
  activeflowList: 'activeflow.v1.list',
  /** What clients send; the server maps it to the shard subject below. */
  activeflowVerb: (id: string, verb: string) => `activeflow.v1.${id}.${verb}`,
  /** What the owner of shard n subscribes to. */
  shardWildcard: (shard: number) => `activeflow.shard.${shard}.*.*`,
  flowCreate: 'flow.v1.create',
  flowList: 'flow.v1.list',
  flowVerb: (id: string, verb: string) => `flow.v1.${id}.${verb}`,
  /** Operators: any node answers these. */
  adminNodes: 'activeflow.admin.v1.nodes',
  adminShards: 'activeflow.admin.v1.shards',
  adminDrain: 'activeflow.admin.v1.drain',
  adminUndrain: 'activeflow.admin.v1.undrain',
  adminRebalance: 'activeflow.admin.v1.rebalance',
  adminCustomers: 'activeflow.admin.v1.customers',
  adminReplay: 'activeflow.admin.v1.replay',
  /** Operators: the REST gateway's access keys (create, list, delete). */
  adminAccessKeys: (verb: 'create' | 'list' | 'delete') => `activeflow.admin.v1.accesskeys.${verb}`,
  /** Operators: per-customer quotas (get, set, reset). */
  adminQuotas: (verb: 'get' | 'set' | 'reset') => `activeflow.admin.v1.quotas.${verb}`,
  /** Operators: one node's own view (its shards, its resident actors). */
  adminNodeStatus: (nodeId: string) => `activeflow.admin.v1.node.${nodeId}.status`,
  /** Between nodes: reconcile the shard ownership now (after a drain, an undrain, a rebalance). */
  clusterReconcile: 'activeflow.cluster.v1.reconcile',
  /** Between nodes: a shard was handed over (its released marker and revision), for its next owner. */
  clusterReleased: 'activeflow.cluster.v1.released',
  /**
   * Readers of a stream (the gateway's WebSocket and access keys, the operator's `watch`) ask a
   * node to open a push consumer for them (src/node/stream-relay.ts): only nodes may create
   * consumers, so nobody else can point one at a subject of their choosing. Per role, so that the
   * server's permissions keep each role on its own relay.
   */
  relay: (role: RelayRole, verb: 'open' | 'close') => `activeflow.relay.v1.${role}.${verb}`,
  /** Where a relay delivers: only the role it was opened for may subscribe here. */
  relayDeliver: (role: RelayRole, token: string) => `activeflow.deliver.${role}.${token}`,
  /** Outbound: the reference's service is asked to move now (`forward_now`). */
  referenceActionNext: 'activeflow.service.action_next',
} as const;

/** A relay's consumer sends heartbeats this often while idle, so its reader notices one that vanished. */
export const RELAY_HEARTBEAT_MS = 2_000;

/** The roles that read streams through a relay. */
export const RELAY_ROLES = ['gateway', 'operator'] as const;
export type RelayRole = (typeof RELAY_ROLES)[number];

/** Per-activeflow verbs; `create` here is the routed create (`activeflow.v1.<id>.create`). */
export const ACTIVEFLOW_VERBS = [
  'create',
  'get',
  'stop',
  'delete',
  'next',
  'execute',
  'continue',
  'forward',
  'push_actions',
  'add_actions',
  'service_stop',
  'variables_get',
  'variables_set',
  'variables_delete',
  'substitute',
  'history',
] as const;
export type ActiveflowVerb = (typeof ACTIVEFLOW_VERBS)[number];

export const FLOW_VERBS = ['get', 'update', 'delete'] as const;
export type FlowVerb = (typeof FLOW_VERBS)[number];
