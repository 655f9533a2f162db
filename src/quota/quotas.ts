/**
 * Per-customer quotas: deployment-wide defaults (the node's QUOTA_* settings), overridable per
 * customer in `af_quotas` (`activeflow quotas set`). One schema is the source of the names that
 * `limit_exceeded` errors carry, the CLI's flags and the docs.
 */
import { z } from 'zod';
import type { Limits } from '../../machines/index.js';

const count = () => z.number().int().nonnegative();

export const Quotas = z.strictObject({
  running_activeflows: count().describe('Activeflows of the customer running at once, across the cluster. A create beyond it is refused; an on_complete child beyond it is not started (logged).'),
  creations_per_second: z.number().nonnegative().describe("Sustained rate of activeflow creations (token bucket). on_complete children are not held to it: refusing one would stall its parent's end."),
  creation_burst: count().describe("Creations allowed at once after a quiet spell (the token bucket's size); at least 1 is always allowed."),
  flows: count().describe("Flows a customer may store (VoIPBIN's limit is 10,000)."),
  variable_keys: count().describe('Caller-supplied variables accepted at creation.'),
  variable_value_bytes: count().describe('Largest variable value, in UTF-8 bytes (creation, variables_set, variable_set).'),
  injected_variables_bytes: count().describe('Keys plus values of the variables a caller supplies at creation.'),
  variables_bytes: count().describe("Keys plus values of all of one activeflow's variables."),
});
export type Quotas = z.infer<typeof Quotas>;

/** What an operator stores for one customer: any subset; the rest follows the defaults. */
export const QuotaOverride = Quotas.partial();
export type QuotaOverride = z.infer<typeof QuotaOverride>;

/** The built-in defaults; each is a QUOTA_* setting of the node. */
export const DEFAULT_QUOTAS: Quotas = Object.freeze({
  running_activeflows: 50_000,
  creations_per_second: 1_000,
  creation_burst: 2_000,
  flows: 10_000,
  variable_keys: 100,
  variable_value_bytes: 32 * 1024,
  injected_variables_bytes: 64 * 1024,
  variables_bytes: 256 * 1024,
});

/** An activeflow's limits with the customer's variable quotas in place (it keeps them for life). */
export function limitsFor(base: Limits, q: Quotas): Limits {
  return {
    ...base,
    max_variable_keys: q.variable_keys,
    max_variable_value_bytes: q.variable_value_bytes,
    max_injected_variables_bytes: q.injected_variables_bytes,
    max_variables_bytes: q.variables_bytes,
  };
}

/** `activeflow.admin.v1.quotas.<verb>` requests. */
export const QuotaRequests = {
  get: z.strictObject({ customer_id: z.uuid() }),
  /** A null value drops that quota's override (the default applies again). */
  set: z.strictObject({
    customer_id: z.uuid(),
    quotas: z
      .strictObject(
        Object.fromEntries(Object.entries(Quotas.shape).map(([k, v]) => [k, v.nullable().optional()])) as {
          [K in keyof Quotas]: z.ZodOptional<z.ZodNullable<(typeof Quotas.shape)[K]>>;
        },
      )
      .refine((q) => Object.keys(q).length > 0, { message: 'name at least one quota to change' }),
  }),
  reset: z.strictObject({ customer_id: z.uuid() }),
};
