/**
 * The typed client of the control API. It retries what a caller should never see: *no
 * responders* (a shard between owners), timeouts and `unavailable`, with exponential backoff up to
 * a deadline. `next` is safe to retry (a retried next gets the same answer, behaviour 9.5), and
 * `createActiveflow` picks the id up front so a retried create can find what the first one made.
 */
import { randomUUID } from 'node:crypto';
import type { NatsConnection } from '@nats-io/transport-node';
import type { Action, Activeflow, Flow, StreamEvent } from '../../machines/index.js';
import { ActiveflowError, isTransient } from '../errors.js';
import { retry, type Backoff } from '../retry.js';
import { encodeJson } from '../store/codec.js';
import { decodeReply } from './reply.js';
import { SUBJECTS } from './subjects.js';

export interface ClientOptions {
  /** One attempt's timeout. */
  requestTimeoutMs?: number;
  /** How long to keep retrying a retryable failure before giving up with `unavailable`. */
  retryForMs?: number;
}

export interface Page<T> {
  result: T[];
  next_page_token: string;
}

type Body = Record<string, unknown>;

/** Short at first (a shard changes owner in milliseconds), never more than half a second. */
const REQUEST_BACKOFF: Backoff = { firstMs: 10, maxMs: 500, jitter: true };

/** What a caller should not see: the node's own `unavailable`, and NATS unreachable for a moment. */
function isRetryable(e: unknown): boolean {
  return e instanceof ActiveflowError ? e.retryable : isTransient(e);
}

export class ActiveflowClient {
  private readonly timeoutMs: number;
  private readonly retryForMs: number;

  constructor(
    private readonly nc: NatsConnection,
    options: ClientOptions = {},
  ) {
    this.timeoutMs = options.requestTimeoutMs ?? 5_000;
    this.retryForMs = options.retryForMs ?? 15_000;
  }

  /** One request with retries; the raw reply value. */
  async call<T = unknown>(subject: string, body: Body = {}): Promise<T> {
    let attempts = 0;
    try {
      return await retry(
        async (attempt) => {
          attempts = attempt;
          return decodeReply(await this.nc.request(subject, encodeJson(body), { timeout: this.timeoutMs })) as T;
        },
        { backoff: REQUEST_BACKOFF, retryable: isRetryable, forMs: this.retryForMs },
      );
    } catch (e) {
      if (e instanceof ActiveflowError) throw e;
      throw new ActiveflowError('unavailable', `${subject}: ${(e as Error).message} (after ${attempts} attempts)`, { cause: e });
    }
  }

  // activeflows --------------------------------------------------------------------------------

  async createActiveflow(request: Body & { id?: string }): Promise<Activeflow> {
    const id = request.id ?? randomUUID();
    try {
      return await this.call<Activeflow>(SUBJECTS.activeflowVerb(id, 'create'), { ...request, id });
    } catch (e) {
      // A retried create whose first attempt was stored: the activeflow is there, return it.
      if (request.id === undefined && e instanceof ActiveflowError && e.code === 'conflict') return this.get(id);
      throw e;
    }
  }

  listActiveflows(request: Body & { customer_id: string }): Promise<Page<Activeflow>> {
    return this.call(SUBJECTS.activeflowList, request);
  }

  /** A change gets a request id of its own, the same on each retry: a retry is never applied twice. */
  private verb<T>(id: string, verb: string, body: Body = {}): Promise<T> {
    const reads = verb === 'get' || verb === 'variables_get' || verb === 'substitute' || verb === 'history';
    return this.call<T>(SUBJECTS.activeflowVerb(id, verb), reads || body['request_id'] !== undefined ? body : { ...body, request_id: randomUUID() });
  }

