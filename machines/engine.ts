/**
 * The engine's transition function: `reduce(state, event)` gives the next state, with the
 * replies, effects and stream events of this transition in `outbox`. Pure: no clock, no random,
 * no I/O; the XState machine calls it and the host performs what the outbox asks for.
 *
 *   request ──▶ verb ──▶ [cycle: move ─▶ run action ─▶ move ...] ──▶ reply
 *                               │ awaited effect               ▲
 *                               └──▶ pending ── effect_result ─┘
 */
import { ACTION_KINDS, isActionType, isAvailable } from './action-kinds.js';
import { prepareActions } from './actions.js';
import { conditionCallDigitsHolds, conditionCallStatusHolds, conditionDatetimeHolds, conditionVariableHolds } from './conditions.js';
import { FINISH, MAIN, NIL, START } from './constants.js';
import { ServiceReply, type Effect } from './effects.js';
import { describeIssues, engineError, type EngineError } from './errors.js';
import type { EffectResult, EngineEvent } from './events.js';
import { idSource, type IdSource } from './ids.js';
import { ActionInputList, EMPTY_ACTION, Flow, toPublicWithoutHistory, type Action, type Activeflow, type ActiveflowError, type EndReason } from './schema.js';
import { FINISH_ACTION, getAction, getNextAction, insertAfter, isInReturnChain, pushStack, removeStackAndAbove, replaceAction } from './stack-map.js';
import { emptyOutbox, RECENT_REQUESTS, CycleVerb, type EngineState, type Outbox, type Pending, type RecentRequest, type ReplyValue } from './state.js';
import { completeCountOf, setVariables, substitute, substituteOption } from './variables.js';

/** One transition's working copy. Nested objects of the old state are replaced, never mutated. */
interface Draft {
  state: EngineState;
  outbox: Outbox;
  now: string;
  ids: IdSource;
  /** request_id -> the caller's id and verb, for the replies to remember. */
  clientIds: Map<string, { id: string; verb: string }>;
}

type Outcome = { kind: 'continue' } | { kind: 'block' } | { kind: 'ended' } | { kind: 'await'; effect: Effect } | { kind: 'fail'; message: string };

const CONTINUE: Outcome = { kind: 'continue' };
const fail = (message: string): Outcome => ({ kind: 'fail', message });

// ---------------------------------------------------------------------------------------------
// small helpers

function update(d: Draft, patch: Partial<Activeflow>): void {
  d.state = { ...d.state, activeflow: { ...d.state.activeflow, ...patch, tm_update: d.now } };
}

function bumpVersion(d: Draft): void {
  d.state = { ...d.state, version: d.state.version + 1 };
}

function emit(d: Draft, type: 'activeflow_created' | 'activeflow_updated' | 'activeflow_ended' | 'activeflow_deleted'): void {
  const seq = d.state.seq + 1;
  d.state = { ...d.state, seq };
  const af = d.state.activeflow;
  d.outbox.events.push({ type, seq, at: d.now, data: toPublicWithoutHistory(af), executed_count: af.executed_actions.length });
}

function reply(d: Draft, requestId: string, value: ReplyValue): void {
  d.outbox.replies.push({ request_id: requestId, ok: true, value });
  remember(d, requestId, { ok: true, value });
}

function replyError(d: Draft, requestId: string, error: EngineError): void {
  d.outbox.replies.push({ request_id: requestId, ok: false, error });
  remember(d, requestId, { ok: false, error });
}

const CYCLE_VERBS: ReadonlySet<string> = new Set(CycleVerb.options);

/**
 * Keeps the answer to a request that carried the caller's id, so a repeat gets it again.
 * Of the cycle requests (next, execute, continue) only the latest is kept: each names the action it
 * moves from, so once a later one was applied an earlier one can no longer be what a caller is
 * retrying, and their answers (whole actions) were most of the kept answers' bytes in a snapshot.
 */
