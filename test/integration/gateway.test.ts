/**
 * The REST gateway against a real node and nats-server: every endpoint, each response body checked
 * against VoIPBIN's published schema (schemas.yaml), tenants kept apart, and bad input refused
 * with a clear 4xx that changes nothing.
 */
import { readFileSync } from 'node:fs';
import { Kvm } from '@nats-io/kv';
import { Ajv, type ValidateFunction } from 'ajv';
import addFormatsModule from 'ajv-formats';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { FINISH, NIL, START } from '../../machines/index.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import { AccessKeyCache } from '../../src/gateway/access-keys.js';
import { HttpGateway } from '../../src/gateway/http-gateway.js';
import { silentLogger } from '../../src/log.js';
import { CUSTOMER, OTHER_CUSTOMER } from '../helpers/engine.js';
import { startNats, startNode, useNode } from '../helpers/nats.js';

const env = useNode({ quotas: { flows: 30 } });
let gateway: HttpGateway;
let keys: AccessKeyCache;
let key: string;
let otherKey: string;

// VoIPBIN's schemas: an OpenAPI 3.0 document; its extra keywords (example, x-go-type) are ignored.
const doc = parseYaml(readFileSync(new URL('../fixtures/voipbin-openapi-schemas.yaml', import.meta.url), 'utf8')) as { components: Record<string, unknown> };
const ajv = new Ajv({ strict: false, allErrors: true });
(addFormatsModule as unknown as (a: Ajv) => void)(ajv);
// Pseudo actions (START, FINISH, the empty action) carry no type, exactly as VoIPBIN serialises
// them, while its published schema requires one: they are checked against the schema minus that.
const schemas = doc.components['schemas'] as Record<string, Record<string, unknown>>;
ajv.addSchema({ $id: 'voipbin.json', components: { ...doc.components, schemas: { ...schemas, PseudoAction: { ...schemas['FlowManagerAction'], required: ['id'] } } } });
const schemaOf = (name: string): ValidateFunction => ajv.getSchema(`voipbin.json#/components/schemas/${name}`)!;
const pseudo = schemaOf('PseudoAction');
const PSEUDO = new Set([START, FINISH, NIL]);
// Action types VoIPBIN runs but its published enum lacks (docs/rest.md).
const UNLISTED_TYPES = new Set(['ai_task', 'block', 'case_create', 'empty']);

function conforms(name: 'FlowManagerActiveflow' | 'FlowManagerFlow', body: Record<string, unknown>): void {
  const copy = structuredClone(body);
  const actions = [copy['current_action'], ...((copy['executed_actions'] ?? copy['actions'] ?? []) as unknown[])].filter((a) => a !== undefined) as Record<string, unknown>[];
  for (const a of actions) {
    if (PSEUDO.has(a['id'] as string) && a['type'] === undefined) {
      expect(pseudo(a), JSON.stringify(pseudo.errors)).toBe(true);
      a['type'] = 'answer'; // checked above; the rest of the body goes through the published schema
    } else if (UNLISTED_TYPES.has(a['type'] as string)) {
      a['type'] = 'answer';
    }
  }
  const validate = schemaOf(name);
  expect(validate(copy), `${name}: ${JSON.stringify(validate.errors)}\n${JSON.stringify(body)}`).toBe(true);
}

function api(path: string, init: RequestInit & { key?: string | null } = {}): Promise<Response> {
  const headers = new Headers(init.headers);
  const k = init.key === undefined ? key : init.key;
  if (k !== null) headers.set('authorization', `Bearer ${k}`);
  if (init.body !== undefined && !headers.has('content-type')) headers.set('content-type', 'application/json');
  return fetch(`${gateway.url}${path}`, { ...init, headers });
}

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

const TALK = [{ type: 'talk', option: { text: 'hello' } }, { type: 'answer' }];
/** An API activeflow skips media (talk) and waits at `block` until continued: it stays running. */
const WAIT = [{ type: 'variable_set', option: { key: 'seen', value: 'yes' } }, { type: 'block' }];

