/**
 * A reference simulator: a fake call service that drives activeflows the way VoIPBIN's
 * call-manager does (docs/architecture.md, design 6). Each call creates its activeflow, asks `next`, "plays"
 * media for a simulated time, answers digits_receive from a script, and on hangup, FINISH or the
 * empty action stops the activeflow as a hangup would.
 */
import { randomUUID } from 'node:crypto';
import type { Action } from '../../machines/index.js';
import type { ActiveflowClient } from '../api/client.js';
import { ActiveflowError } from '../errors.js';

export interface CallSimulation {
  flowId: string;
  customerId: string;
  calls: number;
  concurrency: number;
  /** Digits typed at each digits_receive, in turn (the last repeats); empty: none typed. */
  digits: string[];
  /** Simulated time a media action takes, in ms. */
  mediaMs: number;
  /** Most `next` requests per call before the simulator hangs up on it. */
  maxMovesPerCall: number;
  onProgress?: (done: number, total: number) => void;
}

export interface CallResult {
  activeflowId: string;
  /** Every action the call was given, in order (ends with FINISH or the empty action when it ran out). */
  actions: Action[];
  error?: string;
}

export interface SimulationReport {
  calls: number;
  moves: number;
  errors: number;
  durationMs: number;
  /** Latency of `next` requests, in ms. */
  p50Ms: number;
  p99Ms: number;
  results: CallResult[];
}

const FINISH = '00000000-0000-0000-0000-000000000002';
const EMPTY = '00000000-0000-0000-0000-000000000000';

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** An error as a report line: the API's code when it has one (the client throws ActiveflowError), so a failed run says which failure it was. */
function describe(e: unknown): string {
  return e instanceof ActiveflowError ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e);
}

const sleep = (ms: number) => (ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve());

export async function simulateCalls(client: ActiveflowClient, s: CallSimulation): Promise<SimulationReport> {
  const latencies: number[] = [];
  const results: CallResult[] = [];
  let started = 0;
  let done = 0;
  const t0 = performance.now();

  const oneCall = async (): Promise<CallResult> => {
    const af = await client.createActiveflow({ customer_id: s.customerId, flow_id: s.flowId, reference_type: 'call', reference_id: randomUUID() });
    const result: CallResult = { activeflowId: af.id, actions: [] };
    let current = af.current_action.id;
    let digitTurn = 0;
    try {
      for (let i = 0; i < s.maxMovesPerCall; i++) {
        const t = performance.now();
        const action = await client.next(af.id, current);
        latencies.push(performance.now() - t);
        result.actions.push(action);
        if (action.id === FINISH || action.id === EMPTY || action.type === 'hangup') {
          if (action.type === 'hangup' || action.id === EMPTY) await client.stop(af.id, { reason: 'reference_ended' });
          return result;
        }
        if (action.type === 'digits_receive' && s.digits.length > 0) {
          const digit = s.digits[Math.min(digitTurn++, s.digits.length - 1)]!;
          await client.setVariables(af.id, { 'voipbin.call.digits': digit });
        }
        await sleep(s.mediaMs);
        current = action.id;
      }
      await client.stop(af.id, { reason: 'reference_ended' }); // the caller gave up
      return result;
    } catch (e) {
      return { ...result, error: describe(e) };
    }
  };

  const worker = async () => {
    while (started < s.calls) {
      started++;
      const r = await oneCall().catch((e: unknown) => ({ activeflowId: '', actions: [], error: `create: ${describe(e)}` }));
      results.push(r);
      s.onProgress?.(++done, s.calls);
    }
  };
  await Promise.all(Array.from({ length: Math.min(s.concurrency, s.calls) }, worker));
  latencies.sort((a, b) => a - b);
  return {
    calls: results.length,
    moves: latencies.length,
    errors: results.filter((r) => r.error !== undefined).length,
    durationMs: performance.now() - t0,
    p50Ms: percentile(latencies, 50),
    p99Ms: percentile(latencies, 99),
    results,
  };
}
