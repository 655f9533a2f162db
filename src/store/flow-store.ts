/**
 * Flow templates in `af_flows` (history 5): `<customer_id>.<flow_id>` holds the flow, and
 * `id.<flow_id>` names its customer, so a flow can be read by id alone. Deletion is soft
 * (`tm_delete`), as in VoIPBIN; a deleted flow reads as not found.
 */
import type { KV } from '@nats-io/kv';
import { Flow, idSource, NIL, prepareActions, type ActionInput } from '../../machines/index.js';
import { ActiveflowError } from '../errors.js';
import { decodeJson, encodeJson } from './codec.js';
import { RecentMap } from '../recent-map.js';
import { deepFreeze } from './deep-freeze.js';
import { liveKeys } from './kv-keys.js';

export interface FlowDraft {
  customer_id: string;
  type?: Flow['type'];
  name?: string;
  detail?: string;
  actions: ActionInput[];
  on_complete_flow_id?: string;
  max_idle_seconds?: number;
}

export interface FlowPatch {
  name?: string;
  detail?: string;
  actions?: ActionInput[];
  on_complete_flow_id?: string;
  max_idle_seconds?: number;
}

/**
 * The largest flow as stored (actions with their ids): a `get` answers it whole and a list page
 * carries at least one, so it must fit NATS's 1 MiB payload with room for the envelope.
 */
export const MAX_STORED_FLOW_BYTES = 768 * 1024;

/** Encodes a flow to store, refusing one too large to be read back in one answer. */
function encodeFlow(flow: Flow): Uint8Array {
  const bytes = encodeJson(flow);
  if (bytes.length > MAX_STORED_FLOW_BYTES) {
    throw new ActiveflowError(
      'limit_exceeded',
      `the flow is ${bytes.length} bytes as stored (its actions with their ids); at most ${MAX_STORED_FLOW_BYTES} are accepted (limit flow_bytes): split it, and join the parts with fetch_flow`,
    );
  }
  return bytes;
}

/** A list page of flows carries at most this many bytes (and at least one flow). */
const MAX_PAGE_BYTES = 768 * 1024;

export class FlowLimitExceeded extends Error {
  override readonly name = 'FlowLimitExceeded';
}

/** Parsed flows kept per node: the most used ones, each valid for one stored revision. */
const PARSED_FLOWS = 1_000;

export class FlowStore {
  /**
   * The last parsed form of each recently read flow, by key, with the revision it was read at. Every
   * activeflow created from one revision of a flow then shares that flow's (immutable) actions as
   * its main stack, instead of holding a copy of its own, and a create skips the flow's
   * validation: most of a node's memory per live activeflow was its copy of the flow's actions.
   */
  private readonly parsed = new RecentMap<string, { revision: number; flow: Flow }>(PARSED_FLOWS);

  constructor(
    private readonly kv: KV,
    private readonly maxFlowsPerCustomer = 10_000,
  ) {}

  /** `maxFlows`: the customer's flows quota. */
  async create(draft: FlowDraft, id: string, now: string, entropy: string, maxFlows = this.maxFlowsPerCustomer): Promise<Flow> {
    const count = await this.count(draft.customer_id);
    if (count >= maxFlows) throw new FlowLimitExceeded(`customer ${draft.customer_id} has ${count} flows; at most ${maxFlows} are allowed (quota flows)`);
    const flow: Flow = {
      id,
      customer_id: draft.customer_id,
      type: draft.type ?? 'flow',
      name: draft.name ?? '',
      detail: draft.detail ?? '',
      actions: prepareActions(draft.actions, idSource(entropy)),
      on_complete_flow_id: draft.on_complete_flow_id ?? NIL,
      ...(draft.max_idle_seconds ? { max_idle_seconds: draft.max_idle_seconds } : {}),
      tm_create: now,
      tm_update: null,
      tm_delete: null,
    };
    const encoded = encodeFlow(flow);
    await this.kv.put(`id.${id}`, encodeJson({ customer_id: flow.customer_id }));
    await this.kv.create(`${flow.customer_id}.${id}`, encoded);
    return flow;
  }

  /** The flow, or null when it is missing, deleted, or (with `customerId`) another customer's. */
  async get(id: string, customerId?: string): Promise<{ flow: Flow; revision: number } | null> {
    let customer = customerId;
    if (customer === undefined) {
      const index = await this.kv.get(`id.${id}`);
      if (index === null || index.operation !== 'PUT') return null;
      customer = (decodeJson(index.value) as { customer_id: string }).customer_id;
    }
    const key = `${customer}.${id}`;
    const entry = await this.kv.get(key);
    if (entry === null || entry.operation !== 'PUT') return null;
    const known = this.parsed.get(key);
    // Frozen: shared by every activeflow made from it, it must never be changed in place.
    const flow = known?.revision === entry.revision ? known.flow : deepFreeze(Flow.parse(decodeJson(entry.value)));
    this.parsed.set(key, { revision: entry.revision, flow }); // now the most recently used
    return flow.tm_delete === null ? { flow, revision: entry.revision } : null;
  }

  async update(id: string, customerId: string | undefined, patch: FlowPatch, now: string, entropy: string): Promise<Flow | null> {
    const found = await this.get(id, customerId);
    if (found === null) return null;
    const flow: Flow = {
      ...found.flow,
      ...(patch.name !== undefined ? { name: patch.name } : {}),
      ...(patch.detail !== undefined ? { detail: patch.detail } : {}),
      ...(patch.actions !== undefined ? { actions: prepareActions(patch.actions, idSource(entropy)) } : {}),
      ...(patch.on_complete_flow_id !== undefined ? { on_complete_flow_id: patch.on_complete_flow_id } : {}),
      ...(patch.max_idle_seconds !== undefined ? { max_idle_seconds: patch.max_idle_seconds } : {}),
      tm_update: now,
    };
    await this.kv.update(`${flow.customer_id}.${id}`, encodeFlow(flow), found.revision);
    return flow;
  }

  async delete(id: string, customerId: string | undefined, now: string): Promise<Flow | null> {
    const found = await this.get(id, customerId);
    if (found === null) return null;
    const flow: Flow = { ...found.flow, tm_update: now, tm_delete: now };
    await this.kv.update(`${flow.customer_id}.${id}`, encodeJson(flow), found.revision);
    return flow;
  }

  /** A page of the customer's flows in id order; the token is the last id of the previous page. */
  async list(customerId: string, pageSize: number, pageToken: string | undefined): Promise<{ result: Flow[]; next_page_token: string }> {
    const ids: string[] = [];
    for (const key of await liveKeys(this.kv, `${customerId}.*`)) ids.push(key.slice(customerId.length + 1));
    ids.sort();
    const result: Flow[] = [];
    let bytes = 0;
    for (const id of ids) {
      if (pageToken !== undefined && pageToken !== '' && id <= pageToken) continue;
      const found = await this.get(id, customerId);
      if (found === null) continue;
      // Large flows make shorter pages: the answer must fit one NATS message.
      bytes += JSON.stringify(found.flow).length;
      if (result.length > 0 && bytes > MAX_PAGE_BYTES) break;
      result.push(found.flow);
      if (result.length === pageSize) break;
    }
    const last = result.at(-1);
    const more = last !== undefined && ids.some((id) => id > last.id);
    return { result, next_page_token: more ? last.id : '' };
  }

  async count(customerId: string): Promise<number> {
    return (await liveKeys(this.kv, `${customerId}.*`)).length;
  }
}
