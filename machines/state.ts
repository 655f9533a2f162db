/**
 * The machine's context: the activeflow, its variables and the engine's bookkeeping. It is the
 * persisted snapshot's payload, so it is a zod schema too (checked when read back from storage).
 */
import { z } from 'zod';
import { Effect } from './effects.js';
import { ERROR_CODES } from './errors.js';
import { Limits } from './limits.js';
import { Action, Activeflow, PublicActiveflow, Timestamp, Uuid, Variables } from './schema.js';

export const STREAM_EVENT_TYPES = ['activeflow_created', 'activeflow_updated', 'activeflow_ended', 'activeflow_deleted'] as const;

/**
 * The most executed actions an event carries. VoIPBIN's limit of 100 moves keeps every history
 * below it, so within the default limits an event is VoIPBIN's public form, whole. Past it (limits
 * raised), an event carries the latest EVENT_HISTORY_MAX and says how many older ones it left out
 * (`executed_actions_omitted`; `get` has them all): otherwise every event repeats the whole history,
 * a move's cost grows with it (measured: 1.9x slower at 2,000 moves) and a long one outgrows NATS's
 * 1 MiB payload.
 */
export const EVENT_HISTORY_MAX = 128;

/** One entry of the `ACTIVEFLOW_EVENTS` stream: `seq` is contiguous per activeflow, from 1. */
export const StreamEvent = z.object({
  type: z.enum(STREAM_EVENT_TYPES),
  seq: z.number().int().positive(),
  at: Timestamp,
  data: PublicActiveflow.extend({
    executed_actions_omitted: z.number().int().positive().optional().describe('Older executed actions left out of this event (it carries the latest 128); get the activeflow for all of them.'),
  }),
});
export type StreamEvent = z.infer<typeof StreamEvent>;

/**
 * An event as the outbox keeps it: its history is a prefix of the activeflow's, so only its
 * length is stored (`executed_count`) and `materializeEvents` rebuilds the full event. Snapshots
 * written before this change hold full events (no `executed_count`); they still restore.
 */
export const OutboxEvent = z.object({
  type: z.enum(STREAM_EVENT_TYPES),
  seq: z.number().int().positive(),
  at: Timestamp,
  data: PublicActiveflow.omit({ executed_actions: true }).extend({ executed_actions: z.array(Action).optional() }),
  executed_count: z.number().int().nonnegative().optional(),
});
export type OutboxEvent = z.infer<typeof OutboxEvent>;

/**
 * A reply names what to send rather than copying it: the host reads the activeflow or the
 * variables from the context, so a snapshot never holds a second copy of them.
 */
export const ReplyValue = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('action'), action: Action }),
  z.object({ kind: z.literal('activeflow') }),
  z.object({ kind: z.literal('variables') }),
]);
export type ReplyValue = z.infer<typeof ReplyValue>;

export const Reply = z.discriminatedUnion('ok', [
  z.object({ request_id: z.string(), ok: z.literal(true), value: ReplyValue }),
  z.object({ request_id: z.string(), ok: z.literal(false), error: z.object({ code: z.enum(ERROR_CODES), message: z.string() }) }),
]);
export type Reply = z.infer<typeof Reply>;

/** What the last transition produced; replaced by every transition. */
export const Outbox = z.object({
  replies: z.array(Reply),
  effects: z.array(Effect),
  events: z.array(OutboxEvent),
});
export type Outbox = z.infer<typeof Outbox>;

export const CycleVerb = z.enum(['next', 'execute', 'continue']);
export type CycleVerb = z.infer<typeof CycleVerb>;

/** A cycle held by an awaited effect; its request is answered when the result comes back. */
export const Pending = z.object({
  request_id: z.string(),
  client_request_id: z.string().optional(),
  verb: CycleVerb,
  from_action_id: Uuid,
  effect_id: z.string(),
  effect_type: z.string(),
  action_id: Uuid,
  iterations: z.number().int().nonnegative(),
});
export type Pending = z.infer<typeof Pending>;

/** The answer of the last `next`, kept so a retry after a lost reply gets it again (behaviour 9.5). */
export const LastNext = z.object({
  from_action_id: Uuid,
  version: z.number().int().nonnegative(),
  result: Action,
});
export type LastNext = z.infer<typeof LastNext>;

/** A request answered recently, by the caller's request id (bounded: RECENT_REQUESTS). */
export const RecentRequest = z.object({
  id: z.string(),
  verb: z.string(),
  reply: z.discriminatedUnion('ok', [
    z.object({ ok: z.literal(true), value: ReplyValue }),
    z.object({ ok: z.literal(false), error: z.object({ code: z.enum(ERROR_CODES), message: z.string(), quota: z.string().optional() }) }),
  ]),
});
export type RecentRequest = z.infer<typeof RecentRequest>;
export const RECENT_REQUESTS = 8;

export const EngineState = z.object({
  activeflow: Activeflow,
  variables: Variables,
  limits: Limits,
  /** Sequence number of the last stream event. */
  seq: z.number().int().nonnegative(),
  /** Bumped by every change to the cursor, the stacks or the status; variables do not count. */
  version: z.number().int().nonnegative(),
  last_next: LastNext.nullable(),
  /** Snapshots written before request ids existed have none. */
  recent_requests: z.array(RecentRequest).default([]),
  pending: Pending.nullable(),
  outbox: Outbox,
});
export type EngineState = z.infer<typeof EngineState>;

export const emptyOutbox = (): Outbox => ({ replies: [], effects: [], events: [] });

/** The outbox's events in their stream form, each with its own history (its latest EVENT_HISTORY_MAX). */
export function materializeEvents(state: EngineState): StreamEvent[] {
  const history = state.activeflow.executed_actions;
  return state.outbox.events.map((e) => {
    const { executed_count: count, ...event } = e;
    // One copy of at most EVENT_HISTORY_MAX entries per event: this runs for every move.
    const end = event.data.executed_actions?.length ?? count ?? history.length;
    const omitted = Math.max(0, end - EVENT_HISTORY_MAX);
    const executed = (event.data.executed_actions ?? history).slice(omitted, end);
    return { ...event, data: { ...event.data, executed_actions: executed, ...(omitted > 0 ? { executed_actions_omitted: omitted } : {}) } };
  });
}
