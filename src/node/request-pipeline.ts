/**
 * The one path every request takes on a node, whichever subject it came on (a services endpoint or
 * a shard's subscription): its reply must go to an inbox, it waits its turn in fair admission, the
 * handler runs, the answer or the error goes back, and the metrics and the endpoint's `$SRV.STATS`
 * figures count it. While the node stops,
 * new requests are refused as retryable, and the stop waits for those in flight.
 */
import type { ServiceMsg } from '@nats-io/services';
import { repliesToInbox, respondError, respondOk } from '../api/reply.js';
import { ACTIVEFLOW_VERBS, SUBJECTS } from '../api/subjects.js';
import { ActiveflowError, ensureError } from '../errors.js';
import type { Logger } from '../log.js';
import type { NodeMetrics } from '../metrics/node-metrics.js';
import type { FairAdmission } from '../quota/fair-admission.js';
import type { EndpointStats } from './endpoint-stats.js';

export type Handler = (msg: ServiceMsg) => Promise<unknown>;

export class RequestPipeline {
  private readonly inFlight = new Set<Promise<unknown>>();
  private stopping = false;

  constructor(
    private readonly admission: FairAdmission,
    private readonly metrics: NodeMetrics,
    private readonly log: Logger,
    private readonly stats: EndpointStats,
    /** The customer of a resident activeflow, for requests whose body does not name one. */
    private readonly customerOf: (activeflowId: string) => string | undefined,
  ) {}

  /**
   * Serves one request. `whileStopping`: a shard's requests are still served while a stopping node
   * hands its shards over one by one (each shard stops when its own handoff starts), not refused
   * from the first moment of the stop.
   */
  serve(msg: ServiceMsg, endpoint: string, handler: Handler, whileStopping = false): void {
    const started = performance.now();
    const p = this.admitted(msg, endpoint, started, () => this.answer(msg, endpoint, started, handler, whileStopping));
    this.inFlight.add(p);
    void p.finally(() => this.inFlight.delete(p));
  }

  /** From now on new requests are refused (as retryable), but for a stopping node's shards. */
  stop(): void {
    this.stopping = true;
  }

  /** Resolves when every request in flight now is done. */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.inFlight]);
  }

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  get queued(): number {
    return this.admission.queued;
  }

  /**
   * Runs a request through fair admission (src/quota/fair-admission.ts). Operators' requests skip
   * it, so a flooded node still answers `activeflow nodes` and a drain; so do relays (a gateway's
   * readers are nobody's customer); so does the routing step of `activeflow.v1.create`, which only
   * waits for the shard owner: holding a place while it waits for a place (maybe on this very
   * node) could leave every place waiting.
   */
  private admitted(msg: ServiceMsg, endpoint: string, started: number, run: () => Promise<void>): Promise<void> {
    if (!repliesToInbox(msg)) {
      // Not run, not answered: its answer would go where the requester chose (docs/operations.md).
      this.count(msg, endpoint, started, 'reply_refused', 'reply_refused: the reply subject is not an inbox');
      this.log.debug({ event: 'request_reply_refused', subject: msg.subject, reply: msg.reply });
      return Promise.resolve();
    }
    if (msg.subject.startsWith('activeflow.admin.') || msg.subject.startsWith('activeflow.relay.') || msg.subject === SUBJECTS.activeflowCreate) return run();
    return this.admission
      .run(() => this.customerKey(msg), run)
      .catch((e: unknown) => {
        const error = ensureError(e);
        if (error.code === 'limit_exceeded') this.metrics.limitRejections.inc({ customer_id: this.metrics.rejectedCustomer(this.customerKey(msg)), quota: error.quota ?? 'other' });
        this.count(msg, endpoint, started, error.code, `${error.code}: ${error.message}`);
        respondError(msg, error);
      });
  }

  /** Whose request it is: the body's customer_id, else the customer of the resident activeflow it names. */
  private customerKey(msg: ServiceMsg): string {
    // Asked for every request: a scan for the field, not a parse of the body (a create may be 1 MiB).
    const named = CUSTOMER_FIELD.exec(msg.string())?.[1]?.toLowerCase();
    if (named !== undefined) return named;
    const t = msg.subject.split('.');
    return (t[0] === 'activeflow' && t[1] === 'shard' ? this.customerOf(t[3] ?? '') : undefined) ?? 'unknown';
  }

  private async answer(msg: ServiceMsg, endpoint: string, started: number, handler: Handler, whileStopping: boolean): Promise<void> {
    let code = 'ok';
    let failed: string | undefined;
    try {
      if (this.stopping && !whileStopping) throw new ActiveflowError('unavailable', 'the node is stopping; retry');
      respondOk(msg, await handler(msg));
    } catch (e) {
      const error = ensureError(e);
      code = error.code;
      failed = `${error.code}: ${error.message}`;
      if (error.code === 'internal') this.log.error({ event: 'request_failed', subject: msg.subject, err: e });
      if (error.code === 'limit_exceeded') this.metrics.limitRejections.inc({ customer_id: this.metrics.rejectedCustomer(this.customerKey(msg)), quota: error.quota ?? 'other' });
      respondError(msg, error);
    }
    this.count(msg, endpoint, started, code, failed, true);
  }

  /** One request settled, counted once for /metrics and for `$SRV.STATS`; `answered`: it ran (its time is observed). */
  private count(msg: ServiceMsg, endpoint: string, started: number, code: string, failed: string | undefined, answered = false): void {
    const verb = verbOf(msg.subject);
    const seconds = (performance.now() - started) / 1000;
    this.metrics.requests.inc({ verb, code });
    if (answered) this.metrics.requestSeconds.observe({ verb }, seconds);
    this.stats.record(endpoint, seconds, failed);
  }
}

const KNOWN_VERBS = new Set<string>(ACTIVEFLOW_VERBS);

/** A bounded label for a request's subject: the verb, never an id. */
export function verbOf(subject: string): string {
  const t = subject.split('.');
  if (t[0] === 'activeflow' && t[1] === 'shard') return KNOWN_VERBS.has(t[4] ?? '') ? t[4]! : 'other';
  if (t[0] === 'activeflow' && t[1] === 'v1') return t[2] === 'create' ? 'create_routed' : t[2] === 'list' ? 'list' : 'other';
  if (t[0] === 'flow' && t[1] === 'v1') return t.length === 3 ? `flow_${t[2]}` : `flow_${['get', 'update', 'delete'].includes(t[3] ?? '') ? t[3] : 'other'}`;
  if (t[0] === 'activeflow' && t[1] === 'admin') return 'admin';
  if (t[0] === 'activeflow' && t[1] === 'relay') return 'relay';
  return 'other';
}

/** A request body's customer_id, found without parsing the body (see customerKey). */
const CUSTOMER_FIELD = /"customer_id"\s*:\s*"([0-9a-fA-F-]{36})"/;
