/**
 * `af_index`: one small entry per activeflow under `<customer_id>.<activeflow_id>`, written at
 * creation and at the end, so that `list` can find a customer's activeflows on any node without
 * asking the shard owners, and the reconcile can count what runs. The activeflows themselves are
 * read from af_running/af_ended.
 *
 * An entry only moves forward: running, then ended, then deleted. A write that lands late (a
 * former owner's, or one that sat in a slow link) must not undo a later one: an ended activeflow
 * shown running again would be counted by the reconcile for good, and its customer held one below
 * its quota (found by the cluster simulation, test/sim/cluster-sim.ts). So a running entry is only
 * ever created, and an ended one merged into what is there, revision-checked.
 */
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import type { Activeflow } from '../../machines/index.js';
import { retry, type RetryTiming } from '../retry.js';
import { decodeJson, encodeJson } from './codec.js';
import { valuesNow } from './kv-keys.js';
import { isRevisionConflict } from './revision-conflict.js';

export const IndexEntry = z.object({
  status: z.enum(['running', 'ended']),
  reference_type: z.string(),
  reference_id: z.string(),
  tm_create: z.string(),
  deleted: z.boolean(),
});
export type IndexEntry = z.infer<typeof IndexEntry>;

export interface ListFilter {
  status?: 'running' | 'ended';
  reference_type?: string;
  reference_id?: string;
}

export class ActiveflowIndex {
  constructor(
    private readonly kv: KV,
    /** The waits between tries of a contended write (the cluster simulation gives its clock's). */
    private readonly timing?: RetryTiming,
  ) {}

  /**
   * Writes the activeflow's entry. `created`: the revision of the running entry this caller created
   * (what a running, undeleted activeflow's record returns), when nothing else is known to have
   * written it since: the entry is then replaced at that revision without being read, as nothing
   * stored there can need merging; if the key moved on after all, it is read and merged as without.
   * Returns the revision of a running entry it created, else null.
   */
  async record(af: Activeflow, created?: number): Promise<number | null> {
    const entry: IndexEntry = {
      status: af.status,
      reference_type: af.reference_type,
      reference_id: af.reference_id,
      tm_create: af.tm_create,
      deleted: af.tm_delete !== null,
    };
    const key = `${af.customer_id}.${af.id}`;
    if (entry.status === 'running' && !entry.deleted) {
      // Created or nothing: an entry there is this one already, or further along.
      return await this.kv.create(key, encodeJson(entry)).catch((e: unknown) => {
        if (!isRevisionConflict(e)) throw e;
        return null;
      });
    }
    if (created !== undefined) {
      try {
        await this.kv.update(key, encodeJson(entry), created);
        return null;
      } catch (e) {
        if (!isRevisionConflict(e)) throw e;
      }
    }
    await retry(
      async () => {
        const current = await this.kv.get(key);
        const stored = current !== null && current.operation === 'PUT' ? IndexEntry.safeParse(decodeJson(current.value)) : null;
        const merged: IndexEntry = { ...entry, deleted: entry.deleted || (stored?.success === true && stored.data.deleted) };
        if (stored?.success === true && stored.data.status === merged.status && stored.data.deleted === merged.deleted) return;
        if (current === null) await this.kv.create(key, encodeJson(merged));
        else await this.kv.update(key, encodeJson(merged), current.revision);
      },
      // Another write came between the read and this one: read again.
      { backoff: { firstMs: 2, maxMs: 20, jitter: true }, retryable: isRevisionConflict, maxAttempts: 10, ...(this.timing === undefined ? {} : { timing: this.timing }) },
    );
    return null;
  }

  /** How many of a customer's activeflows the index shows running (one pass over its entries). */
  async runningCount(customerId: string): Promise<number> {
    let n = 0;
    for (const value of (await valuesNow(this.kv, `${customerId}.*`)).values()) {
      const entry = IndexEntry.parse(decodeJson(value));
      if (entry.status === 'running' && !entry.deleted) n++;
    }
    return n;
  }

  /** Ids of a customer's activeflows matching the filter, in id order, after `pageToken`; `running`: those the index shows running. */
  async page(customerId: string, filter: ListFilter, pageSize: number, pageToken: string | undefined): Promise<{ ids: string[]; running: ReadonlySet<string>; next_page_token: string }> {
    // The whole index of the customer in one bounded pass (entries are small), not a get per key.
    const values = await valuesNow(this.kv, `${customerId}.*`);
    const keys = [...values.keys()].map((key) => key.slice(customerId.length + 1)).sort();
    const ids: string[] = [];
    const running = new Set<string>();
    let more = false;
    for (const id of keys) {
      if (pageToken !== undefined && pageToken !== '' && id <= pageToken) continue;
      const entry = IndexEntry.parse(decodeJson(values.get(`${customerId}.${id}`)!));
      if (entry.deleted) continue;
      if (filter.status !== undefined && entry.status !== filter.status) continue;
      if (filter.reference_type !== undefined && entry.reference_type !== filter.reference_type) continue;
      if (filter.reference_id !== undefined && entry.reference_id !== filter.reference_id) continue;
      if (ids.length === pageSize) {
        more = true;
        break;
      }
      ids.push(id);
      if (entry.status === 'running') running.add(id);
    }
    return { ids, running, next_page_token: more ? ids.at(-1)! : '' };
  }
}
