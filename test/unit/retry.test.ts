/** The one retry helper: its waits, and when it gives up. */
import { describe, expect, it } from 'vitest';
import { StopSignal } from '../../src/cluster/async-limits.js';
import { backoffDelay, retry } from '../../src/retry.js';

const failing = (times: number, error: () => unknown = () => new Error('not yet')) => {
  let calls = 0;
  return {
    op: async (attempt: number) => {
      calls++;
      if (calls <= times) throw error();
      return attempt;
    },
    calls: () => calls,
  };
};

describe('retry', () => {
  it('waits double each time from firstMs up to maxMs; jitter stays within 0.5x-1.5x', () => {
    const b = { firstMs: 100, maxMs: 1_000 };
    expect([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(b, a))).toEqual([100, 200, 400, 800, 1_000, 1_000]);
    expect(backoffDelay({ ...b, jitter: true }, 2, () => 0)).toBe(100);
    expect(backoffDelay({ ...b, jitter: true }, 2, () => 0.999)).toBeCloseTo(299.8);
  });

  it('tries until the operation succeeds, telling it the attempt', async () => {
    const f = failing(3);
    const retried: number[] = [];
    expect(await retry(f.op, { backoff: { firstMs: 1, maxMs: 2 }, onRetry: (_e, a) => retried.push(a) })).toBe(4);
    expect(retried).toEqual([1, 2, 3]);
  });

  it('gives up at once on a failure that may not be retried, after maxAttempts, and past forMs', async () => {
    const refused = failing(5, () => new TypeError('bug'));
    await expect(retry(refused.op, { backoff: { firstMs: 1, maxMs: 1 }, retryable: (e) => !(e instanceof TypeError) })).rejects.toThrow('bug');
    expect(refused.calls()).toBe(1);
    const limited = failing(10);
    await expect(retry(limited.op, { backoff: { firstMs: 1, maxMs: 1 }, maxAttempts: 3 })).rejects.toThrow('not yet');
    expect(limited.calls()).toBe(3);
    const timed = failing(1_000);
    const started = Date.now();
    await expect(retry(timed.op, { backoff: { firstMs: 20, maxMs: 20 }, forMs: 100 })).rejects.toThrow('not yet');
    expect(Date.now() - started).toBeLessThan(1_000);
    expect(timed.calls()).toBeGreaterThan(1);
    expect(timed.calls()).toBeLessThan(10);
  });

  it('a stop ends a long wait at once, and no try starts after it', async () => {
    const halt = new StopSignal();
    const f = failing(1_000);
    const done = retry(f.op, { backoff: { firstMs: 60_000, maxMs: 60_000 }, halt });
    setTimeout(() => halt.stop(), 20);
    const started = Date.now();
    await expect(done).rejects.toThrow('not yet');
    expect(Date.now() - started).toBeLessThan(5_000);
    expect(f.calls()).toBe(1);
  });
});