beforeAll(async () => {
  const created = await env.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER, name: 'test' });
  const other = await env.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: OTHER_CUSTOMER });
  key = created.token;
  otherKey = other.token;
  keys = await AccessKeyCache.start(env.nc);
  gateway = await HttpGateway.start({ nc: env.nc, keys, log: silentLogger, port: 0, maxBodyBytes: 64 * 1024 });
});
afterAll(async () => {
  await gateway?.stop();
  keys?.stop();
});

describe("REST gateway: every endpoint, in VoIPBIN's shapes", () => {
  it('flows: create, list, get, update, delete', async () => {
    const res = await api('/v1.0/flows', { method: 'POST', body: JSON.stringify({ name: 'ivr', detail: 'main menu', actions: TALK }) });
    expect(res.status).toBe(200);
    const flow = await json(res);
    conforms('FlowManagerFlow', flow);
    expect(flow).toMatchObject({ customer_id: CUSTOMER, type: 'flow', name: 'ivr' });
    expect(flow).not.toHaveProperty('tm_update'); // unset times are left out, not null

    const list = await json(await api('/v1.0/flows'));
    expect((list['result'] as unknown[]).map((f) => (f as { id: string }).id)).toContain(flow['id']);
    for (const f of list['result'] as Record<string, unknown>[]) conforms('FlowManagerFlow', f);
    expect(typeof list['next_page_token']).toBe('string');

    const got = await json(await api(`/v1.0/flows/${flow['id']}`));
    conforms('FlowManagerFlow', got);
    const put = await api(`/v1.0/flows/${flow['id']}`, { method: 'PUT', body: JSON.stringify({ name: 'ivr 2', detail: 'd', actions: TALK }) });
    expect(put.status).toBe(200);
    const updated = await json(put);
    conforms('FlowManagerFlow', updated);
    expect(updated['name']).toBe('ivr 2');
    const del = await api(`/v1.0/flows/${flow['id']}`, { method: 'DELETE' });
    expect(del.status).toBe(200);
    conforms('FlowManagerFlow', await json(del));
    expect((await api(`/v1.0/flows/${flow['id']}`)).status).toBe(404);
  });

  it('activeflows: create (executed, reference_type api), get, list with filters, history, variables, stop, delete', async () => {
    const res = await api('/v1.0/activeflows', { method: 'POST', body: JSON.stringify({ actions: WAIT, variables: { lang: 'en' } }) });
    expect(res.status).toBe(200);
    const af = await json(res);
    conforms('FlowManagerActiveflow', af);
    expect(af).toMatchObject({ customer_id: CUSTOMER, reference_type: 'api', status: 'running' });
    expect((af['current_action'] as { type?: string }).type).toBe('block'); // executed: variable_set ran, the cursor waits
    for (const hidden of ['stack_map', 'current_stack_id', 'forward_stack_id', 'execute_count']) expect(af).not.toHaveProperty(hidden);
    const id = af['id'] as string;

    conforms('FlowManagerActiveflow', await json(await api(`/v1.0/activeflows/${id}`)));
    const list = await json(await api('/v1.0/activeflows?status=running&reference_type=api&page_size=500'));
    const rows = list['result'] as Record<string, unknown>[];
    expect(rows.map((r) => r['id'])).toContain(id);
    for (const r of rows) conforms('FlowManagerActiveflow', r);

    const history = await json(await api(`/v1.0/activeflows/${id}/history?from_seq=1`));
    const events = history['events'] as { seq: number; type: string; data: Record<string, unknown> }[];
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events[0]!.type).toBe('activeflow_created');
    for (const e of events) conforms('FlowManagerActiveflow', e.data); // each event's activeflow in VoIPBIN's form
    const later = await json(await api(`/v1.0/activeflows/${id}/history?from_seq=2`));
    expect((later['events'] as { seq: number }[])[0]!.seq).toBe(2);

    expect(await json(await api(`/v1.0/activeflows/${id}/variables`))).toMatchObject({ id, variables: { lang: 'en', seen: 'yes' } });
    const set = await api(`/v1.0/activeflows/${id}/variables`, { method: 'PUT', body: JSON.stringify({ variables: { mood: 'happy' } }) });
    expect(set.status).toBe(200);
    expect((await json(set))['variables']).toMatchObject({ lang: 'en', mood: 'happy' });

    const stopped = await api(`/v1.0/activeflows/${id}/stop`, { method: 'POST' });
    expect(stopped.status).toBe(200);
    const s = await json(stopped);
    conforms('FlowManagerActiveflow', s);
    expect(s).toMatchObject({ status: 'ended', end_reason: 'stopped' });
    const deleted = await api(`/v1.0/activeflows/${id}`, { method: 'DELETE' });
    expect(deleted.status).toBe(200);
    conforms('FlowManagerActiveflow', await json(deleted));
    expect((await api(`/v1.0/activeflows/${id}`)).status).toBe(404);
  });

  it('lists page: 100 at most and by default, next_page_token walks every activeflow once', async () => {
    const customer = '44444444-4444-4444-8444-444444444444';
    const { token } = await env.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: customer });
    const ids = await Promise.all(
      Array.from({ length: 103 }, async () => (await env.client.createActiveflow({ customer_id: customer, actions: [{ type: 'block' }], reference_type: 'api', execute: true })).id),
    );
    const as = { key: token };
    for (const size of ['', '?page_size=500']) {
      const page = await json(await api(`/v1.0/activeflows${size}`, as));
      expect((page['result'] as unknown[]).length).toBe(100);
      expect(page['next_page_token']).not.toBe('');
    }
    const seen: string[] = [];
    let pageToken = '';
    for (let pages = 0; pages < 10; pages++) {
      const page = await json(await api(`/v1.0/activeflows?page_size=40${pageToken === '' ? '' : `&page_token=${encodeURIComponent(pageToken)}`}`, as));
      const rows = page['result'] as Record<string, unknown>[];
      expect(rows.length).toBeLessThanOrEqual(40);
      for (const r of rows) conforms('FlowManagerActiveflow', r);
      seen.push(...rows.map((r) => r['id'] as string));
      pageToken = page['next_page_token'] as string;
      if (pageToken === '') break;
    }
    expect(seen.length).toBe(103);
    expect(new Set(seen)).toEqual(new Set(ids));
    for (const id of ids) await env.client.stop(id);
  }, 30_000);

  it('a flow_id create runs that flow; a client id is kept, and reusing it is a conflict', async () => {
    const flow = await json(await api('/v1.0/flows', { method: 'POST', body: JSON.stringify({ name: 'f', detail: '', actions: TALK }) }));
    const id = '33333333-3333-4333-8333-333333333333';
    const af = await json(await api('/v1.0/activeflows', { method: 'POST', body: JSON.stringify({ id, flow_id: flow['id'] }) }));
    expect(af).toMatchObject({ id, flow_id: flow['id'] });
    const again = await api('/v1.0/activeflows', { method: 'POST', body: JSON.stringify({ id, flow_id: flow['id'] }) });
    expect(again.status).toBe(409);
    expect(await json(again)).toMatchObject({ error: { code: 'conflict' } });
  });

  it('its OpenAPI document describes the real answers: each one validates against the schema it gives', async () => {
    const spec = (await (await fetch(`${gateway.url}/openapi.json`)).json()) as {
      paths: Record<string, Record<string, { responses: Record<string, { content?: Record<string, { schema: unknown }> }> }>>;
      components: unknown;
    };
    const docAjv = new Ajv({ strict: false, allErrors: true });
    (addFormatsModule as unknown as (a: Ajv) => void)(docAjv);
    docAjv.addSchema({ $id: 'ours.json', components: spec.components });
    const answerSchema = (path: string, method: string) => {
      const s = JSON.stringify(spec.paths[path]![method]!.responses['200']!.content!['application/json']!.schema).replaceAll('"#/components', '"ours.json#/components');
      return docAjv.compile(JSON.parse(s) as object);
    };
    const af = await json(await api('/v1.0/activeflows', { method: 'POST', body: JSON.stringify({ actions: WAIT, variables: { a: 'b' } }) }));
    const flow = await json(await api('/v1.0/flows', { method: 'POST', body: JSON.stringify({ name: 'doc', detail: 'the OpenAPI check', actions: TALK }) }));
    expect(flow['id'], JSON.stringify(flow)).toBeDefined();
    const checks: [string, string, string][] = [
      ['/v1.0/activeflows/{id}/inspect', 'get', `/v1.0/activeflows/${af['id']}/inspect`],
      ['/v1.0/activeflows/{id}/timeline', 'get', `/v1.0/activeflows/${af['id']}/timeline`],
      ['/v1.0/activeflows/{id}', 'get', `/v1.0/activeflows/${af['id']}`],
      ['/v1.0/activeflows', 'get', '/v1.0/activeflows?page_size=5'],
      ['/v1.0/activeflows/{id}/history', 'get', `/v1.0/activeflows/${af['id']}/history`],
      ['/v1.0/activeflows/{id}/variables', 'get', `/v1.0/activeflows/${af['id']}/variables`],
      ['/v1.0/flows', 'get', '/v1.0/flows'],
      ['/v1.0/flows/{id}', 'get', `/v1.0/flows/${flow['id']}`],
    ];
    for (const [path, method, url] of checks) {
      const res = await api(url);
      expect(res.status, url).toBe(200);
      const validate = answerSchema(path, method);
      expect(validate(await res.json()), `${url}: ${JSON.stringify(validate.errors)}`).toBe(true);
    }
    // And the check can fail: an answer missing what the schema requires does not validate.
    expect(answerSchema('/v1.0/activeflows/{id}/inspect', 'get')({ id: af['id'] })).toBe(false);
  });

  it('a body far over the limit, sent at once or streamed, gets its 413 (the gateway reads it to the end first)', async () => {
    const { request } = await import('node:http');
    const post = (body: Buffer, chunked: boolean) =>
      new Promise<{ status: number; text: string }>((resolve, reject) => {
        const req = request(
          `${gateway.url}/v1.0/flows`,
          {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json', ...(chunked ? {} : { 'content-length': String(body.length) }) },
          },
          (res) => {
            let text = '';
            res.on('data', (c: Buffer) => (text += c.toString()));
            res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
          },
        );
        req.on('error', reject);
        if (chunked) {
          for (let i = 0; i < body.length; i += 64 * 1024) req.write(body.subarray(i, i + 64 * 1024));
          req.end();
        } else req.end(body);
      });
    const big = Buffer.from(JSON.stringify({ name: 'x', detail: 'y'.repeat(5 * 1024 * 1024), actions: [] }));
    for (const chunked of [false, true]) {
      for (let i = 0; i < 3; i++) {
        const r = await post(big, chunked);
        expect([r.status, JSON.parse(r.text).error.code], `chunked ${chunked}`).toEqual([413, 'payload_too_large']);
      }
    }
    expect((await api('/v1.0/flows')).status).toBe(200); // and the gateway is fine
  });

  it('page_size above 100, however large, means 100 (as docs/rest.md says); not a number is a 400', async () => {
    for (const size of ['101', '99999999999999999999', '-99999999999999999999', '0']) expect((await api(`/v1.0/flows?page_size=${size}`)).status, size).toBe(200);
    for (const size of ['ten', '1.5', '1e3', '']) expect((await api(`/v1.0/flows?page_size=${size}`)).status, size).toBe(400);
  });

  it('serves its OpenAPI document, generated from the request schemas', async () => {
    const res = await fetch(`${gateway.url}/openapi.json`);
    expect(res.status).toBe(200);
    const spec = await json(res);
    expect(spec['openapi']).toBe('3.0.3');
    const paths = spec['paths'] as Record<string, Record<string, unknown>>;
    expect(Object.keys(paths)).toEqual(expect.arrayContaining(['/v1.0/activeflows', '/v1.0/activeflows/{id}', '/v1.0/activeflows/{id}/stop', '/v1.0/flows', '/v1.0/flows/{id}']));
    const create = (spec['components'] as Record<string, Record<string, Record<string, unknown>>>)['schemas']!['ActiveflowCreateRequest']!;
    expect(Object.keys(create['properties'] as object)).toEqual(['id', 'flow_id', 'actions', 'variables', 'webhook_uri', 'webhook_method']);
    expect(create['additionalProperties']).toBe(false);
  });
});

