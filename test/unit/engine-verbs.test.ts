import { describe, expect, it } from 'vitest';
import { aid, FINISH_ID, harness, MAIN_ID, NIL_ID, START_ID } from '../helpers/engine.js';
import { RECENT_REQUESTS } from '../../machines/state.js';

const SERVICE = '5e000000-0000-4000-8000-000000000001';
const WAIT = 'f0000000-0000-4000-8000-00000000a001';

/** A call waiting in a queue: the cursor sits in the hold-music stack pushed above the queue's stack. */
function queueCall(mainTail: unknown[] = [{ id: aid(3), type: 'talk', option: { text: 'after the queue' } }]) {
  return harness({
    actions: [{ id: aid(1), type: 'answer' }, { id: aid(2), type: 'queue_join' }, ...mainTail],
    flows: [
      {
        id: WAIT,
        customer_id: '11111111-1111-4111-8111-111111111111',
        type: 'flow',
        name: '',
        detail: '',
        actions: [{ id: aid(40), next_id: NIL_ID, type: 'play', option: {}, tm_execute: null }],
        on_complete_flow_id: NIL_ID,
        tm_create: null,
        tm_update: null,
        tm_delete: null,
      },
    ],
    services: {
      queue_join: {
        service_id: SERVICE,
        push_actions: [
          { id: aid(30), type: 'fetch_flow', option: { flow_id: WAIT } },
          { id: aid(31), type: 'empty', next_id: aid(30) },
          { id: aid(32), type: 'confbridge_join' },
        ],
      },
    },
  });
}

describe('push_actions (behaviour 5)', () => {
  it('pushes a stack returning to the current action; the cursor moves only at the next move', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(2), type: 'hangup' },
      ],
    });
    h.next();
    const r = h.req('push_actions', { actions: [{ id: aid(10), type: 'talk' }, { type: 'play' }] });
    expect(r.ok).toBe(true);
    const af = h.af();
    expect(af.current_action.id).toBe(aid(1));
    const pushed = Object.values(af.stack_map).find((s) => s.id !== MAIN_ID)!;
    expect(pushed).toMatchObject({ return_stack_id: MAIN_ID, return_action_id: aid(1) });
    expect(pushed.actions[1]!.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(af).toMatchObject({ forward_stack_id: pushed.id, forward_action_id: aid(10) });
    expect(h.action(h.next()).id).toBe(aid(10));
    expect(h.action(h.next()).type).toBe('play');
    expect(h.action(h.next()).id).toBe(aid(2));
  });

  it('an empty list changes nothing; a bad action is invalid_argument and changes nothing', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    const before = h.host.state(h.id)!;
    expect(h.req('push_actions', { actions: [] }).ok).toBe(true);
    expect(h.req('push_actions', { actions: [{ type: 'talk', option: { text: 1 } }] })).toMatchObject({
      ok: false,
      error: { code: 'invalid_argument', message: expect.stringMatching(/actions\.0\.option\.text/) },
    });
    expect(h.host.state(h.id)!.activeflow).toEqual(before.activeflow);
  });

  it('refuses to grow beyond max_stacks', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }], limits: { max_stacks: 2 } });
    expect(h.req('push_actions', { actions: [{ type: 'talk' }] }).ok).toBe(true);
    expect(h.req('push_actions', { actions: [{ type: 'talk' }] })).toMatchObject({ ok: false, error: { code: 'limit_exceeded' } });
  });
});

describe('add_actions (behaviour 5, 9.3)', () => {
  it('is refused while the cursor is in MAIN, and changes nothing', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    h.next();
    const before = h.af();
    expect(h.req('add_actions', { actions: [{ type: 'talk' }] })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(h.af()).toEqual(before);
  });

  it('inserts right after the current action of a pushed stack', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(9), type: 'hangup' },
      ],
    });
    h.next();
    h.req('push_actions', {
      actions: [
        { id: aid(10), type: 'talk' },
        { id: aid(11), type: 'play' },
      ],
    });
    h.next();
    expect(
      h.req('add_actions', {
        actions: [
          { id: aid(20), type: 'beep' },
          { id: aid(21), type: 'echo' },
        ],
      }).ok,
    ).toBe(true);
    expect(h.af().stack_map[h.af().current_stack_id]!.actions.map((a) => a.id)).toEqual([aid(10), aid(20), aid(21), aid(11)]);
    expect([h.next(), h.next(), h.next(), h.next()].map((r) => h.action(r).id)).toEqual([aid(20), aid(21), aid(11), aid(9)]);
  });
});

