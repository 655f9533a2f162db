import { describe, expect, it } from 'vitest';
import { aid, CUSTOMER, FINISH_ID, fid, flow, harness, MAIN_ID, NIL_ID, OTHER_CUSTOMER } from '../helpers/engine.js';

const ids = (h: ReturnType<typeof harness>) =>
  h
    .af()
    .executed_actions.map((a) => a.id)
    .slice(1)
    .concat(h.af().current_action.id);

describe('goto (behaviour 5, 9.1)', () => {
  it.each([0, 1, 3])('loop_count %i jumps exactly that many times, then falls through', (loops) => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'talk' },
        { id: aid(2), type: 'goto', option: { target_id: aid(1), loop_count: loops } },
        { id: aid(3), type: 'hangup' },
      ],
    });
    const returned: string[] = [];
    for (let i = 0; i < 10; i++) {
      const a = h.action(h.next());
      returned.push(a.type ?? a.id);
      if (a.id === FINISH_ID) break;
    }
    expect(returned).toEqual([...Array(loops + 1).fill('talk'), 'hangup', FINISH_ID]);
    expect(h.af().stack_map[MAIN_ID]!.actions[1]!.option).toEqual({ target_id: aid(1), loop_count: 0 });
  });

  it('a missing target is a critical error', () => {
    const h = harness({ actions: [{ id: aid(2), type: 'goto', option: { target_id: aid(9), loop_count: 1 } }] });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ end_reason: 'error', error: { action_id: aid(2), action_type: 'goto' } });
    expect(h.af().error!.message).toMatch(/goto target_id .*09 not found/);
  });
});

describe('branch (behaviour 5)', () => {
  const actions = (option: Record<string, unknown>) => [
    { id: aid(1), type: 'branch', option },
    { id: aid(10), type: 'talk', option: { text: 'one' } },
    { id: aid(20), type: 'talk', option: { text: 'two' } },
    { id: aid(30), type: 'talk', option: { text: 'default' } },
  ];
  const opt = { target_ids: { '1': aid(10), '2': aid(20) }, default_target_id: aid(30) };

  it('jumps to the target of the digits and resets them', () => {
    const h = harness({ actions: actions(opt), variables: {} });
    h.req('variables_set', { variables: { 'voipbin.call.digits': '2' } });
    expect(h.action(h.next()).id).toBe(aid(20));
    expect(h.vars()['voipbin.call.digits']).toBe('');
  });

  it('takes the default for an unknown value (and for an inherited property name)', () => {
    for (const value of ['9', 'constructor']) {
      const h = harness({ actions: actions(opt) });
      h.req('variables_set', { variables: { 'voipbin.call.digits': value } });
      expect(h.action(h.next()).id).toBe(aid(30));
    }
  });

  it('reads the named variable', () => {
    const h = harness({ actions: actions({ ...opt, variable: 'choice' }), variables: { choice: '1' } });
    expect(h.action(h.next()).id).toBe(aid(10));
    expect(h.vars()['choice']).toBe('');
  });

  it('no target is a critical error', () => {
    const h = harness({ actions: actions({ target_ids: { '1': aid(10) } }) });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ end_reason: 'error', error: { action_type: 'branch' } });
  });
});

describe('conditions in the flow', () => {
  const flowWith = (type: string, option: Record<string, unknown>) => [
    { id: aid(1), type, option: { ...option, false_target_id: aid(3) } },
    { id: aid(2), type: 'talk', option: { text: 'match' } },
    { id: aid(3), type: 'talk', option: { text: 'no match' } },
  ];

  it('condition_variable compares the substituted text: match continues, no match jumps', () => {
    const yes = harness({ actions: flowWith('condition_variable', { condition: '>=', variable: '${age}', value_type: 'number', value_number: 18 }), variables: { age: '21' } });
    expect(yes.action(yes.next()).id).toBe(aid(2));
    const no = harness({ actions: flowWith('condition_variable', { condition: '>=', variable: '${age}', value_type: 'number', value_number: 18 }), variables: { age: 'n/a' } });
    expect(no.action(no.next()).id).toBe(aid(3));
  });

  it('no match without false_target_id is a critical error', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'condition_variable', option: { condition: '==', variable: 'a', value_type: 'string', value_string: 'b' } },
        { id: aid(2), type: 'talk' },
      ],
    });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af().end_reason).toBe('error');
  });

  it('condition_datetime uses the host clock (a Friday at 10:00 UTC)', () => {
    const weekday = harness({ actions: flowWith('condition_datetime', { weekdays: [1, 2, 3, 4, 5], hour: -1, minute: -1 }) });
    expect(weekday.action(weekday.next()).id).toBe(aid(2));
    const weekend = harness({ actions: flowWith('condition_datetime', { weekdays: [0, 6], hour: -1, minute: -1 }) });
    expect(weekend.action(weekend.next()).id).toBe(aid(3));
    const hours = harness({ now: '2026-11-27T20:00:00.000000Z', actions: flowWith('condition_datetime', { condition: '>', hour: 17, minute: -1 }) });
    expect(hours.action(hours.next()).id).toBe(aid(3)); // 17 > 20 is false: after hours
  });

  it("condition_call_digits and condition_call_status read the call's variables", () => {
    const d = harness({ actions: flowWith('condition_call_digits', { length: 4 }), variables: {} });
    d.req('variables_set', { variables: { 'voipbin.call.digits': '1234' } });
    expect(d.action(d.next()).id).toBe(aid(2));
    const s = harness({ actions: flowWith('condition_call_status', { status: 'progressing' }) });
    expect(s.action(s.next()).id).toBe(aid(3));
  });
});

