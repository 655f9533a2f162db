/**
 * The domain's shapes as zod schemas: the single source of truth for types and for validation at
 * trust boundaries. Stored shapes (what the engine trusts) are lenient about action types, so a
 * snapshot written by a newer version still restores; input shapes are strict.
 */
import { z } from 'zod';
import { ACTION_TYPES, REFERENCE_TYPES } from './action-kinds.js';
import { NIL, RESERVED_ACTION_IDS } from './constants.js';
import { ACTION_OPTION_SCHEMAS } from './action-options.js';

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A UUID; upper case is accepted and stored lower case, as VoIPBIN's routes only match lower case. */
export const Uuid = z.string().toLowerCase().regex(UUID_RE, { message: 'must be a UUID such as 3f2504e0-4f89-41d3-9a0c-0305e82c3301' });
export type Uuid = z.infer<typeof Uuid>;

/** Timestamps as VoIPBIN's REST API prints them: `2026-01-15T09:30:00.000000Z`. */
export const Timestamp = z.string().regex(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$/, { message: 'must be a UTC timestamp like 2026-01-15T09:30:00.000000Z' });
export type Timestamp = z.infer<typeof Timestamp>;

/** Edit distance, for "did you mean" hints on misspelt action types. */
function distance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return row[b.length]!;
}

export const ActionTypeSchema = z.enum(ACTION_TYPES, {
  error: (issue) => {
    if (issue.input === undefined) return 'an action needs a type (talk, answer, goto, ...; see docs/engine.md)';
    if (typeof issue.input !== 'string') return `the action type must be a string, not ${JSON.stringify(issue.input)}`;
    const given = issue.input;
    const best = [...ACTION_TYPES].sort((x, y) => distance(given, x) - distance(given, y))[0]!;
    const hint = distance(given, best) <= 2 ? ` (did you mean "${best}"?)` : '';
    return `unknown action type "${given}"${hint}; the types are listed in docs/engine.md and docs/behaviour.md`;
  },
});
export const ReferenceTypeSchema = z.enum(REFERENCE_TYPES);
export const WebhookMethodSchema = z.enum(['', 'POST', 'GET', 'PUT', 'DELETE']);
export type WebhookMethod = z.infer<typeof WebhookMethodSchema>;

export const Option = z.record(z.string(), z.unknown());
export type Option = z.infer<typeof Option>;

/**
 * An action as stored in a stack or in the history. Pseudo actions (START, FINISH, the empty
 * action) have neither `type` nor `option`, exactly as VoIPBIN serialises them.
 */
export const Action = z.object({
  id: Uuid,
  next_id: Uuid,
  type: z.string().optional(),
  option: Option.optional(),
  tm_execute: z.string().nullable(),
});
export type Action = z.infer<typeof Action>;

/**
 * An action as a client writes it (flow create/update, push_actions, add_actions, fetch replies):
 * a known type, an option that fits the type, and optional ids. Unknown fields on the action
 * itself are rejected, because a misspelt `options` would otherwise silently drop every option.
 */
export const ActionInput = z
  .strictObject({
    id: Uuid.optional(),
    next_id: Uuid.optional(),
    type: ActionTypeSchema,
    option: Option.optional(),
    tm_execute: z.string().nullable().optional(),
  })
  .superRefine((action, ctx) => {
    if (action.id !== undefined && RESERVED_ACTION_IDS.has(action.id)) {
      ctx.addIssue({ code: 'custom', path: ['id'], message: `is reserved (${action.id} names a pseudo action); omit it to get a new id` });
    }
    const schema = ACTION_OPTION_SCHEMAS[action.type];
    const parsed = schema.safeParse(action.option ?? {});
    if (!parsed.success) {
      for (const issue of parsed.error.issues) {
        ctx.addIssue({ code: 'custom', path: ['option', ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))], message: issue.message });
      }
    }
  });
export type ActionInput = z.infer<typeof ActionInput>;

/**
 * The most actions one list may hold (a flow, inline actions, a push): stored with their ids, a list
 * of this many stays well under NATS's 1 MiB payload, which every read of it must fit in.
 */
export const MAX_ACTIONS_PER_LIST = 1_000;

/** A list of client actions whose given ids are unique (lookups take the first match). */
export const ActionInputList = z
  .array(ActionInput)
  .max(MAX_ACTIONS_PER_LIST, { message: `at most ${MAX_ACTIONS_PER_LIST} actions are accepted in one list (limit actions_per_list)` })
  .superRefine((actions, ctx) => {
    const seen = new Set<string>();
    actions.forEach((a, i) => {
      if (a.id === undefined) return;
      if (seen.has(a.id)) ctx.addIssue({ code: 'custom', path: [i, 'id'], message: `duplicates the id of an earlier action (${a.id})` });
      seen.add(a.id);
    });
  });

