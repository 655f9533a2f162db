/**
 * The REST surface's shapes, as VoIPBIN's public API has them: request bodies and query strings
 * (zod, strict: a misspelt field is a 400, not a silent no-op), and the public forms of the
 * responses. The OpenAPI document (/openapi.json) is generated from these.
 */
import { z } from 'zod';
import { ActionInputList, NIL, PublicActiveflow, ReferenceTypeSchema, Uuid, Variables, WebhookMethodSchema, type Action, type Activeflow, type Flow } from '../../machines/index.js';

export const ActiveflowCreateBody = z
  .strictObject({
    id: Uuid.optional().describe('Optional client-supplied UUID for the new activeflow. If omitted, the server generates one.'),
    flow_id: Uuid.optional().describe('UUID of an existing flow to run. Give either flow_id or actions.'),
    actions: ActionInputList.optional().describe('Inline action list to run when no flow_id is given.'),
    variables: Variables.optional().describe('Flat key-value context seeded into the activeflow as its variables.'),
    webhook_uri: z
      .string()
      .max(1024)
      .regex(/^https?:\/\/[^\s/?#]+[^\s]*$/i, { message: 'must be an absolute http(s) URI with a host' })
      .optional()
      .describe("Where this activeflow's events are delivered, in addition to the customer's webhook."),
    webhook_method: WebhookMethodSchema.optional().describe('HTTP method of that delivery (default POST).'),
  })
  .refine((b) => (b.flow_id !== undefined && b.flow_id !== NIL) !== (b.actions !== undefined), {
    message: 'give flow_id or actions (one of them)',
    path: ['flow_id'],
  });

/** POST and PUT /flows: `name`, `detail` and `actions` are required, as VoIPBIN's API has them. */
export const FlowBody = z.strictObject({
  name: z.string().max(255).describe('The name of the flow.'),
  detail: z.string().max(4096).describe('A description of the flow.'),
  actions: ActionInputList.describe('The ordered actions of the flow.'),
  on_complete_flow_id: Uuid.optional().describe('The flow started when an activeflow of this one ends.'),
  max_idle_seconds: z
    .number()
    .int()
    .min(0)
    .max(365 * 86_400)
    .optional()
    .describe("Ours: an activeflow of this flow that has not changed for this long is ended (end_reason timeout). 0 or absent: only the deployment's ceiling."),
});

export const VariablesBody = z.strictObject({ variables: Variables });

/**
 * `page_size`, as VoIPBIN reads it: absent, zero, negative or above 100 means 100. A value that is
 * not a number at all is a 400.
 */
const PageSize = z
  .string()
  .regex(/^-?\d{1,64}$/, { message: 'must be a whole number' })
  .transform((v) => {
    // Compared as text beyond 9 digits: 99999999999999999999 is above 100 too, not a float.
    if (v.replace(/^-/, '').length > 9) return 100;
    const n = Number(v);
    return n <= 0 || n > 100 ? 100 : n;
  });
const PageToken = z.string().max(64);

export const ActiveflowListQuery = z.strictObject({
  page_size: PageSize.optional(),
  page_token: PageToken.optional(),
  status: z.enum(['running', 'ended']).optional(),
  reference_type: ReferenceTypeSchema.optional(),
  reference_id: Uuid.optional(),
});
export const FlowListQuery = z.strictObject({ page_size: PageSize.optional(), page_token: PageToken.optional() });
export const HistoryQuery = z.strictObject({
  from_seq: z
    .string()
    .regex(/^\d{1,12}$/, { message: 'must be a positive whole number' })
    .transform(Number)
    .pipe(z.number().int().min(1))
    .optional(),
  limit: z
    .string()
    .regex(/^\d{1,4}$/, { message: 'must be a whole number from 1 to 1000' })
    .transform(Number)
    .pipe(z.number().int().min(1).max(1000))
    .optional(),
});
export const NoQuery = z.strictObject({});
export const CustomersQuery = z.strictObject({
  limit: z
    .string()
    .regex(/^\d{1,4}$/, { message: 'must be a whole number from 1 to 1000' })
    .transform(Number)
    .pipe(z.number().int().min(1).max(1000))
    .optional(),
});

// responses -------------------------------------------------------------------------------------

const TIME_FIELDS = ['tm_create', 'tm_update', 'tm_delete'] as const;

/** An action in the public form: an unset `tm_execute` is left out rather than null. */
export function restAction(a: Action): Record<string, unknown> {
  const { tm_execute, ...rest } = a;
  return tm_execute === null ? rest : { ...rest, tm_execute };
}

function withoutNullTimes<T extends Record<string, unknown>>(o: T): T {
  const out: Record<string, unknown> = { ...o };
  for (const f of TIME_FIELDS) if (out[f] === null) delete out[f];
  return out as T;
}

/**
 * VoIPBIN's public form of an activeflow (its `WebhookMessage`): the engine's bookkeeping hidden,
 * empty `webhook_uri`/`webhook_method` left out (Go's omitempty), and unset times left out
 * instead of null, so that every body matches the published schema (whose times are strings).
 * Our additions (`end_reason`, `error`, `on_complete_activeflow_id`, ...) are extra fields.
 */
export function restActiveflow(af: PublicActiveflow & Partial<Activeflow>): Record<string, unknown> {
  const { stack_map: _s, current_stack_id: _c, forward_stack_id: _f, execute_count: _e, ...pub } = af;
  const out: Record<string, unknown> = withoutNullTimes({
    ...pub,
    current_action: restAction(af.current_action),
    executed_actions: af.executed_actions.map(restAction),
  });
  if (out['webhook_uri'] === '') delete out['webhook_uri'];
  if (out['webhook_method'] === '') delete out['webhook_method'];
  return out;
}

export function restFlow(f: Flow): Record<string, unknown> {
  return withoutNullTimes({ ...f, actions: f.actions.map(restAction) });
}

/** The response shapes, for the OpenAPI document. */
const RestAction = z.object({
  id: Uuid,
  next_id: Uuid,
  type: z.string().optional(),
  option: z.record(z.string(), z.unknown()).optional(),
  tm_execute: z.string().optional(),
});
export const RestActiveflow = PublicActiveflow.omit({
  current_action: true,
  executed_actions: true,
  tm_create: true,
  tm_update: true,
  tm_delete: true,
  webhook_uri: true,
  webhook_method: true,
}).extend({
  webhook_uri: z.string().optional(),
  webhook_method: WebhookMethodSchema.optional(),
  current_action: RestAction,
  executed_actions: z.array(RestAction),
  tm_create: z.string().optional(),
  tm_update: z.string().optional(),
  tm_delete: z.string().optional(),
});
/** The body of `GET /v1.0/activeflows/{id}/inspect` (RestActiveflowInspection). */
export function restInspection(af: Activeflow, variables: Record<string, string>): Record<string, unknown> {
  const stacks = Object.fromEntries(Object.entries(af.stack_map).map(([id, s]) => [id, { ...s, actions: s.actions.map(restAction) }]));
  return { ...restActiveflow(af), stack_map: stacks, current_stack_id: af.current_stack_id, forward_stack_id: af.forward_stack_id, execute_count: af.execute_count, variables };
}

/** `GET /v1.0/activeflows/{id}/inspect`: the activeflow with what the public form hides (ours). */
export const RestActiveflowInspection = RestActiveflow.extend({
  stack_map: z.record(z.string(), z.object({ id: Uuid, actions: z.array(RestAction), return_stack_id: Uuid, return_action_id: Uuid })),
  current_stack_id: Uuid,
  forward_stack_id: Uuid,
  execute_count: z.number().int(),
  variables: z.record(z.string(), z.string()),
});
/** `GET /v1.0/activeflows/{id}/timeline`: the activeflow after each move, from its journal (ours, for the dashboard). */
export const RestTimeline = z.object({
  moves: z.array(
    z.object({
      n: z.number().int().describe("the journal entry's number"),
      at: z.string(),
      kind: z.enum(['created', 'rebase', 'move']),
      request: z.record(z.string(), z.unknown()).nullable().describe('what was asked (the verb and its fields), null for the start'),
      activeflow: RestActiveflowInspection,
    }),
  ),
});
export const RestFlow = z.object({
  id: Uuid,
  customer_id: Uuid,
  type: z.string(),
  name: z.string(),
  detail: z.string(),
  actions: z.array(RestAction),
  on_complete_flow_id: Uuid,
  max_idle_seconds: z.number().int().optional(),
  tm_create: z.string().optional(),
  tm_update: z.string().optional(),
  tm_delete: z.string().optional(),
});
export const RestError = z.object({
  error: z.object({
    code: z.string(),
    message: z.string(),
    quota: z
      .string()
      .optional()
      .describe(
        'With 429 limit_exceeded: the quota reached (running_activeflows, creations_per_second, flows, variable_keys, variable_value_bytes, injected_variables_bytes, variables_bytes, pending_requests).',
      ),
  }),
});