function remember(d: Draft, requestId: string, answer: RecentRequest['reply']): void {
  const client = d.clientIds.get(requestId);
  if (client === undefined) return;
  const cycle = CYCLE_VERBS.has(client.verb);
  const kept = (d.state.recent_requests ?? []).filter((r) => r.id !== client.id && !(cycle && CYCLE_VERBS.has(r.verb)));
  const recent = [...kept, { id: client.id, verb: client.verb, reply: answer }];
  d.state = { ...d.state, recent_requests: recent.slice(-RECENT_REQUESTS) };
}

const opt = (a: Action): Record<string, unknown> => a.option ?? {};
const str = (v: unknown): string => (typeof v === 'string' ? v : '');

// ---------------------------------------------------------------------------------------------
// ending

/**
 * Ends a running activeflow: status, reason, the on_complete child (as an effect), then the
 * final `activeflow_updated` and `activeflow_ended`. A cycle still waiting on an effect is
 * answered here, because its request would otherwise never get a reply.
 */
function end(d: Draft, reason: EndReason, error: ActiveflowError | null = null): void {
  const af = d.state.activeflow;
  if (af.status === 'ended') return;
  const patch: Partial<Activeflow> = { status: 'ended', end_reason: reason, error };
  if (af.on_complete_flow_id !== NIL) {
    const parentCount = completeCountOf(d.state.variables);
    if (parentCount + 1 < d.state.limits.max_complete_count) {
      const childId = d.ids.next();
      patch.on_complete_activeflow_id = childId;
      d.outbox.effects.push({
        type: 'start_child',
        effect_id: d.ids.next(),
        activeflow_id: childId,
        customer_id: af.customer_id,
        flow_id: af.on_complete_flow_id,
        reference_type: af.reference_type,
        reference_id: af.reference_id,
        reference_activeflow_id: af.id,
        variables: d.state.variables,
        await: false,
      });
    } else {
      patch.on_complete_error = `on_complete flow ${af.on_complete_flow_id} was not started: the chain reached its depth limit of ${d.state.limits.max_complete_count}`;
    }
  }
  update(d, patch);
  bumpVersion(d);
  emit(d, 'activeflow_updated');
  emit(d, 'activeflow_ended');
  const pending = d.state.pending;
  if (pending !== null) {
    d.state = { ...d.state, pending: null };
    if (pending.client_request_id !== undefined) d.clientIds.set(pending.request_id, { id: pending.client_request_id, verb: pending.verb });
    answerCycle(d, pending.verb, pending.request_id, pending.from_action_id, FINISH_ACTION);
  }
}

function endWithError(d: Draft, action: Action, message: string): void {
  end(d, 'error', { action_id: action.id, action_type: action.type ?? '', message });
}

// ---------------------------------------------------------------------------------------------
// the cursor

/**
 * One cursor move (behaviour section 4). Returns false when the activeflow ended instead of (or by)
 * moving: limit reached, forward target missing, or FINISH reached.
 */
function move(d: Draft, finishReason: EndReason = 'finished'): boolean {
  const { limits } = d.state;
  let af = d.state.activeflow;
  if (af.execute_count > limits.max_execute_count) {
    end(d, 'limit_exceeded', {
      action_id: af.current_action.id,
      action_type: af.current_action.type ?? '',
      message: `the activeflow made ${af.execute_count} moves; at most ${limits.max_execute_count + 1} are allowed`,
    });
    return false;
  }
  let stackId: string;
  let target: Action;
  let map = af.stack_map;
  if (af.forward_stack_id !== NIL && af.forward_action_id !== NIL) {
    if (af.forward_action_id === FINISH) {
      stackId = af.forward_stack_id;
      target = FINISH_ACTION;
    } else {
      const found = getAction(map, af.forward_stack_id, af.forward_action_id, true, limits.max_stack_hops);
      if (!found.ok) {
        endWithError(d, af.current_action, `forward target ${af.forward_action_id} not found: ${found.message}`);
        return false;
      }
      ({ stackId, action: target, map } = found);
    }
  } else {
    ({ stackId, action: target, map } = getNextAction(map, af.current_stack_id, af.current_action.id, true, limits.max_stack_hops));
  }
  const chosen: Action = target.id === FINISH || target.option === undefined ? target : { ...target, option: substituteOption(target.option, d.state.variables) };
  af = d.state.activeflow;
  update(d, {
    stack_map: map,
    executed_actions: [...af.executed_actions, af.current_action],
    current_stack_id: stackId,
    current_action: chosen,
    forward_stack_id: NIL,
    forward_action_id: NIL,
    execute_count: af.execute_count + 1,
  });
  bumpVersion(d);
  emit(d, 'activeflow_updated');
  if (chosen.id === FINISH) {
    end(d, finishReason);
    return false;
  }
  return true;
}

