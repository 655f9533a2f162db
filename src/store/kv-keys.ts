import type { KV } from '@nats-io/kv';
import type { Bucket } from '@nats-io/kv';

/**
 * The keys of a bucket that match `filter` (a KV key pattern such as `node.*`), as one answer from
 * the stream's leader.
 *
 * `kv.keys()` walks an ordered consumer instead, which stops when it sees nothing pending or an idle
 * heartbeat: with keys rewritten while it walks (leases renewed every TTL/3), a walk measured here
 * ran on for seconds delivering the rewrites, and one in CI under load ended without the live nodes
 * (a drain was refused for "no other node"). The stream info with a subject filter is one snapshot,
 * taken by the stream's leader, of the subjects that hold a message: it cannot miss or repeat a key. A deleted key still has its
 * delete marker: callers read each key and skip the ones that are not a PUT.
 */
export async function keysNow(kv: KV, filter: string): Promise<string[]> {
  const bucket = kv as Bucket;
  const prefix = `${bucket.prefix}.`;
  const info = await bucket.jsm.streams.info(bucket.stream, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(info.state.subjects ?? {}).map((subject) => subject.slice(prefix.length)).sort();
}

/**
 * The current value of every key that matches `filter`, read in one pass: a watch replays the last
 * value of each key and is stopped at the end of that replay. The replay's length is fixed when its
 * consumer is made, so keys rewritten during the read cannot make it run on (as a `kv.keys()` walk
 * can). Deleted keys are left out.
 */
export async function valuesNow(kv: KV, filter: string, timeoutMs = 5_000): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  if ((await keysNow(kv, filter)).length === 0) return out;
  const watch = await kv.watch({ key: filter });
  const timer = setTimeout(() => watch.stop(), timeoutMs);
  try {
    for await (const e of watch) {
      if (e.operation === 'PUT') out.set(e.key, e.value);
      else out.delete(e.key);
      if (e.isUpdate) break; // the replay's last entry is the first marked as an update
    }
  } finally {
    clearTimeout(timer);
    watch.stop();
  }
  return out;
}

/**
 * Removes every key that matches `filter` with one purge of the bucket's stream: unlike deleting
 * each key, it leaves no delete marker behind.
 */
export async function purgeKeys(kv: KV, filter: string): Promise<void> {
  const bucket = kv as Bucket;
  await bucket.jsm.streams.purge(bucket.stream, { filter: `${bucket.prefix}.${filter}` });
}
