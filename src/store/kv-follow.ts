/**
 * Follows a key space of a bucket into memory: one watch that replays what is stored and then
 * delivers every change, reopened after a server restart ends it (the reopened watch replays
 * everything again, so `apply` must take an entry it has seen before).
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import { withTimeout } from '../cluster/async-limits.js';
import { keysNow } from './kv-keys.js';
import { backoffDelay, type Backoff } from '../retry.js';

const OPEN_TIMEOUT_MS = 5_000;
/** Between reopenings of a watch that ended or could not open. */
const REOPEN_BACKOFF: Backoff = { firstMs: 250, maxMs: 5_000, jitter: true };

export interface Following {
  /** Resolves once the first replay is applied. */
  ready: Promise<void>;
  stop(): void;
}

export function followKeys(kv: KV, key: string, apply: (e: KvWatchEntry) => void, onLost: (e: unknown) => void = () => undefined): Following {
  let stopped = false;
  let iter: { stop(): void } | null = null;
  let ready!: () => void;
  const replayed = new Promise<void>((r) => (ready = r));
  let failures = 0;
  const run = async (): Promise<void> => {
    while (!stopped) {
      try {
        // The replay's last entry is the first marked as an update; an empty key space replays none.
        const none = (await keysNow(kv, key)).length === 0;
        // While a server of a cluster is down, some consumer creations hang: give up and try again.
        const opening = kv.watch({ key });
        const watch = await withTimeout(opening, OPEN_TIMEOUT_MS, `watching ${key}`).catch((e: unknown) => {
          void opening.then(
            (w) => w.stop(),
            () => undefined,
          ); // if it opens after all, it is not leaked
          throw e;
        });
        iter = watch;
        if (none) ready();
        const fallback = setTimeout(ready, 5_000); // keys deleted between the listing and the watch
        for await (const e of watch) {
          failures = 0;
          apply(e);
          if (e.isUpdate) {
            clearTimeout(fallback);
            ready();
          }
        }
        clearTimeout(fallback);
      } catch (e) {
        if (!stopped) onLost(e);
      }
      if (!stopped) await new Promise((r) => setTimeout(r, backoffDelay(REOPEN_BACKOFF, ++failures)));
    }
  };
  void run();
  return {
    ready: replayed,
    stop: () => {
      stopped = true;
      iter?.stop();
    },
  };
}