/** Points the next move at `targetId`, searched from the current stack upward. */
function setForward(d: Draft, targetId: string, what: string): Outcome {
  const af = d.state.activeflow;
  if (targetId === '' || targetId === NIL) return fail(`${what} is not set`);
  const found = getAction(af.stack_map, af.current_stack_id, targetId, false, d.state.limits.max_stack_hops);
  if (!found.ok) return fail(`${what} ${targetId} not found: ${found.message}`);
  update(d, { forward_stack_id: found.stackId, forward_action_id: targetId });
  bumpVersion(d);
  return CONTINUE;
}

/** Pushes actions as a new stack returning to the current action; the next move enters it. */
function push(d: Draft, stackId: string, actions: Action[]): { ok: true } | { ok: false; message: string } {
  if (actions.length === 0) return { ok: true };
  const af = d.state.activeflow;
  const pushed = pushStack(af.stack_map, stackId, actions, af.current_stack_id, af.current_action.id, d.state.limits.max_stacks);
  if (!pushed.ok) return pushed;
  update(d, { stack_map: pushed.map, forward_stack_id: stackId, forward_action_id: actions[0]!.id });
  bumpVersion(d);
  return { ok: true };
}

// ---------------------------------------------------------------------------------------------
// actions run inside the runtime

function runControl(d: Draft, action: Action): Outcome {
  const o = opt(action);
  const vars = d.state.variables;
  switch (action.type) {
    case 'empty':
      return CONTINUE;
    case 'block':
      return { kind: 'block' };
    case 'stop': {
      const af = d.state.activeflow;
      update(d, { forward_stack_id: af.current_stack_id, forward_action_id: FINISH });
      move(d, 'stop_action');
      return { kind: 'ended' };
    }
    case 'goto': {
      const loops = typeof o['loop_count'] === 'number' ? o['loop_count'] : 0;
      if (loops <= 0) return CONTINUE;
      const af = d.state.activeflow;
      const stored = af.stack_map[af.current_stack_id]?.actions.find((a) => a.id === action.id);
      if (stored !== undefined) {
        const decremented = { ...stored, option: { ...stored.option, loop_count: loops - 1 } };
        d.state = { ...d.state, activeflow: { ...af, stack_map: replaceAction(af.stack_map, af.current_stack_id, decremented) } };
      }
      return setForward(d, str(o['target_id']), 'goto target_id');
    }
    case 'branch': {
      const name = str(o['variable']) || 'voipbin.call.digits';
      const value = Object.hasOwn(vars, name) ? vars[name]! : '';
      d.state = { ...d.state, variables: { ...vars, [name]: '' } };
      const targets = (o['target_ids'] ?? {}) as Record<string, unknown>;
      const target = Object.hasOwn(targets, value) ? str(targets[value]) : str(o['default_target_id']);
      return setForward(d, target, `branch target for value "${value}"`);
    }
    case 'condition_variable':
      return conditionVariableHolds(o) ? CONTINUE : setForward(d, str(o['false_target_id']), 'false_target_id');
    case 'condition_datetime':
      return conditionDatetimeHolds(o, d.now) ? CONTINUE : setForward(d, str(o['false_target_id']), 'false_target_id');
    case 'condition_call_digits':
      return conditionCallDigitsHolds(o, vars) ? CONTINUE : setForward(d, str(o['false_target_id']), 'false_target_id');
    case 'condition_call_status':
      return conditionCallStatusHolds(o, vars) ? CONTINUE : setForward(d, str(o['false_target_id']), 'false_target_id');
    case 'variable_set': {
      const key = str(o['key']);
      if (key === '') return fail('variable_set needs option.key');
      const set = setVariables(vars, { [key]: str(o['value']) }, d.state.limits);
      if (!set.ok) return fail(set.message);
      d.state = { ...d.state, variables: set.variables };
      return CONTINUE;
    }
    case 'fetch_flow': {
      const flowId = str(o['flow_id']);
      if (!/^[0-9a-f-]{36}$/.test(flowId)) return fail(`fetch_flow needs option.flow_id as a UUID, got "${flowId}"`);
      return { kind: 'await', effect: { type: 'flow_get', effect_id: d.ids.next(), flow_id: flowId, customer_id: d.state.activeflow.customer_id, await: true } };
    }
    default:
      return fail(`no handler for ${action.type}`);
  }
}

