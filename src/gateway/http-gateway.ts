/**
 * The REST gateway: VoIPBIN's public activeflow and flow API under `/v1.0`, backed by the NATS
 * control API. Stateless: any number of gateways can run, each with its own NATS connection and a
 * watched copy of the access keys. Every request is scoped to its key's customer: another
 * customer's activeflow or flow answers 404, exactly like one that does not exist.
 *
 * The bundled client retries through shard moves and NATS restarts, so a caller sees an error
 * only when the runtime stays unavailable past the retry window (503, retryable).
 */
import { readFileSync } from 'node:fs';
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { NatsConnection } from '@nats-io/transport-node';
import type { z } from 'zod';
import { describeIssues, Uuid, type StreamEvent } from '../../machines/index.js';
import { ActiveflowClient } from '../api/client.js';
import { SUBJECTS } from '../api/subjects.js';
import { ActiveflowError, STATUS_BY_CODE } from '../errors.js';
import type { Logger } from '../log.js';
import { timeline } from '../replay/timeline.js';
import { tooDeep } from '../store/codec.js';
import { JournalEntry } from '../store/journal-entry.js';
import { WebSocketServer } from 'ws';
import type { AccessKeyCache, StoredAccessKey } from './access-keys.js';
import { EventSocket } from './event-socket.js';
import { openApiDocument } from './openapi.js';
import { ActiveflowCreateBody, ActiveflowListQuery, CustomersQuery, FlowBody, FlowListQuery, HistoryQuery, NoQuery, restActiveflow, restFlow, restInspection, VariablesBody } from './rest-schemas.js';

export interface GatewayOptions {
  nc: NatsConnection;
  keys: AccessKeyCache;
  log: Logger;
  port: number;
  host?: string;
  /** Largest request body read; larger ones are refused with 413 before they are read. */
  maxBodyBytes?: number;
  /** How long the gateway retries a request the runtime cannot answer yet (a shard moving). */
  retryForMs?: number;
}

/** An HTTP-level refusal: status, a code for clients to switch on, a message for people. */
class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

interface Ctx {
  key: StoredAccessKey;
  /** Whose data: the key's customer, or for an operator's key the `?customer_id=` it names (if any). */
  customer: string | undefined;
  params: string[];
  query: Record<string, unknown>;
  body: () => Promise<unknown>;
  client: ActiveflowClient;
}

interface Route {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: RegExp;
  /** The query string it takes (besides `accesskey`); none when absent. */
  query?: z.ZodType;
  handle: (ctx: Ctx) => Promise<{ status?: number; body: unknown }>;
}

const ID = '([^/]+)';

function parse<S extends z.ZodType>(schema: S, value: unknown, where: string): z.output<S> {
  const r = schema.safeParse(value);
  if (!r.success) throw new ActiveflowError('invalid_argument', `${where}: ${describeIssues(r.error.issues)}`);
  return r.data;
}

function pathId(raw: string, what: string): string {
  let id: string;
  try {
    id = decodeURIComponent(raw);
  } catch {
    throw new ActiveflowError('invalid_argument', `"${raw}" is not ${what} id (a UUID)`); // broken %-escapes
  }
  if (!Uuid.safeParse(id).success) throw new ActiveflowError('invalid_argument', `"${id}" is not ${what} id (a UUID)`);
  return id.toLowerCase();
}

function queryOf(q: URLSearchParams): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of q) if (k !== 'accesskey') out[k] = v;
  return out;
}

/** The customer a list or a create is for: an operator's key must name one. */
function customerOf(c: Ctx): string {
  if (c.customer === undefined) throw new ActiveflowError('invalid_argument', "an operator's key names the customer: add ?customer_id=<customer id>");
  return c.customer;
}

function operatorOnly(c: Ctx): void {
  if (c.key.role !== 'operator') throw new HttpError(403, 'permission_denied', "the cluster's state needs an operator's access key (activeflow accesskeys create --operator)");
}