describe('variable_set and empty', () => {
  it('sets the value, substituted at the move and again at the set', () => {
    const h = harness({
      actions: [
        { type: 'variable_set', option: { key: 'greeting', value: 'hi ${name}' } },
        { type: 'variable_set', option: { key: 'k${name}', value: '$${dollar}' } },
        { type: 'empty' },
        { id: aid(9), type: 'talk', option: { text: '${greeting}' } },
      ],
      variables: { name: 'Ada', dollar: '{name}' },
    });
    expect(h.action(h.next()).option).toEqual({ text: 'hi Ada' });
    // the move gives value "${name}" (from "$" + "{name}"), which the set substitutes again
    expect(h.vars()['kAda']).toBe('Ada');
  });

  it('an empty key is a non-critical failure: skipped', () => {
    const h = harness({
      actions: [
        { type: 'variable_set', option: { key: '', value: 'x' } },
        { id: aid(2), type: 'talk' },
      ],
    });
    expect(h.action(h.next()).id).toBe(aid(2));
    expect(h.af().status).toBe('running');
  });
});

describe('stop and block', () => {
  it('stop ends with stop_action and returns FINISH, counting the move', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'stop' },
        { id: aid(2), type: 'talk' },
      ],
    });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ status: 'ended', end_reason: 'stop_action', execute_count: 2, current_action: { id: FINISH_ID } });
    expect(h.af().executed_actions.map((a) => a.id)).toContain(aid(1));
  });

  it('block pauses with the empty action; only continue with its id resumes', () => {
    const h = harness({
      reference_type: 'conversation',
      actions: [
        { id: aid(1), type: 'block' },
        { id: aid(2), type: 'variable_set', option: { key: 'after', value: 'yes' } },
      ],
    });
    expect(h.req('execute').ok).toBe(true);
    expect(h.af().current_action.id).toBe(aid(1));
    expect(h.req('next', { current_action_id: aid(1) })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(h.req('continue', { current_action_id: aid(2) })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(h.af().current_action.id).toBe(aid(1));
    const r = h.req('continue', { current_action_id: aid(1) });
    expect(h.action(r).id).toBe(FINISH_ID);
    expect(h.vars()['after']).toBe('yes');
  });

  it('the cycle answers the empty action when it blocks', () => {
    const h = harness({ reference_type: 'api', actions: [{ id: aid(1), type: 'block' }] });
    expect(h.action(h.req('next', { current_action_id: '00000000-0000-0000-0000-000000000001' }))).toEqual({ id: NIL_ID, next_id: NIL_ID, tm_execute: null });
  });

  it('continue on an activeflow that is not blocked is a conflict', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    h.next();
    expect(h.req('continue', { current_action_id: aid(1) })).toMatchObject({ ok: false, error: { code: 'conflict', message: expect.stringMatching(/not blocked/) } });
  });
});

