import { describe, expect, it } from 'vitest';
import { EVENT_HISTORY_MAX, materializeEvents } from '../../machines/state.js';
import { aid, CUSTOMER, FINISH_ID, fid, flow, harness, NIL_ID } from '../helpers/engine.js';

const spin = [
  { id: aid(1), type: 'empty' },
  { id: aid(2), type: 'goto', option: { target_id: aid(1), loop_count: 1_000_000 } },
];

describe('limits (behaviour 8)', () => {
  it('an event carries the whole history within the default limits, and its latest 128 entries past them', () => {
    const short = harness({ actions: Array.from({ length: 150 }, (_, i) => ({ id: aid(i + 1), type: 'talk' })) });
    for (let i = 0; i < 100; i++) short.next();
    const whole = materializeEvents(short.host.state(short.id)!).at(-1)!;
    expect(whole.data.executed_actions).toEqual(short.af().executed_actions);
    expect(whole.data.executed_actions_omitted).toBeUndefined();

    const long = harness({ actions: Array.from({ length: 400 }, (_, i) => ({ id: aid(i + 1), type: 'talk' })), limits: { max_execute_count: 1_000 } });
    for (let i = 0; i < 300; i++) long.next();
    const history = long.af().executed_actions;
    expect(history).toHaveLength(300);
    const event = materializeEvents(long.host.state(long.id)!).at(-1)!;
    expect(event.data.executed_actions).toEqual(history.slice(-EVENT_HISTORY_MAX));
    expect(event.data.executed_actions_omitted).toBe(300 - EVENT_HISTORY_MAX);
  });

  it('execute_count: 101 moves are allowed, the next attempt ends with limit_exceeded', () => {
    const h = harness({ reference_type: 'api', actions: spin });
    expect(h.req('execute').ok).toBe(true);
    expect(h.af()).toMatchObject({ status: 'ended', end_reason: 'limit_exceeded', execute_count: 101 });
    expect(h.af().executed_actions).toHaveLength(101);
    expect(h.af().error!.message).toMatch(/101 moves; at most 101/);
  });

  it('a call whose moves run out gets FINISH (it hangs up) rather than an error', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'talk' },
        { id: aid(2), type: 'goto', option: { target_id: aid(1), loop_count: 1000 } },
      ],
    });
    let last = '';
    for (let i = 0; i < 200 && last !== FINISH_ID; i++) last = h.action(h.next()).id;
    expect(last).toBe(FINISH_ID);
    expect(h.af().end_reason).toBe('limit_exceeded');
  });

  it('1000 moves in one cycle end the activeflow with limit_exceeded', () => {
    const h = harness({ reference_type: 'api', actions: spin, limits: { max_execute_count: 100_000 } });
    h.req('execute');
    expect(h.af()).toMatchObject({ end_reason: 'limit_exceeded', execute_count: 1000 });
    expect(h.af().error!.message).toMatch(/one cycle made 1000 moves/);
  });

  it('limits are configurable per deployment', () => {
    const h = harness({ reference_type: 'api', actions: spin, limits: { max_execute_count: 9 } });
    h.req('execute');
    expect(h.af().execute_count).toBe(10);
  });
});

describe('on_complete chaining (behaviour 7)', () => {
  const child = flow(fid(2), [{ id: aid(20), type: 'variable_set', option: { key: 'child', value: 'ran ${parent_value}' } }]);
  const parent = flow(fid(1), [{ id: aid(10), type: 'variable_set', option: { key: 'parent_value', value: 'p' } }], { on_complete_flow_id: fid(2) });

  it("starts the child with the parent's variables (built-ins rewritten) and executes it", () => {
    const h = harness({ reference_type: 'api', flow: parent, flows: [child], create: { reference_id: aid(500) } });
    h.req('execute');
    const parentAf = h.af();
    expect(parentAf.on_complete_activeflow_id).not.toBe(NIL_ID);
    const kid = h.host.state(parentAf.on_complete_activeflow_id)!;
    expect(kid.activeflow).toMatchObject({
      customer_id: CUSTOMER,
      flow_id: fid(2),
      reference_type: 'api',
      reference_id: aid(500),
      reference_activeflow_id: h.id,
      status: 'ended',
      end_reason: 'finished',
      webhook_uri: '',
    });
    expect(kid.variables).toMatchObject({
      parent_value: 'p',
      child: 'ran p',
      'voipbin.activeflow.id': kid.activeflow.id,
      'voipbin.activeflow.reference_activeflow_id': h.id,
      'voipbin.activeflow.flow_id': fid(2),
      'voipbin.activeflow.complete_count': '1',
    });
  });

  it('runs however the parent ended (stop, error)', () => {
    const stopped = harness({ flow: parent, flows: [child] });
    stopped.req('stop');
    expect(stopped.host.children).toHaveLength(1);
    const failing = flow(fid(3), [{ type: 'message_send' }], { on_complete_flow_id: fid(2) });
    const errored = harness({ reference_type: 'api', flow: failing, flows: [child] });
    errored.req('execute');
    expect(errored.af().end_reason).toBe('error');
    expect(errored.host.children).toHaveLength(1);
  });

  it('stops at the depth limit (root + 4 generations); a flow that completes into itself ends (behaviour 9.6)', () => {
    const selfish = flow(fid(4), [{ type: 'empty' }], { on_complete_flow_id: fid(4) });
    const h = harness({ reference_type: 'api', flow: selfish });
    h.req('execute');
    expect(h.host.children).toHaveLength(4);
    const last = h.host.state(h.host.children.at(-1)!.activeflow_id)!;
    expect(last.variables['voipbin.activeflow.complete_count']).toBe('4');
    expect(last.activeflow.on_complete_activeflow_id).toBe(NIL_ID);
    expect(last.activeflow.on_complete_error).toMatch(/depth limit of 5/);
  });

  it('a child whose flow is gone is reported, not created', () => {
    const h = harness({ reference_type: 'api', flow: parent });
    h.req('execute');
    expect(h.host.children).toEqual([{ activeflow_id: h.af().on_complete_activeflow_id, parent_id: h.id, error: { code: 'not_found', message: `flow ${fid(2)} not found` } }]);
  });
});
