/** Small tools to bound asynchronous work: a deadline, a fixed number at once, a worker pool, a stop that ends sleeps. */
import { DeadlineExceeded } from '../errors.js';

/** A key listing can hang (a consumer creation that never answers): reconcile gives up on it. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new DeadlineExceeded(`${what} took longer than ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/** At most `size` tasks run at once; the others wait in order. */
export class Slots {
  private active = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly size: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    // A finished task hands its slot straight to the first waiter (still counted in `active`), so a
    // caller arriving between the two cannot take it as well.
    if (this.active >= this.size) await new Promise<void>((r) => this.waiting.push(r));
    else this.active++;
    try {
      return await task();
    } finally {
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.active--;
    }
  }
}

export async function inPool<T>(items: readonly T[], width: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(width, items.length) }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** A stop that cuts every sleep short: a backoff of up to 30 s must not hold a stop up. */
export class StopSignal {
  private wake!: () => void;
  private readonly stopping = new Promise<void>((r) => (this.wake = r));
  stopped = false;

  stop(): void {
    this.stopped = true;
    this.wake();
  }

  /** Waits `ms`, or until the stop, whichever comes first. */
  async sleep(ms: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), this.stopping]);
    clearTimeout(timer);
  }
}