describe('REST gateway: tenants and access keys', () => {
  it("another customer's activeflow or flow is a 404, in every verb; lists show only one's own", async () => {
    const af = await json(await api('/v1.0/activeflows', { method: 'POST', body: JSON.stringify({ actions: WAIT }) }));
    const flow = await json(await api('/v1.0/flows', { method: 'POST', body: JSON.stringify({ name: 'mine', detail: '', actions: TALK }) }));
    const as = { key: otherKey };
    for (const [path, method, body] of [
      [`/v1.0/activeflows/${af['id']}`, 'GET'],
      [`/v1.0/activeflows/${af['id']}`, 'DELETE'],
      [`/v1.0/activeflows/${af['id']}/stop`, 'POST'],
      [`/v1.0/activeflows/${af['id']}/history`, 'GET'],
      [`/v1.0/activeflows/${af['id']}/variables`, 'GET'],
      [`/v1.0/activeflows/${af['id']}/variables`, 'PUT', { variables: { x: '1' } }],
      [`/v1.0/flows/${flow['id']}`, 'GET'],
      [`/v1.0/flows/${flow['id']}`, 'DELETE'],
      [`/v1.0/flows/${flow['id']}`, 'PUT', { name: 'n', detail: '', actions: TALK }],
    ] as [string, string, unknown?][]) {
      const res = await api(path, { method, ...as, ...(body === undefined ? {} : { body: JSON.stringify(body) }) });
      expect([path, method, res.status]).toEqual([path, method, 404]);
    }
    expect(((await json(await api('/v1.0/activeflows', as)))['result'] as unknown[]).map((r) => (r as { id: string }).id)).not.toContain(af['id']);
    expect(((await json(await api('/v1.0/flows', as)))['result'] as unknown[]).map((r) => (r as { id: string }).id)).not.toContain(flow['id']);
    // and nothing changed for the owner
    expect(await json(await api(`/v1.0/activeflows/${af['id']}`))).toMatchObject({ status: 'running' });
    expect(await json(await api(`/v1.0/flows/${flow['id']}`))).toMatchObject({ name: 'mine' });
  });

  it('refuses a missing, malformed, unknown or deleted key with 401; ?accesskey= works too', async () => {
    expect((await api('/v1.0/flows', { key: null })).status).toBe(401);
    expect((await api('/v1.0/flows', { key: 'afk_not-a-key' })).status).toBe(401);
    expect((await fetch(`${gateway.url}/v1.0/flows`, { headers: { authorization: 'Basic abc' } })).status).toBe(401);
    expect((await fetch(`${gateway.url}/v1.0/flows?accesskey=${encodeURIComponent(key)}`)).status).toBe(200);

    const temp = await env.client.call<{ id: string; token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER, name: 'temp' });
    await expect.poll(async () => (await api('/v1.0/flows', { key: temp.token })).status).toBe(200);
    const listed = await env.client.call<{ result: { id: string; token_hint: string }[] }>(SUBJECTS.adminAccessKeys('list'), { customer_id: CUSTOMER });
    expect(listed.result.map((k) => k.id)).toContain(temp.id);
    expect(JSON.stringify(listed)).not.toContain(temp.token); // only a hint of it is kept
    await env.client.call(SUBJECTS.adminAccessKeys('delete'), { id: temp.id });
    await expect.poll(async () => (await api('/v1.0/flows', { key: temp.token })).status).toBe(401);
  });
});

