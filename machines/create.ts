/**
 * Creating an activeflow (docs/behaviour.md section 3). The host resolves what needs I/O (the flow,
 * the parent's variables) and passes it in; this decides everything else.
 */
import { z } from 'zod';
import { prepareActions } from './actions.js';
import { MAIN, NIL, START } from './constants.js';
import { engineError, type EngineError } from './errors.js';
import { idSource } from './ids.js';
import { DEFAULT_LIMITS, type Limits } from './limits.js';
import { ActionInputList, ReferenceTypeSchema, toPublicWithoutHistory, Uuid, Variables, WebhookMethodSchema, type Activeflow, type Flow } from './schema.js';
import { emptyOutbox, type EngineState } from './state.js';
import { builtinVariables, completeCountOf, sanitizeInitialVariables } from './variables.js';

/** `activeflow.v1.create`: start from a stored flow (`flow_id`) or from inline `actions`. */
export const CreateRequest = z
  .strictObject({
    id: Uuid.optional(),
    customer_id: Uuid,
    flow_id: Uuid.optional(),
    actions: ActionInputList.optional(),
    reference_type: ReferenceTypeSchema,
    reference_id: Uuid.optional(),
    reference_activeflow_id: Uuid.optional(),
    variables: Variables.optional(),
    webhook_uri: z
      .string()
      .max(1024)
      .regex(/^https?:\/\/[^\s/?#]+[^\s]*$/i, { message: 'must be an absolute http(s) URI with a host' })
      .optional(),
    webhook_method: WebhookMethodSchema.optional(),
    /** Run the first cycle right away (what VoIPBIN's REST create does). */
    execute: z.boolean().optional(),
  })
  .refine((r) => !(r.flow_id !== undefined && r.flow_id !== NIL && r.actions !== undefined), {
    message: 'give flow_id or actions, not both',
    path: ['actions'],
  });
export type CreateRequest = z.infer<typeof CreateRequest>;

export interface CreateContext {
  request: CreateRequest;
  /** The flow named by `flow_id`, as the host found it (null when absent). */
  flow: Flow | null;
  /** The activeflow named by `reference_activeflow_id`, as the host found it (null when absent). */
  parent: { customer_id: string; variables: Variables } | null;
  now: string;
  entropy: string;
  limits?: Limits;
}

export type CreateResult = { ok: true; state: EngineState } | { ok: false; error: EngineError };

export function createActiveflow(ctx: CreateContext): CreateResult {
  const { request: r, now } = ctx;
  const limits = ctx.limits ?? DEFAULT_LIMITS;
  const ids = idSource(ctx.entropy);
  const flowId = r.flow_id ?? NIL;

  let actions = prepareActions(r.actions ?? [], ids);
  let onComplete = NIL;
  if (flowId !== NIL) {
    const flow = ctx.flow;
    // Another customer's flow is reported exactly like a missing one: no existence leak.
    if (flow === null || flow.id !== flowId || flow.tm_delete !== null || flow.customer_id !== r.customer_id) {
      return { ok: false, error: engineError('not_found', `flow ${flowId} not found`) };
    }
    actions = flow.actions;
    onComplete = flow.on_complete_flow_id;
  }

  const parentId = r.reference_activeflow_id ?? NIL;
  let inherited: Variables = {};
  let completeCount = 0;
  if (parentId !== NIL) {
    // Another customer's activeflow is reported exactly like a missing one, and lends no variables.
    if (ctx.parent === null || ctx.parent.customer_id !== r.customer_id) {
      return { ok: false, error: engineError('not_found', `reference activeflow ${parentId} not found`) };
    }
    inherited = ctx.parent.variables;
    completeCount = completeCountOf(inherited) + 1;
  }
  const injected = sanitizeInitialVariables(r.variables ?? {}, limits);
  if (!injected.ok) return { ok: false, error: injected.quota === undefined ? engineError('invalid_argument', injected.message) : engineError('limit_exceeded', injected.message, injected.quota) };

  const id = r.id ?? ids.next();
  const activeflow: Activeflow = {
    id,
    customer_id: r.customer_id,
    flow_id: flowId,
    status: 'running',
    reference_type: r.reference_type,
    reference_id: r.reference_id ?? NIL,
    reference_activeflow_id: parentId,
    on_complete_flow_id: onComplete,
    webhook_uri: r.webhook_uri ?? '',
    webhook_method: r.webhook_method ?? '',
    stack_map: { [MAIN]: { id: MAIN, actions, return_stack_id: NIL, return_action_id: NIL } },
    current_stack_id: MAIN,
    current_action: { id: START, next_id: NIL, tm_execute: null },
    forward_stack_id: NIL,
    forward_action_id: NIL,
    execute_count: 0,
    executed_actions: [],
    end_reason: '',
    error: null,
    on_complete_activeflow_id: NIL,
    on_complete_error: '',
    tm_create: now,
    tm_update: null,
    tm_delete: null,
  };
  const variables = { ...inherited, ...injected.variables, ...builtinVariables(activeflow, completeCount) };
  const state: EngineState = {
    activeflow,
    variables,
    limits,
    seq: 1,
    version: 0,
    last_next: null,
    recent_requests: [],
    pending: null,
    outbox: { ...emptyOutbox(), events: [{ type: 'activeflow_created', seq: 1, at: now, data: toPublicWithoutHistory(activeflow), executed_count: 0 }] },
  };
  return { ok: true, state };
}
