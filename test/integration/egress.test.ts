/**
 * The egress policy (no SSRF): what a node calls on a customer's behalf (fetch, webhook_send,
 * webhooks) may not reach loopback, private, link-local or metadata addresses unless an operator
 * allows them; checked after DNS resolution and on each redirect. A refused call fails like any
 * failed call and says why.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EgressPolicy, EgressRefused } from '../../actors/index.js';
import { CUSTOMER } from '../helpers/engine.js';
import { useNode, until } from '../helpers/nats.js';

const FINISH = '00000000-0000-0000-0000-000000000002';
let http: Server;
let port = 0;
const hits: string[] = [];

beforeAll(async () => {
  http = createServer((req, res) => {
    hits.push(req.url!);
    if (req.url === '/to-other-loopback') res.writeHead(302, { location: `http://127.0.0.2:${port}/landed` }).end();
    else if (req.url === '/to-metadata') res.writeHead(307, { location: 'http://169.254.169.254/latest/meta-data/' }).end();
    else if (req.url === '/to-self') res.writeHead(302, { location: '/landed' }).end();
    else res.writeHead(200, { 'content-type': 'application/json' }).end('[]');
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  port = (http.address() as AddressInfo).port;
});

afterAll(() => {
  http?.close();
});

describe('EgressPolicy.refusal', () => {
  const policy = new EgressPolicy();
  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '10.0.0.1',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '169.254.169.254',
    '100.64.0.1',
    '0.0.0.0',
    '224.0.0.1',
    '255.255.255.255',
    '192.0.0.192',
    '::1',
    '::',
    'fd00::1',
    'fd00:ec2::254',
    'fe80::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '::ffff:169.254.169.254',
  ])('refuses %s', (address) => {
    expect(policy.refusal(address)).toMatch(/is (a|an) /);
  });

  it.each(['8.8.8.8', '1.1.1.1', '172.32.0.1', '100.128.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('allows the public address %s', (address) => {
    expect(policy.refusal(address)).toBeNull();
  });

  it('an allow list opens exactly what it names', () => {
    const p = new EgressPolicy(['127.0.0.0/8', '10.1.0.0/16', '::1']);
    expect([p.refusal('127.0.0.1'), p.refusal('10.1.2.3'), p.refusal('::1'), p.refusal('::ffff:127.0.0.1')]).toEqual([null, null, null, null]);
    expect(p.refusal('10.2.0.1')).toMatch(/private/);
    expect(new EgressPolicy(['*']).refusal('169.254.169.254')).toBeNull();
  });

  it('a bad allow list entry is refused at start, naming it', () => {
    expect(() => new EgressPolicy(['10.0.0.0/99'])).toThrow(/10\.0\.0\.0\/99/);
    expect(() => new EgressPolicy(['example.com'])).toThrow(/example\.com/);
  });
});

describe('EgressPolicy.fetch, for real', () => {
  it('refuses an IP literal before connecting', async () => {
    const before = hits.length;
    await expect(new EgressPolicy().fetch(`http://127.0.0.1:${port}/x`)).rejects.toThrow(EgressRefused);
    expect(hits.length).toBe(before);
  });

  it('refuses a name that resolves to a refused address (checked after DNS)', async () => {
    await expect(new EgressPolicy().fetch(`http://localhost:${port}/x`)).rejects.toThrow(/egress refused: localhost resolves to .* loopback/);
  });

  it('checks every redirect: an allowed server cannot bounce the call to a refused one', async () => {
    const policy = new EgressPolicy(['127.0.0.1/32']); // the server itself, not the rest of loopback
    await expect(policy.fetch(`http://127.0.0.1:${port}/to-other-loopback`)).rejects.toThrow(/127\.0\.0\.2 is a loopback address/);
    await expect(policy.fetch(`http://127.0.0.1:${port}/to-metadata`)).rejects.toThrow(/169\.254\.169\.254 is a link-local address/);
    expect(hits).not.toContain('/landed');
    const ok = await policy.fetch(`http://127.0.0.1:${port}/to-self`);
    expect([ok.status, await ok.text()]).toEqual([200, '[]']);
    expect(hits).toContain('/landed');
    await policy.close();
  });
});

describe('a node with the default policy', () => {
  const logs: string[] = [];
  const env = useNode({ egressAllow: [], log: pino({ level: 'info' }, { write: (l: string) => void logs.push(l) }) });

  it('fails a fetch to loopback (critical: the call ends) and says why in the activeflow error', async () => {
    const before = hits.length;
    const af = await env.client.createActiveflow({
      customer_id: CUSTOMER,
      reference_type: 'call',
      actions: [{ type: 'fetch', option: { event_url: `http://127.0.0.1:${port}/actions` } }, { type: 'talk' }],
    });
    expect((await env.client.next(af.id, af.current_action.id)).id).toBe(FINISH);
    const ended = await env.client.get(af.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'error', error: { action_type: 'fetch' } });
    expect(ended.error!.message).toMatch(/egress refused: 127\.0\.0\.1 is a loopback address/);
    expect(hits.length).toBe(before);
  });

  it('skips a webhook_send to the metadata address (not critical) and goes on', async () => {
    const af = await env.client.createActiveflow({
      customer_id: CUSTOMER,
      reference_type: 'call',
      actions: [{ type: 'webhook_send', option: { sync: true, uri: 'http://169.254.169.254/latest/meta-data/', data: 'x' } }, { type: 'talk' }],
    });
    expect((await env.client.next(af.id, af.current_action.id)).type).toBe('talk');
  });

  it('does not deliver webhooks to a private webhook_uri, and logs why', async () => {
    const before = hits.length;
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'api', actions: [], webhook_uri: `http://127.0.0.1:${port}/hook`, execute: true });
    expect(af.status).toBe('ended');
    expect(await until(() => logs.some((l) => l.includes('"webhook_failed"') && l.includes(af.id) && l.includes('egress refused')), 10_000)).toBe(true);
    expect(hits.length).toBe(before);
  });
});