function startHttp(d: Draft, action: Action): Outcome {
  const o = opt(action);
  const af = d.state.activeflow;
  if (action.type === 'fetch') {
    const url = str(o['event_url']);
    if (url === '') return fail('fetch needs option.event_url');
    return {
      kind: 'await',
      effect: {
        type: 'http_request',
        effect_id: d.ids.next(),
        purpose: 'fetch',
        action_id: action.id,
        method: (str(o['event_method']) || 'GET').toUpperCase(),
        url,
        headers: { 'Content-Type': 'application/json; charset=utf-8' },
        body: JSON.stringify({ activeflow_id: af.id, reference_id: af.reference_id }),
        await: true,
      },
    };
  }
  const uri = str(o['uri']);
  if (uri === '') return fail('webhook_send needs option.uri');
  const effect: Effect = {
    type: 'http_request',
    effect_id: d.ids.next(),
    purpose: 'webhook_send',
    action_id: action.id,
    method: (str(o['method']) || 'POST').toUpperCase(),
    url: uri,
    headers: { 'Content-Type': str(o['data_type']) || 'application/json' },
    body: str(o['data']),
    await: o['sync'] === true,
  };
  if (effect.await) return { kind: 'await', effect };
  d.outbox.effects.push(effect);
  return CONTINUE;
}

function startService(d: Draft, action: Action): Outcome {
  const af = d.state.activeflow;
  const type = action.type ?? '';
  // An async conversation_send is fire-and-forget; every other service reply is awaited, since
  // it may push a stack, set variables or report the failure of a critical action.
  const awaited = !(type === 'conversation_send' && opt(action)['sync'] !== true);
  const effect: Effect = {
    type: 'service_request',
    effect_id: d.ids.next(),
    action_type: type,
    subject: `activeflow.service.${type}`,
    request: { activeflow_id: af.id, customer_id: af.customer_id, reference_type: af.reference_type, reference_id: af.reference_id, action },
    await: awaited,
  };
  if (awaited) return { kind: 'await', effect };
  d.outbox.effects.push(effect);
  return CONTINUE;
}

