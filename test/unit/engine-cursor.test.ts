import { describe, expect, it } from 'vitest';
import { ACTION_TYPES, isAvailable, reduce, REFERENCE_TYPES, type EngineState } from '../../machines/index.js';
import { aid, CUSTOMER, FINISH_ID, fid, flow, harness, MAIN_ID, NIL_ID, NOW, OTHER_CUSTOMER, START_ID } from '../helpers/engine.js';
import { LocalHost } from '../../actors/index.js';
import { fixedClock } from '../../src/clock.js';

describe('creation (behaviour 3)', () => {
  it('starts running at START in MAIN with nothing moved, and emits activeflow_created', () => {
    const h = harness({ actions: [{ type: 'answer' }] });
    const af = h.af();
    expect(af).toMatchObject({
      status: 'running',
      current_stack_id: MAIN_ID,
      current_action: { id: START_ID },
      forward_stack_id: NIL_ID,
      forward_action_id: NIL_ID,
      execute_count: 0,
      executed_actions: [],
      end_reason: '',
      error: null,
      tm_create: NOW,
      tm_update: null,
      tm_delete: null,
      customer_id: CUSTOMER,
      flow_id: NIL_ID,
    });
    expect(af.stack_map[MAIN_ID]!.actions[0]!.id).toMatch(/^[0-9a-f-]{36}$/); // inline actions get ids
    const events = h.host.events(h.id);
    expect(events.map((e) => [e.type, e.seq])).toEqual([['activeflow_created', 1]]);
    expect(events[0]!.data).not.toHaveProperty('stack_map');
    expect(events[0]!.data).not.toHaveProperty('execute_count');
    expect(events[0]!.data).not.toHaveProperty('current_stack_id');
    expect(events[0]!.data).not.toHaveProperty('forward_stack_id');
  });

  it("copies the flow's actions and on_complete_flow_id", () => {
    const f = flow(fid(1), [{ id: aid(1), type: 'answer' }], { on_complete_flow_id: fid(2) });
    const h = harness({ flow: f });
    expect(h.af()).toMatchObject({ flow_id: fid(1), on_complete_flow_id: fid(2) });
    expect(h.af().stack_map[MAIN_ID]!.actions).toEqual(f.actions);
    expect(h.vars()['voipbin.activeflow.flow_id']).toBe(fid(1));
  });

  it.each([
    ['missing', [] as ReturnType<typeof flow>[]],
    ['deleted (behaviour 9.9)', [flow(fid(1), [], { tm_delete: NOW })]],
    ['of another customer', [flow(fid(1), [], { customer_id: OTHER_CUSTOMER })]],
  ])('a flow that is %s is not_found, and nothing is created', (_what, flows) => {
    const host = new LocalHost({ flows, http: {}, services: {} }, fixedClock(NOW));
    const r = host.create({ customer_id: CUSTOMER, reference_type: 'call', flow_id: fid(1) });
    expect(r).toEqual({ ok: false, error: { code: 'not_found', message: `flow ${fid(1)} not found` } });
    expect(host.ids()).toEqual([]);
  });

  it('layers variables: inherited < caller (sanitised) < built-ins', () => {
    const host = new LocalHost({ flows: [], http: {}, services: {} }, fixedClock(NOW));
    const parent = host.create({ customer_id: CUSTOMER, reference_type: 'call', reference_id: aid(500), actions: [], variables: { a: 'parent', b: 'parent' } });
    const parentId = (parent as { result: { id: string } }).result.id;
    const child = host.create({
      customer_id: CUSTOMER,
      reference_type: 'api',
      reference_activeflow_id: parentId,
      actions: [],
      variables: { ' b ': 'caller', 'voipbin.activeflow.id': 'forged', c: 'caller' },
    });
    expect(child.ok).toBe(true);
    const id = (child as { result: { id: string } }).result.id;
    expect(host.state(id)!.variables).toEqual({
      a: 'parent',
      b: 'caller',
      c: 'caller',
      'voipbin.activeflow.id': id,
      'voipbin.activeflow.reference_type': 'api',
      'voipbin.activeflow.reference_id': NIL_ID,
      'voipbin.activeflow.reference_activeflow_id': parentId,
      'voipbin.activeflow.flow_id': NIL_ID,
      'voipbin.activeflow.complete_count': '1',
    });
  });

  it('rejects bad input with the field path and creates nothing', () => {
    const host = new LocalHost({ flows: [], http: {}, services: {} }, fixedClock(NOW));
    const cases: [unknown, RegExp][] = [
      [{ customer_id: 'nope', reference_type: 'call', actions: [] }, /customer_id: must be a UUID/],
      [{ customer_id: CUSTOMER, reference_type: 'fax', actions: [] }, /reference_type/],
      [{ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk', option: { text: 5 } }] }, /actions\.0\.option\.text/],
      [{ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk', options: {} }] }, /actions\.0: Unrecognized key: "options"/],
      [
        {
          customer_id: CUSTOMER,
          reference_type: 'call',
          actions: [
            { id: aid(1), type: 'answer' },
            { id: aid(1), type: 'answer' },
          ],
        },
        /actions\.1\.id: duplicates/,
      ],
      [{ customer_id: CUSTOMER, reference_type: 'call', actions: [{ id: FINISH_ID, type: 'answer' }] }, /actions\.0\.id: is reserved/],
      [{ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'goto', option: { target_id: 'x' } }] }, /option\.target_id: must be a UUID or a \$\{variable\}/],
      [{ customer_id: CUSTOMER, reference_type: 'call', flow_id: fid(1), actions: [] }, /give flow_id or actions, not both/],
      [{ customer_id: CUSTOMER, reference_type: 'call', actions: [], webhook_uri: 'ftp://x' }, /webhook_uri/],
      [{ customer_id: CUSTOMER, reference_type: 'call', actions: [], surprise: 1 }, /Unrecognized key: "surprise"/],
    ];
    for (const [body, message] of cases) {
      const r = host.create(body);
      expect(r.ok, JSON.stringify(body).slice(0, 80)).toBe(false);
      expect(!r.ok && `${r.error.code}: ${r.error.message}`).toMatch(/^invalid_argument: /);
      expect(!r.ok && r.error.message).toMatch(message);
    }
    expect(host.ids()).toEqual([]);
  });

  it('refuses variables over a size quota as limit_exceeded naming it, and creates nothing', () => {
    const host = new LocalHost({ flows: [], http: {}, services: {} }, fixedClock(NOW));
    const cases: [Record<string, string>, string, RegExp][] = [
      [{ k: 'x'.repeat(40000) }, 'variable_value_bytes', /variables\.k: value is 40000 bytes/],
      [Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, 'v'])), 'variable_keys', /101 keys given, at most 100/],
      [Object.fromEntries(Array.from({ length: 3 }, (_, i) => [`k${i}`, 'x'.repeat(30000)])), 'injected_variables_bytes', /at most 65536/],
    ];
    for (const [variables, quota, message] of cases) {
      const r = host.create({ customer_id: CUSTOMER, reference_type: 'call', actions: [], variables });
      expect(r).toMatchObject({ ok: false, error: { code: 'limit_exceeded', quota } });
      expect(!r.ok && r.error.message).toMatch(message);
    }
    expect(host.ids()).toEqual([]);
  });

  it('accepts upper-case UUIDs and stores them lower case', () => {
    const h = harness({ actions: [{ id: aid(1).toUpperCase(), type: 'answer' }] });
    expect(h.af().stack_map[MAIN_ID]!.actions[0]!.id).toBe(aid(1));
  });

  it('a missing parent activeflow is not_found', () => {
    const host = new LocalHost({ flows: [], http: {}, services: {} }, fixedClock(NOW));
    const r = host.create({ customer_id: CUSTOMER, reference_type: 'call', actions: [], reference_activeflow_id: aid(9) });
    expect(!r.ok && r.error.code).toBe('not_found');
  });

  it("another customer's parent activeflow is not_found, worded as a missing one", () => {
    const host = new LocalHost({ flows: [], http: {}, services: {} }, fixedClock(NOW));
    const parent = host.create({ customer_id: OTHER_CUSTOMER, reference_type: 'call', actions: [], variables: { secret: 'theirs' } });
    const parentId = (parent as { result: { id: string } }).result.id;
    const r = host.create({ customer_id: CUSTOMER, reference_type: 'call', actions: [], reference_activeflow_id: parentId });
    expect(r).toEqual({ ok: false, error: { code: 'not_found', message: `reference activeflow ${parentId} not found` } });
    expect(host.ids()).toEqual([parentId]);
  });
});

