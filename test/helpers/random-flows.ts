/**
 * Random flows (goto, branch, conditions, pushes, services, fetches) and random request sequences
 * (including stale and hostile ones) for the property tests, with the canned world they run in.
 */
import fc from 'fast-check';
import { LocalHost, type HostReply, type LocalWorld } from '../../actors/index.js';
import type { Verb } from '../../machines/index.js';
import type { HostClock } from '../../src/clock.js';
import { aid, CUSTOMER, fid, flow, NOW } from './engine.js';

export const SERVICE = '5e000000-0000-4000-8000-000000000001';

export function counterClock(start = 0): HostClock & { count(): number } {
  let n = start;
  return { now: () => NOW, entropy: () => `prop-entropy:${++n}`, count: () => n };
}

export const world: LocalWorld = {
  flows: [
    flow(fid(1), [
      { id: aid(101), type: 'talk' },
      { id: aid(102), type: 'goto', option: { target_id: aid(1), loop_count: 1 } },
    ]),
  ],
  http: { 'GET https://x.test/a': { status: 200, body: [{ type: 'empty' }, { type: 'talk' }] } },
  services: {
    queue_join: {
      service_id: SERVICE,
      push_actions: [
        { id: aid(201), type: 'empty' },
        { id: aid(202), type: 'play' },
      ],
    },
    message_send: { error: 'down' },
    email_send: { variables: { v: '2' } },
  },
};

export const actionArb = (n: number) => {
  const target = fc.integer({ min: 1, max: n + 1 }).map(aid);
  return fc.oneof(
    fc.constantFrom('talk', 'answer', 'hangup', 'empty', 'stop', 'block', 'queue_join', 'message_send', 'email_send', 'ai_task').map((type) => ({ type })),
    fc.record({ target_id: target, loop_count: fc.integer({ min: -1, max: 3 }) }).map((option) => ({ type: 'goto', option })),
    fc.record({ a: target, b: target, d: target }).map(({ a, b, d }) => ({ type: 'branch', option: { variable: 'v', target_ids: { '1': a, '2': b }, default_target_id: d } })),
    fc
      .record({ f: target, s: fc.constantFrom('1', '2') })
      .map(({ f, s }) => ({ type: 'condition_variable', option: { variable: '${v}', condition: '==', value_type: 'string', value_string: s, false_target_id: f } })),
    fc.constantFrom('1', '2', '3').map((value) => ({ type: 'variable_set', option: { key: 'v', value } })),
    fc.constant({ type: 'fetch_flow', option: { flow_id: fid(1) } }),
    fc.constant({ type: 'fetch', option: { event_url: 'https://x.test/a' } }),
  );
};

export const flowArb = fc.integer({ min: 1, max: 10 }).chain((n) =>
  fc.tuple(
    ...Array.from({ length: n }, (_, i) =>
      fc.tuple(actionArb(n), fc.option(fc.integer({ min: 1, max: n + 1 }), { freq: 5 })).map(([a, next]) => ({
        id: aid(i + 1),
        ...a,
        ...(next === null ? {} : { next_id: aid(next) }),
      })),
    ),
  ),
);

export type Op =
  | { op: 'next'; stale: boolean }
  | { op: 'execute' }
  | { op: 'continue' }
  | { op: 'set'; value: string }
  | { op: 'push' }
  | { op: 'add' }
  | { op: 'forward'; target: number }
  | { op: 'service_stop' }
  | { op: 'stop' }
  | { op: 'delete' };

export const opArb: fc.Arbitrary<Op> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('next' as const), stale: fc.boolean() }), weight: 10 },
  { arbitrary: fc.constant({ op: 'execute' as const }), weight: 2 },
  { arbitrary: fc.constant({ op: 'continue' as const }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('set' as const), value: fc.constantFrom('1', '2', '9') }), weight: 3 },
  { arbitrary: fc.constant({ op: 'push' as const }), weight: 1 },
  { arbitrary: fc.constant({ op: 'add' as const }), weight: 1 },
  { arbitrary: fc.record({ op: fc.constant('forward' as const), target: fc.integer({ min: 1, max: 11 }) }), weight: 1 },
  { arbitrary: fc.constant({ op: 'service_stop' as const }), weight: 1 },
  { arbitrary: fc.constant({ op: 'stop' as const }), weight: 1 },
  { arbitrary: fc.constant({ op: 'delete' as const }), weight: 1 },
);

export function apply(host: LocalHost, id: string, op: Op): HostReply {
  const current = host.state(id)!.activeflow.current_action.id;
  const req = (verb: Verb, body: unknown) => host.request(id, verb, body);
  switch (op.op) {
    case 'next':
      return req('next', { current_action_id: op.stale ? aid(1) : current });
    case 'execute':
      return req('execute', {});
    case 'continue':
      return req('continue', { current_action_id: current });
    case 'set':
      return req('variables_set', { variables: { v: op.value } });
    case 'push':
      return req('push_actions', { actions: [{ type: 'talk' }, { type: 'empty' }] });
    case 'add':
      return req('add_actions', { actions: [{ type: 'beep' }] });
    case 'forward':
      return req('forward', { forward_action_id: aid(op.target) });
    case 'service_stop':
      return req('service_stop', { service_id: SERVICE });
    case 'stop':
      return req('stop', {});
    case 'delete':
      return req('delete', {});
  }
}

export function setup(actions: unknown[], referenceType: string, clock: HostClock) {
  const host = new LocalHost(world, clock);
  const created = host.create({ customer_id: CUSTOMER, reference_type: referenceType, actions });
  if (!created.ok) throw new Error(JSON.stringify(created.error));
  return { host, id: (created.result as { id: string }).id };
}

export const scenarioArb = fc.record({ actions: flowArb, ref: fc.constantFrom('call', 'api', 'conversation', ''), ops: fc.array(opArb, { minLength: 1, maxLength: 40 }) });