describe('service_stop (behaviour 5, 9.7)', () => {
  it("works from a stack pushed above the service's stack (a queue wait) and goes on after the pushing action", () => {
    const h = queueCall();
    h.next(); // answer
    expect(h.action(h.next()).id).toBe(aid(40)); // hold music, inside the wait flow's stack
    expect(h.action(h.next()).id).toBe(aid(40)); // the wait loop: fetch_flow again
    const waitStack = h.af().current_stack_id;
    expect(waitStack).not.toBe(SERVICE);
    expect(h.req('service_stop', { service_id: SERVICE }).ok).toBe(true);
    expect(Object.keys(h.af().stack_map)).toEqual([MAIN_ID]);
    expect(h.af()).toMatchObject({ forward_stack_id: MAIN_ID, forward_action_id: aid(3), current_action: { id: aid(40) } });
    expect(h.action(h.next()).id).toBe(aid(3));
  });

  it('a forward to FINISH (the pushing action was the last of MAIN) ends the flow normally', () => {
    const h = queueCall([]);
    h.next();
    h.next();
    h.req('service_stop', { service_id: SERVICE });
    expect(h.af()).toMatchObject({ forward_action_id: FINISH_ID });
    expect(h.action(h.next()).id).toBe(FINISH_ID);
    expect(h.af()).toMatchObject({ status: 'ended', end_reason: 'finished', error: null });
  });

  it('an agent answers: queue-manager forwards to confbridge_join, found up the return chain', () => {
    const h = queueCall();
    h.next();
    h.next();
    const r = h.req('forward', { forward_action_id: aid(32), forward_now: true });
    expect(r.ok).toBe(true);
    expect(h.host.effects.at(-1)!.effect).toMatchObject({ type: 'reference_action_next', reference_type: 'call' });
    expect(h.action(h.next()).id).toBe(aid(32));
  });

  it('an unknown service is not_found; MAIN is invalid; neither changes anything', () => {
    const h = queueCall();
    h.next();
    const before = h.af();
    expect(h.req('service_stop', { service_id: aid(99) })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(h.req('service_stop', { service_id: MAIN_ID })).toMatchObject({ ok: false, error: { code: 'invalid_argument' } });
    expect(h.af()).toEqual(before);
  });
});

describe('forward (behaviour 5)', () => {
  it('a target that cannot be found is not_found and changes nothing', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    h.next();
    const before = h.af();
    expect(h.req('forward', { forward_action_id: aid(9) })).toMatchObject({ ok: false, error: { code: 'not_found' } });
    expect(h.af()).toEqual(before);
  });

  it('forward_now asks only a call to move now', () => {
    const h = harness({
      reference_type: 'conversation',
      actions: [
        { id: aid(1), type: 'block' },
        { id: aid(2), type: 'empty' },
      ],
    });
    h.req('execute');
    h.req('forward', { forward_action_id: aid(2), forward_now: true });
    expect(h.host.effects).toEqual([]);
  });
});