const ROUTES: readonly Route[] = [
  {
    method: 'GET',
    path: /^\/v1\.0\/cluster\/nodes$/,
    handle: async (c) => {
      operatorOnly(c);
      return { body: await c.client.call(SUBJECTS.adminNodes) };
    },
  },
  {
    method: 'GET',
    path: /^\/v1\.0\/cluster\/shards$/,
    handle: async (c) => {
      operatorOnly(c);
      return { body: await c.client.call(SUBJECTS.adminShards) };
    },
  },
  {
    method: 'GET',
    path: /^\/v1\.0\/cluster\/customers$/,
    query: CustomersQuery,
    handle: async (c) => {
      operatorOnly(c);
      const q = c.query as z.output<typeof CustomersQuery>;
      return { body: await c.client.call(SUBJECTS.adminCustomers, q.limit === undefined ? {} : { limit: q.limit }) };
    },
  },
  {
    // Ours, for the dashboard: what VoIPBIN's public form hides (stacks, cursor) and the variables.
    method: 'GET',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}/inspect$`),
    handle: async (c) => {
      const id = pathId(c.params[0]!, 'an activeflow');
      const scope = c.customer === undefined ? {} : { customer_id: c.customer };
      const [af, vars] = await Promise.all([c.client.get(id, c.customer), c.client.call<{ variables: Record<string, string> }>(`activeflow.v1.${id}.variables_get`, scope)]);
      return { body: restInspection(af, vars.variables) };
    },
  },
  {
    method: 'POST',
    path: /^\/v1\.0\/activeflows$/,
    handle: async (c) => {
      const b = parse(ActiveflowCreateBody, await c.body(), 'body');
      const af = await c.client.createActiveflow({ ...b, customer_id: customerOf(c), reference_type: 'api', execute: true });
      return { body: restActiveflow(af) };
    },
  },
  {
    method: 'GET',
    path: /^\/v1\.0\/activeflows$/,
    query: ActiveflowListQuery,
    handle: async (c) => {
      const q = c.query as z.output<typeof ActiveflowListQuery>;
      const page = await c.client.listActiveflows({ ...q, page_size: q.page_size ?? 100, customer_id: customerOf(c) });
      return { body: { result: page.result.map(restActiveflow), next_page_token: page.next_page_token } };
    },
  },
  {
    method: 'GET',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}$`),
    handle: async (c) => {
      return { body: restActiveflow(await c.client.get(pathId(c.params[0]!, 'an activeflow'), c.customer)) };
    },
  },
  {
    method: 'DELETE',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}$`),
    handle: async (c) => {
      // VoIPBIN's spec says 204; its api-manager answers 200 with the activeflow, which clients use.
      return { body: restActiveflow(await c.client.delete(pathId(c.params[0]!, 'an activeflow'), { customer_id: c.customer })) };
    },
  },
  {
    method: 'POST',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}/stop$`),
    handle: async (c) => {
      return { body: restActiveflow(await c.client.stop(pathId(c.params[0]!, 'an activeflow'), { customer_id: c.customer })) };
    },
  },
  {
    method: 'GET',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}/history$`),
    query: HistoryQuery,
    handle: async (c) => {
      const q = c.query as z.output<typeof HistoryQuery>;
      const id = pathId(c.params[0]!, 'an activeflow');
      const page = await c.client.call<{ events: StreamEvent[]; next_from_seq?: number }>(`activeflow.v1.${id}.history`, {
        customer_id: c.customer,
        ...(q.from_seq === undefined ? {} : { from_seq: q.from_seq }),
        limit: q.limit ?? 100,
      });
      // Each event's activeflow in the REST form, as GET and the WebSocket give it.
      return { body: { ...page, events: page.events.map((e) => ({ ...e, data: restActiveflow(e.data) })) } };
    },
  },
  {
    // Ours, for the dashboard's time travel: the state after each move, re-derived from the journal.
    method: 'GET',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}/timeline$`),
    handle: async (c) => {
      const id = pathId(c.params[0]!, 'an activeflow');
      const entries = (await c.client.entries(id, c.customer)).filter((e) => (e as { v?: unknown }).v === 2).map((e) => JournalEntry.parse(e));
      let steps: ReturnType<typeof timeline>;
      try {
        steps = timeline(entries);
      } catch (e) {
        throw new ActiveflowError('internal', `activeflow ${id}: its journal does not replay on this gateway's engine (${(e as Error).message}); run activeflow replay ${id}`);
      }
      return { body: { moves: steps.map((s) => ({ n: s.n, at: s.at, kind: s.kind, request: s.request, activeflow: restInspection(s.state.activeflow, s.state.variables) })) } };
    },
  },
  {
    method: 'GET',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}/variables$`),
    handle: async (c) => {
      const id = pathId(c.params[0]!, 'an activeflow');
      return { body: await c.client.call(`activeflow.v1.${id}.variables_get`, { customer_id: c.customer }) };
    },
  },
  {
    method: 'PUT',
    path: new RegExp(`^/v1\\.0/activeflows/${ID}/variables$`),
    handle: async (c) => {
      const id = pathId(c.params[0]!, 'an activeflow');
      const b = parse(VariablesBody, await c.body(), 'body');
      return { body: await c.client.call(`activeflow.v1.${id}.variables_set`, { customer_id: c.customer, variables: b.variables }) };
    },
  },
  {
    method: 'GET',
    path: /^\/v1\.0\/flows$/,
    query: FlowListQuery,
    handle: async (c) => {
      const q = c.query as z.output<typeof FlowListQuery>;
      const page = await c.client.listFlows({ ...q, page_size: q.page_size ?? 100, customer_id: customerOf(c) });
      return { body: { result: page.result.map(restFlow), next_page_token: page.next_page_token } };
    },
  },
  {
    method: 'POST',
    path: /^\/v1\.0\/flows$/,
    handle: async (c) => {
      const b = parse(FlowBody, await c.body(), 'body');
      return { body: restFlow(await c.client.createFlow({ ...b, type: 'flow', customer_id: customerOf(c) })) };
    },
  },
  {
    method: 'GET',
    path: new RegExp(`^/v1\\.0/flows/${ID}$`),
    handle: async (c) => {
      return { body: restFlow(await c.client.getFlow(pathId(c.params[0]!, 'a flow'), c.customer)) };
    },
  },
  {
    method: 'PUT',
    path: new RegExp(`^/v1\\.0/flows/${ID}$`),
    handle: async (c) => {
      const id = pathId(c.params[0]!, 'a flow');
      const b = parse(FlowBody, await c.body(), 'body');
      return { body: restFlow(await c.client.updateFlow(id, { ...b, customer_id: c.customer })) };
    },
  },
  {
    method: 'DELETE',
    path: new RegExp(`^/v1\\.0/flows/${ID}$`),
    handle: async (c) => {
      return { body: restFlow(await c.client.deleteFlow(pathId(c.params[0]!, 'a flow'), c.customer)) };
    },
  },
];

const asset = (file: string, type: string) => ({ body: readFileSync(new URL(`./dashboard/${file}`, import.meta.url)), type });
/** The dashboard's files, read once. */
const DASHBOARD: Record<string, { body: Buffer; type: string }> = {
  '/': asset('index.html', 'text/html; charset=utf-8'),
  '/dashboard.js': asset('dashboard.js', 'text/javascript; charset=utf-8'),
  '/flow-picture.js': asset('flow-picture.js', 'text/javascript; charset=utf-8'),
  '/dashboard.css': asset('dashboard.css', 'text/css; charset=utf-8'),
  '/docs': asset('docs.html', 'text/html; charset=utf-8'),
  '/docs.js': asset('docs.js', 'text/javascript; charset=utf-8'),
};

export class HttpGateway {
  private constructor(
    private readonly server: Server,
    private readonly sockets: WebSocketServer,
    private readonly options: GatewayOptions,
    private readonly stopRevoking: () => void,
  ) {}

  static async start(options: GatewayOptions): Promise<HttpGateway> {
    const client = new ActiveflowClient(options.nc, { requestTimeoutMs: 2_000, retryForMs: options.retryForMs ?? 10_000 });
    const server = createServer((req, res) => void handle(req, res, client, options));
    const sockets = new WebSocketServer({ noServer: true, maxPayload: 64 * 1024 });
    // The open WebSockets by access key id: a deleted key closes its sockets at once.
    const byKey = new Map<string, Set<EventSocket>>();
    const forget = (s: EventSocket) => {
      const set = byKey.get(s.key.id);
      set?.delete(s);
      if (set?.size === 0) byKey.delete(s.key.id);
    };
    const stopRevoking = options.keys.onRevoked((id) => {
      for (const s of [...(byKey.get(id) ?? [])]) s.revoke();
    });
    server.on('upgrade', (req, socket, head) => {
      const refuse = (status: number, message: string) => {
        socket.end(
          `HTTP/1.1 ${status} ${STATUS_CODES[status]}\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n${JSON.stringify({ error: { code: status === 401 ? 'unauthenticated' : 'not_found', message } })}`,
        );
      };
      const url = new URL(req.url ?? '/', 'http://gateway');
      if (url.pathname !== '/v1.0/ws') return refuse(404, 'the WebSocket is at /v1.0/ws');
      let token: string | null;
      try {
        token = url.searchParams.get('token') ?? tokenOf(req, url);
      } catch (e) {
        return refuse(401, (e as Error).message);
      }
      const key = token === null ? null : options.keys.lookup(token);
      if (key === null) return refuse(401, 'an access key is required: /v1.0/ws?token=<access key>');
      sockets.handleUpgrade(req, socket, head, (ws) => {
        const history = async (customerId: string, activeflowId: string, fromSeq: number, limit: number) =>
          (await client.call<{ events: StreamEvent[] }>(`activeflow.v1.${activeflowId}.history`, { customer_id: customerId, from_seq: fromSeq, limit })).events;
        const s = new EventSocket(ws, options.nc, key, options.log, history, forget);
        if (!byKey.has(key.id)) byKey.set(key.id, new Set());
        byKey.get(key.id)!.add(s);
      });
    });
    server.keepAliveTimeout = 65_000; // longer than common load balancers' idle timeout
    server.headersTimeout = 66_000;
    server.requestTimeout = 60_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host ?? '127.0.0.1', () => resolve());
    });
    return new HttpGateway(server, sockets, options, stopRevoking);
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  get url(): string {
    return `http://${this.options.host ?? '127.0.0.1'}:${this.port}`;
  }

  /** Stops listening, lets requests in progress finish, and closes idle keep-alive connections. */
  async stop(): Promise<void> {
    this.stopRevoking();
    const closed = new Promise<void>((r) => this.server.close(() => r()));
    // WebSocket clients are told to come back (1012, service restart) and resume with from_seq.
    for (const ws of this.sockets.clients) ws.close(1012, 'gateway restarting: reconnect and resume');
    this.server.closeIdleConnections();
    await closed;
  }
}

