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
};

/** The body of each verb, as an API client sends it (validated at the edge, trusted inside). */
export const VerbBodies = {
  next: z.strictObject({ current_action_id: Uuid }),
  execute: z.strictObject({}),
  continue: z.strictObject({ current_action_id: Uuid }),
  stop: z.strictObject({ reason: z.enum(['stopped', 'reference_ended']).optional() }),
  delete: z.strictObject({}),
  forward: z.strictObject({ forward_action_id: Uuid, forward_now: z.boolean().optional() }),
  push_actions: z.strictObject({ actions: ActionInputList }),
  add_actions: z.strictObject({ actions: ActionInputList }),
  service_stop: z.strictObject({ service_id: Uuid }),
  variables_set: z.strictObject({ variables: Variables }),
  variables_delete: z.strictObject({ key: z.string() }),
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
  z.object({ type: z.literal('next'), ...Base, ...VerbBodies.next.shape }),
  z.object({ type: z.literal('execute'), ...Base }),
  z.object({ type: z.literal('continue'), ...Base, ...VerbBodies.continue.shape }),
  z.object({ type: z.literal('stop'), ...Base, ...VerbBodies.stop.shape }),
  z.object({ type: z.literal('delete'), ...Base }),
  z.object({ type: z.literal('forward'), ...Base, ...VerbBodies.forward.shape }),
  z.object({ type: z.literal('push_actions'), ...Base, ...VerbBodies.push_actions.shape }),
  z.object({ type: z.literal('add_actions'), ...Base, ...VerbBodies.add_actions.shape }),
  z.object({ type: z.literal('service_stop'), ...Base, ...VerbBodies.service_stop.shape }),
  z.object({ type: z.literal('variables_set'), ...Base, ...VerbBodies.variables_set.shape }),
  z.object({ type: z.literal('variables_delete'), ...Base, ...VerbBodies.variables_delete.shape }),
  z.object({ type: z.literal('effect_result'), ...Base, effect_id: z.string(), result: EffectResult }),
]);
export type EngineEvent = z.infer<typeof EngineEvent>;
