import { describe, expect, it } from 'vitest';
import { FINISH, MAIN, NIL, START, type Action, type StackMap } from '../../machines/index.js';
import { getAction, getNextAction, insertAfter, pushStack, removeStackAndAbove } from '../../machines/stack-map.js';
import { aid } from '../helpers/engine.js';

const act = (n: number, next = 0): Action => ({ id: aid(n), next_id: next ? aid(next) : NIL, type: 'talk', option: {}, tm_execute: null });
const S1 = 'a1000000-0000-4000-8000-000000000001';
const S2 = 'a2000000-0000-4000-8000-000000000002';

function map(): StackMap {
  return {
    [MAIN]: { id: MAIN, actions: [act(1), act(2), act(3, 1)], return_stack_id: NIL, return_action_id: NIL },
    [S1]: { id: S1, actions: [act(11), act(12)], return_stack_id: MAIN, return_action_id: aid(1) },
    [S2]: { id: S2, actions: [act(21)], return_stack_id: S1, return_action_id: aid(11) },
  };
}

describe('successor of (stack, action) (behaviour 4.3)', () => {
  it('START gives the first action; an empty stack gives FINISH', () => {
    expect(getNextAction(map(), MAIN, START, false, 100).action.id).toBe(aid(1));
    const empty = { [MAIN]: { id: MAIN, actions: [], return_stack_id: NIL, return_action_id: NIL } };
    const r = getNextAction(empty, MAIN, START, false, 100);
    expect([r.stackId, r.action.id]).toEqual([NIL, FINISH]);
  });

  it('the next array element, else next_id', () => {
    expect(getNextAction(map(), MAIN, aid(1), false, 100).action.id).toBe(aid(2));
    expect(getNextAction(map(), MAIN, aid(3), false, 100).action.id).toBe(aid(1)); // next_id
  });

  it('next_id is searched from the stack upward', () => {
    const m = map();
    m[S2] = { ...m[S2]!, actions: [act(21, 2)] }; // next_id points into MAIN
    const r = getNextAction(m, S2, aid(21), true, 100);
    expect([r.stackId, r.action.id]).toEqual([MAIN, aid(2)]);
    expect(Object.keys(r.map)).toEqual([MAIN]); // S2 and S1 were both left on the way, and removed
  });

  it('a missing next_id target gives FINISH', () => {
    const m = map();
    m[MAIN] = { ...m[MAIN]!, actions: [act(1, 77)] };
    expect(getNextAction(m, MAIN, aid(1), false, 100).action.id).toBe(FINISH);
  });

  it('the end of a pushed stack returns after the action that pushed it, and removes the stack', () => {
    const r = getNextAction(map(), S2, aid(21), true, 100);
    expect([r.stackId, r.action.id]).toEqual([S1, aid(12)]);
    expect(r.map[S2]).toBeUndefined();
    const r2 = getNextAction(r.map, S1, aid(12), true, 100);
    expect([r2.stackId, r2.action.id]).toEqual([MAIN, aid(2)]);
    expect(Object.keys(r2.map)).toEqual([MAIN]);
  });

  it('without release nothing is removed', () => {
    expect(Object.keys(getNextAction(map(), S2, aid(21), false, 100).map)).toHaveLength(3);
  });

  it('the end of MAIN is FINISH in MAIN; MAIN is never removed', () => {
    const m = map();
    m[MAIN] = { ...m[MAIN]!, actions: [act(1)] };
    const r = getNextAction(m, MAIN, aid(1), true, 100);
    expect([r.stackId, r.action.id]).toEqual([MAIN, FINISH]);
    expect(r.map[MAIN]).toBeDefined();
  });

  it('a missing stack or action gives FINISH with the NIL stack', () => {
    expect(getNextAction(map(), 'dead0000-0000-4000-8000-000000000000', aid(1), false, 100)).toMatchObject({ stackId: NIL, action: { id: FINISH } });
    expect(getNextAction(map(), MAIN, aid(99), false, 100)).toMatchObject({ stackId: NIL, action: { id: FINISH } });
  });

  it('stops after the hop limit with FINISH', () => {
    // A return chain that loops: S1 returns to S2 which returns to S1.
    const m: StackMap = {
      [MAIN]: { id: MAIN, actions: [act(1)], return_stack_id: NIL, return_action_id: NIL },
      [S1]: { id: S1, actions: [act(11)], return_stack_id: S2, return_action_id: aid(21) },
      [S2]: { id: S2, actions: [act(21)], return_stack_id: S1, return_action_id: aid(11) },
    };
    expect(getNextAction(m, S1, aid(11), false, 100)).toMatchObject({ stackId: MAIN, action: { id: FINISH } });
  });
});

describe('locating an action (behaviour 4.3)', () => {
  it('searches the stack, then its return stacks, never siblings', () => {
    expect(getAction(map(), S2, aid(2), false, 100)).toMatchObject({ ok: true, stackId: MAIN });
    expect(getAction(map(), S2, aid(12), false, 100)).toMatchObject({ ok: true, stackId: S1 });
    expect(getAction(map(), S1, aid(21), false, 100).ok).toBe(false); // S2 is above S1, not below
  });

  it('removes the stacks it leaves when releasing', () => {
    const r = getAction(map(), S2, aid(2), true, 100);
    expect(r.ok && Object.keys(r.map)).toEqual([MAIN]);
  });

  it('START in MAIN is its first action; NIL ids are errors', () => {
    expect(getAction(map(), MAIN, START, false, 100)).toMatchObject({ ok: true, action: { id: aid(1) } });
    expect(getAction(map(), NIL, aid(1), false, 100).ok).toBe(false);
    expect(getAction(map(), MAIN, NIL, false, 100).ok).toBe(false);
  });
});

describe('changing stacks', () => {
  it('refuses to push an existing id or beyond the stack limit', () => {
    expect(pushStack(map(), S1, [act(5)], MAIN, aid(1), 100).ok).toBe(false);
    expect(pushStack(map(), 'b0000000-0000-4000-8000-000000000000', [act(5)], MAIN, aid(1), 3).ok).toBe(false);
    expect(pushStack(map(), 'b0000000-0000-4000-8000-000000000000', [act(5)], MAIN, aid(1), 4).ok).toBe(true);
  });

  it('inserts after an action as a plain insert (behaviour 9.3)', () => {
    const r = insertAfter(map(), S1, aid(11), [act(90), act(91)]);
    expect(r.ok && r.map[S1]!.actions.map((a) => a.id)).toEqual([aid(11), aid(90), aid(91), aid(12)]);
  });

  it('removes a stack with every stack pushed above it', () => {
    expect(Object.keys(removeStackAndAbove(map(), S1, 100))).toEqual([MAIN]);
    expect(Object.keys(removeStackAndAbove(map(), S2, 100)).sort()).toEqual([MAIN, S1].sort());
  });
});
