/**
 * Which failures a caller may retry: NATS being unreachable for a while is `unavailable`, the rest
 * `internal`. Built from the client library's own error classes, as it throws them.
 */
import { JetStreamApiError } from '@nats-io/jetstream';
import { JetStreamStatusError, jserrors } from '@nats-io/jetstream/internal';
import { errors } from '@nats-io/transport-node';
import { describe, expect, it } from 'vitest';
import { withTimeout } from '../../src/cluster/async-limits.js';
import { ActiveflowError, ensureError, isConsumerExists, isConsumerNotFound, isMessageGone, isTransient } from '../../src/errors.js';

const api = (code: number, errCode: number, description: string) => new JetStreamApiError({ code, err_code: errCode, description });

describe('errors', () => {
  it('NATS outages are transient: timeouts, no responders, closed connections, JetStream in motion (503, no peers, offline)', async () => {
    expect(isTransient(new errors.TimeoutError())).toBe(true);
    expect(isTransient(new errors.NoRespondersError('$KV.af_running.1.x'))).toBe(true);
    expect(isTransient(new errors.RequestError('no responders', { cause: new errors.NoRespondersError('x') }))).toBe(true);
    expect(isTransient(new errors.ClosedConnectionError())).toBe(true);
    expect(isTransient(new errors.ConnectionError('disconnected'))).toBe(true);
    expect(isTransient(new jserrors.JetStreamNotEnabled('jetstream not enabled'))).toBe(true);
    expect(isTransient(api(500, 10118, 'stream is offline'))).toBe(true);
    expect(isTransient(api(503, 10008, 'JetStream system temporarily unavailable'))).toBe(true);
    expect(isTransient(api(400, 10005, 'no suitable peers for placement'))).toBe(true);
    expect(isTransient(new JetStreamStatusError('no responders', 503))).toBe(true);
    expect(isTransient(await withTimeout(new Promise(() => undefined), 1, 'a listing').catch((e: unknown) => e))).toBe(true);
  });

  it('everything else is not: a refused write, a bad request, a permission, a bug, a string', () => {
    expect(isTransient(api(400, 10071, 'wrong last sequence: 7'))).toBe(false);
    expect(isTransient(api(404, 10014, 'consumer not found'))).toBe(false);
    expect(isTransient(new errors.PermissionViolationError('Permissions Violation', 'publish', 'x'))).toBe(false);
    expect(isTransient(new errors.RequestError('permissions', { cause: new errors.PermissionViolationError('p', 'publish', 'x') }))).toBe(false);
    expect(isTransient(new JetStreamStatusError('bad request', 400))).toBe(false);
    expect(isTransient(new TypeError('x is undefined'))).toBe(false);
    // A message that merely reads like an outage is not one: classes and codes decide, not words.
    expect(isTransient(new Error('timeout: the call service closed the connection'))).toBe(false);
    expect(isTransient('a string')).toBe(false);
  });

  it("not found and already there, by the server's codes", () => {
    expect(isConsumerNotFound(api(404, 10014, 'consumer not found'))).toBe(true);
    expect(isConsumerNotFound(api(404, 10059, 'stream not found'))).toBe(false);
    expect(isConsumerExists(api(400, 10148, 'consumer already exists'))).toBe(true);
    expect(isConsumerExists(api(400, 10013, 'consumer name already in use'))).toBe(true);
    expect(isMessageGone(api(404, 10037, 'no message found'))).toBe(true);
    expect(isMessageGone(api(400, 10043, 'sequence 7 not found'))).toBe(true);
    expect(isMessageGone(api(500, 10057, 'stream store EOF'))).toBe(false); // a sequence past the end: not ours to ignore
  });

  it('ensureError keeps ActiveflowErrors, makes outages unavailable and hides other details', () => {
    const known = new ActiveflowError('not_found', 'activeflow x not found');
    expect(ensureError(known)).toBe(known);
    expect(ensureError(api(503, 10008, 'no leader'))).toMatchObject({ code: 'unavailable' });
    const hidden = ensureError(new TypeError('secret internals'));
    expect(hidden.code).toBe('internal');
    expect(hidden.message).not.toMatch(/secret/);
  });
});
