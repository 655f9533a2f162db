/**
 * The gateway's OpenAPI 3.0 document, generated from the same zod schemas that validate the
 * requests: it cannot drift from what the gateway accepts. Served at /openapi.json.
 */
import { z } from 'zod';
import { VERSION } from '../version.js';
import {
  ActiveflowCreateBody,
  ActiveflowListQuery,
  CustomersQuery,
  FlowBody,
  FlowListQuery,
  HistoryQuery,
  RestActiveflow,
  RestActiveflowInspection,
  RestTimeline,
  RestError,
  RestFlow,
  VariablesBody,
} from './rest-schemas.js';

type Json = Record<string, unknown>;

function schema(s: z.ZodType, io: 'input' | 'output' = 'output'): Json {
  const { $schema: _drop, ...rest } = z.toJSONSchema(s, { target: 'openapi-3.0', io, unrepresentable: 'any' }) as Json;
  return rest;
}

const ref = (name: string): Json => ({ $ref: `#/components/schemas/${name}` });
const json = (s: Json): Json => ({ content: { 'application/json': { schema: s } } });
const ok = (s: Json, description = 'OK'): Json => ({ description, ...json(s) });
const errors = (...statuses: number[]): Json => Object.fromEntries(statuses.map((s) => [String(s), { $ref: `#/components/responses/E${s}` }]));
const idParam = (what: string): Json => ({ name: 'id', in: 'path', required: true, schema: { type: 'string', format: 'uuid' }, description: `The ${what}'s id.` });

function queryParams(s: z.ZodObject): Json[] {
  const shape = schema(s, 'input') as { properties?: Record<string, Json> };
  return Object.entries(shape.properties ?? {}).map(([name, p]) => ({ name, in: 'query', required: false, schema: p }));
}

const page = (item: string): Json => ({
  type: 'object',
  properties: { result: { type: 'array', items: ref(item) }, next_page_token: { type: 'string' } },
  required: ['result', 'next_page_token'],
});

const ERROR_TEXT: Record<number, string> = {
  400: 'Bad input: the message names the field.',
  401: 'No access key, or not a valid one.',
  403: "This needs an operator's access key.",
  404: 'No such resource for this customer.',
  405: 'Method not allowed on this path.',
  409: 'Conflict: the id exists, or the activeflow has ended.',
  413: 'Body too large.',
  415: 'The body is not application/json.',
  429: 'A limit was reached.',
  503: 'The runtime cannot answer right now: retry (see Retry-After).',
};

let cached: Json | null = null;

