/**
 * Effects out of the machine: named descriptors of work the host performs (docs/architecture.md, design 5).
 * An effect with `await: true` holds the cycle until its result comes back as an `effect_result`
 * event; the others are fire-and-forget.
 */
import { z } from 'zod';
import { Action, Uuid, Variables } from './schema.js';
import { ReferenceTypeSchema } from './schema.js';

export const HttpRequestEffect = z.object({
  type: z.literal('http_request'),
  effect_id: z.string(),
  /** `fetch` needs a JSON array of actions back; `webhook_send` only needs the request sent. */
  purpose: z.enum(['fetch', 'webhook_send']),
  action_id: Uuid,
  method: z.string(),
  url: z.string(),
  headers: z.record(z.string(), z.string()),
  body: z.string(),
  await: z.boolean(),
});

export const ServiceRequestEffect = z.object({
  type: z.literal('service_request'),
  effect_id: z.string(),
  action_type: z.string(),
  /** `activeflow.service.<action_type>` (docs/architecture.md, design 6). */
  subject: z.string(),
  request: z.object({
    activeflow_id: Uuid,
    customer_id: Uuid,
    reference_type: ReferenceTypeSchema,
    reference_id: Uuid,
    action: Action,
  }),
  await: z.boolean(),
});

export const FlowGetEffect = z.object({
  type: z.literal('flow_get'),
  effect_id: z.string(),
  flow_id: Uuid,
  customer_id: Uuid,
  await: z.literal(true),
});

/** Start the on_complete activeflow (behaviour section 7): the host creates it, then executes it. */
export const StartChildEffect = z.object({
  type: z.literal('start_child'),
  effect_id: z.string(),
  activeflow_id: Uuid,
  customer_id: Uuid,
  flow_id: Uuid,
  reference_type: ReferenceTypeSchema,
  reference_id: Uuid,
  reference_activeflow_id: Uuid,
  variables: Variables,
  await: z.literal(false),
});

/** `forward_now`: ask the reference's service to end its current media action and call `next`. */
export const ReferenceActionNextEffect = z.object({
  type: z.literal('reference_action_next'),
  effect_id: z.string(),
  activeflow_id: Uuid,
  reference_type: ReferenceTypeSchema,
  reference_id: Uuid,
  await: z.literal(false),
});

export const Effect = z.discriminatedUnion('type', [HttpRequestEffect, ServiceRequestEffect, FlowGetEffect, StartChildEffect, ReferenceActionNextEffect]);
export type Effect = z.infer<typeof Effect>;

/** What a service answers on `activeflow.service.<action_type>` (docs/architecture.md, design 6). */
export const ServiceReply = z.looseObject({
  service_id: Uuid.optional(),
  push_actions: z.array(z.unknown()).optional(),
  variables: Variables.optional(),
});
export type ServiceReply = z.infer<typeof ServiceReply>;

/** The create request of an on_complete child, as every host sends it (its id fixed by the parent). */
export function childCreateRequest(effect: Extract<Effect, { type: 'start_child' }>) {
  return {
    id: effect.activeflow_id,
    customer_id: effect.customer_id,
    flow_id: effect.flow_id,
    reference_type: effect.reference_type,
    reference_id: effect.reference_id,
    reference_activeflow_id: effect.reference_activeflow_id,
  };
}
