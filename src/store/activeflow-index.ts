/**
 * `af_index`: one small entry per activeflow under `<customer_id>.<activeflow_id>`, written at
 * creation and at the end, so that `list` can find a customer's activeflows on any node without
 * asking the shard owners. The activeflows themselves are read from af_running/af_ended.
 */
import type { KV } from '@nats-io/kv';
import { z } from 'zod';
import type { Activeflow } from '../../machines/index.js';
import { decodeJson, encodeJson } from './codec.js';

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
      status: af.status, reference_type: af.reference_type, reference_id: af.reference_id, tm_create: af.tm_create, deleted: af.tm_delete !== null,
    };
    await this.kv.put(`${af.customer_id}.${af.id}`, encodeJson(entry));
  }

  /** Ids of a customer's activeflows matching the filter, in id order, after `pageToken`. */
  async page(customerId: string, filter: ListFilter, pageSize: number, pageToken: string | undefined): Promise<{ ids: string[]; next_page_token: string }> {
    const keys: string[] = [];
    for await (const key of await this.kv.keys(`${customerId}.*`)) keys.push(key.slice(customerId.length + 1));
    keys.sort();
    const ids: string[] = [];
    let more = false;
    for (const id of keys) {
      if (pageToken !== undefined && pageToken !== '' && id <= pageToken) continue;
      const e = await this.kv.get(`${customerId}.${id}`);
      if (e === null || e.operation !== 'PUT') continue;
      const entry = IndexEntry.parse(decodeJson(e.value));
      if (entry.deleted) continue;
      if (filter.status !== undefined && entry.status !== filter.status) continue;
      if (filter.reference_type !== undefined && entry.reference_type !== filter.reference_type) continue;
      if (filter.reference_id !== undefined && entry.reference_id !== filter.reference_id) continue;
      if (ids.length === pageSize) {
        more = true;
        break;
      }
      ids.push(id);
    }
    return { ids, next_page_token: more ? ids.at(-1)! : '' };
  }
}
