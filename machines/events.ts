/**
 * Events into the machine: one per API verb that can change an activeflow, plus the results of
 * the effects it asked for. Every event carries the host's clock (`now`) and fresh random bits
 * (`entropy`), because the machine itself reads neither.
 */
import { z } from 'zod';
import { ActionInputList, Timestamp, Uuid, Variables } from './schema.js';

const Base = {
  /** Correlates the reply in the outbox with the request that caused it. */
  request_id: z.string().min(1),
  now: Timestamp,
  entropy: z.string().min(8),
  /**
   * The caller's own id for this request, the same on every retry of it: a repeat is answered
   * as the first time and not applied again.
   */
  client_request_id: z.string().min(1).max(64).optional(),
};

/** What each verb carries into the engine. */
const Fields = {
  next: { current_action_id: Uuid },
  execute: {},
  continue: { current_action_id: Uuid },
  /** `timeout` comes from the node's idle watchdog only; the API takes the other two. */
  stop: { reason: z.enum(['stopped', 'reference_ended', 'timeout']).optional() },
  delete: {},
  forward: { forward_action_id: Uuid, forward_now: z.boolean().optional() },
  push_actions: { actions: ActionInputList },
  add_actions: { actions: ActionInputList },
  service_stop: { service_id: Uuid },
  variables_set: { variables: Variables },
  variables_delete: { key: z.string() },
} as const;

/** The caller's id for a request, reused on its retries (it becomes `client_request_id`). */
const requestId = { request_id: z.string().min(1).max(64).optional() };

/** The body of each verb, as an API client sends it (validated at the edge, trusted inside). */
export const VerbBodies = {
  next: z.strictObject({ ...Fields.next, ...requestId }),
  execute: z.strictObject({ ...Fields.execute, ...requestId }),
  continue: z.strictObject({ ...Fields.continue, ...requestId }),
  stop: z.strictObject({ ...Fields.stop, ...requestId }),
  delete: z.strictObject({ ...Fields.delete, ...requestId }),
  forward: z.strictObject({ ...Fields.forward, ...requestId }),
  push_actions: z.strictObject({ ...Fields.push_actions, ...requestId }),
  add_actions: z.strictObject({ ...Fields.add_actions, ...requestId }),
  service_stop: z.strictObject({ ...Fields.service_stop, ...requestId }),
  variables_set: z.strictObject({ ...Fields.variables_set, ...requestId }),
  variables_delete: z.strictObject({ ...Fields.variables_delete, ...requestId }),
} as const;
export type Verb = keyof typeof VerbBodies;
export const VERBS = Object.keys(VerbBodies) as Verb[];

export const HttpResult = z.object({ kind: z.literal('http'), status: z.number().int(), body: z.unknown() });
export const ServiceResult = z.object({ kind: z.literal('service'), reply: z.unknown() });
export const FlowResult = z.object({ kind: z.literal('flow'), flow: z.unknown().nullable() });
export const FailureResult = z.object({ kind: z.literal('failure'), message: z.string() });
export const EffectResult = z.discriminatedUnion('kind', [HttpResult, ServiceResult, FlowResult, FailureResult]);
export type EffectResult = z.infer<typeof EffectResult>;

export const EngineEvent = z.discriminatedUnion('type', [
  z.object({ type: z.literal('next'), ...Base, ...Fields.next }),
  z.object({ type: z.literal('execute'), ...Base }),
  z.object({ type: z.literal('continue'), ...Base, ...Fields.continue }),
  z.object({ type: z.literal('stop'), ...Base, ...Fields.stop }),
  z.object({ type: z.literal('delete'), ...Base }),
  z.object({ type: z.literal('forward'), ...Base, ...Fields.forward }),
  z.object({ type: z.literal('push_actions'), ...Base, ...Fields.push_actions }),
  z.object({ type: z.literal('add_actions'), ...Base, ...Fields.add_actions }),
  z.object({ type: z.literal('service_stop'), ...Base, ...Fields.service_stop }),
  z.object({ type: z.literal('variables_set'), ...Base, ...Fields.variables_set }),
  z.object({ type: z.literal('variables_delete'), ...Base, ...Fields.variables_delete }),
  z.object({ type: z.literal('effect_result'), ...Base, effect_id: z.string(), result: EffectResult }),
]);
export type EngineEvent = z.infer<typeof EngineEvent>;