/** Applies an awaited effect's result to the action that asked for it. */
function applyResult(d: Draft, pending: Pending, result: EffectResult): Outcome {
  const action = d.state.activeflow.current_action;
  if (result.kind === 'failure') return fail(result.message);
  switch (pending.effect_type) {
    case 'flow_get': {
      if (result.kind !== 'flow') return fail(`expected a flow lookup result, got ${result.kind}`);
      const parsed = Flow.safeParse(result.flow);
      const flowId = str(opt(action)['flow_id']);
      if (!parsed.success || parsed.data.tm_delete !== null || parsed.data.customer_id !== d.state.activeflow.customer_id) {
        return fail(`flow ${flowId} not found`);
      }
      const pushed = push(d, d.ids.next(), parsed.data.actions);
      return pushed.ok ? CONTINUE : fail(pushed.message);
    }
    case 'http_request': {
      if (result.kind !== 'http') return fail(`expected an HTTP result, got ${result.kind}`);
      if (action.type === 'webhook_send') return CONTINUE; // a webhook's answer never stops the flow
      if (result.status !== 200) return fail(`fetch: the server answered ${result.status}, 200 with a JSON array of actions is needed`);
      const parsed = ActionInputList.safeParse(result.body);
      if (!parsed.success) return fail(`fetch: the response is not a valid action array: ${describeIssues(parsed.error.issues)}`);
      const pushed = push(d, d.ids.next(), prepareActions(parsed.data, d.ids));
      return pushed.ok ? CONTINUE : fail(pushed.message);
    }
    case 'service_request': {
      if (result.kind !== 'service') return fail(`expected a service reply, got ${result.kind}`);
      const parsed = ServiceReply.safeParse(result.reply);
      if (!parsed.success) return fail(`invalid reply from activeflow.service.${action.type}: ${describeIssues(parsed.error.issues)}`);
      const { service_id, push_actions, variables } = parsed.data;
      if (variables !== undefined) {
        const set = setVariables(d.state.variables, variables, d.state.limits);
        if (!set.ok) return fail(set.message);
        d.state = { ...d.state, variables: set.variables };
      }
      if (push_actions !== undefined && push_actions.length > 0) {
        const actions = ActionInputList.safeParse(push_actions);
        if (!actions.success) return fail(`invalid push_actions from activeflow.service.${action.type}: ${describeIssues(actions.error.issues)}`);
        const pushed = push(d, service_id ?? d.ids.next(), prepareActions(actions.data, d.ids));
        if (!pushed.ok) return fail(pushed.message);
      }
      return CONTINUE;
    }
    default:
      return fail(`unexpected effect ${pending.effect_type}`);
  }
}

// ---------------------------------------------------------------------------------------------
// cycles

function answerCycle(d: Draft, verb: CycleVerb, requestId: string, fromActionId: string, result: Action): void {
  if (verb === 'execute') {
    reply(d, requestId, { kind: 'activeflow' });
    return;
  }
  reply(d, requestId, { kind: 'action', action: result });
  if (verb === 'next') {
    d.state = { ...d.state, last_next: { from_action_id: fromActionId, version: d.state.version, result } };
  }
}

interface CycleRequest {
  request_id: string;
  verb: CycleVerb;
  from_action_id: string;
}

/** Handles what an action's run decided; returns true when the cycle goes on. */
function settle(d: Draft, req: CycleRequest, outcome: Outcome, iterations: number): boolean {
  const action = d.state.activeflow.current_action;
  switch (outcome.kind) {
    case 'continue':
      return true;
    case 'block':
      answerCycle(d, req.verb, req.request_id, req.from_action_id, EMPTY_ACTION);
      return false;
    case 'ended':
      answerCycle(d, req.verb, req.request_id, req.from_action_id, FINISH_ACTION);
      return false;
    case 'await':
      d.outbox.effects.push(outcome.effect);
      d.state = {
        ...d.state,
        pending: {
          ...req,
          effect_id: outcome.effect.effect_id,
          effect_type: outcome.effect.type,
          action_id: action.id,
          iterations,
          ...(d.clientIds.has(req.request_id) ? { client_request_id: d.clientIds.get(req.request_id)!.id } : {}),
        },
      };
      return false;
    case 'fail':
      if (isActionType(action.type) && ACTION_KINDS[action.type].critical) {
        endWithError(d, action, outcome.message);
        answerCycle(d, req.verb, req.request_id, req.from_action_id, FINISH_ACTION);
        return false;
      }
      return true; // a non-critical failure is skipped
  }
}

