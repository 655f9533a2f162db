/**
 * The reserved ids (docs/behaviour.md section 1). MAIN and START share a value but live in
 * different namespaces: MAIN names a stack, START names the pseudo action "before the first action".
 */
export const NIL = '00000000-0000-0000-0000-000000000000';
export const MAIN = '00000000-0000-0000-0000-000000000001';
export const START = '00000000-0000-0000-0000-000000000001';
export const FINISH = '00000000-0000-0000-0000-000000000002';

/** Ids an action may not carry: they would be mistaken for the pseudo actions. */
export const RESERVED_ACTION_IDS: ReadonlySet<string> = new Set([NIL, START, FINISH]);
