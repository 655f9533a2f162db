/**
 * Property tests over random flows (goto, branch, conditions, pushes, services, fetches) and
 * random request sequences (including stale and hostile ones). fast-check prints the seed and the
 * shrunk case on failure; re-run one with `FC_SEED=<seed> npx vitest run test/unit/property.test.ts`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalHost, type HostReply, type LocalWorld } from '../../actors/index.js';
import { DEFAULT_LIMITS, type Verb } from '../../machines/index.js';
import type { HostClock } from '../../src/clock.js';
import { aid, CUSTOMER, fid, flow, MAIN_ID, NOW, START_ID } from '../helpers/engine.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;
const SERVICE = '5e000000-0000-4000-8000-000000000001';

function counterClock(start = 0): HostClock & { count(): number } {
  let n = start;
  return { now: () => NOW, entropy: () => `prop:${++n}`, count: () => n };
}

const world: LocalWorld = {
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

const actionArb = (n: number) => {
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

const flowArb = fc.integer({ min: 1, max: 10 }).chain((n) =>
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

type Op =
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

const opArb: fc.Arbitrary<Op> = fc.oneof(
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

function apply(host: LocalHost, id: string, op: Op): HostReply {
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

function setup(actions: unknown[], referenceType: string, clock: HostClock) {
  const host = new LocalHost(world, clock);
  const created = host.create({ customer_id: CUSTOMER, reference_type: referenceType, actions });
  if (!created.ok) throw new Error(JSON.stringify(created.error));
  return { host, id: (created.result as { id: string }).id };
}

const scenarioArb = fc.record({ actions: flowArb, ref: fc.constantFrom('call', 'api', 'conversation', ''), ops: fc.array(opArb, { minLength: 1, maxLength: 40 }) });

describe('engine properties', () => {
  it('stays within its limits and its invariants, whatever flow and requests it gets', () => {
    fc.assert(
      fc.property(scenarioArb, ({ actions, ref, ops }) => {
        const { host, id } = setup(actions, ref, counterClock());
        let endedAt: { count: number; history: number } | null = null;
        for (const op of ops) {
          const reply = apply(host, id, op); // never throws
          expect(typeof reply.ok).toBe('boolean');
          const state = host.state(id)!;
          const af = state.activeflow;
          expect(af.executed_actions.length).toBe(af.execute_count);
          expect(af.execute_count).toBeLessThanOrEqual(DEFAULT_LIMITS.max_execute_count + 1);
          expect(af.stack_map[MAIN_ID]).toBeDefined();
          expect(state.pending).toBeNull();
          if (endedAt !== null) {
            expect(af.status).toBe('ended'); // ended is final
            expect(af.execute_count).toBe(endedAt.count);
            expect(af.executed_actions.length).toBe(endedAt.history);
          } else if (af.status === 'ended') {
            expect(af.end_reason).not.toBe('');
            endedAt = { count: af.execute_count, history: af.executed_actions.length };
          }
          if (!reply.ok && reply.error.code === 'internal') throw new Error(`internal error: ${reply.error.message}`);
        }
        const events = host.events(id);
        expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
        expect(events[0]!.type).toBe('activeflow_created');
        const endedEvents = events.filter((e) => e.type === 'activeflow_ended');
        expect(endedEvents.length).toBe(host.state(id)!.activeflow.status === 'ended' ? 1 : 0);
      }),
      { numRuns: 400, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });

  it('snapshot -> restore -> continue gives the same result as an uninterrupted run, at every step', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), ({ actions, ref, ops }, cutSeed) => {
        const cut = cutSeed % (ops.length + 1);
        const clockA = counterClock();
        const a = setup(actions, ref, clockA);
        for (const op of ops.slice(0, cut)) apply(a.host, a.id, op);

        // What a node would store, through JSON, into a fresh host with the clock where A's is.
        const record = JSON.parse(JSON.stringify(a.host.exportRecord(a.id)));
        const b = new LocalHost(world, counterClock(clockA.count()));
        b.importRecord(record);

        const eventsBefore = a.host.events(a.id).length;
        for (const op of ops.slice(cut)) {
          const ra = apply(a.host, a.id, op);
          const rb = apply(b, a.id, op);
          expect(rb).toEqual(ra);
        }
        const sa = a.host.state(a.id)!;
        const sb = b.state(a.id)!;
        expect(sb.activeflow).toEqual(sa.activeflow);
        expect(sb.variables).toEqual(sa.variables);
        expect([sb.seq, sb.version, sb.last_next]).toEqual([sa.seq, sa.version, sa.last_next]);
        expect(b.events(a.id)).toEqual(a.host.events(a.id).slice(eventsBefore));
      }),
      { numRuns: 300, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });

  it('a call driven with next always finishes within the move limit', () => {
    fc.assert(
      fc.property(flowArb, (actions) => {
        const { host, id } = setup(actions, 'call', counterClock());
        let current = START_ID;
        for (let i = 0; i < 500; i++) {
          const r = host.request(id, 'next', { current_action_id: current });
          if (!r.ok) break;
          current = (r.result as { id: string }).id;
        }
        expect(host.state(id)!.activeflow.status).toBe('ended');
      }),
      { numRuns: 300, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });
});
