/** The pure core: schemas, the engine and the XState machine. No I/O, clock or randomness. */
export * from './action-kinds.js';
export { prepareActions } from './actions.js';
export { activeflowMachine, type ActiveflowMachine } from './activeflow-machine.js';
export { FINISH, MAIN, NIL, START } from './constants.js';
export { createActiveflow, CreateRequest, type CreateContext, type CreateResult } from './create.js';
export { childCreateRequest, Effect, ServiceReply } from './effects.js';
export { reduce, substituteText } from './engine.js';
export { describeIssues, ERROR_CODES, type EngineError, type ErrorCode } from './errors.js';
export { EffectResult, EngineEvent, VERBS, VerbBodies, type Verb } from './events.js';
export { idSource, type IdSource } from './ids.js';
export { DEFAULT_LIMITS, Limits, type LimitsInput } from './limits.js';
export * from './schema.js';
export { FINISH_ACTION } from './stack-map.js';
export { EngineState, EVENT_HISTORY_MAX, materializeEvents, Outbox, OutboxEvent, Reply, STREAM_EVENT_TYPES, StreamEvent, type ReplyValue } from './state.js';
export { substitute, substituteOption } from './variables.js';
