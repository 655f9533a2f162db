import { NIL } from './constants.js';
import type { IdSource } from './ids.js';
import type { Action, ActionInput } from './schema.js';

/** Client actions in stored form: missing ids are given, `next_id` defaults to NIL, `option` to {}. */
export function prepareActions(inputs: readonly ActionInput[], ids: IdSource): Action[] {
  return inputs.map((a) => ({
    id: a.id ?? ids.next(),
    next_id: a.next_id ?? NIL,
    type: a.type,
    option: a.option ?? {},
    tm_execute: a.tm_execute ?? null,
  }));
}