/**
 * Moves until the reference must act, the flow blocks, or it ends (behaviour section 5). A cycle
 * that ends the activeflow for any reason answers FINISH: the reference's service then hangs up,
 * and `end_reason`/`error` say why.
 */
function runCycle(d: Draft, req: CycleRequest, iterationsSoFar: number): void {
  let iterations = iterationsSoFar;
  for (;;) {
    if (iterations >= d.state.limits.max_cycle_iterations) {
      const current = d.state.activeflow.current_action;
      end(d, 'limit_exceeded', {
        action_id: current.id,
        action_type: current.type ?? '',
        message: `one cycle made ${iterations} moves without returning to its reference; at most ${d.state.limits.max_cycle_iterations} are allowed`,
      });
      answerCycle(d, req.verb, req.request_id, req.from_action_id, FINISH_ACTION);
      return;
    }
    iterations++;
    if (!move(d)) {
      answerCycle(d, req.verb, req.request_id, req.from_action_id, FINISH_ACTION);
      return;
    }
    const action = d.state.activeflow.current_action;
    if (!isAvailable(action.type, d.state.activeflow.reference_type)) continue; // skipped, counted
    const kind = ACTION_KINDS[action.type as keyof typeof ACTION_KINDS];
    let outcome: Outcome;
    switch (kind.dispatch) {
      case 'returned':
        answerCycle(d, req.verb, req.request_id, req.from_action_id, action);
        return;
      case 'control':
        outcome = runControl(d, action);
        break;
      case 'http':
        outcome = startHttp(d, action);
        break;
      case 'service':
        outcome = startService(d, action);
        break;
    }
    if (!settle(d, req, outcome, iterations)) return;
  }
}

// ---------------------------------------------------------------------------------------------
// verbs

const conflict = (message: string): EngineError => engineError('conflict', message);

function busy(d: Draft): EngineError | null {
  const p = d.state.pending;
  return p === null ? null : conflict(`a ${p.verb} cycle is waiting for ${p.effect_type} of action ${p.action_id}; retry when it is answered`);
}

function checkCycle(d: Draft, event: EngineEvent): EngineError | null {
  const af = d.state.activeflow;
  const current = af.current_action;
  switch (event.type) {
    case 'next':
      if (current.type === 'block') return conflict(`the activeflow is blocked at action ${current.id}; resume it with continue`);
      if (event.current_action_id !== current.id) {
        return conflict(`current_action_id ${event.current_action_id} is not the current action ${current.id}; the activeflow has moved since`);
      }
      return null;
    case 'execute':
      if (current.id !== START) return conflict(`the activeflow has already started (current action ${current.id}); execute runs it once, use next or continue`);
      return null;
    case 'continue':
      if (current.type !== 'block') return conflict(`the activeflow is not blocked (current action ${current.id} is ${current.type ?? 'a pseudo action'})`);
      if (event.current_action_id !== current.id) return conflict(`current_action_id ${event.current_action_id} is not the blocking action ${current.id}`);
      return null;
    default:
      return null;
  }
}

/** The last `next` came from `fromActionId` and nothing has moved since. */
function isRetry(state: EngineState, fromActionId: string): boolean {
  const last = state.last_next;
  return last !== null && last.from_action_id === fromActionId && last.version === state.version;
}

function onEnded(d: Draft, event: EngineEvent): void {
  const af = d.state.activeflow;
  switch (event.type) {
    case 'stop':
      reply(d, event.request_id, { kind: 'activeflow' }); // already ended: unchanged, no event
      return;
    case 'delete':
      update(d, { tm_delete: d.now });
      emit(d, 'activeflow_deleted');
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    case 'next': {
      if (isRetry(d.state, event.current_action_id)) {
        reply(d, event.request_id, { kind: 'action', action: d.state.last_next!.result });
        return;
      }
      replyError(d, event.request_id, engineError('ended', `activeflow ${af.id} has ended (${af.end_reason})`));
      return;
    }
    case 'effect_result':
      return; // a late result for a cycle that the end already answered
    default:
      replyError(d, event.request_id, engineError('ended', `activeflow ${af.id} has ended (${af.end_reason})`));
  }
}