describe('fetch (behaviour 5)', () => {
  const url = 'https://flows.example.test/next';
  const actions = [
    { id: aid(1), type: 'fetch', option: { event_url: url, event_method: 'POST' } },
    { id: aid(2), type: 'talk', option: { text: 'after' } },
  ];

  it('pushes the fetched actions with new ids, runs them, then returns after the fetch', () => {
    const h = harness({ actions, http: { [`POST ${url}`]: { status: 200, body: [{ type: 'talk', option: { text: 'fetched' } }] } } });
    const first = h.action(h.next());
    expect(first.option).toEqual({ text: 'fetched' });
    expect(first.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(Object.keys(h.af().stack_map)).toHaveLength(2);
    expect(h.action(h.next()).option).toEqual({ text: 'after' });
    expect(Object.keys(h.af().stack_map)).toEqual([MAIN_ID]); // the left stack is removed (behaviour 9.4)
    const effect = h.host.effects[0]!.effect;
    expect(effect).toMatchObject({ type: 'http_request', purpose: 'fetch', method: 'POST', url, await: true });
    expect(JSON.parse((effect as { body: string }).body)).toEqual({ activeflow_id: h.id, reference_id: NIL_ID });
  });

  it('an empty array pushes nothing and goes on', () => {
    const h = harness({ actions, http: { [`POST ${url}`]: { status: 200, body: [] } } });
    expect(h.action(h.next()).id).toBe(aid(2));
  });

  it.each([
    ['a non-200 status', { status: 500, body: [] }, /answered 500/],
    ['a body that is not an action array', { status: 200, body: { actions: [] } }, /not a valid action array/],
    ['an invalid action', { status: 200, body: [{ type: 'warp' }] }, /0\.type/],
    ['a transport error', { error: 'timeout after 5000 ms' }, /timeout after 5000 ms/],
  ])('%s is a critical error', (_what, response, message) => {
    const h = harness({ actions, http: { [`POST ${url}`]: response } });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ end_reason: 'error', error: { action_id: aid(1), action_type: 'fetch' } });
    expect(h.af().error!.message).toMatch(message);
  });
});

describe('fetch_flow (behaviour 5)', () => {
  const sub = flow(fid(7), [{ id: aid(70), type: 'talk', option: { text: 'from the sub flow' } }]);

  it("pushes the flow's actions and returns after it", () => {
    const h = harness({
      flows: [sub],
      actions: [
        { id: aid(1), type: 'fetch_flow', option: { flow_id: fid(7) } },
        { id: aid(2), type: 'hangup' },
      ],
    });
    expect(h.action(h.next()).id).toBe(aid(70));
    expect(h.action(h.next()).id).toBe(aid(2));
  });

  it.each([
    ['missing', []],
    ['of another customer', [{ ...sub, customer_id: OTHER_CUSTOMER }]],
    ['deleted', [{ ...sub, tm_delete: '2026-01-01T00:00:00.000000Z' }]],
  ])('a flow that is %s is a critical error', (_what, flows) => {
    const h = harness({
      flows,
      actions: [
        { id: aid(1), type: 'fetch_flow', option: { flow_id: fid(7) } },
        { id: aid(2), type: 'hangup' },
      ],
    });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ end_reason: 'error', error: { action_type: 'fetch_flow', message: `flow ${fid(7)} not found` } });
  });

  it('an empty flow pushes nothing', () => {
    const h = harness({
      flows: [flow(fid(8), [])],
      actions: [
        { id: aid(1), type: 'fetch_flow', option: { flow_id: fid(8) } },
        { id: aid(2), type: 'hangup' },
      ],
    });
    expect(h.action(h.next()).id).toBe(aid(2));
  });
});

describe('webhook_send (behaviour 5)', () => {
  const uri = 'https://hooks.example.test/x';
  const actions = (sync: boolean) => [
    { id: aid(1), type: 'webhook_send', option: { sync, uri, method: 'PUT', data_type: 'text/plain', data: 'call ${voipbin.activeflow.id}' } },
    { id: aid(2), type: 'talk' },
  ];

  it('sync waits for the answer; errors never stop the flow', () => {
    const h = harness({ actions: actions(true), http: { [`PUT ${uri}`]: { error: 'connection refused' } } });
    expect(h.action(h.next()).id).toBe(aid(2));
    expect(h.host.effects[0]).toMatchObject({ effect: { method: 'PUT', await: true, headers: { 'Content-Type': 'text/plain' }, body: `call ${h.id}` }, result: { kind: 'failure' } });
  });

  it('async is fire-and-forget', () => {
    const h = harness({ actions: actions(false), http: { [`PUT ${uri}`]: { status: 500 } } });
    expect(h.action(h.next()).id).toBe(aid(2));
    expect(h.host.effects[0]!.effect).toMatchObject({ await: false });
    expect(h.host.state(h.id)!.pending).toBeNull();
  });
});