function send(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendError(res: ServerResponse, status: number, code: string, message: string, headers: Record<string, string> = {}): void {
  send(res, status, { error: { code, message } }, headers);
}

/** The access key: `Authorization: Bearer <key>` or `?accesskey=<key>`, as VoIPBIN takes it. */
function tokenOf(req: IncomingMessage, url: URL): string | null {
  const auth = req.headers.authorization;
  if (auth !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(auth);
    if (m === null) throw new HttpError(401, 'unauthenticated', 'the Authorization header must be "Bearer <access key>"');
    return m[1]!;
  }
  return url.searchParams.get('accesskey');
}

/**
 * A body over the limit is answered 413 only once the client has sent it (read and thrown away, up
 * to this much): a client that writes its whole body before reading, as most do, would otherwise
 * have its connection reset under it and never see the answer. Beyond this, it is cut off.
 */
const DRAIN_BYTES = 8 * 1024 * 1024;

function readBody(req: IncomingMessage, maxBytes: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? '0');
  const tooLarge = (what: string) => new HttpError(413, 'payload_too_large', `the body is ${what}; the limit is ${maxBytes} bytes`, { connection: 'close' });
  const type = req.headers['content-type'];
  if (declared <= maxBytes && type !== undefined && !/^application\/json\b/i.test(type)) {
    return Promise.reject(new HttpError(415, 'unsupported_media_type', `send the body as application/json, not ${type}`));
  }
  return new Promise((resolve, reject) => {
    if (declared > maxBytes + DRAIN_BYTES) {
      reject(tooLarge(`${declared} bytes`)); // not worth reading: answered now, the connection closes
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes + DRAIN_BYTES) {
        reject(tooLarge(`larger than ${maxBytes + DRAIN_BYTES} bytes`));
        req.pause(); // no more is read; the answer goes out and the connection closes
        return;
      }
      if (size <= maxBytes) chunks.push(chunk); // past the limit, read only to be discarded
    });
    req.on('end', () => {
      if (size > maxBytes + DRAIN_BYTES) return;
      if (size > maxBytes) {
        reject(tooLarge(declared > 0 ? `${declared} bytes` : `larger than ${maxBytes} bytes`));
        return;
      }
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') {
        reject(new ActiveflowError('invalid_argument', 'body: a JSON object is required'));
        return;
      }
      const deep = tooDeep(text);
      if (deep !== null) {
        reject(new ActiveflowError('invalid_argument', `body: ${deep}`));
        return;
      }
      try {
        resolve(JSON.parse(text));
      } catch (e) {
        reject(new ActiveflowError('invalid_argument', `body: not valid JSON (${(e as Error).message})`));
      }
    });
    req.on('error', reject);
  });
}

