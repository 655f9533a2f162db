/**
 * Drained nodes: an operator's `drain <node>` is a key `drain.<node_id>` in `af_cluster`. It stays
 * until `undrain`, across restarts of that node (like a cordon): a node taken out for maintenance
 * does not take shards back the moment it starts again. A drained node stays a member, owns no
 * shard, and keeps answering the admin API.
 */
import type { KV } from '@nats-io/kv';
import { decodeJson, encodeJson } from '../store/codec.js';

export interface DrainMark {
  node_id: string;
  drained_at: string;
}

const PREFIX = 'drain.';

export class DrainMarks {
  constructor(private readonly kv: KV) {}

  static key(nodeId: string): string {
    return `${PREFIX}${nodeId}`;
  }

  async drain(nodeId: string, now: Date): Promise<DrainMark> {
    const existing = await this.get(nodeId);
    if (existing !== null) return existing;
    const mark: DrainMark = { node_id: nodeId, drained_at: now.toISOString() };
    await this.kv.put(DrainMarks.key(nodeId), encodeJson(mark));
    return mark;
  }

  /** False when the node was not drained. */
  async undrain(nodeId: string): Promise<boolean> {
    if ((await this.get(nodeId)) === null) return false;
    await this.kv.delete(DrainMarks.key(nodeId));
    return true;
  }

  async get(nodeId: string): Promise<DrainMark | null> {
    const e = await this.kv.get(DrainMarks.key(nodeId));
    return e !== null && e.operation === 'PUT' ? (decodeJson(e.value) as DrainMark) : null;
  }

  async list(): Promise<Map<string, DrainMark>> {
    const marks = new Map<string, DrainMark>();
    for await (const key of await this.kv.keys(`${PREFIX}*`)) {
      const mark = await this.get(key.slice(PREFIX.length));
      if (mark !== null) marks.set(mark.node_id, mark);
    }
    return marks;
  }
}
