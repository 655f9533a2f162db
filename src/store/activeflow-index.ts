/**
 * `af_index`: one small entry per activeflow under `<customer_id>.<activeflow_id>`, written at
 * creation and at the end, so that `list` can find a customer's activeflows on any node without
 * asking the shard owners. The activeflows themselves are read from af_running/af_ended.
 */
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import type { Activeflow } from '../../machines/index.js';
import { decodeJson, encodeJson } from './codec.js';
import { valuesNow } from './kv-keys.js';

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
  constructor(private readonly kv: KV) {}

  async record(af: Activeflow): Promise<void> {
    const entry: IndexEntry = {
      status: af.status,
      reference_type: af.reference_type,
      reference_id: af.reference_id,
      tm_create: af.tm_create,
      deleted: af.tm_delete !== null,
    };
    await this.kv.put(`${af.customer_id}.${af.id}`, encodeJson(entry));
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
