/**
 * The flow endpoints (`flow.v1.create`, `flow.v1.list`, `flow.v1.<id>.<verb>`): flows are stored
 * templates, any node answers for them, and a customer's flow count is one of its quotas.
 */
import { randomUUID } from 'node:crypto';
import type { ServiceMsg } from '@nats-io/services';
import { Uuid } from '../../machines/index.js';
import { parseRequest } from '../api/reply.js';
import { FlowCreateRequest, FlowListRequest, FlowRequests } from '../api/schemas.js';
import { FLOW_VERBS, type FlowVerb } from '../api/subjects.js';
import type { HostClock } from '../clock.js';
import { ActiveflowError } from '../errors.js';
import type { QuotaBook } from '../quota/quota-book.js';
import { FlowLimitExceeded, type FlowStore } from '../store/flow-store.js';

export class FlowService {
  constructor(
    private readonly flows: FlowStore,
    private readonly quotas: QuotaBook,
    private readonly clock: HostClock,
  ) {}

  async create(msg: ServiceMsg): Promise<unknown> {
    const r = parseRequest(msg, FlowCreateRequest);
    try {
      return await this.flows.create(r, randomUUID(), this.clock.now(), this.clock.entropy(), this.quotas.of(r.customer_id).flows);
    } catch (e) {
      if (e instanceof FlowLimitExceeded) throw new ActiveflowError('limit_exceeded', e.message, { quota: 'flows' });
      throw e;
    }
  }

  async list(msg: ServiceMsg): Promise<unknown> {
    const r = parseRequest(msg, FlowListRequest);
    return this.flows.list(r.customer_id, r.page_size ?? 100, r.page_token);
  }

  async verb(msg: ServiceMsg): Promise<unknown> {
    const [, , id, verb] = msg.subject.split('.') as [string, string, string, string];
    if (!Uuid.safeParse(id).success) throw new ActiveflowError('invalid_argument', `"${id}" is not a flow id (a UUID)`);
    if (!(FLOW_VERBS as readonly string[]).includes(verb)) throw new ActiveflowError('invalid_argument', `unknown verb "${verb}"; the verbs are ${FLOW_VERBS.join(', ')}`);
    const v = verb as FlowVerb;
    const body = parseRequest(msg, FlowRequests[v]) as { customer_id?: string };
    const notFound = new ActiveflowError('not_found', `flow ${id} not found`);
    const flowId = id.toLowerCase();
    switch (v) {
      case 'get': {
        const found = await this.flows.get(flowId, body.customer_id);
        if (found === null) throw notFound;
        return found.flow;
      }
      case 'update': {
        const { customer_id: c, ...patch } = body as Record<string, unknown> & { customer_id?: string };
        const flow = await this.flows.update(flowId, c, patch as never, this.clock.now(), this.clock.entropy());
        if (flow === null) throw notFound;
        return flow;
      }
      case 'delete': {
        const flow = await this.flows.delete(flowId, body.customer_id, this.clock.now());
        if (flow === null) throw notFound;
        return flow;
      }
    }
  }
}
