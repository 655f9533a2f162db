/**
 * The one loop every host runs for a request, written once: apply the request, start the effects
 * it asked for, and while one of them is awaited, perform it and apply its result; then answer.
 *
 *   transition ─▶ launch effects ─▶ reply
 *        ▲             │ awaited effect
 *        └─ effect_result ◀─ perform
 *
 * The loop is a generator of the steps a host takes (`transition`, `launch`, `perform`), so that
 * the live actor (actors/activeflow-actor.ts: each transition stored, effects over the network)
 * and the in-process host of `activeflow simulate` and the property tests (actors/local-host.ts:
 * in memory, canned effects) drive the very same code, one asynchronously, one synchronously.
 */
import type { Effect, EffectResult, EngineError, EngineEvent, EngineState, Reply, Verb } from '../machines/index.js';

export type CycleStep =
  /** Apply the event (and, on a node, store the result): answered with the new state. */
  | { kind: 'transition'; event: EngineEvent }
  /** Start a fire-and-forget effect: answered with nothing. */
  | { kind: 'launch'; effect: Effect }
  /** Perform the awaited effect: answered with its result. */
  | { kind: 'perform'; effect: Effect };

export interface CycleRequest {
  verb: Verb;
  /** The validated body; `request_id`, the client's, travels as `client_request_id`; `customer_id` is left out. */
  body: Record<string, unknown>;
  /** The id this request's reply is found by. */
  requestId: string;
  /** The id of each effect result the cycle applies. */
  effectRequestId: () => string;
  /** The clock and entropy of each event. */
  stamp: () => { now: string; entropy: string };
}

/** What the request came to: the engine's reply and the state it was given in. */
export interface CycleOutcome {
  reply: Reply | undefined;
  state: EngineState;
}

export function* requestCycle(r: CycleRequest): Generator<CycleStep, CycleOutcome, unknown> {
  // Built field by field, in the order an object rest and spreads would give (the body's fields,
  // then type, request_id, now, entropy, client_request_id): the rest and spreads took ~5 us per
  // request, 2-3% of a node's CPU per move. A body's customer_id is the host's check, made before
  // the cycle, never the engine's input; its request_id travels as client_request_id.
  const body = r.body;
  const event: Record<string, unknown> = {};
  for (const key of Object.keys(body)) if (key !== 'request_id' && key !== 'customer_id' && key !== '__proto__') event[key] = body[key];
  event['type'] = r.verb;
  event['request_id'] = r.requestId;
  const { now, entropy } = r.stamp();
  event['now'] = now;
  event['entropy'] = entropy;
  if (body['request_id'] !== undefined) event['client_request_id'] = body['request_id'];
  const first = event as EngineEvent;
  const state = (yield { kind: 'transition', event: first }) as EngineState;
  return yield* settle(state, null, r);
}

/**
 * A cycle that was waiting on an effect when its former host stopped (the snapshot's `pending`):
 * the effect is performed again and the cycle goes on from there. Its other effects were started
 * by that host.
 */
export function* resumeCycle(state: EngineState, effect: Effect, r: Pick<CycleRequest, 'effectRequestId' | 'stamp'>): Generator<CycleStep, CycleOutcome, unknown> {
  return yield* settle(state, effect, { ...r, requestId: null });
}

/** Launches a state's effects and performs the awaited one, applying its result, until none is awaited. */
function* settle(from: EngineState, awaitedFirst: Effect | null, r: Pick<CycleRequest, 'effectRequestId' | 'stamp'> & { requestId: string | null }): Generator<CycleStep, CycleOutcome, unknown> {
  const find = (s: EngineState) => (r.requestId === null ? undefined : s.outbox.replies.find((x) => x.request_id === r.requestId));
  let state = from;
  let reply = find(state);
  let awaited = awaitedFirst;
  for (;;) {
    if (awaited === null) {
      for (const effect of state.outbox.effects) {
        if (effect.await) awaited = effect;
        else yield { kind: 'launch', effect };
      }
      if (awaited === null) break;
    }
    const result = (yield { kind: 'perform', effect: awaited }) as EffectResult;
    state = (yield { kind: 'transition', event: { type: 'effect_result', request_id: r.effectRequestId(), ...r.stamp(), effect_id: awaited.effect_id, result } }) as EngineState;
    reply ??= find(state);
    awaited = null;
  }
  return { reply, state };
}

/** A reply as the API answers it: the action, the activeflow, or its variables. */
export function replyValue(reply: Reply, state: EngineState): { ok: true; value: unknown } | { ok: false; error: EngineError } {
  if (!reply.ok) return { ok: false, error: reply.error };
  switch (reply.value.kind) {
    case 'action':
      return { ok: true, value: reply.value.action };
    case 'activeflow':
      return { ok: true, value: state.activeflow };
    case 'variables':
      return { ok: true, value: { id: state.activeflow.id, variables: state.variables } };
  }
}

/** Runs a cycle whose steps are answered at once (an in-process host). */
export function driveSync<T>(cycle: Generator<CycleStep, T, unknown>, take: (step: CycleStep) => unknown): T {
  let next = cycle.next();
  while (!next.done) next = cycle.next(take(next.value));
  return next.value;
}

/** Runs a cycle whose steps take time (a node: writes, network effects); a failed step ends it. */
export async function driveAsync<T>(cycle: Generator<CycleStep, T, unknown>, take: (step: CycleStep) => unknown): Promise<T> {
  let next = cycle.next();
  while (!next.done) next = cycle.next(await take(next.value));
  return next.value;
}
