/**
 * The stack map (docs/behaviour.md sections 4 and 5): MAIN holds the
 * flow's actions; pushed stacks return to the action that pushed them. Pure functions; a stack
 * map is never mutated, a changed one is a new object that shares the untouched stacks.
 */
import { FINISH, MAIN, NIL, START } from './constants.js';
import type { Action, Stack, StackMap } from './schema.js';

export const FINISH_ACTION: Action = Object.freeze({ id: FINISH, next_id: NIL, tm_execute: null }) as Action;

export type Lookup = { ok: true; stackId: string; action: Action; map: StackMap } | { ok: false; message: string };

export interface Position {
  stackId: string;
  action: Action;
  map: StackMap;
}

function without(map: StackMap, stackId: string): StackMap {
  if (stackId === MAIN || !Object.hasOwn(map, stackId)) return map;
  const { [stackId]: _gone, ...rest } = map;
  return rest;
}

/** A plain loop, not findIndex with a closure: every move looks its action up (a sixth of a `next`'s reduce). */
function indexOf(stack: Stack, actionId: string): number {
  const actions = stack.actions;
  for (let i = 0; i < actions.length; i++) if (actions[i]!.id === actionId) return i;
  return -1;
}

/**
 * Finds `targetId` in `startStackId`, then in its return stacks upward (never in siblings). With
 * `release`, the stacks left on the way are removed from the returned map.
 */
export function getAction(map: StackMap, startStackId: string, targetId: string, release: boolean, maxHops: number): Lookup {
  if (startStackId === NIL) return { ok: false, message: 'invalid stack id' };
  if (targetId === NIL) return { ok: false, message: 'invalid action id' };
  let current = map;
  let stackId = startStackId;
  for (let hop = 0; hop < maxHops; hop++) {
    if (stackId === NIL) return { ok: false, message: `action ${targetId} not found in the current stack or the stacks it returns to` };
    const stack = current[stackId];
    if (stack === undefined) return { ok: false, message: `stack ${stackId} not found` };
    if (hop === 0 && stackId === MAIN && targetId === START) {
      const first = stack.actions[0];
      return first ? { ok: true, stackId, action: first, map: current } : { ok: false, message: 'the main stack has no actions' };
    }
    const i = indexOf(stack, targetId);
    if (i >= 0) return { ok: true, stackId, action: stack.actions[i]!, map: current };
    if (release) current = without(current, stackId);
    stackId = stack.return_stack_id;
  }
  return { ok: false, message: `gave up after ${maxHops} stack hops` };
}

/**
 * The successor of (stack, action): START gives the first action, `next_id` wins over the array
 * order, the end of a pushed stack returns after the action that pushed it, the end of MAIN (or
 * anything that cannot be found) is FINISH. Never fails.
 */
export function getNextAction(map: StackMap, stackId: string, actionId: string, release: boolean, maxHops: number): Position {
  let current = map;
  let s = stackId;
  let a = actionId;
  for (let hop = 0; hop < maxHops; hop++) {
    if (s === NIL) return { stackId: MAIN, action: FINISH_ACTION, map: current };
    const stack = current[s];
    if (stack === undefined) return { stackId: NIL, action: FINISH_ACTION, map: current };
    if (a === START) {
      const first = stack.actions[0];
      return first ? { stackId: s, action: first, map: current } : { stackId: NIL, action: FINISH_ACTION, map: current };
    }
    const i = indexOf(stack, a);
    if (i < 0) return { stackId: NIL, action: FINISH_ACTION, map: current };
    const found = stack.actions[i]!;
    if (found.next_id !== NIL) {
      const target = getAction(current, s, found.next_id, release, maxHops);
      return target.ok ? { stackId: target.stackId, action: target.action, map: target.map } : { stackId: NIL, action: FINISH_ACTION, map: current };
    }
    if (i + 1 < stack.actions.length) return { stackId: s, action: stack.actions[i + 1]!, map: current };
    if (release) current = without(current, s);
    s = stack.return_stack_id;
    a = stack.return_action_id;
  }
  return { stackId: MAIN, action: FINISH_ACTION, map: current };
}

export type PushResult = { ok: true; map: StackMap } | { ok: false; message: string };

/** Adds a stack that returns to (returnStackId, returnActionId). */
export function pushStack(map: StackMap, stackId: string, actions: Action[], returnStackId: string, returnActionId: string, maxStacks: number): PushResult {
  if (Object.hasOwn(map, stackId)) return { ok: false, message: `stack ${stackId} already exists` };
  if (Object.keys(map).length >= maxStacks) return { ok: false, message: `the activeflow already holds ${maxStacks} stacks` };
  return { ok: true, map: { ...map, [stackId]: { id: stackId, actions, return_stack_id: returnStackId, return_action_id: returnActionId } } };
}

/** Whether `ancestorId` is `stackId` or one of the stacks it returns to. */
export function isInReturnChain(map: StackMap, stackId: string, ancestorId: string, maxHops: number): boolean {
  let s = stackId;
  for (let hop = 0; hop < maxHops && s !== NIL; hop++) {
    if (s === ancestorId) return true;
    const stack = map[s];
    if (stack === undefined) return false;
    s = stack.return_stack_id;
  }
  return false;
}

/** Removes `stackId` and every stack whose return chain passes through it (stacks pushed above it). */
export function removeStackAndAbove(map: StackMap, stackId: string, maxHops: number): StackMap {
  const out: StackMap = {};
  for (const id of Object.keys(map)) {
    if (id !== MAIN && isInReturnChain(map, id, stackId, maxHops)) continue;
    out[id] = map[id]!;
  }
  return out;
}

/** Inserts `actions` right after `afterActionId` in `stackId` (a plain insert, behaviour section 9.3). */
export function insertAfter(map: StackMap, stackId: string, afterActionId: string, actions: Action[]): PushResult {
  const stack = map[stackId];
  if (stack === undefined) return { ok: false, message: `stack ${stackId} not found` };
  const i = indexOf(stack, afterActionId);
  if (i < 0) return { ok: false, message: `action ${afterActionId} not found in stack ${stackId}` };
  const merged = [...stack.actions.slice(0, i + 1), ...actions, ...stack.actions.slice(i + 1)];
  return { ok: true, map: { ...map, [stackId]: { ...stack, actions: merged } } };
}

/** Replaces one action of one stack (goto's stored loop count). */
export function replaceAction(map: StackMap, stackId: string, action: Action): StackMap {
  const stack = map[stackId];
  if (stack === undefined) return map;
  const i = indexOf(stack, action.id);
  if (i < 0) return map;
  const actions = stack.actions.slice();
  actions[i] = action;
  return { ...map, [stackId]: { ...stack, actions } };
}