function onRunning(d: Draft, event: EngineEvent): void {
  const af = d.state.activeflow;
  switch (event.type) {
    case 'next':
    case 'execute':
    case 'continue': {
      // A `next` naming the current action always moves; only one naming the action the last
      // `next` moved away from is a retry (a goto loop may return to the very same action id).
      if (event.type === 'next' && d.state.pending === null && event.current_action_id !== af.current_action.id && isRetry(d.state, event.current_action_id)) {
        reply(d, event.request_id, { kind: 'action', action: d.state.last_next!.result });
        return;
      }
      const refused = busy(d) ?? checkCycle(d, event);
      if (refused) {
        replyError(d, event.request_id, refused);
        return;
      }
      const from = event.type === 'execute' ? START : event.current_action_id;
      runCycle(d, { request_id: event.request_id, verb: event.type, from_action_id: from }, 0);
      return;
    }
    case 'effect_result': {
      const pending = d.state.pending;
      if (pending === null || pending.effect_id !== event.effect_id) {
        replyError(d, event.request_id, conflict(`no cycle is waiting for effect ${event.effect_id}`));
        return;
      }
      d.state = { ...d.state, pending: null };
      if (pending.client_request_id !== undefined) d.clientIds.set(pending.request_id, { id: pending.client_request_id, verb: pending.verb });
      const req = { request_id: pending.request_id, verb: pending.verb, from_action_id: pending.from_action_id };
      if (settle(d, req, applyResult(d, pending, event.result), pending.iterations)) runCycle(d, req, pending.iterations);
      return;
    }
    case 'stop':
      end(d, event.reason ?? 'stopped');
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    case 'delete':
      end(d, 'deleted');
      update(d, { tm_delete: d.now });
      emit(d, 'activeflow_deleted');
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    case 'forward': {
      const refused = busy(d);
      if (refused) {
        replyError(d, event.request_id, refused);
        return;
      }
      const found = getAction(af.stack_map, af.current_stack_id, event.forward_action_id, false, d.state.limits.max_stack_hops);
      if (!found.ok) {
        replyError(d, event.request_id, engineError('not_found', `forward_action_id ${event.forward_action_id}: ${found.message}`));
        return;
      }
      update(d, { forward_stack_id: found.stackId, forward_action_id: event.forward_action_id });
      bumpVersion(d);
      if (event.forward_now === true && af.reference_type === 'call') {
        d.outbox.effects.push({
          type: 'reference_action_next',
          effect_id: d.ids.next(),
          activeflow_id: af.id,
          reference_type: af.reference_type,
          reference_id: af.reference_id,
          await: false,
        });
      }
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    }
    case 'push_actions': {
      const refused = busy(d);
      if (refused) {
        replyError(d, event.request_id, refused);
        return;
      }
      const pushed = push(d, d.ids.next(), prepareActions(event.actions, d.ids));
      if (!pushed.ok) {
        replyError(d, event.request_id, engineError('limit_exceeded', pushed.message));
        return;
      }
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    }
    case 'add_actions': {
      const refused = busy(d);
      if (refused) {
        replyError(d, event.request_id, refused);
        return;
      }
      if (af.current_stack_id === MAIN) {
        replyError(d, event.request_id, conflict('add_actions inserts into a pushed stack, and the cursor is in the main stack; use push_actions'));
        return;
      }
      const inserted = insertAfter(af.stack_map, af.current_stack_id, af.current_action.id, prepareActions(event.actions, d.ids));
      if (!inserted.ok) {
        replyError(d, event.request_id, conflict(`add_actions: ${inserted.message}`));
        return;
      }
      update(d, { stack_map: inserted.map });
      bumpVersion(d);
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    }
    case 'service_stop': {
      const refused = busy(d);
      if (refused) {
        replyError(d, event.request_id, refused);
        return;
      }
      const sid = event.service_id;
      if (sid === MAIN) {
        replyError(d, event.request_id, engineError('invalid_argument', 'service_id names the main stack, which cannot be stopped'));
        return;
      }
      const stack = af.stack_map[sid];
      if (stack === undefined) {
        replyError(d, event.request_id, engineError('not_found', `service ${sid} has no stack in this activeflow`));
        return;
      }
      const hops = d.state.limits.max_stack_hops;
      const inChain = isInReturnChain(af.stack_map, af.current_stack_id, sid, hops);
      const removed = removeStackAndAbove(af.stack_map, sid, hops);
      if (!inChain) {
        // The cursor is elsewhere: drop the service's stacks, leave the cursor alone.
        update(d, { stack_map: removed });
      } else {
        const next = getNextAction(removed, stack.return_stack_id, stack.return_action_id, true, hops);
        update(d, {
          stack_map: next.map,
          forward_stack_id: next.stackId === NIL ? MAIN : next.stackId,
          forward_action_id: next.action.id,
        });
      }
      bumpVersion(d);
      reply(d, event.request_id, { kind: 'activeflow' });
      return;
    }
    case 'variables_set': {
      const set = setVariables(d.state.variables, event.variables, d.state.limits);
      if (!set.ok) {
        replyError(d, event.request_id, set.quota === undefined ? engineError('invalid_argument', set.message) : engineError('limit_exceeded', set.message, set.quota));
        return;
      }
      d.state = { ...d.state, variables: set.variables, activeflow: { ...d.state.activeflow, tm_update: d.now } };
      reply(d, event.request_id, { kind: 'variables' });
      return;
    }
    case 'variables_delete': {
      const { [event.key]: _gone, ...rest } = d.state.variables;
      d.state = { ...d.state, variables: rest, activeflow: { ...d.state.activeflow, tm_update: d.now } };
      reply(d, event.request_id, { kind: 'variables' });
      return;
    }
  }
}