describe('REST gateway: operator keys', () => {
  it("read any customer's data when they name it, and the cluster; customer keys get neither", async () => {
    const op = await env.client.call<{ token: string; role: string }>(SUBJECTS.adminAccessKeys('create'), { operator: true });
    expect(op.role).toBe('operator');
    const af = await json(await api('/v1.0/activeflows', { method: 'POST', body: JSON.stringify({ actions: WAIT }) }));
    const as = { key: op.token };
    expect((await api('/v1.0/activeflows', as)).status).toBe(400); // which customer?
    const listed = await json(await api(`/v1.0/activeflows?customer_id=${CUSTOMER}&status=running`, as));
    expect((listed['result'] as { id: string }[]).map((r) => r.id)).toContain(af['id']);
    expect(await json(await api(`/v1.0/activeflows/${af['id']}`, as))).toMatchObject({ id: af['id'], customer_id: CUSTOMER });
    const inspected = await json(await api(`/v1.0/activeflows/${af['id']}/inspect`, as));
    expect(Object.keys(inspected)).toEqual(expect.arrayContaining(['stack_map', 'current_stack_id', 'variables', 'executed_actions']));
    const shards = await json(await api('/v1.0/cluster/shards', as));
    expect(shards['shard_count']).toBe(256);
    expect((await api('/v1.0/cluster/nodes', as)).status).toBe(200);
    const customers = await json(await api('/v1.0/cluster/customers?limit=1000', as));
    const runningHere = (await json(await api(`/v1.0/activeflows?customer_id=${CUSTOMER}&status=running`, as)))['result'] as unknown[];
    expect(customers['customers']).toContainEqual({ customer_id: CUSTOMER, running_activeflows: runningHere.length });
    for (const bad of ['limit=0', 'limit=ten', 'page_size=3']) expect((await api(`/v1.0/cluster/customers?${bad}`, as)).status).toBe(400);
    expect((await api('/v1.0/cluster/customers')).status).toBe(403);

    expect((await api('/v1.0/cluster/shards')).status).toBe(403);
    expect((await api(`/v1.0/activeflows?customer_id=${OTHER_CUSTOMER}`)).status).toBe(400); // a customer key cannot name another
    const other = await api(`/v1.0/activeflows/${af['id']}/inspect`, { key: otherKey });
    expect(other.status).toBe(404);
    await expect(env.client.call(SUBJECTS.adminAccessKeys('create'), { operator: true, customer_id: CUSTOMER })).rejects.toMatchObject({ code: 'invalid_argument' });
  });
});

