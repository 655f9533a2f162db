/** The bounds on asynchronous work the cluster code relies on. */
import { describe, expect, it } from 'vitest';
import { inPool, Slots, StopSignal, withTimeout } from '../../src/cluster/async-limits.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('async limits', () => {
  it('StopSignal cuts every sleep short on stop, and later sleeps return at once', async () => {
    const halt = new StopSignal();
    const t0 = Date.now();
    const sleeping = [halt.sleep(30_000), halt.sleep(60_000)];
    await sleep(20);
    expect(halt.stopped).toBe(false);
    halt.stop();
    await Promise.all(sleeping);
    await halt.sleep(30_000);
    expect(halt.stopped).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5_000);
  });

  it('Slots hands a finished slot to the first waiter: a caller arriving in between waits its turn', async () => {
    // A caller arriving a few microtasks after a slot is given up, before the waiter's turn comes
    // (depth 2 was the gap before the fix: two tasks then ran in one slot). Each depth is tried.
    for (let depth = 0; depth < 6; depth++) {
      const slots = new Slots(1);
      let running = 0;
      let most = 0;
      const held = (hold: Promise<void>) =>
        slots.run(async () => {
          running++;
          most = Math.max(most, running);
          await hold;
          running--;
        });
      let releaseA!: () => void;
      const a = held(new Promise<void>((r) => (releaseA = r)));
      const b = held(new Promise<void>((r) => setTimeout(r, 5))); // waits for a's slot
      let c: Promise<void> | undefined;
      releaseA();
      const later = (n: number, fn: () => void): void => (n === 0 ? fn() : queueMicrotask(() => later(n - 1, fn)));
      later(depth, () => {
        c = held(new Promise<void>((r) => setTimeout(r, 5)));
      });
      await a;
      await b;
      await c;
      expect({ depth, most }).toEqual({ depth, most: 1 });
    }
  });

  it('Slots runs at most `size` tasks at once, in order, and passes results and errors through', async () => {
    const slots = new Slots(2);
    let active = 0;
    let most = 0;
    const started: number[] = [];
    const results = await Promise.allSettled(
      Array.from({ length: 6 }, (_, i) =>
        slots.run(async () => {
          started.push(i);
          most = Math.max(most, ++active);
          await sleep(5);
          active--;
          if (i === 3) throw new Error('task 3');
          return i;
        }),
      ),
    );
    expect(most).toBe(2);
    expect(started).toEqual([0, 1, 2, 3, 4, 5]);
    expect(results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message))).toEqual([0, 1, 2, 'task 3', 4, 5]);
  });

  it('inPool visits every item once with at most `width` workers', async () => {
    let active = 0;
    let most = 0;
    const seen: number[] = [];
    await inPool([1, 2, 3, 4, 5, 6, 7], 3, async (n) => {
      most = Math.max(most, ++active);
      await sleep(2);
      seen.push(n);
      active--;
    });
    expect(most).toBe(3);
    expect(seen.sort()).toEqual([1, 2, 3, 4, 5, 6, 7]);
    await inPool([], 4, async () => {
      throw new Error('never');
    });
  });

  it('withTimeout rejects, naming what took too long, and keeps a result that comes in time', async () => {
    await expect(withTimeout(new Promise(() => undefined), 20, 'listing shard 3')).rejects.toThrow('listing shard 3 took longer than 20 ms');
    await expect(withTimeout(Promise.resolve(7), 20, 'x')).resolves.toBe(7);
  });
});
