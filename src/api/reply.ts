/**
 * Request and reply encoding. Errors go out as `{"error":{"code","message"}}` with the services
 * framework's error headers (`Nats-Service-Error`, `Nats-Service-Error-Code`); `decodeReply` maps
 * them back, so a client sees the same ActiveflowError the node raised.
 */
import { headers, type Msg } from '@nats-io/transport-node';
import type { ServiceMsg } from '@nats-io/services';
import type { z } from 'zod';
import { describeIssues } from '../../machines/errors.js';
import { ActiveflowError, isErrorCode, STATUS_BY_CODE } from '../errors.js';
import { RecentMap } from '../recent-map.js';
import { decodeJson, encodeJson, tooDeep } from '../store/codec.js';

/** Requests larger than this are refused before parsing (NATS itself allows 1 MiB). */
export const MAX_REQUEST_BYTES = 512 * 1024;

export function parseRequest<S extends z.ZodType>(msg: Msg, schema: S): z.infer<S> {
  if (msg.data.length > MAX_REQUEST_BYTES) {
    throw new ActiveflowError('invalid_argument', `the request is ${msg.data.length} bytes; at most ${MAX_REQUEST_BYTES} are accepted`);
  }
  let body: unknown = {};
  if (msg.data.length > 0) {
    const deep = tooDeep(msg.data);
    if (deep !== null) throw new ActiveflowError('invalid_argument', `the request's ${deep}`);
    try {
      body = decodeJson(msg.data);
    } catch (e) {
      throw new ActiveflowError('invalid_argument', `the request is not valid JSON: ${(e as Error).message}`);
    }
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw new ActiveflowError('invalid_argument', describeIssues(parsed.error.issues));
  return parsed.data;
}

/**
 * Whether a request's answer goes to an inbox (`_INBOX.`, or a role's `_INBOX_<role>.`), where
 * clients receive replies. nats-server lets a requester name any reply subject, and a node may
 * publish where call services listen: a request naming `activeflow.service.x` as its reply would
 * have the node deliver an activeflow there. Nodes run and answer only requests that reply to an
 * inbox (a client library with a custom inbox prefix must keep it starting with `_INBOX`).
 */
export function repliesToInbox(msg: ServiceMsg | Msg): boolean {
  return msg.reply !== undefined && (msg.reply.startsWith('_INBOX.') || msg.reply.startsWith('_INBOX_'));
}

/**
 * Encoded replies of immutable values (an activeflow is a new object after every change), so
 * polling an unchanged activeflow does not encode it again. Bounded to the most recent ones: a
 * cache per value (it was a WeakMap) kept every resident activeflow's last reply, 4.5 KB each, for
 * as long as the activeflow sat unchanged in memory.
 */
const ENCODED_REPLIES = 1_024;
const encoded = new RecentMap<object, Uint8Array>(ENCODED_REPLIES);

export function respondOk(msg: ServiceMsg | Msg, value: unknown): void {
  if (value === null || typeof value !== 'object') {
    msg.respond(encodeJson(value));
    return;
  }
  let bytes = encoded.get(value);
  if (bytes === undefined) {
    bytes = encodeJson(value);
    encoded.set(value, bytes);
  }
  msg.respond(bytes);
}

/** A header value must be one line: the body keeps the whole message. */
function headerSafe(text: string): string {
  const line = text.replace(/[\r\n]+/g, ' ').replace(/[^\x20-\x7e]/g, '?');
  return line.length > 512 ? `${line.slice(0, 509)}...` : line;
}

/** Answers an error with the service-error headers, on an endpoint or on a plain subscription. */
export function respondError(msg: ServiceMsg | Msg, error: ActiveflowError): void {
  if ('respondError' in msg) {
    msg.respondError(STATUS_BY_CODE[error.code], headerSafe(error.message), encodeJson(error.toJSON()));
    return;
  }
  const h = headers();
  h.set('Nats-Service-Error', headerSafe(error.message));
  h.set('Nats-Service-Error-Code', String(STATUS_BY_CODE[error.code]));
  msg.respond(encodeJson(error.toJSON()), { headers: h });
}

/** A reply's value, or the ActiveflowError it carries. */
export function decodeReply(msg: Msg): unknown {
  // The header marks an error: an activeflow's own JSON has an `error` field too.
  const header = msg.headers?.get('Nats-Service-Error');
  if (header) {
    let error: { code?: unknown; message?: unknown; quota?: unknown } | undefined;
    try {
      error = (decodeJson(msg.data) as { error?: { code?: unknown; message?: unknown; quota?: unknown } }).error;
    } catch {
      error = undefined;
    }
    if (error !== undefined && isErrorCode(error.code)) {
      throw new ActiveflowError(error.code, String(error.message ?? header), typeof error.quota === 'string' ? { quota: error.quota } : undefined);
    }
    throw new ActiveflowError('internal', header);
  }
  return msg.data.length === 0 ? null : decodeJson(msg.data);
}