describe('one cursor move (behaviour 4)', () => {
  it('appends the old action to the history, counts, substitutes the current action and keeps the template', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk', option: { text: 'hi ${name}', list: ['${name}', 1] } }], variables: { name: 'Ada' } });
    const r = h.next();
    expect(h.action(r)).toEqual({ id: aid(1), next_id: NIL_ID, type: 'talk', option: { text: 'hi Ada', list: ['Ada', 1] }, tm_execute: null });
    const af = h.af();
    expect(af.execute_count).toBe(1);
    expect(af.executed_actions).toEqual([{ id: START_ID, next_id: NIL_ID, tm_execute: null }]);
    expect(af.current_action.option).toEqual({ text: 'hi Ada', list: ['Ada', 1] });
    expect(af.stack_map[MAIN_ID]!.actions[0]!.option).toEqual({ text: 'hi ${name}', list: ['${name}', 1] });
    expect(af.tm_update).toBe(NOW);
    expect(h.host.events(h.id).map((e) => e.type)).toEqual(['activeflow_created', 'activeflow_updated']);
  });

  it('reaching FINISH ends the activeflow: finished, one move, then the status update and activeflow_ended', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    h.next();
    const r = h.next();
    expect(h.action(r).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ status: 'ended', end_reason: 'finished', execute_count: 2, current_action: { id: FINISH_ID } });
    const events = h.host.events(h.id);
    // created, the move onto answer, the move onto FINISH, the status change, then ended
    expect(events.map((e) => e.type)).toEqual(['activeflow_created', 'activeflow_updated', 'activeflow_updated', 'activeflow_updated', 'activeflow_ended']);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5]);
    expect(events[2]!.data).toMatchObject({ status: 'running', current_action: { id: FINISH_ID } });
    expect(events[3]!.data).toMatchObject({ status: 'ended', end_reason: 'finished' });
    expect(events[4]!.data).toEqual(events[3]!.data);
  });

  it('an empty MAIN finishes on the first move', () => {
    const h = harness({ actions: [] });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ execute_count: 1, current_stack_id: NIL_ID });
  });

  it('a forward wins over the successor', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(2), type: 'talk' },
        { id: aid(3), type: 'hangup' },
      ],
    });
    h.next();
    expect(h.req('forward', { forward_action_id: aid(3) }).ok).toBe(true);
    expect(h.af()).toMatchObject({ current_action: { id: aid(1) }, forward_stack_id: MAIN_ID, forward_action_id: aid(3) });
    expect(h.action(h.next()).id).toBe(aid(3));
    expect(h.af()).toMatchObject({ forward_stack_id: NIL_ID, forward_action_id: NIL_ID });
  });

  it('a forward target that has disappeared is a critical error', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    const state = h.host.state(h.id)!;
    const broken: EngineState = { ...state, activeflow: { ...state.activeflow, forward_stack_id: MAIN_ID, forward_action_id: aid(77) } };
    const after = reduce(broken, { type: 'next', request_id: 'r', now: NOW, entropy: 'entropy-1', current_action_id: START_ID });
    expect(after.activeflow).toMatchObject({ status: 'ended', end_reason: 'error', error: { action_id: START_ID } });
    expect(after.activeflow.error!.message).toMatch(/forward target .*77 not found/);
    expect(after.outbox.replies).toEqual([{ request_id: 'r', ok: true, value: { kind: 'action', action: { id: FINISH_ID, next_id: NIL_ID, tm_execute: null } } }]);
  });

  it('next_id jumps; a next_id that cannot be found finishes', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer', next_id: aid(3) },
        { id: aid(2), type: 'talk' },
        { id: aid(3), type: 'talk', next_id: aid(99) },
      ],
    });
    expect(h.action(h.next()).id).toBe(aid(1));
    expect(h.action(h.next()).id).toBe(aid(3));
    expect(h.action(h.next()).id).toBe(FINISH_ID);
  });
});