describe('service actions (behaviour 5; docs/api.md, service subjects)', () => {
  const SERVICE = '5e000000-0000-4000-8000-000000000001';

  it('sends the action to activeflow.service.<type> and pushes the reply as the stack service_id', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'queue_join', option: { queue_id: aid(50) } },
        { id: aid(2), type: 'hangup' },
      ],
      services: { queue_join: { service_id: SERVICE, push_actions: [{ id: aid(60), type: 'confbridge_join' }], variables: { 'voipbin.queuecall.id': SERVICE } } },
    });
    expect(h.action(h.next()).id).toBe(aid(60));
    expect(h.af().stack_map[SERVICE]).toMatchObject({ return_stack_id: MAIN_ID, return_action_id: aid(1) });
    expect(h.vars()['voipbin.queuecall.id']).toBe(SERVICE);
    expect(h.host.effects[0]!.effect).toMatchObject({
      type: 'service_request',
      subject: 'activeflow.service.queue_join',
      await: true,
      request: { activeflow_id: h.id, customer_id: CUSTOMER, reference_type: 'call', action: { id: aid(1), type: 'queue_join' } },
    });
  });

  it.each(['message_send', 'call', 'connect', 'queue_join', 'conference_join', 'ai_talk'])('a failing %s is critical', (type) => {
    const h = harness({
      actions: [
        { id: aid(1), type },
        { id: aid(2), type: 'hangup' },
      ],
      services: { [type]: { error: 'down' } },
    });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ end_reason: 'error', error: { action_id: aid(1), action_type: type, message: 'down' } });
  });

  it.each(['email_send', 'conversation_send', 'transcribe_start', 'transcribe_recording', 'case_create'])('a failing %s is skipped', (type) => {
    const h = harness({
      actions: [
        { id: aid(1), type, option: type === 'conversation_send' ? { sync: true } : {} },
        { id: aid(2), type: 'hangup' },
      ],
      services: { [type]: { error: 'down' } },
    });
    expect(h.action(h.next()).id).toBe(aid(2));
  });

  it('no responder is a failure that names the subject', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'message_send' }] });
    h.next();
    expect(h.af().error!.message).toMatch(/no responders on activeflow\.service\.message_send/);
  });

  it('an invalid reply is a failure; a service stack id that exists already is a failure', () => {
    const bad = harness({ actions: [{ id: aid(1), type: 'message_send' }], services: { message_send: { push_actions: [{ type: 'nope' }] } } });
    bad.next();
    expect(bad.af().error!.message).toMatch(/invalid push_actions/);
    // The service's stack holds another connect, answered with the same service id while the
    // cursor is still inside that stack.
    const twice = harness({
      actions: [
        { id: aid(1), type: 'connect' },
        { id: aid(3), type: 'hangup' },
      ],
      services: { connect: { service_id: SERVICE, push_actions: [{ id: aid(2), type: 'connect' }] } },
    });
    twice.next();
    expect(twice.af()).toMatchObject({ end_reason: 'error', error: { action_id: aid(2), message: `stack ${SERVICE} already exists` } });
    // Once its stack has been left (and removed), the same service id may be pushed again.
    const again = harness({
      actions: [
        { id: aid(1), type: 'connect' },
        { id: aid(2), type: 'connect' },
        { id: aid(3), type: 'hangup' },
      ],
      services: { connect: { service_id: SERVICE, push_actions: [{ type: 'empty' }] } },
    });
    expect(again.action(again.next()).id).toBe(aid(3));
  });

  it('ai_task for a conversation pushes the block the ai service resumes', () => {
    const h = harness({
      reference_type: 'conversation',
      actions: [
        { id: aid(1), type: 'ai_task' },
        { id: aid(2), type: 'variable_set', option: { key: 'done', value: 'yes' } },
      ],
      services: { ai_task: { service_id: SERVICE, push_actions: [{ id: SERVICE, type: 'block' }] } },
    });
    h.req('execute');
    expect(h.af().current_action).toMatchObject({ id: SERVICE, type: 'block' });
    expect(h.req('service_stop', { service_id: SERVICE }).ok).toBe(true);
    expect(h.action(h.req('continue', { current_action_id: SERVICE })).id).toBe(FINISH_ID);
    expect(h.vars()['done']).toBe('yes');
  });

  it('an async conversation_send is fire-and-forget', () => {
    const h = harness({ reference_type: 'conversation', actions: [{ type: 'conversation_send', option: { text: 'hi' } }], services: { conversation_send: {} } });
    h.req('execute');
    expect(h.host.effects[0]!.effect).toMatchObject({ await: false });
    expect(h.af().end_reason).toBe('finished');
  });
});

describe('the order of moves', () => {
  it('records every internal action in the history', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'empty' },
        { id: aid(2), type: 'variable_set', option: { key: 'a', value: '1' } },
        { id: aid(3), type: 'talk' },
      ],
    });
    h.next();
    expect(ids(h)).toEqual([aid(1), aid(2), aid(3)]);
  });
});
