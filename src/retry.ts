/**
 * Trying again, one way for the whole runtime: a backoff policy (exponential from `firstMs`,
 * capped at `maxMs`, optionally jittered so that many callers who failed together do not retry
 * together) and `retry`, which runs an operation until it succeeds, fails for good, runs out of
 * time or attempts, or is stopped. Loops that do more between tries than wait (a webhook lane, a
 * watch that is reopened) take their waits from `backoffDelay`.
 */
import type { StopSignal } from './cluster/async-limits.js';

export interface Backoff {
  /** The wait after the first failure. */
  firstMs: number;
  /** No wait is longer. */
  maxMs: number;
  /** Each wait is drawn from 0.5x to 1.5x of its nominal value. */
  jitter?: boolean;
}

/** The wait after failure number `attempt` (from 1). */
export function backoffDelay(b: Backoff, attempt: number, random: () => number = Math.random): number {
  const nominal = Math.min(b.maxMs, b.firstMs * 2 ** Math.max(0, attempt - 1));
  return b.jitter === true ? nominal * (0.5 + random()) : nominal;
}

export interface RetryOptions {
  backoff: Backoff;
  /** Whether a failure may be tried again; all may, by default. */
  retryable?: (e: unknown) => boolean;
  /** Give up once a wait would end later than this long after the first try. */
  forMs?: number;
  maxAttempts?: number;
  /** Ends the waits at once; no try starts after it. */
  halt?: StopSignal;
  /** Told of each failure that will be tried again (to log it). */
  onRetry?: (e: unknown, attempt: number) => void;
  /** Where the waits happen and the jitter comes from: real time and Math.random unless given (a simulation's clock). */
  timing?: RetryTiming;
}

export interface RetryTiming {
  sleep(ms: number): Promise<void>;
  random(): number;
}

/** `op` until it succeeds; else the last failure is thrown. `op` is told the attempt's number. */
export async function retry<T>(op: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const deadline = o.forMs === undefined ? Number.POSITIVE_INFINITY : Date.now() + o.forMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await op(attempt);
    } catch (e) {
      const wait = backoffDelay(o.backoff, attempt, o.timing?.random);
      const again = (o.retryable?.(e) ?? true) && attempt < (o.maxAttempts ?? Number.POSITIVE_INFINITY) && Date.now() + wait <= deadline && o.halt?.stopped !== true;
      if (!again) throw e;
      o.onRetry?.(e, attempt);
      if (o.timing !== undefined) await o.timing.sleep(wait);
      else if (o.halt === undefined) await new Promise((r) => setTimeout(r, wait));
      else await o.halt.sleep(wait);
      if (o.halt?.stopped === true) throw e;
    }
  }
}