export const Stack = z.object({
  id: Uuid,
  actions: z.array(Action),
  return_stack_id: Uuid,
  return_action_id: Uuid,
});
export type Stack = z.infer<typeof Stack>;

export const StackMap = z.record(z.string(), Stack);
export type StackMap = z.infer<typeof StackMap>;

export const Variables = z.record(z.string(), z.string());
export type Variables = z.infer<typeof Variables>;

export const FLOW_TYPES = ['flow', 'conference', 'queue', 'campaign', 'transfer'] as const;
export const FlowTypeSchema = z.enum(FLOW_TYPES);

export const Flow = z.object({
  id: Uuid,
  customer_id: Uuid,
  type: FlowTypeSchema,
  name: z.string(),
  detail: z.string(),
  actions: z.array(Action),
  on_complete_flow_id: Uuid,
  /**
   * Ours (not VoIPBIN's): an activeflow of this flow that has not changed for this long is ended
   * with end_reason `timeout` by the node's watchdog. Absent or 0: only the deployment's ceiling.
   */
  max_idle_seconds: z.number().int().min(0).optional(),
  tm_create: Timestamp.nullable(),
  tm_update: Timestamp.nullable(),
  tm_delete: Timestamp.nullable(),
});
export type Flow = z.infer<typeof Flow>;

export const END_REASONS = ['finished', 'stop_action', 'stopped', 'reference_ended', 'error', 'limit_exceeded', 'deleted', 'timeout'] as const;
export const EndReasonSchema = z.enum(END_REASONS);
export type EndReason = z.infer<typeof EndReasonSchema>;

export const ActiveflowError = z.object({
  action_id: Uuid,
  action_type: z.string(),
  message: z.string(),
});
export type ActiveflowError = z.infer<typeof ActiveflowError>;

/** The internal form (NATS API, snapshots): everything, including the stacks and the cursor. */
export const Activeflow = z.object({
  id: Uuid,
  customer_id: Uuid,
  flow_id: Uuid,
  status: z.enum(['running', 'ended']),
  reference_type: ReferenceTypeSchema,
  reference_id: Uuid,
  reference_activeflow_id: Uuid,
  on_complete_flow_id: Uuid,
  webhook_uri: z.string(),
  webhook_method: WebhookMethodSchema,
  stack_map: StackMap,
  current_stack_id: Uuid,
  current_action: Action,
  forward_stack_id: Uuid,
  forward_action_id: Uuid,
  execute_count: z.number().int().nonnegative(),
  executed_actions: z.array(Action),
  /** `""` while running; why it ended afterwards (behaviour section 9.11). */
  end_reason: z.union([z.literal(''), EndReasonSchema]),
  error: ActiveflowError.nullable(),
  /** The activeflow its on_complete flow started, NIL when none was started. */
  on_complete_activeflow_id: Uuid,
  /** Why no on_complete activeflow was started although one was configured; `""` otherwise. */
  on_complete_error: z.string(),
  tm_create: Timestamp,
  tm_update: Timestamp.nullable(),
  tm_delete: Timestamp.nullable(),
});
export type Activeflow = z.infer<typeof Activeflow>;

/** The public form (REST, webhooks, events) hides the engine's bookkeeping. */
export const PublicActiveflow = Activeflow.omit({
  stack_map: true,
  current_stack_id: true,
  forward_stack_id: true,
  execute_count: true,
});
export type PublicActiveflow = z.infer<typeof PublicActiveflow>;

/** The public form without its history (events in the outbox keep only the history's length). */
export function toPublicWithoutHistory(af: Activeflow): Omit<PublicActiveflow, 'executed_actions'> {
  // Field by field, in the schema's order (the JSON's), rather than a rest of the others: a literal
  // of known shape is built several times faster, and this runs for every event of every move.
  // The return type makes a field added to the schema but not here a compile error.
  return {
    id: af.id,
    customer_id: af.customer_id,
    flow_id: af.flow_id,
    status: af.status,
    reference_type: af.reference_type,
    reference_id: af.reference_id,
    reference_activeflow_id: af.reference_activeflow_id,
    on_complete_flow_id: af.on_complete_flow_id,
    webhook_uri: af.webhook_uri,
    webhook_method: af.webhook_method,
    current_action: af.current_action,
    forward_action_id: af.forward_action_id,
    end_reason: af.end_reason,
    error: af.error,
    on_complete_activeflow_id: af.on_complete_activeflow_id,
    on_complete_error: af.on_complete_error,
    tm_create: af.tm_create,
    tm_update: af.tm_update,
    tm_delete: af.tm_delete,
  };
}

export const EMPTY_ACTION: Action = Object.freeze({ id: NIL, next_id: NIL, tm_execute: null }) as Action;