describe('stop and delete (behaviour 7)', () => {
  it('stop ends a running activeflow once; a second stop returns it unchanged with no event', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    h.next();
    const r = h.req('stop');
    expect(r).toMatchObject({ ok: true, result: { status: 'ended', end_reason: 'stopped' } });
    const events = h.host.events(h.id).length;
    const again = h.req('stop');
    expect(again).toEqual(r);
    expect(h.host.events(h.id)).toHaveLength(events);
  });

  it('a hangup is recorded as reference_ended', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    expect(h.req('stop', { reason: 'reference_ended' })).toMatchObject({ ok: true, result: { end_reason: 'reference_ended' } });
  });

  it('delete stops a running activeflow (deleted), marks it, and afterwards it is not_found', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    h.next();
    expect(h.req('delete')).toMatchObject({ ok: true, result: { status: 'ended', end_reason: 'deleted', tm_delete: expect.any(String) } });
    expect(
      h.host
        .events(h.id)
        .slice(-3)
        .map((e) => e.type),
    ).toEqual(['activeflow_updated', 'activeflow_ended', 'activeflow_deleted']);
    for (const [verb, body] of [
      ['get', {}],
      ['stop', {}],
      ['delete', {}],
      ['next', { current_action_id: aid(1) }],
      ['variables_set', { variables: { a: 'b' } }],
    ] as const) {
      const r = verb === 'get' ? h.host.get(h.id) : h.req(verb, body);
      expect(r, verb).toMatchObject({ ok: false, error: { code: 'not_found' } });
    }
  });

  it('delete of an ended activeflow only marks it', () => {
    const h = harness({ actions: [] });
    h.next();
    expect(h.req('delete')).toMatchObject({ ok: true, result: { end_reason: 'finished', tm_delete: expect.any(String) } });
    expect(h.host.events(h.id).at(-1)!.type).toBe('activeflow_deleted');
  });

  it('an ended activeflow refuses every move and variable change with `ended`', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    h.req('stop');
    for (const [verb, body] of [
      ['next', { current_action_id: START_ID }],
      ['execute', {}],
      ['forward', { forward_action_id: aid(1) }],
      ['push_actions', { actions: [] }],
      ['variables_set', { variables: { a: 'b' } }],
      ['variables_delete', { key: 'a' }],
    ] as const) {
      expect(h.req(verb, body), verb).toMatchObject({ ok: false, error: { code: 'ended' } });
    }
  });
});

describe('stale and duplicate requests (behaviour 9.5)', () => {
  it('a stale next is a conflict and changes nothing, never ending the activeflow', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(2), type: 'talk' },
        { id: aid(3), type: 'talk' },
      ],
    });
    h.next();
    h.next();
    const before = h.host.state(h.id)!;
    const r = h.req('next', { current_action_id: aid(3) });
    expect(r).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(h.host.state(h.id)!.activeflow).toEqual(before.activeflow);
    expect(h.af().status).toBe('running');
  });

  it('a retried next after a lost reply gets the same answer without moving', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(2), type: 'talk' },
      ],
    });
    h.next();
    const first = h.req('next', { current_action_id: aid(1) });
    const count = h.af().execute_count;
    const retry = h.req('next', { current_action_id: aid(1) });
    expect(retry).toEqual(first);
    expect(h.af().execute_count).toBe(count);
    // ... also when the lost reply was FINISH
    const fin = h.req('next', { current_action_id: aid(2) });
    expect(h.action(fin).id).toBe(FINISH_ID);
    expect(h.req('next', { current_action_id: aid(2) })).toEqual(fin);
  });

  it('a retry is no longer answered once something else moved the activeflow', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'answer' },
        { id: aid(2), type: 'talk' },
      ],
    });
    h.next();
    h.req('next', { current_action_id: aid(1) });
    h.req('stop');
    expect(h.req('next', { current_action_id: aid(1) })).toMatchObject({ ok: false, error: { code: 'ended' } });
  });

  it('a goto loop that returns to the same action id still moves on the next request', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'talk' },
        { id: aid(2), type: 'goto', option: { target_id: aid(1), loop_count: 2 } },
        { id: aid(3), type: 'hangup' },
      ],
    });
    const seen = [h.next(), h.next(), h.next(), h.next()].map((r) => h.action(r).id);
    expect(seen).toEqual([aid(1), aid(1), aid(1), aid(3)]);
  });

  it('a second execute is a conflict and changes nothing', () => {
    const h = harness({ reference_type: 'api', actions: [{ id: aid(1), type: 'block' }] });
    h.req('execute');
    const before = h.af();
    expect(h.req('execute')).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect(h.af()).toEqual(before);
  });
});

