/** Which failures a caller may retry: NATS being unreachable for a while is `unavailable`, the rest `internal`. */
import { describe, expect, it } from 'vitest';
import { ActiveflowError, ensureError, isTransient } from '../../src/errors.js';

function named(name: string, message: string, extra: Record<string, unknown> = {}): Error {
  return Object.assign(new Error(message), { name }, extra);
}

describe('errors', () => {
  it('NATS outages are transient: timeouts, no responders, closed connections, JetStream without a leader (503)', () => {
    expect(isTransient(named('TimeoutError', 'timeout'))).toBe(true);
    expect(isTransient(named('NoRespondersError', 'no responders: $KV.af_running.1.x'))).toBe(true);
    expect(isTransient(named('ClosedConnectionError', 'closed connection'))).toBe(true);
    expect(isTransient(named('JetStreamApiError', 'stream is offline', { status: 503, code: 10118 }))).toBe(true);
    expect(isTransient(named('JetStreamApiError', 'wrong last sequence: 7', { status: 400, code: 10071 }))).toBe(false);
    expect(isTransient(new TypeError('x is undefined'))).toBe(false);
    expect(isTransient('a string')).toBe(false);
  });

  it('ensureError keeps ActiveflowErrors, makes outages unavailable and hides other details', () => {
    const known = new ActiveflowError('not_found', 'activeflow x not found');
    expect(ensureError(known)).toBe(known);
    expect(ensureError(named('JetStreamApiError', 'no leader', { status: 503 }))).toMatchObject({ code: 'unavailable' });
    const hidden = ensureError(new TypeError('secret internals'));
    expect(hidden.code).toBe('internal');
    expect(hidden.message).not.toMatch(/secret/);
  });
});
