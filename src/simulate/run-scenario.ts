/**
 * Runs a scenario on a LocalHost and builds `simulate`'s output. Deterministic: the ids come from
 * the scenario's seed and the clock from its `now`, so a scenario always prints the same JSON.
 */
import { LocalHost, type HostReply } from '../../actors/index.js';
import { DEFAULT_LIMITS, FINISH, idSource, Limits, NIL, prepareActions, START, type Action, type EngineError, type Flow, type StreamEvent, type Verb } from '../../machines/index.js';
import { fixedClock, formatTimestamp, normalizeTimestamp, recordedClock } from '../clock.js';
import { Scenario, type ScenarioFlow, type Step } from './scenario.js';

export type StepResult = { op: Step['op']; ok: true; result: unknown } | { op: Step['op']; ok: false; error: EngineError };

export interface SimulationOutput {
  results: StepResult[];
  activeflow: unknown;
  variables: Record<string, string>;
  events: StreamEvent[];
  children: { activeflow?: unknown; variables?: Record<string, string>; events?: StreamEvent[]; activeflow_id: string; error?: EngineError }[];
  effects: unknown[];
}

export class ScenarioError extends Error {
  override readonly name = 'ScenarioError';
}

/** Validates a parsed JSON value as a scenario; throws ScenarioError with every bad field path. */
export function parseScenario(value: unknown): Scenario {
  const parsed = Scenario.safeParse(value);
  if (!parsed.success) {
    const lines = parsed.error.issues.slice(0, 20).map((i) => `  ${i.path.length ? i.path.map(String).join('.') : '(scenario)'}: ${i.message}`);
    throw new ScenarioError(`invalid scenario:\n${lines.join('\n')}`);
  }
  return parsed.data;
}

const DEFAULT_CUSTOMER = '00000000-0000-4000-8000-00000000c0de';

/** Runs a scenario; `seeHost` gets the in-process host after the run (its journals, for an export's round trip). */
export function runScenario(input: unknown, realNow: () => Date = () => new Date(), seeHost?: (host: LocalHost, id: string) => void): SimulationOutput {
  const scenario = parseScenario(input);
  const now = scenario.now === undefined ? formatTimestamp(realNow()) : normalizeTimestamp(scenario.now);
  if (now === null) throw new ScenarioError(`invalid scenario:\n  now: "${scenario.now}" is not an ISO 8601 time such as 2026-11-27T10:00:00Z`);
  const limits = Limits.parse({ ...DEFAULT_LIMITS, ...scenario.limits });
  const customerId = scenario.customer_id ?? DEFAULT_CUSTOMER;
  const ids = idSource(`${scenario.seed}:flows`);

  const toFlow = (f: ScenarioFlow): Flow => ({
    id: f.id ?? ids.next(),
    customer_id: f.customer_id ?? customerId,
    type: f.type,
    name: f.name,
    detail: f.detail,
    actions: prepareActions(f.actions, ids),
    on_complete_flow_id: f.on_complete_flow_id ?? NIL,
    tm_create: now,
    tm_update: null,
    tm_delete: f.tm_delete ?? null,
  });
  const flows = scenario.flows.map(toFlow);
  const main = scenario.flow === undefined ? undefined : toFlow(scenario.flow);
  if (main !== undefined && !flows.some((f) => f.id === main.id)) flows.push(main);

  const clock = scenario.clock === undefined ? fixedClock(now, scenario.seed) : recordedClock(scenario.clock, fixedClock(now, scenario.seed));
  const host = new LocalHost({ flows, http: scenario.http, services: scenario.services as never }, clock, limits);
  const created = host.create({
    ...(scenario.id ? { id: scenario.id } : {}),
    customer_id: customerId,
    reference_type: scenario.reference_type,
    ...(scenario.reference_id ? { reference_id: scenario.reference_id } : {}),
    ...(main ? { flow_id: main.id } : { actions: scenario.actions }),
    ...(scenario.variables ? { variables: scenario.variables } : {}),
    ...(scenario.webhook_uri !== undefined ? { webhook_uri: scenario.webhook_uri } : {}),
    ...(scenario.webhook_method !== undefined ? { webhook_method: scenario.webhook_method } : {}),
  });
  if (!created.ok) throw new ScenarioError(`the scenario's activeflow could not be created: ${created.error.code}: ${created.error.message}`);
  const id = (created.result as { id: string }).id;

  const results: StepResult[] = [];
  const run = (step: Step): HostReply => {
    const current = host.state(id)!.activeflow.current_action.id;
    const requestId = (step as { request_id?: string }).request_id;
    const call = (verb: Verb, body: Record<string, unknown>) => host.request(id, verb, requestId === undefined ? body : { ...body, request_id: requestId });
    switch (step.op) {
      case 'next':
        return call('next', { current_action_id: step.current_action_id ?? current });
      case 'execute':
        return call('execute', {});
      case 'continue':
        return call('continue', { current_action_id: step.current_action_id ?? current });
      case 'stop':
        return call('stop', step.reason ? { reason: step.reason } : {});
      case 'delete':
        return call('delete', {});
      case 'forward':
        return call('forward', { forward_action_id: step.forward_action_id, ...(step.forward_now !== undefined ? { forward_now: step.forward_now } : {}) });
      case 'push_actions':
        return call('push_actions', { actions: step.actions });
      case 'add_actions':
        return call('add_actions', { actions: step.actions });
      case 'service_stop':
        return call('service_stop', { service_id: step.service_id });
      case 'set_variables':
        return variablesOnly(call('variables_set', { variables: step.variables }));
      case 'delete_variable':
        return variablesOnly(call('variables_delete', { key: step.key }));
      case 'get':
        return host.get(id);
      case 'get_variables':
        return variablesOnly(host.variables(id));
      case 'substitute':
        return host.substitute(id, step.data);
    }
  };
  const record = (step: Step): HostReply => {
    const r = run(step);
    results.push(r.ok ? { op: step.op, ok: true, result: r.result } : { op: step.op, ok: false, error: r.error });
    return r;
  };

  if (scenario.steps !== undefined) {
    for (const step of scenario.steps) record(step);
  } else if (scenario.reference_type === 'call') {
    // Drive it as a call service would: ask for the next action until FINISH or the empty action.
    let currentActionId = START;
    for (let i = 0; i < scenario.max_steps; i++) {
      const r = record({ op: 'next', current_action_id: currentActionId });
      if (!r.ok) break;
      const action = r.result as Action;
      if (action.id === FINISH || action.id === NIL) break;
      currentActionId = action.id;
    }
  } else {
    record({ op: 'execute' });
  }

  const state = host.state(id)!;
  seeHost?.(host, id);
  return {
    results,
    activeflow: state.activeflow,
    variables: state.variables,
    events: host.events(id),
    children: host.children.map((c) => {
      const s = host.state(c.activeflow_id);
      if (c.error !== undefined || s === undefined) return { activeflow_id: c.activeflow_id, ...(c.error ? { error: c.error } : {}) };
      return { activeflow_id: c.activeflow_id, activeflow: s.activeflow, variables: s.variables, events: host.events(c.activeflow_id) };
    }),
    effects: host.effects.map((e) => ({ activeflow_id: e.activeflow_id, ...e.effect, ...(e.result ? { result: e.result } : {}) })),
  };
}

function variablesOnly(r: HostReply): HostReply {
  return r.ok ? { ok: true, result: (r.result as { variables: unknown }).variables } : r;
}
