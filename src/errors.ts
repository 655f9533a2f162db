/**
 * One error type whose codes are the API's codes (docs/architecture.md, design 2). One function maps an
 * error to the reply (JSON body and service-error headers), one maps a reply back in the client.
 */
import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';
import { ERROR_CODES, type EngineError, type ErrorCode } from '../machines/index.js';

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

  constructor(readonly code: ErrorCode, message: string, options?: { cause?: unknown; quota?: string }) {
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

const TRANSIENT_NAMES = new Set(['TimeoutError', 'RequestError', 'NoRespondersError', 'JetStreamNotEnabled', 'ClosedConnectionError', 'ConnectionError', 'DrainingConnectionError']);

/** JetStream answered that the consumer does not exist (deleted, or never made). */
export function isConsumerNotFound(e: unknown): boolean {
  return e instanceof JetStreamApiError && e.code === JetStreamApiCodes.ConsumerNotFound;
}

/**
 * Whether a failure comes from NATS being unreachable for a while (a server restarting, a
 * JetStream leader election): the same request will work again shortly.
 */
export function isTransient(e: unknown): boolean {
  const err = e as { name?: string; message?: string; code?: unknown };
  if (err === null || typeof err !== 'object') return false;
  if (TRANSIENT_NAMES.has(err.name ?? '')) return true;
  // JetStream answers 503 while a stream has no leader (an election, a server restarting).
  if ((err as { status?: unknown }).status === 503) return true;
  return /timeout|no responders|jetstream not enabled|not enabled for account|insufficient resources|closed|disconnect|no suitable peers|leader/i.test(err.message ?? '');
}

/**
 * Any thrown value as an ActiveflowError: NATS outages become `unavailable` (retryable), other
 * unknown errors `internal` with a safe message (the details go to the log).
 */
export function ensureError(e: unknown): ActiveflowError {
  if (e instanceof ActiveflowError) return e;
  if (isTransient(e)) return new ActiveflowError('unavailable', `storage is not reachable right now (${(e as Error).message}); retry`, { cause: e });
  return new ActiveflowError('internal', 'internal error; the details are in the node\'s log', { cause: e });
}

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && (ERROR_CODES as readonly string[]).includes(code);
}
