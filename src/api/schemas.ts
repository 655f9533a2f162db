/**
 * Request bodies of the control API, one zod schema per endpoint: the only place they are
 * described. Unknown fields are refused, so a misspelt field is an error, not a silent no-op.
 * `customer_id`, when given, must own the activeflow or flow (else not_found).
 */
import { z } from 'zod';
import { ActionInputList, CreateRequest, FlowTypeSchema, ReferenceTypeSchema, Uuid, VerbBodies } from '../../machines/index.js';
import type { ActiveflowVerb } from './subjects.js';

/**
 * `customer_id` scopes a request to one customer; `request_id` (the caller's, reused on every retry
 * of the same request) makes a retry safe: it is answered as the first attempt, not applied again.
 */
const customer = { customer_id: Uuid.optional(), request_id: z.string().min(1).max(64).optional() };
const pageSize = z.number().int().min(1).max(100).optional();

export const ActiveflowRequests = {
  create: CreateRequest,
  get: z.strictObject({ ...customer }),
  stop: VerbBodies.stop.extend({ ...customer, reason: z.enum(['stopped', 'reference_ended']).optional() }),
  delete: VerbBodies.delete.extend(customer),
  next: VerbBodies.next.extend(customer),
  execute: VerbBodies.execute.extend(customer),
  continue: VerbBodies.continue.extend(customer),
  forward: VerbBodies.forward.extend(customer),
  push_actions: VerbBodies.push_actions.extend(customer),
  add_actions: VerbBodies.add_actions.extend(customer),
  service_stop: VerbBodies.service_stop.extend(customer),
  variables_get: z.strictObject({ ...customer }),
  variables_set: VerbBodies.variables_set.extend(customer),
  variables_delete: VerbBodies.variables_delete.extend(customer),
  substitute: z.strictObject({ data: z.string().max(256 * 1024), ...customer }),
  history: z.strictObject({
    from_seq: z.number().int().min(1).optional(),
    limit: z.number().int().min(1).max(1000).optional(),
    /** `events` (the default): VoIPBIN's full form, materialised; `entries`: the journal as stored, `from_seq` an entry number. */
    form: z.enum(['events', 'entries']).optional(),
    ...customer,
  }),
} satisfies Record<ActiveflowVerb, z.ZodType>;

export const ListActiveflowsRequest = z.strictObject({
  customer_id: Uuid,
  status: z.enum(['running', 'ended']).optional(),
  reference_type: ReferenceTypeSchema.optional(),
  reference_id: Uuid.optional(),
  page_size: pageSize,
  page_token: z.string().max(64).optional(),
});
export type ListActiveflowsRequest = z.infer<typeof ListActiveflowsRequest>;

export const FlowCreateRequest = z.strictObject({
  customer_id: Uuid,
  type: FlowTypeSchema.optional(),
  name: z.string().max(255).optional(),
  detail: z.string().max(4096).optional(),
  actions: ActionInputList,
  on_complete_flow_id: Uuid.optional(),
  max_idle_seconds: z
    .number()
    .int()
    .min(0)
    .max(365 * 86_400)
    .optional(),
});
export type FlowCreateRequest = z.infer<typeof FlowCreateRequest>;

export const FlowListRequest = z.strictObject({ customer_id: Uuid, page_size: pageSize, page_token: z.string().max(64).optional() });

export const FlowRequests = {
  get: z.strictObject({ ...customer }),
  update: z.strictObject({
    ...customer,
    name: z.string().max(255).optional(),
    detail: z.string().max(4096).optional(),
    actions: ActionInputList.optional(),
    on_complete_flow_id: Uuid.optional(),
    max_idle_seconds: z
      .number()
      .int()
      .min(0)
      .max(365 * 86_400)
      .optional(),
  }),
  delete: z.strictObject({ ...customer }),
} as const;

/** Node ids, as NODE_ID accepts them. */
export const NodeId = z.string().regex(/^[A-Za-z0-9_-]{1,64}$/, 'a node id: letters, digits, _ and - only');

/** Operators' verbs (`activeflow.admin.v1.<verb>`). */
export const AdminRequests = {
  nodes: z.strictObject({}),
  shards: z.strictObject({}),
  /**
   * `force` drains even the last node that could serve the shards (they go unserved);
   * `until_stop` lasts only until the node stops (a pod's preStop hook).
   */
  drain: z.strictObject({ node_id: NodeId, force: z.boolean().optional(), until_stop: z.boolean().optional() }),
  undrain: z.strictObject({ node_id: NodeId }),
  rebalance: z.strictObject({}),
  status: z.strictObject({}),
  /** The customers with activeflows running, busiest first: the first `limit` of them (default 100). */
  customers: z.strictObject({ limit: z.int().min(1).max(1000).optional() }),
  /** Re-runs one activeflow's journal through the answering node's engine (src/replay). */
  replay: z.strictObject({ activeflow_id: Uuid }),
};

/** A relay's name, chosen by its reader (it subscribes to the delivery subject before asking). */
export const RelayToken = z.string().regex(/^[A-Za-z0-9]{16,64}$/, 'a relay token: 16 to 64 letters and digits');

/** `activeflow.relay.v1.<role>.<verb>` (src/node/stream-relay.ts). */
export const RelayRequests = {
  open: z.strictObject({
    token: RelayToken,
    /** `events`: ACTIVEFLOW_EVENTS; `accesskeys`: the access keys' bucket (gateways only). */
    stream: z.enum(['events', 'accesskeys']),
    /** One subject of that stream, wildcards allowed where the relay says. */
    filter: z.string().max(256),
    /** Where to start; `start_seq` (a stream sequence) wins over it. */
    deliver: z.enum(['all', 'new', 'last_per_subject']),
    start_seq: z.int().min(1).optional(),
  }),
  close: z.strictObject({ token: RelayToken }),
};
export type RelayOpen = z.infer<typeof RelayRequests.open>;
