/**
 * The history (`executed_actions`) of a running activeflow, stored in chunks so that a move writes
 * a bounded snapshot however long the history grows. Full chunks of CHUNK_SIZE actions are written
 * once to `af_history` under `<activeflow_id>.<index>.<hash>`: content-addressed, so a stale owner
 * writing a diverged chunk can never overwrite the one a current snapshot refers to. The snapshot
 * keeps the tail and the list of its chunk keys (`af_history_chunks`).
 */
import type { KV } from '@nats-io/kv';
import type { Snapshot } from 'xstate';
import type { Action } from '../../machines/index.js';
import { decodeJson } from './codec.js';
import { contentHash } from './content-hash.js';

export const CHUNK_SIZE = 32;

type Persisted = Snapshot<unknown> & { context: { activeflow: { id: string; executed_actions: Action[] } }; af_history_chunks?: string[] };

export class HistoryChunks {
  /** Chunk keys already written, per activeflow (what this node knows is stored). */
  private readonly written = new Map<string, string[]>();

  constructor(private readonly kv: KV) {}

  /** The snapshot to store: full chunks written first (once each), the tail kept inline. */
  async split(snapshot: Snapshot<unknown>): Promise<Snapshot<unknown>> {
    const s = snapshot as Persisted;
    const af = s.context.activeflow;
    const history = af.executed_actions;
    const full = Math.floor(history.length / CHUNK_SIZE);
    if (full === 0) return snapshot;
    const keys = this.written.get(af.id) ?? [];
    for (let k = keys.length; k < full; k++) {
      const chunk = history.slice(k * CHUNK_SIZE, (k + 1) * CHUNK_SIZE);
      const json = JSON.stringify(chunk);
      const key = `${af.id}.${k}.${contentHash(json)}`;
      await this.kv.put(key, new TextEncoder().encode(json));
      keys.push(key);
    }
    this.written.set(af.id, keys);
    const out = {
      ...s,
      context: { ...s.context, activeflow: { ...af, executed_actions: history.slice(full * CHUNK_SIZE) } },
      af_history_chunks: keys.slice(0, full),
    };
    return out as unknown as Snapshot<unknown>;
  }

  /** A stored snapshot with its full history again (chunks read back in order). */
  async join(stored: Snapshot<unknown>): Promise<Snapshot<unknown>> {
    const s = stored as Persisted;
    const keys = s.af_history_chunks;
    if (keys === undefined || keys.length === 0) return stored;
    const chunks = await Promise.all(
      keys.map(async (key) => {
        const e = await this.kv.get(key);
        if (e === null || e.operation !== 'PUT') throw new Error(`history chunk ${key} is missing`);
        return decodeJson(e.value) as Action[];
      }),
    );
    const af = s.context.activeflow;
    this.written.set(af.id, [...keys]);
    const { af_history_chunks: _k, ...rest } = s;
    const out = { ...rest, context: { ...s.context, activeflow: { ...af, executed_actions: [...chunks.flat(), ...af.executed_actions] } } };
    return out as unknown as Snapshot<unknown>;
  }

  /** Forgets what this node wrote (the activeflow ended, moved away or left memory; a load learns it again). */
  forget(id: string): void {
    this.written.delete(id);
  }

  /** Activeflows whose written chunks this node remembers. */
  get tracked(): number {
    return this.written.size;
  }
}