/**
 * The transition function. Never throws for a request that is wrong for the current state: it
 * answers with an error and changes nothing (the outbox aside).
 */
export function reduce(state: EngineState, event: EngineEvent): EngineState {
  const d: Draft = { state: { ...state, outbox: emptyOutbox() }, outbox: emptyOutbox(), now: event.now, ids: idSource(event.entropy), clientIds: new Map() };
  const af = state.activeflow;
  const clientId = event.client_request_id;
  const seen = clientId === undefined ? undefined : (state.recent_requests ?? []).find((r) => r.id === clientId);
  if (seen !== undefined) {
    // A repeat of a request already answered: the same answer, nothing applied again.
    if (seen.verb !== event.type) {
      d.outbox.replies.push({ request_id: event.request_id, ok: false, error: engineError('conflict', `request_id ${clientId} was already used for ${seen.verb}`) });
    } else {
      d.outbox.replies.push(seen.reply.ok ? { request_id: event.request_id, ok: true, value: seen.reply.value } : { request_id: event.request_id, ok: false, error: seen.reply.error });
    }
    return { ...d.state, outbox: d.outbox };
  }
  if (clientId !== undefined && event.type !== 'effect_result') d.clientIds.set(event.request_id, { id: clientId, verb: event.type });
  if (af.tm_delete !== null) {
    if (event.type !== 'effect_result') replyError(d, event.request_id, engineError('not_found', `activeflow ${af.id} not found`));
  } else if (af.status === 'ended') {
    onEnded(d, event);
  } else {
    onRunning(d, event);
  }
  return { ...d.state, outbox: d.outbox };
}

/** `substitute {data}`: a read, served without a transition. */
export function substituteText(state: EngineState, data: string): string {
  return substitute(data, state.variables);
}
