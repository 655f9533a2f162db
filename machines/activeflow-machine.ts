/**
 * The activeflow as an XState machine. Its context is the engine state; every event goes through
 * the pure `reduce`, and the state value mirrors the activeflow's status:
 *
 *            ┌──────────── running ─────────────┐
 *   create ─▶│  idle ◀──────────▶ awaiting_effect │──(status = ended)──▶ ended (final)
 *            └────────────────────────────────────┘
 *
 * `awaiting_effect` means a cycle is held by an effect the host is performing. `ended` is final:
 * the actor is done and its output is the final state; requests about an ended activeflow are
 * answered by `reduce` on that state without an actor (see actors/).
 * No `invoke` or `after`: effects and timers belong to the host, so a restored snapshot has
 * nothing in flight that XState would forget.
 */
import { assign, not, setup } from 'xstate';
import { reduce } from './engine.js';
import type { EngineEvent } from './events.js';
import type { EngineState } from './state.js';

export const activeflowMachine = setup({
  types: {
    context: {} as EngineState,
    events: {} as EngineEvent,
    input: {} as EngineState,
    output: {} as EngineState,
  },
  actions: {
    apply: assign(({ context, event }) => reduce(context, event)),
  },
  guards: {
    hasEnded: ({ context }) => context.activeflow.status === 'ended',
    isAwaiting: ({ context }) => context.pending !== null,
  },
}).createMachine({
  id: 'activeflow',
  context: ({ input }) => input,
  initial: 'running',
  states: {
    running: {
      initial: 'idle',
      on: { '*': { actions: 'apply' } },
      always: { guard: 'hasEnded', target: 'ended' },
      states: {
        idle: { always: { guard: 'isAwaiting', target: 'awaiting_effect' } },
        awaiting_effect: { always: { guard: not('isAwaiting'), target: 'idle' } },
      },
    },
    ended: { type: 'final' },
  },
  output: ({ context }) => context,
});

export type ActiveflowMachine = typeof activeflowMachine;
