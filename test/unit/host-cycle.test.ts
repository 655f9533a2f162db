/** The one host loop (actors/host-cycle.ts), step by step: what a node and LocalHost both run. */
import { describe, expect, it } from 'vitest';
import { type CycleStep, driveSync, requestCycle, resumeCycle } from '../../actors/host-cycle.js';
import type { EngineState } from '../../machines/index.js';

const state = (effects: { effect_id: string; await: boolean }[], replies: { request_id: string }[] = []) =>
  ({
    activeflow: { id: 'af' },
    variables: {},
    outbox: { effects: effects.map((e) => ({ ...e, type: 'http_request' })), replies: replies.map((r) => ({ ...r, ok: true, value: { kind: 'activeflow' } })), events: [] },
  }) as unknown as EngineState;

/** Drives a cycle against scripted transitions, recording each step. */
function drive(cycle: Generator<CycleStep, { reply: unknown; state: EngineState }, unknown>, transitions: EngineState[]) {
  const steps: string[] = [];
  const outcome = driveSync(cycle, (step) => {
    if (step.kind === 'transition') {
      steps.push(`transition ${step.event.type}${step.event.type === 'effect_result' ? ` ${(step.event as { effect_id: string }).effect_id}` : ''}`);
      return transitions.shift();
    }
    steps.push(`${step.kind} ${step.effect.effect_id}`);
    return step.kind === 'perform' ? { kind: 'http', status: 200, body: null } : undefined;
  });
  return { steps, outcome };
}

let n = 0;
const ids = { effectRequestId: () => `e${++n}`, stamp: () => ({ now: '2026-12-04T00:00:00Z', entropy: 'x' }) };

describe('the host loop', () => {
  it('applies the request, launches its effects in order, performs the awaited one last and applies its result, until none is awaited', () => {
    const { steps, outcome } = drive(requestCycle({ verb: 'next', body: { current_action_id: 'a', request_id: 'client-1' }, requestId: 'r1', ...ids }), [
      state([
        { effect_id: 'w1', await: false },
        { effect_id: 'h1', await: true },
      ]),
      state([{ effect_id: 'w2', await: false }], [{ request_id: 'r1' }]),
    ]);
    expect(steps).toEqual(['transition next', 'launch w1', 'perform h1', 'transition effect_result h1', 'launch w2']);
    expect(outcome.reply).toMatchObject({ request_id: 'r1' });
  });

  it("passes the client's request_id on as client_request_id", () => {
    const events: unknown[] = [];
    driveSync(requestCycle({ verb: 'stop', body: { request_id: 'mine' }, requestId: 'r9', ...ids }), (step) => {
      if (step.kind === 'transition') events.push(step.event);
      return state([]);
    });
    expect(events[0]).toMatchObject({ type: 'stop', request_id: 'r9', client_request_id: 'mine' });
    expect(events[0]).not.toHaveProperty('request_id', 'mine');
  });

  it("builds the request's event with its fields in the journal's order: the body's, then type, request_id, now, entropy, client_request_id", () => {
    const first = (body: Record<string, unknown>) => {
      let event: unknown;
      driveSync(requestCycle({ verb: 'next', body, requestId: 'r1', ...ids }), (step) => {
        if (step.kind === 'transition') event ??= step.event;
        return state([]);
      });
      return JSON.stringify(event);
    };
    // The entry's `input` is this event as JSON; its text must not depend on how the event is built.
    expect(first({ current_action_id: 'a1', request_id: 'mine' })).toBe(
      '{"current_action_id":"a1","type":"next","request_id":"r1","now":"2026-12-04T00:00:00Z","entropy":"x","client_request_id":"mine"}',
    );
    expect(first({ request_id: 'mine', current_action_id: 'a1' })).toBe(
      '{"current_action_id":"a1","type":"next","request_id":"r1","now":"2026-12-04T00:00:00Z","entropy":"x","client_request_id":"mine"}',
    );
    expect(first({ current_action_id: 'a1' })).toBe('{"current_action_id":"a1","type":"next","request_id":"r1","now":"2026-12-04T00:00:00Z","entropy":"x"}');
    // The caller's customer_id is the host's check, not the engine's input.
    expect(first({ customer_id: 'c1', current_action_id: 'a1' })).toBe('{"current_action_id":"a1","type":"next","request_id":"r1","now":"2026-12-04T00:00:00Z","entropy":"x"}');
    // A body field named as one of the event's own keeps its place and takes the event's value.
    expect(first({ type: 'x', now: 'y', b: 1 })).toBe('{"type":"next","now":"2026-12-04T00:00:00Z","b":1,"request_id":"r1","entropy":"x"}');
    // A body's own __proto__ (JSON.parse makes one) never becomes the event's prototype.
    const hostile = JSON.parse('{"__proto__":{"polluted":true},"current_action_id":"a1"}') as Record<string, unknown>;
    expect(JSON.parse(first(hostile))).not.toHaveProperty('polluted');
  });

  it('a resumed cycle performs the effect it waited on first, then goes on as any cycle', () => {
    const { steps, outcome } = drive(resumeCycle(state([{ effect_id: 'h0', await: true }]), { effect_id: 'h0', await: true, type: 'http_request' } as never, ids), [
      state([{ effect_id: 'h1', await: true }]),
      state([]),
    ]);
    expect(steps).toEqual(['perform h0', 'transition effect_result h0', 'perform h1', 'transition effect_result h1']);
    expect(outcome.reply).toBeUndefined();
  });
});
