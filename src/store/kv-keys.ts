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
