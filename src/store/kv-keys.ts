import type { Bucket, KV, KvWatchEntry } from '@nats-io/kv';
import { withTimeout } from '../cluster/async-limits.js';

type Entry = Pick<KvWatchEntry, 'key' | 'value' | 'operation'>;

/**
 * The keys of a bucket that match `filter` (a KV key pattern such as `node.*`), as one answer from
 * the stream's leader.
 *
 * `kv.keys()` walks an ordered consumer instead, which stops when it sees nothing pending or an idle
 * heartbeat: with keys rewritten while it walks (leases renewed every TTL/3), a walk measured here
 * ran on for seconds delivering the rewrites, and one in CI under load ended without the live nodes
 * (a drain was refused for "no other node"). The stream info with a subject filter is one snapshot,
 * taken by the stream's leader, of the subjects that hold a message: it cannot miss or repeat a
 * key. A deleted key still has its delete marker: callers read each key and skip the ones that are
 * not a PUT (or use `liveKeys`).
 */
export async function keysNow(kv: KV, filter: string): Promise<string[]> {
  const bucket = kv as Bucket;
  const prefix = `${bucket.prefix}.`;
  const info = await bucket.jsm.streams.info(bucket.stream, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(info.state.subjects ?? {})
    .map((subject) => subject.slice(prefix.length))
    .sort();
}

/**
 * The last entry of each key that matches `filter`, in one pass: the keys are listed (`keysNow`),
 * a watch replays their last entries and is stopped once it has delivered every listed key or
 * nothing more is pending; a listed key the replay missed is then read directly.
 *
 * Why not `kv.keys()`: its walk stops only at "nothing pending", which under steady writes (a busy
 * customer's index, running snapshots rewritten on every move) can be never. Why the direct reads:
 * a key rewritten while the replay runs can lose its replayed entry (one value per key is kept)
 * and come again only after the replay looked finished (measured: 49 of 50 keys, now and then,
 * under rewrites).
 */
async function replay(kv: KV, filter: string, headersOnly: boolean, timeoutMs: number, each: (e: Entry) => void): Promise<void> {
  const waiting = new Set(await keysNow(kv, filter));
  if (waiting.size === 0) return;
  // While a server of a cluster is down, some consumer creations hang: bounded too.
  const opening = kv.watch({ key: filter, headers_only: headersOnly });
  const watch = await withTimeout(opening, timeoutMs, `reading ${filter}`).catch((e: unknown) => {
    void opening.then(
      (w) => w.stop(),
      () => undefined,
    ); // if it opens after all, it is not leaked
    throw e;
  });
  let late = false;
  const timer = setTimeout(() => {
    late = true;
    watch.stop();
  }, timeoutMs);
  try {
    // Emptied between the listing and the watch: nothing to replay, and nothing would end it.
    const consumer = (watch as unknown as { _data?: { info?(cached: boolean): Promise<{ num_pending: number }> } })._data;
    let done = (await consumer?.info?.(true))?.num_pending === 0;
    if (!done) {
      for await (const e of watch) {
        each(e);
        waiting.delete(e.key);
        if (waiting.size === 0 || e.delta === 0) {
          done = true;
          break;
        }
      }
    }
    // A partial answer would pass for a whole one: fail instead, and the caller retries.
    if (!done) throw new Error(`reading ${filter} ${late ? `took longer than ${timeoutMs} ms` : 'was interrupted'}; try again`);
  } finally {
    clearTimeout(timer);
    watch.stop();
  }
  for (const e of await Promise.all([...waiting].map((k) => kv.get(k)))) {
    if (e !== null) each(e);
  }
}

/** The current value of every key that matches `filter` (deleted keys left out), read in one pass. */
export async function valuesNow(kv: KV, filter: string, timeoutMs = 10_000): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  await replay(kv, filter, false, timeoutMs, (e) => {
    if (e.operation === 'PUT') out.set(e.key, e.value);
    else out.delete(e.key);
  });
  return out;
}

/**
 * The keys that match `filter` and hold a value (deleted keys left out), in one bounded pass; for
 * key spaces with delete markers, where `keysNow` would return the deleted keys too.
 */
export async function liveKeys(kv: KV, filter: string, timeoutMs = 10_000): Promise<string[]> {
  const out = new Set<string>();
  await replay(kv, filter, true, timeoutMs, (e) => {
    if (e.operation === 'PUT') out.add(e.key);
    else out.delete(e.key);
  });
  return [...out];
}

/**
 * A key's value at one revision, read by a direct get from whichever server of the bucket answers
 * (the leader or a replica): null when that server holds no such message for that key (it is
 * behind, the revision is another key's, or the key was rewritten or deleted since). The handles
 * the node opens read the last value of a key from the stream's leader instead (buckets.ts): this
 * is for a reader that knows the revision it wants, which any server that has it can answer,
 * for half the server's work (measured: 135 against 285 us of nats-server CPU for a 12 KB value).
 */
export async function valueAt(kv: KV, key: string, revision: number): Promise<Uint8Array | null> {
  const bucket = kv as Bucket;
  const m = await bucket.jsm.direct.getMessage(bucket.stream, { seq: revision });
  // a delete or purge marker has the header (kvOperationHdr in nats.js, which does not export it); a put has none
  if (m === null || m.subject !== `${bucket.prefix}.${key}` || (m.header?.get('KV-Operation') ?? '') !== '') return null;
  return m.data;
}

/**
 * Removes every key that matches `filter` with one purge of the bucket's stream: unlike deleting
 * each key, it leaves no delete marker behind.
 */
export async function purgeKeys(kv: KV, filter: string): Promise<void> {
  const bucket = kv as Bucket;
  await bucket.jsm.streams.purge(bucket.stream, { filter: `${bucket.prefix}.${filter}` });
}
