import { readFileSync } from 'node:fs';
import { createActor } from 'xstate';
import { describe, expect, it } from 'vitest';
import { activeflowMachine, createActiveflow, EngineState, type EngineEvent } from '../../machines/index.js';
import { aid, CUSTOMER, FINISH_ID, NOW } from '../helpers/engine.js';

const FETCH_URL = 'https://flows.example.test/more';

function start(actions: unknown[], reference_type = 'call') {
  const created = createActiveflow({
    request: { customer_id: CUSTOMER, reference_type: reference_type as 'call', actions: actions as never },
    flow: null,
    parent: null,
    now: NOW,
    entropy: 'entropy-create',
  });
  if (!created.ok) throw new Error(created.error.message);
  const actor = createActor(activeflowMachine, { input: created.state });
  actor.start();
  return actor;
}

const ev = (n: number, e: Record<string, unknown>): EngineEvent => ({ request_id: `r${n}`, now: NOW, entropy: `entropy-${n}`, ...e }) as EngineEvent;

describe('the XState machine', () => {
  it('is running.idle, running.awaiting_effect while an effect holds a cycle, and ended (final, done)', () => {
    const actor = start([{ id: aid(1), type: 'fetch', option: { event_url: FETCH_URL } }]);
    expect(actor.getSnapshot().value).toEqual({ running: 'idle' });
    actor.send(ev(1, { type: 'next', current_action_id: '00000000-0000-0000-0000-000000000001' }));
    const waiting = actor.getSnapshot();
    expect(waiting.value).toEqual({ running: 'awaiting_effect' });
    expect(waiting.context.outbox.replies).toEqual([]);
    const effect = waiting.context.outbox.effects[0]!;
    expect(effect).toMatchObject({ type: 'http_request', url: FETCH_URL, await: true });

    // While a cycle waits, other moves are refused; variables are still served.
    actor.send(ev(2, { type: 'next', current_action_id: aid(1) }));
    expect(actor.getSnapshot().context.outbox.replies[0]).toMatchObject({ request_id: 'r2', ok: false, error: { code: 'conflict' } });
    actor.send(ev(3, { type: 'variables_set', variables: { k: 'v' } }));
    expect(actor.getSnapshot().context.outbox.replies[0]).toMatchObject({ request_id: 'r3', ok: true });
    expect(actor.getSnapshot().value).toEqual({ running: 'awaiting_effect' });

    actor.send(ev(4, { type: 'effect_result', effect_id: effect.effect_id, result: { kind: 'http', status: 200, body: [] } }));
    const done = actor.getSnapshot();
    expect(done.status).toBe('done');
    expect(done.value).toBe('ended');
    expect(done.output!.activeflow.end_reason).toBe('finished');
    expect(done.context.outbox.replies[0]).toMatchObject({ request_id: 'r1', ok: true, value: { action: { id: FINISH_ID } } });
  });

  it('a stale effect result is refused and changes nothing', () => {
    const actor = start([{ id: aid(1), type: 'fetch', option: { event_url: FETCH_URL } }]);
    actor.send(ev(1, { type: 'next', current_action_id: '00000000-0000-0000-0000-000000000001' }));
    const before = actor.getSnapshot().context;
    actor.send(ev(2, { type: 'effect_result', effect_id: 'not-it', result: { kind: 'http', status: 200, body: [] } }));
    const after = actor.getSnapshot().context;
    expect(after.outbox.replies[0]).toMatchObject({ ok: false, error: { code: 'conflict' } });
    expect({ ...after, outbox: null }).toEqual({ ...before, outbox: null });
  });

  it('stop while a cycle waits ends the activeflow and answers both requests', () => {
    const actor = start([
      { id: aid(1), type: 'message_send' },
      { id: aid(2), type: 'talk' },
    ]);
    actor.send(ev(1, { type: 'next', current_action_id: '00000000-0000-0000-0000-000000000001' }));
    actor.send(ev(2, { type: 'stop' }));
    const snap = actor.getSnapshot();
    expect(snap.value).toBe('ended');
    expect(snap.context.outbox.replies.map((r) => r.request_id).sort()).toEqual(['r1', 'r2']);
    expect(snap.context.outbox.replies.find((r) => r.request_id === 'r1')).toMatchObject({ ok: true, value: { action: { id: FINISH_ID } } });
  });

  it('a persisted snapshot taken mid-cycle restores to an actor that continues identically', () => {
    const actions = [
      { id: aid(1), type: 'fetch', option: { event_url: FETCH_URL } },
      { id: aid(2), type: 'hangup' },
    ];
    const result = { kind: 'http', status: 200, body: [{ id: aid(5), type: 'talk', option: { text: 'fetched' } }] };
    const a = start(actions);
    a.send(ev(1, { type: 'next', current_action_id: '00000000-0000-0000-0000-000000000001' }));
    const persisted = JSON.parse(JSON.stringify(a.getPersistedSnapshot()));
    const effectId = a.getSnapshot().context.outbox.effects[0]!.effect_id;

    const b = createActor(activeflowMachine, { snapshot: persisted, input: persisted.context });
    b.start();
    expect(b.getSnapshot().value).toEqual({ running: 'awaiting_effect' });
    for (const actor of [a, b]) actor.send(ev(2, { type: 'effect_result', effect_id: effectId, result }));
    expect(b.getSnapshot().context).toEqual(a.getSnapshot().context);
    expect(b.getSnapshot().context.outbox.replies[0]).toMatchObject({ request_id: 'r1', value: { action: { id: aid(5) } } });
  });

  it('restores the golden snapshot fixture written by an earlier version', () => {
    // test/fixtures/golden-snapshot-v1.json: a call that asked for `next`, whose cycle waits on a
    // fetch. If this test breaks, the stored format changed: write a migration, not a new fixture.
    const persisted = JSON.parse(readFileSync(new URL('../fixtures/golden-snapshot-v1.json', import.meta.url), 'utf8'));
    expect(EngineState.safeParse(persisted.context).success).toBe(true);
    const actor = createActor(activeflowMachine, { snapshot: persisted, input: persisted.context });
    actor.start();
    const pending = actor.getSnapshot().context.pending!;
    actor.send(ev(9, { type: 'effect_result', effect_id: pending.effect_id, result: { kind: 'http', status: 200, body: [{ id: aid(5), type: 'talk', option: { text: 'hi ${name}' } }] } }));
    const ctx = actor.getSnapshot().context;
    expect(ctx.outbox.replies).toEqual([
      {
        request_id: pending.request_id,
        ok: true,
        value: { kind: 'action', action: { id: aid(5), next_id: '00000000-0000-0000-0000-000000000000', type: 'talk', option: { text: 'hi Ada' }, tm_execute: null } },
      },
    ]);
    expect(ctx.activeflow.execute_count).toBe(3);
    expect(ctx.outbox.events.map((e) => [e.type, e.seq])).toEqual([['activeflow_updated', 4]]);
  });
});

describe('the persisted snapshot', () => {
  it("persistedSnapshot() writes exactly what XState's getPersistedSnapshot() writes, running and done", async () => {
    const { persistedSnapshot } = await import('../../actors/persisted-snapshot.js');
    const actor = start([
      { id: aid(1), type: 'fetch', option: { event_url: FETCH_URL } },
      { id: aid(2), type: 'talk' },
    ]);
    expect(JSON.parse(JSON.stringify(persistedSnapshot(actor)))).toEqual(JSON.parse(JSON.stringify(actor.getPersistedSnapshot())));
    actor.send(ev(1, { type: 'next', current_action_id: '00000000-0000-0000-0000-000000000001' }));
    expect(JSON.parse(JSON.stringify(persistedSnapshot(actor)))).toEqual(JSON.parse(JSON.stringify(actor.getPersistedSnapshot())));
    actor.send(ev(2, { type: 'stop' }));
    expect(actor.getSnapshot().status).toBe('done');
    expect(JSON.parse(JSON.stringify(persistedSnapshot(actor)))).toEqual(JSON.parse(JSON.stringify(actor.getPersistedSnapshot())));
  });
});
