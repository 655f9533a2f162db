/**
 * The `activeflow simulate` scenario: one activeflow, the world it runs in (flows, canned HTTP
 * responses and service replies) and the requests to make. Extra fields are allowed, so a
 * scenario can carry notes; the known ones are checked strictly.
 */
import { z } from 'zod';
import { ActionInputList, FlowTypeSchema, Limits, ReferenceTypeSchema, Timestamp, Uuid, Variables } from '../../machines/index.js';

export const ScenarioFlow = z.looseObject({
  id: Uuid.optional(),
  customer_id: Uuid.optional(),
  type: FlowTypeSchema.default('flow'),
  name: z.string().default(''),
  detail: z.string().default(''),
  actions: ActionInputList,
  on_complete_flow_id: Uuid.optional(),
  /** Set to model a deleted flow (which cannot be instantiated). */
  tm_delete: Timestamp.nullable().optional(),
});
export type ScenarioFlow = z.infer<typeof ScenarioFlow>;

const CannedHttp = z.union([z.strictObject({ status: z.number().int().min(100).max(599), body: z.unknown().optional() }), z.strictObject({ error: z.string() })]);
const CannedService = z.union([z.strictObject({ error: z.string() }), z.looseObject({ service_id: Uuid.optional(), push_actions: z.array(z.unknown()).optional(), variables: Variables.optional() })]);

const optionalId = { current_action_id: Uuid.optional() };
/** The caller's request id, as a retry repeats it (an exported run's steps carry theirs). */
const requestId = { request_id: z.string().min(1).max(64).optional() };
export const STEP_OPS = [
  'next',
  'execute',
  'continue',
  'stop',
  'delete',
  'forward',
  'push_actions',
  'add_actions',
  'service_stop',
  'set_variables',
  'delete_variable',
  'get',
  'get_variables',
  'substitute',
] as const;

export const Step = z.discriminatedUnion(
  'op',
  [
    z.looseObject({ op: z.literal('next'), ...optionalId, ...requestId }),
    z.looseObject({ op: z.literal('execute'), ...requestId }),
    z.looseObject({ op: z.literal('continue'), ...optionalId, ...requestId }),
    z.looseObject({ op: z.literal('stop'), reason: z.enum(['stopped', 'reference_ended', 'timeout']).optional(), ...requestId }),
    z.looseObject({ op: z.literal('delete'), ...requestId }),
    z.looseObject({ op: z.literal('forward'), forward_action_id: Uuid, forward_now: z.boolean().optional(), ...requestId }),
    z.looseObject({ op: z.literal('push_actions'), actions: ActionInputList, ...requestId }),
    z.looseObject({ op: z.literal('add_actions'), actions: ActionInputList, ...requestId }),
    z.looseObject({ op: z.literal('service_stop'), service_id: Uuid, ...requestId }),
    z.looseObject({ op: z.literal('set_variables'), variables: Variables, ...requestId }),
    z.looseObject({ op: z.literal('delete_variable'), key: z.string(), ...requestId }),
    z.looseObject({ op: z.literal('get') }),
    z.looseObject({ op: z.literal('get_variables') }),
    z.looseObject({ op: z.literal('substitute'), data: z.string() }),
  ],
  { error: () => `op must be one of ${STEP_OPS.join(', ')}` },
);
export type Step = z.infer<typeof Step>;

export const Scenario = z
  .looseObject({
    id: Uuid.optional(),
    customer_id: Uuid.optional(),
    reference_type: ReferenceTypeSchema.default('call'),
    reference_id: Uuid.optional(),
    actions: ActionInputList.optional(),
    flow: ScenarioFlow.optional(),
    flows: z.array(ScenarioFlow).default([]),
    variables: Variables.optional(),
    webhook_uri: z.string().optional(),
    webhook_method: z.enum(['', 'POST', 'GET', 'PUT', 'DELETE']).optional(),
    /** The clock for the whole run (condition_datetime, timestamps); default: the real time. */
    now: z.string().optional(),
    /**
     * A recorded clock (an exported run): the `now` and entropy of each clock read in order, the
     * creation's first, then each transition's. Past its end, the clock stands at `now`.
     */
    clock: z.array(z.strictObject({ now: Timestamp, entropy: z.string().min(8) })).optional(),
    http: z.record(z.string(), z.union([CannedHttp, z.array(CannedHttp).min(1)])).default({}),
    services: z.record(z.string(), z.union([CannedService, z.array(CannedService).min(1)])).default({}),
    steps: z.array(Step).optional(),
    max_steps: z.number().int().positive().default(1000),
    /** Seeds the generated ids, so that a run is repeatable. */
    seed: z.string().default('activeflow-simulate'),
    limits: Limits.partial().optional(),
  })
  .refine((s) => s.actions !== undefined || s.flow !== undefined, { message: 'give the main stack as "actions" or as "flow"', path: ['actions'] })
  .refine((s) => !(s.actions !== undefined && s.flow !== undefined), { message: 'give "actions" or "flow", not both', path: ['flow'] });
export type Scenario = z.infer<typeof Scenario>;