describe("REST gateway: the runtime's refusals as HTTP statuses", () => {
  it('a limit is a 429 that names it, and creates nothing', async () => {
    const THIRD = '33333333-3333-4333-8333-333333333399';
    const third = (await env.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: THIRD })).token;
    for (let i = 0; i < 30; i++) await env.client.createFlow({ customer_id: THIRD, actions: TALK });
    const res = await api('/v1.0/flows', { method: 'POST', key: third, body: JSON.stringify({ name: 'one too many', detail: '', actions: TALK }) });
    expect(res.status).toBe(429);
    expect(await json(res)).toMatchObject({ error: { code: 'limit_exceeded', quota: 'flows', message: expect.stringMatching(/at most 30/) } });
    expect(((await json(await api('/v1.0/flows', { key: third })))['result'] as unknown[]).length).toBe(30);
  });

  it('a creation-rate quota is a 429 naming it, with Retry-After, and creates nothing', async () => {
    const FOURTH = '44444444-4444-4444-8444-444444444499';
    const fourth = (await env.client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: FOURTH })).token;
    await env.client.call(SUBJECTS.adminQuotas('set'), { customer_id: FOURTH, quotas: { creations_per_second: 0.1, creation_burst: 1 } });
    const post = () => api('/v1.0/activeflows', { method: 'POST', key: fourth, body: JSON.stringify({ actions: TALK }) });
    expect((await post()).status).toBe(200);
    const res = await post();
    expect(res.status).toBe(429);
    expect(res.headers.get('retry-after')).toBe('1');
    expect(await json(res)).toMatchObject({ error: { code: 'limit_exceeded', quota: 'creations_per_second' } });
    expect(((await json(await api('/v1.0/activeflows', { key: fourth })))['result'] as unknown[]).length).toBe(1);
  });

  it('with no node to answer, a 503 with Retry-After once the retry window is over', async () => {
    const lonely = await startNats();
    const { connectNats } = await import('../../src/nats/connect.js');
    const nc = await connectNats(lonely.url, 'lonely-gateway');
    try {
      // A gateway needs a node to start (it reads the access keys through one); then the node goes.
      const only = await startNode(lonely, { nodeId: 'lonely-node' });
      const kv = await new Kvm(nc).open('af_accesskeys');
      const { AccessKeyStore } = await import('../../src/gateway/access-keys.js');
      const { token: t } = await new AccessKeyStore(kv).create(CUSTOMER, 'x', '2026-11-27T10:00:00.000000Z');
      const cache = await AccessKeyCache.start(nc);
      await only.stop();
      const g = await HttpGateway.start({ nc, keys: cache, log: silentLogger, port: 0, retryForMs: 300 });
      const res = await fetch(`${g.url}/v1.0/activeflows/44444444-4444-4444-8444-444444444444`, { headers: { authorization: `Bearer ${t}` } });
      expect(res.status).toBe(503);
      expect(res.headers.get('retry-after')).toBe('1');
      expect(await json(res)).toMatchObject({ error: { code: 'unavailable' } });
      await g.stop();
      cache.stop();
    } finally {
      await nc.close();
      await lonely.stop();
    }
  });
});