  get(id: string, customerId?: string): Promise<Activeflow> {
    return this.verb(id, 'get', customerId ? { customer_id: customerId } : {});
  }
  stop(id: string, body: Body = {}): Promise<Activeflow> {
    return this.verb(id, 'stop', body);
  }
  delete(id: string, body: Body = {}): Promise<Activeflow> {
    return this.verb(id, 'delete', body);
  }
  next(id: string, currentActionId: string): Promise<Action> {
    return this.verb(id, 'next', { current_action_id: currentActionId });
  }
  execute(id: string): Promise<Activeflow> {
    return this.verb(id, 'execute');
  }
  continue(id: string, currentActionId: string): Promise<Action> {
    return this.verb(id, 'continue', { current_action_id: currentActionId });
  }
  forward(id: string, forwardActionId: string, forwardNow = false): Promise<Activeflow> {
    return this.verb(id, 'forward', { forward_action_id: forwardActionId, forward_now: forwardNow });
  }
  pushActions(id: string, actions: unknown[]): Promise<Activeflow> {
    return this.verb(id, 'push_actions', { actions });
  }
  addActions(id: string, actions: unknown[]): Promise<Activeflow> {
    return this.verb(id, 'add_actions', { actions });
  }
  serviceStop(id: string, serviceId: string): Promise<Activeflow> {
    return this.verb(id, 'service_stop', { service_id: serviceId });
  }
  variables(id: string): Promise<{ id: string; variables: Record<string, string> }> {
    return this.verb(id, 'variables_get');
  }
  setVariables(id: string, variables: Record<string, string>): Promise<{ id: string; variables: Record<string, string> }> {
    return this.verb(id, 'variables_set', { variables });
  }
  deleteVariable(id: string, key: string): Promise<{ id: string; variables: Record<string, string> }> {
    return this.verb(id, 'variables_delete', { key });
  }
  substitute(id: string, data: string): Promise<{ data: string }> {
    return this.verb(id, 'substitute', { data });
  }
  /** The journal as stored (`history` with form "entries"), oldest first, every page. */
  async entries(id: string, customerId?: string): Promise<unknown[]> {
    const entries: unknown[] = [];
    let from = 1;
    for (;;) {
      const page = await this.verb<{ entries: unknown[]; next_from_seq?: number }>(id, 'history', {
        form: 'entries',
        from_seq: from,
        ...(customerId === undefined ? {} : { customer_id: customerId }),
      });
      entries.push(...page.entries);
      if (page.next_from_seq === undefined) return entries;
      from = page.next_from_seq;
    }
  }

  /** Events from `fromSeq`, following the node's pages (a reply stays under NATS's payload limit). */
  async history(id: string, fromSeq = 1, limit = 1000): Promise<{ events: StreamEvent[] }> {
    const events: StreamEvent[] = [];
    let from = fromSeq;
    while (events.length < limit) {
      const page = await this.verb<{ events: StreamEvent[]; next_from_seq?: number }>(id, 'history', { from_seq: from, limit: limit - events.length });
      events.push(...page.events);
      if (page.next_from_seq === undefined) break;
      from = page.next_from_seq;
    }
    return { events };
  }

  // flows --------------------------------------------------------------------------------------

  createFlow(request: Body & { customer_id: string; actions: unknown[] }): Promise<Flow> {
    return this.call(SUBJECTS.flowCreate, request);
  }
  listFlows(request: Body & { customer_id: string }): Promise<Page<Flow>> {
    return this.call(SUBJECTS.flowList, request);
  }
  getFlow(id: string, customerId?: string): Promise<Flow> {
    return this.call(SUBJECTS.flowVerb(id, 'get'), customerId ? { customer_id: customerId } : {});
  }
  updateFlow(id: string, patch: Body): Promise<Flow> {
    return this.call(SUBJECTS.flowVerb(id, 'update'), patch);
  }
  deleteFlow(id: string, customerId?: string): Promise<Flow> {
    return this.call(SUBJECTS.flowVerb(id, 'delete'), customerId ? { customer_id: customerId } : {});
  }
}