async function handle(req: IncomingMessage, res: ServerResponse, client: ActiveflowClient, o: GatewayOptions): Promise<void> {
  const started = performance.now();
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://gateway');
  } catch {
    sendError(res, 400, 'invalid_argument', 'the request target is not a valid URL');
    return;
  }
  const method = req.method ?? 'GET';
  const path = url.pathname.length > 1 ? url.pathname.replace(/\/+$/, '') : url.pathname;
  try {
    if (method === 'GET' && (path === '/openapi.json' || path === '/v1.0/openapi.json')) {
      send(res, 200, openApiDocument());
      return;
    }
    const asset = method === 'GET' ? DASHBOARD[path] : undefined;
    if (asset !== undefined) {
      // The dashboard is static; it asks for the key itself and talks to this gateway only.
      res.writeHead(200, {
        'content-type': asset.type,
        'content-length': asset.body.length,
        'cache-control': 'no-cache',
        'content-security-policy': "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'",
        'x-content-type-options': 'nosniff',
      });
      res.end(asset.body);
      return;
    }
    const candidates = ROUTES.filter((r) => r.path.test(path));
    if (candidates.length === 0) throw new HttpError(404, 'not_found', `no such endpoint: ${path} (the API is under /v1.0; see /openapi.json)`);
    const route = candidates.find((r) => r.method === method);
    if (route === undefined) {
      const allow = candidates.map((r) => r.method).join(', ');
      throw new HttpError(405, 'method_not_allowed', `${method} is not allowed on ${path}; use ${allow}`, { allow });
    }
    const token = tokenOf(req, url);
    if (token === null || token === '') throw new HttpError(401, 'unauthenticated', 'an access key is required: send "Authorization: Bearer <key>" or ?accesskey=<key>');
    const key = o.keys.lookup(token);
    if (key === null) throw new HttpError(401, 'unauthenticated', 'the access key is not valid (unknown or deleted)');
    const params = route.path.exec(path)!.slice(1);
    const search = new URLSearchParams(url.searchParams);
    let customer: string | undefined = key.customer_id;
    if (key.role === 'operator') {
      const named = search.get('customer_id');
      search.delete('customer_id');
      customer = named === null ? undefined : pathId(named, 'a customer');
    }
    const query = parse(route.query ?? NoQuery, queryOf(search), 'query') as Record<string, unknown>;
    const result = await route.handle({ key, customer, params, query, body: () => readBody(req, o.maxBodyBytes ?? 1024 * 1024), client });
    send(res, result.status ?? 200, result.body);
    o.log.debug({ event: 'http_request', method, path, status: result.status ?? 200, customer_id: key.customer_id, ms: Math.round(performance.now() - started) });
  } catch (e) {
    if (e instanceof HttpError) {
      sendError(res, e.status, e.code, e.message, e.headers);
    } else if (e instanceof ActiveflowError) {
      // A rate quota frees up within a second; other quotas wait for the customer's own flows to end.
      const retry = e.code === 'unavailable' || e.quota === 'creations_per_second' || e.quota === 'pending_requests';
      send(res, STATUS_BY_CODE[e.code], e.toJSON(), retry ? { 'retry-after': '1' } : {});
      if (e.code === 'internal') o.log.error({ event: 'http_internal', method, path, err: e });
    } else {
      o.log.error({ event: 'http_failed', method, path, err: e });
      sendError(res, 500, 'internal', "internal error; the details are in the gateway's log");
    }
  }
}
