/**
 * One error type whose codes are the API's codes (docs/architecture.md, design 2). One function maps an
 * error to the reply (JSON body and service-error headers), one maps a reply back in the client.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
// The status and not-enabled errors are exported by the library's `internal` entry only.
import { JetStreamStatusError, jserrors } from '@nats-io/jetstream/internal';
import { errors } from '@nats-io/transport-node';
import { ERROR_CODES, type EngineError, type ErrorCode } from '../machines/errors.js';

/** The service-error code (a status number, as the services framework wants) for each API code. */
export const STATUS_BY_CODE: Readonly<Record<ErrorCode, number>> = {
  invalid_argument: 400,
  not_found: 404,
  conflict: 409,
  ended: 409,
  limit_exceeded: 429,
  unavailable: 503,
  internal: 500,
};

export class ActiveflowError extends Error {
  override readonly name = 'ActiveflowError';
  /** With `limit_exceeded`: the quota reached, for clients that back off per quota. */
  readonly quota: string | undefined;

  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown; quota?: string },
  ) {
    super(message, options);
    this.quota = options?.quota;
  }

  /** Whether the same request may succeed later without change (a shard in motion, NATS down). */
  get retryable(): boolean {
    return this.code === 'unavailable';
  }

  toJSON(): { error: EngineError } {
    return { error: { code: this.code, message: this.message, ...(this.quota === undefined ? {} : { quota: this.quota }) } };
  }

  static from(e: EngineError): ActiveflowError {
    return new ActiveflowError(e.code, e.message, e.quota === undefined ? undefined : { quota: e.quota });
  }
}

/** Our own deadline on a NATS operation that did not settle (src/cluster/async-limits.ts withTimeout). */
export class DeadlineExceeded extends Error {
  override readonly name = 'DeadlineExceeded';
}

/** JetStream consumer lookups: the consumer does not exist (deleted, or never made). */
export function isConsumerNotFound(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound;
}

/** A consumer made while another node made it too: it is there, with some configuration. */
export function isConsumerExists(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === 10013 || e.code === 10148); // JSConsumerNameExistErr, JSConsumerAlreadyExists
}

/** The message asked for (a get, a delete) is not in the stream (any more). */
export function isMessageGone(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === JetStreamApiCodes.NoMessageFound || e.code === 10043); // JSSequenceNotFoundErrF
}

/** A message with a TTL (`Nats-TTL`) for a stream that does not allow them (a server before 2.11, or `allow_msg_ttl` off). */
export function isMessageTtlDisabled(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === 10166; // JSMessageTTLDisabledErr
}

/** The client library's errors for a server that cannot be reached or does not answer in time. */
const UNREACHABLE = [
  errors.TimeoutError,
  errors.NoRespondersError,
  errors.ClosedConnectionError,
  errors.ConnectionError,
  errors.DrainingConnectionError,
  jserrors.JetStreamNotEnabled,
  DeadlineExceeded,
];

/**
 * JetStream API errors of a cluster in motion, by the server's error codes (nats-server
 * errors.json): no leader or no peers yet, resources being placed, a stream or consumer offline
 * while its servers come back. Any 503 answer is one too.
 */
const CLUSTER_IN_MOTION = new Set([
  10005, // JSClusterNoPeersErrF: no suitable peers for placement (a server is down)
  10008, // JSClusterNotAvailErr: JetStream system temporarily unavailable
  10009, // JSClusterNotLeaderErr: JetStream cluster can not handle request
  10023, // JSInsufficientResourcesErr
  10039, // JSNotEnabledForAccountErr (a restarting server, before its JetStream is up)
  10076, // JSNotEnabledErr
  10118,
  10119,
  10194,
  10195, // stream or consumer offline
  10163, // JSStreamExpectedLastSeqPerSubjectNotReady
]);

/**
 * Whether a failure comes from NATS being unreachable for a while (a server restarting, a
 * JetStream leader election): the same request will work again shortly. Classified by the client
 * library's error classes and the server's codes, never by message text.
 */
export function isTransient(e: unknown): boolean {
  if (UNREACHABLE.some((c) => e instanceof c)) return true;
  if (e instanceof errors.RequestError) return e.isNoResponders() || isTransient((e as Error).cause);
  if (e instanceof JetStreamApiError) return e.status === 503 || CLUSTER_IN_MOTION.has(e.code);
  // A pull or a consume that the server answered with a status: 408 (expired), 503 (no responders).
  if (e instanceof JetStreamStatusError) return e.code === 503 || e.code === 408;
  return false;
}

/**
 * Any thrown value as an ActiveflowError: NATS outages become `unavailable` (retryable), other
 * unknown errors `internal` with a safe message (the details go to the log).
 */
export function ensureError(e: unknown): ActiveflowError {
  if (e instanceof ActiveflowError) return e;
  if (isTransient(e)) return new ActiveflowError('unavailable', `storage is not reachable right now (${(e as Error).message}); retry`, { cause: e });
  return new ActiveflowError('internal', "internal error; the details are in the node's log", { cause: e });
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}
