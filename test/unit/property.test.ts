/**
 * Property tests over random flows (goto, branch, conditions, pushes, services, fetches) and
 * random request sequences (including stale and hostile ones). fast-check prints the seed and the
 * shrunk case on failure; re-run one with `FC_SEED=<seed> npx vitest run test/unit/property.test.ts`.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LocalHost } from '../../actors/index.js';
import { DEFAULT_LIMITS } from '../../machines/index.js';
import { MAIN_ID, START_ID } from '../helpers/engine.js';
import { apply, counterClock, flowArb, scenarioArb, setup, world } from '../helpers/random-flows.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;
describe('engine properties', () => {
  it('stays within its limits and its invariants, whatever flow and requests it gets', () => {
    fc.assert(
      fc.property(scenarioArb, ({ actions, ref, ops }) => {
        const { host, id } = setup(actions, ref, counterClock());
        let endedAt: { count: number; history: number } | null = null;
        for (const op of ops) {
          const reply = apply(host, id, op); // never throws
          expect(typeof reply.ok).toBe('boolean');
          const state = host.state(id)!;
          const af = state.activeflow;
          expect(af.executed_actions.length).toBe(af.execute_count);
          expect(af.execute_count).toBeLessThanOrEqual(DEFAULT_LIMITS.max_execute_count + 1);
          expect(af.stack_map[MAIN_ID]).toBeDefined();
          expect(state.pending).toBeNull();
          if (endedAt !== null) {
            expect(af.status).toBe('ended'); // ended is final
            expect(af.execute_count).toBe(endedAt.count);
            expect(af.executed_actions.length).toBe(endedAt.history);
          } else if (af.status === 'ended') {
            expect(af.end_reason).not.toBe('');
            endedAt = { count: af.execute_count, history: af.executed_actions.length };
          }
          if (!reply.ok && reply.error.code === 'internal') throw new Error(`internal error: ${reply.error.message}`);
        }
        const events = host.events(id);
        expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
        expect(events[0]!.type).toBe('activeflow_created');
        const endedEvents = events.filter((e) => e.type === 'activeflow_ended');
        expect(endedEvents.length).toBe(host.state(id)!.activeflow.status === 'ended' ? 1 : 0);
      }),
      { numRuns: 400, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });

  it('snapshot -> restore -> continue gives the same result as an uninterrupted run, at every step', () => {
    fc.assert(
      fc.property(scenarioArb, fc.nat(), ({ actions, ref, ops }, cutSeed) => {
        const cut = cutSeed % (ops.length + 1);
        const clockA = counterClock();
        const a = setup(actions, ref, clockA);
        for (const op of ops.slice(0, cut)) apply(a.host, a.id, op);

        // What a node would store, through JSON, into a fresh host with the clock where A's is.
        const record = JSON.parse(JSON.stringify(a.host.exportRecord(a.id)));
        const b = new LocalHost(world, counterClock(clockA.count()));
        b.importRecord(record);

        const eventsBefore = a.host.events(a.id).length;
        for (const op of ops.slice(cut)) {
          const ra = apply(a.host, a.id, op);
          const rb = apply(b, a.id, op);
          expect(rb).toEqual(ra);
        }
        const sa = a.host.state(a.id)!;
        const sb = b.state(a.id)!;
        expect(sb.activeflow).toEqual(sa.activeflow);
        expect(sb.variables).toEqual(sa.variables);
        expect([sb.seq, sb.version, sb.last_next]).toEqual([sa.seq, sa.version, sa.last_next]);
        expect(b.events(a.id)).toEqual(a.host.events(a.id).slice(eventsBefore));
      }),
      { numRuns: 300, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });

  it('a call driven with next always finishes within the move limit', () => {
    fc.assert(
      fc.property(flowArb, (actions) => {
        const { host, id } = setup(actions, 'call', counterClock());
        let current = START_ID;
        for (let i = 0; i < 500; i++) {
          const r = host.request(id, 'next', { current_action_id: current });
          if (!r.ok) break;
          current = (r.result as { id: string }).id;
        }
        expect(host.state(id)!.activeflow.status).toBe('ended');
      }),
      { numRuns: 300, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  });
});
