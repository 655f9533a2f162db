/**
 * Drained nodes: an operator's `drain <node>` is a key `drain.<node_id>` in `af_cluster`. It stays
 * until `undrain`, across restarts of that node (like a cordon): a node taken out for maintenance
 * does not take shards back the moment it starts again. A drained node stays a member, owns no
 * shard, and keeps answering the admin API.
 *
 * `until_stop` marks last only until the node stops (the node removes its own mark then, or at
 * its next start after a crash): for a pod's preStop hook, whose name never comes back.
 */
import type { KV } from '@nats-io/kv';
import { decodeJson, encodeJson } from '../store/codec.js';
import { keysNow } from '../store/kv-keys.js';

export interface DrainMark {
  node_id: string;
  drained_at: string;
  until_stop?: boolean;
}

const PREFIX = 'drain.';

export class DrainMarks {
  constructor(private readonly kv: KV) {}

  static key(nodeId: string): string {
    return `${PREFIX}${nodeId}`;
  }

  async drain(nodeId: string, now: Date, untilStop = false): Promise<DrainMark> {
    const existing = await this.get(nodeId);
    if (existing !== null && (existing.until_stop === true) === untilStop) return existing;
    const mark: DrainMark = { node_id: nodeId, drained_at: existing?.drained_at ?? now.toISOString(), ...(untilStop ? { until_stop: true } : {}) };
    await this.kv.put(DrainMarks.key(nodeId), encodeJson(mark));
    return mark;
  }

  /** False when the node was not drained. */
  async undrain(nodeId: string): Promise<boolean> {
    if ((await this.get(nodeId)) === null) return false;
    await this.kv.delete(DrainMarks.key(nodeId));
    return true;
  }

  /** Removes the node's own mark if it was only until it stopped. */
  async clearUntilStop(nodeId: string): Promise<boolean> {
    const e = await this.kv.get(DrainMarks.key(nodeId));
    if (e === null || e.operation !== 'PUT' || (decodeJson(e.value) as DrainMark).until_stop !== true) return false;
    await this.kv.delete(DrainMarks.key(nodeId), { previousSeq: e.revision }).catch(() => undefined);
    return true;
  }

  async get(nodeId: string): Promise<DrainMark | null> {
    const e = await this.kv.get(DrainMarks.key(nodeId));
    return e !== null && e.operation === 'PUT' ? (decodeJson(e.value) as DrainMark) : null;
  }

  async list(): Promise<Map<string, DrainMark>> {
    const marks = new Map<string, DrainMark>();
    for (const key of await keysNow(this.kv, `${PREFIX}*`)) {
      const mark = await this.get(key.slice(PREFIX.length));
      if (mark !== null) marks.set(mark.node_id, mark);
    }
    return marks;
  }
}
