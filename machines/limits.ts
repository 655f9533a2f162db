/**
 * Safety limits (docs/behaviour.md section 8). Every limit is configurable per deployment; the
 * defaults are the numbers of docs/behaviour.md section 8. An activeflow keeps the limits it was created with, so a
 * configuration change never changes the fate of a flow that is already running.
 */
import { z } from 'zod';

export const Limits = z.strictObject({
  max_execute_count: z
    .number()
    .int()
    .positive()
    .default(100)
    .describe("Cursor moves allowed over an activeflow's life: it ends with limit_exceeded when execute_count exceeds this before a move (so 101 moves by default, as VoIPBIN)."),
  max_cycle_iterations: z
    .number()
    .int()
    .positive()
    .default(1000)
    .describe('Moves allowed inside one next/execute/continue cycle before the activeflow ends with limit_exceeded; stops a flow that loops without returning to its reference.'),
  max_complete_count: z.number().int().positive().default(5).describe('Depth of an on_complete chain: the root plus max_complete_count - 1 generations; stops flows that complete into themselves.'),
  max_stack_hops: z.number().int().positive().default(100).describe('Return-stack hops walked while looking for an action; a longer chain ends the flow (FINISH) instead of looping.'),
  max_stacks: z.number().int().positive().default(100).describe('Stacks one activeflow may hold at once; a push beyond it fails, which bounds the snapshot size against runaway pushes.'),
  max_variable_keys: z.number().int().positive().default(100).describe('Caller-supplied variables accepted at creation (after sanitising).'),
  max_variable_value_bytes: z
    .number()
    .int()
    .positive()
    .default(32 * 1024)
    .describe('Largest variable value, in UTF-8 bytes, accepted at creation and by variables_set.'),
  max_injected_variables_bytes: z
    .number()
    .int()
    .positive()
    .default(64 * 1024)
    .describe('Keys plus values, in UTF-8 bytes, of the variables a caller supplies at creation.'),
  max_variables_bytes: z
    .number()
    .int()
    .positive()
    .default(256 * 1024)
    .describe("Keys plus values of all an activeflow's variables; a set beyond it is refused, which bounds the snapshot size."),
});
export type Limits = z.infer<typeof Limits>;
export type LimitsInput = z.input<typeof Limits>;

export const DEFAULT_LIMITS: Limits = Object.freeze(Limits.parse({}));