describe('REST gateway: bad input is a clear 4xx and changes nothing', () => {
  async function count(): Promise<number> {
    return ((await json(await api('/v1.0/activeflows')))['result'] as unknown[]).length + ((await json(await api('/v1.0/flows')))['result'] as unknown[]).length;
  }

  it('malformed JSON, unknown fields, bad UUIDs, wrong types, oversized bodies, wrong methods and paths', async () => {
    const before = await count();
    const cases: [string, string, string | undefined, number, RegExp][] = [
      ['/v1.0/activeflows', 'POST', '{"actions": [', 400, /not valid JSON/],
      ['/v1.0/activeflows', 'POST', '', 400, /JSON object is required/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({ actions: TALK, colour: 'red' }), 400, /colour/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({ actions: [{ type: 'tallk' }] }), 400, /talk/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({}), 400, /flow_id or actions/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({ flow_id: 'nope' }), 400, /flow_id/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({ actions: TALK, webhook_uri: 'ftp://x' }), 400, /webhook_uri/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({ actions: TALK, variables: { a: 1 } }), 400, /variables/],
      ['/v1.0/activeflows', 'POST', JSON.stringify({ actions: TALK, note: 'x'.repeat(70 * 1024) }), 413, /limit/],
      ['/v1.0/flows', 'POST', JSON.stringify({ name: 'n', actions: TALK }), 400, /detail/],
      ['/v1.0/activeflows/not-a-uuid', 'GET', undefined, 400, /not an activeflow id/],
      ['/v1.0/activeflows/%E0%A4%A', 'GET', undefined, 400, /not an activeflow id/],
      ['/v1.0/flows/123', 'DELETE', undefined, 400, /not a flow id/],
      ['/v1.0/activeflows?page_size=abc', 'GET', undefined, 400, /page_size/],
      ['/v1.0/activeflows?colour=red', 'GET', undefined, 400, /colour/],
      ['/v1.0/activeflows/44444444-4444-4444-8444-444444444444', 'GET', undefined, 404, /not found/],
      ['/v1.0/activeflows', 'PATCH', '{}', 405, /not allowed/],
      ['/v1.0/nothing', 'GET', undefined, 404, /no such endpoint/],
    ];
    for (const [path, method, body, status, message] of cases) {
      const res = await api(path, { method, ...(body === undefined ? {} : { body }) });
      const b = await json(res);
      expect([path, method, res.status]).toEqual([path, method, status]);
      expect((b['error'] as { message: string }).message).toMatch(message);
    }
    const wrongType = await api('/v1.0/flows', { method: 'POST', body: 'name=x', headers: { 'content-type': 'application/x-www-form-urlencoded' } });
    expect(wrongType.status).toBe(415);
    expect(await count()).toBe(before);
  });

  it('fuzzed bodies: always a JSON answer below 500, and a refused one creates nothing', async () => {
    const before = await count();
    let created = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('/v1.0/activeflows', '/v1.0/flows'),
        fc.oneof(
          fc.json(),
          fc.string(),
          fc.record({ actions: fc.array(fc.record({ type: fc.string(), option: fc.object() }), { maxLength: 3 }) }).map((o) => JSON.stringify(o)),
        ),
        async (path, body) => {
          const res = await api(path, { method: 'POST', body });
          const b = await json(res);
          expect(res.status).toBeLessThan(500);
          if (res.status === 200) created++;
          else expect((b['error'] as { code: string }).code).toBeTypeOf('string');
        },
      ),
      { numRuns: 150 },
    );
    expect(await count()).toBe(before + created);
    // and fuzzed paths and query strings: never a 5xx
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('activeflows', 'flows', 'cluster'), fc.string({ maxLength: 40 }), fc.string({ maxLength: 40 }), async (kind, segment, query) => {
        const res = await api(`/v1.0/${kind}/${encodeURIComponent(segment).replace(/%25/g, '%')}?${query}`);
        expect(res.status).toBeLessThan(500);
        await res.arrayBuffer();
      }),
      { numRuns: 150 },
    );
  });
});