describe('availability by reference type (behaviour 5)', () => {
  const NONE = [
    'ai_talk',
    'branch',
    'call',
    'case_create',
    'condition_datetime',
    'condition_variable',
    'conversation_send',
    'email_send',
    'empty',
    'fetch',
    'fetch_flow',
    'goto',
    'message_send',
    'stop',
    'transcribe_recording',
    'variable_set',
    'webhook_send',
  ];
  const RTC = [
    'amd',
    'answer',
    'beep',
    'condition_call_digits',
    'condition_call_status',
    'confbridge_join',
    'conference_join',
    'connect',
    'digits_receive',
    'digits_send',
    'echo',
    'external_media_start',
    'external_media_stop',
    'hangup',
    'mute',
    'play',
    'queue_join',
    'recording_start',
    'recording_stop',
    'sleep',
    'stream_echo',
    'talk',
    'transcribe_start',
    'transcribe_stop',
  ];
  const NON_RTC = ['ai_summary', 'ai_task', 'block'];

  it('the catalogue has exactly the types of docs/behaviour.md', () => {
    expect([...ACTION_TYPES].sort()).toEqual([...NONE, ...RTC, ...NON_RTC].sort());
  });

  it.each(REFERENCE_TYPES.map((r) => [r === '' ? '""' : r, r] as const))('for %s', (_label, ref) => {
    for (const t of NONE) expect(isAvailable(t, ref), t).toBe(true);
    for (const t of RTC) expect(isAvailable(t, ref), t).toBe(ref === 'call');
    for (const t of NON_RTC) expect(isAvailable(t, ref), t).toBe(ref !== 'call' && ref !== '');
    expect(isAvailable('teleport', ref)).toBe(false);
    expect(isAvailable(undefined, ref)).toBe(false);
  });

  it('a skipped action is moved onto, counted and recorded, and the cycle goes on', () => {
    const h = harness({
      reference_type: 'call',
      actions: [
        { id: aid(1), type: 'block' },
        { id: aid(2), type: 'ai_summary' },
        { id: aid(3), type: 'talk' },
      ],
    });
    expect(h.action(h.next()).id).toBe(aid(3));
    expect(h.af().execute_count).toBe(3);
    expect(h.af().executed_actions.map((a) => a.id)).toEqual([START_ID, aid(1), aid(2)]);
  });

  it('media actions are skipped for non-call references', () => {
    const h = harness({
      reference_type: 'api',
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(2), type: 'talk' },
      ],
    });
    expect(h.req('execute').ok).toBe(true);
    expect(h.af()).toMatchObject({ status: 'ended', end_reason: 'finished', execute_count: 3 });
  });

  it('an unknown type in a restored snapshot (a newer version wrote it) is skipped', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    const state = h.host.state(h.id)!;
    const main = state.activeflow.stack_map[MAIN_ID]!;
    const withUnknown: EngineState = {
      ...state,
      activeflow: { ...state.activeflow, stack_map: { [MAIN_ID]: { ...main, actions: [{ id: aid(9), next_id: NIL_ID, type: 'hologram', option: {}, tm_execute: null }, ...main.actions] } } },
    };
    const after = reduce(withUnknown, { type: 'next', request_id: 'r', now: NOW, entropy: 'entropy-1', current_action_id: START_ID });
    expect(after.outbox.replies[0]).toMatchObject({ ok: true, value: { action: { id: aid(1) } } });
    expect(after.activeflow.execute_count).toBe(2);
  });

  it.each([
    'amd',
    'answer',
    'beep',
    'confbridge_join',
    'digits_receive',
    'digits_send',
    'echo',
    'external_media_start',
    'external_media_stop',
    'hangup',
    'mute',
    'play',
    'recording_start',
    'recording_stop',
    'sleep',
    'stream_echo',
    'talk',
    'transcribe_stop',
  ])('%s is returned to the call', (type) => {
    const h = harness({ actions: [{ id: aid(1), type }] });
    expect(h.action(h.next())).toMatchObject({ id: aid(1), type });
  });
});