describe('variables verbs', () => {
  it('set substitutes, delete removes, both answer the variables; neither is an event', () => {
    const h = harness({ actions: [], variables: { a: '1' } });
    const events = h.host.events(h.id).length;
    expect(h.req('variables_set', { variables: { b: '${a}2' } })).toMatchObject({ ok: true, result: { variables: { a: '1', b: '12' } } });
    expect(h.req('variables_delete', { key: 'a' })).toMatchObject({ ok: true, result: { variables: { b: '12' } } });
    expect(h.host.events(h.id)).toHaveLength(events);
    expect(h.host.substitute(h.id, 'x${b}')).toEqual({ ok: true, result: { data: 'x12' } });
  });

  it('a value over the limit is limit_exceeded naming the quota, and changes nothing', () => {
    const h = harness({ actions: [], variables: { a: '1' } });
    expect(h.req('variables_set', { variables: { b: 'x'.repeat(40000) } })).toMatchObject({ ok: false, error: { code: 'limit_exceeded', quota: 'variable_value_bytes' } });
    expect(h.vars()['b']).toBeUndefined();
    const many = Object.fromEntries(Array.from({ length: 9 }, (_, i) => [`k${i}`, 'y'.repeat(30000)]));
    expect(h.req('variables_set', { variables: many })).toMatchObject({ ok: false, error: { code: 'limit_exceeded', quota: 'variables_bytes' } });
    expect(Object.keys(h.vars()).filter((k) => k.startsWith('k'))).toEqual([]);
    expect(h.req('variables_set', { variables: { ' ': 'x' } })).toMatchObject({ ok: false, error: { code: 'invalid_argument' } });
  });
});

describe('request ids: a retried change is never applied twice', () => {
  it('a repeated push_actions with the same request_id pushes once and answers the same', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'answer' }] });
    h.next();
    const first = h.req('push_actions', { actions: [{ type: 'talk' }], request_id: 'r-1' });
    const again = h.req('push_actions', { actions: [{ type: 'talk' }], request_id: 'r-1' });
    expect(first.ok && again.ok).toBe(true);
    expect(Object.keys(h.af().stack_map)).toHaveLength(2);
    h.req('push_actions', { actions: [{ type: 'talk' }], request_id: 'r-2' });
    expect(Object.keys(h.af().stack_map)).toHaveLength(3);
  });

  it('a goto loop back to the same action: a retried next with its request_id is answered again, not moved twice', () => {
    const h = harness({
      actions: [
        { id: aid(1), type: 'talk' },
        { id: aid(2), type: 'goto', option: { target_id: aid(1), loop_count: 3 } },
      ],
    });
    const first = h.req('next', { current_action_id: START_ID, request_id: 'n-1' });
    expect(first).toMatchObject({ ok: true, result: { id: aid(1) } });
    const looped = h.req('next', { current_action_id: aid(1), request_id: 'n-2' });
    expect(looped).toMatchObject({ ok: true, result: { id: aid(1) } }); // the goto ran: back on the same action
    const count = h.af().execute_count;
    expect(h.req('next', { current_action_id: aid(1), request_id: 'n-2' })).toEqual(looped); // the lost reply, again
    expect(h.af().execute_count).toBe(count);
    // Only the latest cycle's answer is kept (an earlier one can no longer be retried); other verbs' stay.
    h.req('variables_set', { variables: { a: '1' }, request_id: 'v-1' });
    expect(h.host.state(h.id)!.recent_requests.map((r) => r.id)).toEqual(['n-2', 'v-1']);
  });

  it('a repeated delete answers like the first, not not_found; a repeated error stays that error', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    const first = h.req('delete', { request_id: 'd-1' });
    expect(first).toMatchObject({ ok: true, result: { end_reason: 'deleted' } });
    expect(h.req('delete', { request_id: 'd-1' })).toMatchObject({ ok: true, result: { end_reason: 'deleted' } });
    expect(h.req('delete', {})).toMatchObject({ ok: false, error: { code: 'not_found' } });
  });

  it('a request id reused for another verb is a conflict; old ids are forgotten after RECENT_REQUESTS', () => {
    const h = harness({ actions: [{ id: aid(1), type: 'talk' }] });
    h.req('variables_set', { variables: { a: '1' }, request_id: 'x' });
    expect(h.req('variables_delete', { key: 'a', request_id: 'x' })).toMatchObject({ ok: false, error: { code: 'conflict' } });
    for (let i = 0; i < RECENT_REQUESTS; i++) h.req('variables_set', { variables: { n: String(i) }, request_id: `n-${i}` });
    expect(h.host.state(h.id)!.recent_requests).toHaveLength(RECENT_REQUESTS);
    expect(h.host.state(h.id)!.recent_requests.some((r) => r.id === 'x')).toBe(false);
  });
});