export function openApiDocument(): Json {
  if (cached !== null) return cached;
  const common = errors(400, 401, 404, 405, 429, 503);
  cached = {
    openapi: '3.0.3',
    info: {
      title: 'activeflow REST API',
      version: VERSION,
      description:
        'VoIPBIN-compatible activeflow and flow endpoints, plus history, variables and (operator keys) the cluster. Authenticate with "Authorization: Bearer <access key>" or ?accesskey=<access key>. An operator key names the customer with ?customer_id= on lists and creates. Live events: WebSocket /v1.0/ws?token=<access key> (docs/rest.md).',
    },
    servers: [{ url: '/' }],
    security: [{ bearer: [] }, { accesskey: [] }],
    paths: {
      '/v1.0/activeflows': {
        post: {
          summary: 'Create an activeflow (reference_type api) and execute it',
          requestBody: { required: true, ...json(ref('ActiveflowCreateRequest')) },
          responses: { 200: ok(ref('Activeflow')), ...common, ...errors(409, 413, 415) },
        },
        get: { summary: 'List activeflows', parameters: queryParams(ActiveflowListQuery), responses: { 200: ok(page('Activeflow')), ...common } },
      },
      '/v1.0/activeflows/{id}': {
        get: { summary: 'Get an activeflow', parameters: [idParam('activeflow')], responses: { 200: ok(ref('Activeflow')), ...common } },
        delete: { summary: 'Delete an activeflow (stops it first if running)', parameters: [idParam('activeflow')], responses: { 200: ok(ref('Activeflow')), ...common } },
      },
      '/v1.0/activeflows/{id}/stop': {
        post: { summary: 'Stop an activeflow', parameters: [idParam('activeflow')], responses: { 200: ok(ref('Activeflow')), ...common, ...errors(409) } },
      },
      '/v1.0/activeflows/{id}/history': {
        get: {
          summary: 'Events of an activeflow, in order, from a sequence number',
          parameters: [idParam('activeflow'), ...queryParams(HistoryQuery)],
          responses: { 200: ok({ type: 'object', properties: { events: { type: 'array', items: ref('Event') }, next_from_seq: { type: 'integer' } }, required: ['events'] }), ...common },
        },
      },
      '/v1.0/activeflows/{id}/variables': {
        get: { summary: 'Variables of an activeflow', parameters: [idParam('activeflow')], responses: { 200: ok(ref('Variables')), ...common } },
        put: {
          summary: 'Set variables (merged into the existing ones)',
          parameters: [idParam('activeflow')],
          requestBody: { required: true, ...json(schema(VariablesBody, 'input')) },
          responses: { 200: ok(ref('Variables')), ...common, ...errors(409, 413, 415) },
        },
      },
      '/v1.0/activeflows/{id}/inspect': {
        get: {
          summary: 'An activeflow with what the public form hides: stacks, cursor, execute count, variables (for the dashboard)',
          parameters: [idParam('activeflow')],
          responses: { 200: ok(ref('ActiveflowInspection')), ...common },
        },
      },
      '/v1.0/activeflows/{id}/timeline': {
        get: {
          summary: 'The activeflow after each of its moves (at most the last 500), re-derived from its journal: what the dashboard time-travels through',
          parameters: [idParam('activeflow')],
          responses: { 200: ok(ref('Timeline')), ...common },
        },
      },
      '/v1.0/cluster/nodes': {
        get: { summary: 'The nodes (operator keys only)', responses: { 200: ok({ type: 'object', properties: { nodes: { type: 'array', items: { type: 'object' } } } }), ...errors(401, 403, 503) } },
      },
      '/v1.0/cluster/shards': {
        get: {
          summary: 'Who holds each shard and where it is going (operator keys only)',
          responses: {
            200: ok({
              type: 'object',
              properties: { shard_count: { type: 'integer' }, shards: { type: 'array', items: { type: 'object' } }, nodes: { type: 'array', items: { type: 'object' } }, moving: { type: 'integer' } },
            }),
            ...errors(401, 403, 503),
          },
        },
      },
      '/v1.0/cluster/customers': {
        get: {
          summary: 'The customers with activeflows running, busiest first (operator keys only)',
          parameters: queryParams(CustomersQuery),
          responses: {
            200: ok({
              type: 'object',
              properties: {
                customers: { type: 'array', items: { type: 'object', properties: { customer_id: { type: 'string', format: 'uuid' }, running_activeflows: { type: 'integer' } } } },
                customer_count: { type: 'integer' },
                running_activeflows: { type: 'integer' },
              },
            }),
            ...errors(400, 401, 403, 503),
          },
        },
      },
      '/v1.0/flows': {
        get: { summary: 'List flows', parameters: queryParams(FlowListQuery), responses: { 200: ok(page('Flow')), ...common } },
        post: { summary: 'Create a flow', requestBody: { required: true, ...json(ref('FlowRequest')) }, responses: { 200: ok(ref('Flow')), ...common, ...errors(413, 415) } },
      },
      '/v1.0/flows/{id}': {
        get: { summary: 'Get a flow', parameters: [idParam('flow')], responses: { 200: ok(ref('Flow')), ...common } },
        put: {
          summary: 'Update a flow',
          parameters: [idParam('flow')],
          requestBody: { required: true, ...json(ref('FlowRequest')) },
          responses: { 200: ok(ref('Flow')), ...common, ...errors(413, 415) },
        },
        delete: { summary: 'Delete a flow', parameters: [idParam('flow')], responses: { 200: ok(ref('Flow')), ...common } },
      },
    },
    components: {
      securitySchemes: {
        bearer: { type: 'http', scheme: 'bearer', description: 'An access key (activeflow accesskeys create).' },
        accesskey: { type: 'apiKey', in: 'query', name: 'accesskey' },
      },
      schemas: {
        Activeflow: schema(RestActiveflow),
        ActiveflowInspection: schema(RestActiveflowInspection),
        Timeline: schema(RestTimeline),
        Flow: schema(RestFlow),
        ActiveflowCreateRequest: schema(ActiveflowCreateBody, 'input'),
        FlowRequest: schema(FlowBody, 'input'),
        Variables: { type: 'object', properties: { id: { type: 'string', format: 'uuid' }, variables: { type: 'object', additionalProperties: { type: 'string' } } }, required: ['id', 'variables'] },
        Event: { type: 'object', properties: { type: { type: 'string' }, seq: { type: 'integer' }, at: { type: 'string' }, data: ref('Activeflow') }, required: ['type', 'seq', 'at', 'data'] },
        Error: schema(RestError),
      },
      responses: Object.fromEntries(Object.entries(ERROR_TEXT).map(([s, d]) => [`E${s}`, { description: d, ...json(ref('Error')) }])),
    },
  };
  return cached;
}
