/** Helpers for engine tests: a LocalHost with a still clock, readable ids, short requests. */
import { LocalHost, type HostReply, type LocalWorld } from '../../actors/index.js';
import { DEFAULT_LIMITS, Limits, type Action, type Activeflow, type Flow, type LimitsInput, type Verb } from '../../machines/index.js';
import { fixedClock } from '../../src/clock.js';

export const NOW = '2026-11-27T10:00:00.000000Z';
export const CUSTOMER = '11111111-1111-4111-8111-111111111111';
export const OTHER_CUSTOMER = '22222222-2222-4222-8222-222222222222';

/** A readable action id: `aid(3)` is `00000000-0000-4000-8000-000000000003`. */
export const aid = (n: number): string => `00000000-0000-4000-8000-${String(n).padStart(12, '0')}`;
/** A readable flow id. */
export const fid = (n: number): string => `00000000-0000-4000-9000-${String(n).padStart(12, '0')}`;

export function flow(id: string, actions: unknown[], extra: Partial<Flow> = {}): Flow {
  return {
    id,
    customer_id: CUSTOMER,
    type: 'flow',
    name: '',
    detail: '',
    actions: actions.map((a) => ({ next_id: '00000000-0000-0000-0000-000000000000', option: {}, tm_execute: null, ...(a as object) })) as Action[],
    on_complete_flow_id: '00000000-0000-0000-0000-000000000000',
    tm_create: NOW,
    tm_update: null,
    tm_delete: null,
    ...extra,
  };
}

export interface Harness {
  host: LocalHost;
  id: string;
  af(): Activeflow;
  vars(): Record<string, string>;
  req(verb: Verb, body?: unknown): HostReply;
  /** `next` from the current action; returns the reply. */
  next(): HostReply;
  /** The action a successful reply carries (fails the test otherwise). */
  action(r: HostReply): Action;
}

export function harness(opts: {
  actions?: unknown[];
  flow?: Flow;
  flows?: Flow[];
  reference_type?: string;
  variables?: Record<string, string>;
  http?: LocalWorld['http'];
  services?: LocalWorld['services'];
  limits?: LimitsInput;
  now?: string;
  create?: Record<string, unknown>;
}): Harness {
  const flows = [...(opts.flows ?? []), ...(opts.flow ? [opts.flow] : [])];
  const limits = Limits.parse({ ...DEFAULT_LIMITS, ...opts.limits });
  const host = new LocalHost({ flows, http: opts.http ?? {}, services: opts.services ?? {} }, fixedClock(opts.now ?? NOW, 'test'), limits);
  const created = host.create({
    customer_id: CUSTOMER,
    reference_type: opts.reference_type ?? 'call',
    ...(opts.flow ? { flow_id: opts.flow.id } : { actions: opts.actions ?? [] }),
    ...(opts.variables ? { variables: opts.variables } : {}),
    ...opts.create,
  });
  if (!created.ok) throw new Error(`create failed: ${JSON.stringify(created.error)}`);
  const id = (created.result as Activeflow).id;
  const h: Harness = {
    host,
    id,
    af: () => host.state(id)!.activeflow,
    vars: () => host.state(id)!.variables,
    req: (verb, body = {}) => host.request(id, verb, body),
    next: () => host.request(id, 'next', { current_action_id: h.af().current_action.id }),
    action: (r) => {
      if (!r.ok) throw new Error(`expected an action, got error ${JSON.stringify(r.error)}`);
      return r.result as Action;
    },
  };
  return h;
}

export const FINISH_ID = '00000000-0000-0000-0000-000000000002';
export const START_ID = '00000000-0000-0000-0000-000000000001';
export const NIL_ID = '00000000-0000-0000-0000-000000000000';
export const MAIN_ID = '00000000-0000-0000-0000-000000000001';
