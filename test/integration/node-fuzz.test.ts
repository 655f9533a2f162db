/**
 * Fuzz every verb with random bodies over raw NATS: every reply is JSON (a value, or an error with
 * one of the API's codes), a rejected request changes nothing (activeflow, variables, events), and
 * the node keeps serving. fast-check prints the seed of a failure (FC_SEED reproduces it).
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ERROR_CODES } from '../../machines/index.js';
import { ACTIVEFLOW_VERBS } from '../../src/api/subjects.js';
import { encodeJson } from '../../src/store/codec.js';
import { CUSTOMER } from '../helpers/engine.js';
import { useNode } from '../helpers/nats.js';

const SEED = process.env['FC_SEED'] ? Number(process.env['FC_SEED']) : undefined;
const env = useNode();

const KEYS = [
  'current_action_id',
  'forward_action_id',
  'forward_now',
  'actions',
  'service_id',
  'variables',
  'key',
  'data',
  'from_seq',
  'limit',
  'customer_id',
  'reason',
  'id',
  'reference_type',
  'flow_id',
  'execute',
  'surprise',
];
const value = fc.oneof(
  fc.string({ maxLength: 20 }),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.constant(null),
  fc.uuid(),
  fc.constant(CUSTOMER),
  fc.constantFrom('stopped', 'reference_ended', 'call', 'api'),
  fc.array(fc.record({ type: fc.constantFrom('talk', 'answer', 'goto', 'nope', 5), option: fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 2 })) }), { maxLength: 3 }),
  fc.dictionary(fc.string({ maxLength: 10 }), fc.string({ maxLength: 10 }), { maxKeys: 4 }),
  fc.jsonValue({ maxDepth: 3 }),
);
const body: fc.Arbitrary<Uint8Array> = fc.oneof(
  { arbitrary: fc.dictionary(fc.constantFrom(...KEYS), value, { maxKeys: 4 }).map((o) => encodeJson(o)), weight: 6 },
  { arbitrary: fc.jsonValue({ maxDepth: 3 }).map((v) => encodeJson(v)), weight: 2 },
  { arbitrary: fc.uint8Array({ maxLength: 64 }), weight: 1 },
  { arbitrary: fc.constant(new Uint8Array()), weight: 1 },
);

async function observe(id: string) {
  const af = await env.client.get(id).catch(() => null);
  const vars = await env.client.variables(id).catch(() => null);
  const events = (await env.client.history(id).catch(() => ({ events: [] }))).events.length;
  return { af, vars, events };
}

describe('fuzzing the control API', () => {
  it.each([...ACTIVEFLOW_VERBS])(
    '%s: any body gets a well-formed answer; a rejection changes nothing',
    async (verb) => {
      const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }, { type: 'hangup' }], variables: { a: '1' } });
      await env.client.next(af.id, af.current_action.id);
      await fc.assert(
        fc.asyncProperty(body, async (data) => {
          const before = await observe(af.id);
          const msg = await env.nc.request(`activeflow.v1.${af.id}.${verb}`, data, { timeout: 3000 });
          const reply = JSON.parse(new TextDecoder().decode(msg.data)) as { error?: { code: string; message: string } };
          const isError = msg.headers?.get('Nats-Service-Error') !== undefined && msg.headers?.get('Nats-Service-Error') !== '';
          if (isError) {
            expect(ERROR_CODES).toContain(reply.error!.code);
            expect(reply.error!.message.length).toBeGreaterThan(0);
            expect(reply.error!.code).not.toBe('internal');
            expect(await observe(af.id)).toEqual(before);
          }
        }),
        { numRuns: 40, ...(SEED !== undefined ? { seed: SEED } : {}) },
      );
      // still serving: the activeflow, or not_found once a random body happened to be a valid delete
      const last = await env.client.get(af.id).then(
        (a) => a.id,
        (e: { code?: string }) => e.code,
      );
      expect([af.id, 'not_found']).toContain(last);
    },
    60_000,
  );

  it('create and list, with random bodies', async () => {
    await fc.assert(
      fc.asyncProperty(body, fc.constantFrom('activeflow.v1.create', 'activeflow.v1.list', 'flow.v1.create', 'flow.v1.list'), async (data, subject) => {
        const msg = await env.nc.request(subject, data, { timeout: 3000 });
        const reply = JSON.parse(new TextDecoder().decode(msg.data)) as { error?: { code: string } };
        if (reply.error !== undefined && msg.headers?.get('Nats-Service-Error')) expect(['invalid_argument', 'not_found', 'conflict', 'limit_exceeded']).toContain(reply.error.code);
      }),
      { numRuns: 150, ...(SEED !== undefined ? { seed: SEED } : {}) },
    );
  }, 60_000);
});
