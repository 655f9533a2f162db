/**
 * The request-settle fix (src/nats/request-settle.ts) against a real nats-server: requests that are
 * answered, unanswered, sent to nobody, or cut off by a closing connection end as they did before.
 */
import { RequestOne } from '@nats-io/nats-core/internal';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connectNats } from '../../src/nats/connect.js';
import { applyRequestSettleFix } from '../../src/nats/request-settle.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { startNats } from '../helpers/nats.js';

let server: NatsServer;
beforeAll(async () => {
  server = await startNats();
});
afterAll(() => server?.stop());

describe('request settle fix', () => {
  it("is in place (the client's internals are as expected) and leaves every outcome of a request as it was", async () => {
    const nc = await connectNats(server.url, 'settle');
    expect(applyRequestSettleFix()).toBe(true);
    expect(String(RequestOne.prototype.cancel)).toContain('CANCELLED'); // connecting applied it
    nc.subscribe('echo', {
      callback: (_e, m) => {
        m.respond(m.data);
      },
    });
    nc.subscribe('silent', { callback: () => undefined });
    await nc.flush();

    // Answered: many in a row and at once, each with its own reply.
    const replies = await Promise.all(Array.from({ length: 500 }, (_, i) => nc.request('echo', new TextEncoder().encode(String(i)), { timeout: 2_000 })));
    expect(replies.map((m) => m.string())).toEqual(Array.from({ length: 500 }, (_, i) => String(i)));

    // Nobody listening: a no-responders error, as the client's retry logic expects.
    const none = await nc.request('nobody.here', new Uint8Array(), { timeout: 2_000 }).catch((e: unknown) => e);
    expect((none as { isNoResponders?: () => boolean }).isNoResponders?.()).toBe(true);

    // Never answered: a TimeoutError, on time.
    const t = performance.now();
    const timeout = await nc.request('silent', new Uint8Array(), { timeout: 200 }).catch((e: unknown) => e);
    expect((timeout as Error).name).toBe('TimeoutError');
    expect(performance.now() - t).toBeGreaterThanOrEqual(190);

    // Pending when the connection closes: rejected, not left hanging.
    const pending = nc.request('silent', new Uint8Array(), { timeout: 10_000 }).catch((e: unknown) => e);
    await nc.close();
    const closed = (await pending) as Error;
    expect(closed).toBeInstanceOf(Error);
    expect(closed.message).toMatch(/closed/);
  });
});
