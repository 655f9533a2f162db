/**
 * Per-customer quotas on a real node: running activeflows (exact under concurrent creations),
 * creations per second, flows and variable sizes; overrides stored in af_quotas apply without a
 * restart; every refusal is limit_exceeded naming its quota, and nothing is half-created.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { Activeflow } from '../../machines/index.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import type { ActiveflowError } from '../../src/errors.js';
import { useNode } from '../helpers/nats.js';

const env = useNode({ quotas: { creations_per_second: 1_000, creation_burst: 1_000 } });
const TALK = [{ type: 'talk', option: { text: 'hi' } }];
const customer = () => randomUUID();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface QuotaReply {
  override: Record<string, number>;
  quotas: Record<string, number>;
  usage: { running_activeflows: number };
}
const setQuotas = (customer_id: string, quotas: Record<string, number | null>) => env.client.call<QuotaReply>(SUBJECTS.adminQuotas('set'), { customer_id, quotas });
const getQuotas = (customer_id: string) => env.client.call<QuotaReply>(SUBJECTS.adminQuotas('get'), { customer_id });
const create = (customer_id: string, extra: Record<string, unknown> = {}) => env.client.createActiveflow({ customer_id, reference_type: 'call', actions: TALK, ...extra });

async function refused<T>(p: Promise<T>): Promise<ActiveflowError> {
  try {
    await p;
  } catch (e) {
    return e as ActiveflowError;
  }
  throw new Error('expected a refusal');
}

const running = async (customer_id: string) => (await env.client.listActiveflows({ customer_id, status: 'running' })).result.length;

describe('quotas per customer', () => {
  it('running activeflows: concurrent creations take exactly the slots there are, and an end frees one', async () => {
    const c = customer();
    await setQuotas(c, { running_activeflows: 5 });
    const ids = Array.from({ length: 12 }, () => randomUUID());
    const results = await Promise.allSettled(ids.map((id) => create(c, { id })));
    const ok = results.filter((r) => r.status === 'fulfilled');
    const no = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(ok.length).toBe(5);
    expect(no.map((r) => [r.reason.code, r.reason.quota])).toEqual(Array(7).fill(['limit_exceeded', 'running_activeflows']));
    expect(no[0]!.reason.message).toMatch(/at most 5 are allowed \(quota running_activeflows\)/);
    // Nothing of the refused ones exists.
    const refusedIds = ids.filter((_, i) => results[i]!.status === 'rejected');
    for (const id of refusedIds) await expect(env.client.get(id)).rejects.toMatchObject({ code: 'not_found' });
    // Written before its slot was refused, then removed: no event of it ever went out.
    const { jetstreamManager } = await import('@nats-io/jetstream');
    const jsm = await jetstreamManager(env.nc);
    for (const id of refusedIds) expect(await jsm.streams.getMessage('ACTIVEFLOW_EVENTS', { last_by_subj: `activeflow.events.${c}.${id}` })).toBeNull();
    expect(await running(c)).toBe(5);
    expect((await getQuotas(c)).usage.running_activeflows).toBe(5);

    const first = (ok[0] as PromiseFulfilledResult<Activeflow>).value;
    await env.client.stop(first.id);
    // The slot comes back with the end's last step, just after the reply.
    for (let i = 0; i < 50 && (await getQuotas(c)).usage.running_activeflows !== 4; i++) await sleep(20);
    expect((await getQuotas(c)).usage.running_activeflows).toBe(4);
    await create(c);
    expect((await refused(create(c))).quota).toBe('running_activeflows');
    // Another customer is not affected.
    await create(customer());
  });

  it('running count: a write that lands but whose answer is lost (a timeout) is neither applied twice nor lost', async () => {
    const { Kvm } = await import('@nats-io/kv');
    const { errors } = await import('@nats-io/transport-node');
    const { RunningCount } = await import('../../src/quota/running-count.js');
    const kv = await new Kvm(env.nc).open('af_quotas');
    // The real bucket, but each of the first `lose` writes is stored and then answered with a timeout.
    let lose = 0;
    let meanwhile: () => Promise<void> = async () => undefined;
    const lossy = new Proxy(kv, {
      get: (target, key, receiver) =>
        key === 'create' || key === 'update'
          ? async (...args: unknown[]) => {
              const r = await (Reflect.get(target, key, receiver) as (...a: unknown[]) => Promise<number>).apply(target, args);
              if (lose > 0) {
                lose--;
                await meanwhile(); // what other nodes write before this one learns anything
                throw new errors.TimeoutError();
              }
              return r;
            }
          : Reflect.get(target, key, receiver),
    });
    const count = new RunningCount(lossy, 'lossy-node');
    const c = customer();
    lose = 1;
    await count.take(c, 10); // stored, answer lost: found on the retry, not taken again
    expect(await count.of(c)).toBe(1);
    lose = 1;
    await count.take(c, 10);
    expect(await count.of(c)).toBe(2);
    lose = 1;
    await count.give(c); // stored, answer lost: not given twice
    expect(await count.of(c)).toBe(1);
    // Concurrent takes batched into one write, its answer lost: each admitted once.
    lose = 1;
    await Promise.all([count.take(c, 10), count.take(c, 10), count.take(c, 10)]);
    expect(await count.of(c)).toBe(4);
    // Another node's writes between the lost answer and the retry leave this node's record of its
    // own last write alone: the retry still finds it.
    const other = new RunningCount(kv, 'other-node');
    meanwhile = async () => {
      for (let i = 0; i < 40; i++) await other.take(c, 100);
    };
    lose = 1;
    await count.give(c);
    expect(await count.of(c)).toBe(43);
  });

  it('creations per second: a burst, then a refusal, then one more after the bucket refills', async () => {
    const c = customer();
    await setQuotas(c, { creations_per_second: 1, creation_burst: 3 }); // a slow refill: a loaded machine cannot outrun it
    // Bad requests use up no token.
    for (let i = 0; i < 5; i++) await expect(create(c, { actions: [{ type: 'talk', option: { text: 5 } }] })).rejects.toMatchObject({ code: 'invalid_argument' });
    // Nor do repeated creates of an id that runs (refused by the create of its running key).
    const { id } = await create(c);
    for (let i = 0; i < 5; i++) await expect(create(c, { id })).rejects.toMatchObject({ code: 'conflict' });
    for (let i = 0; i < 2; i++) await create(c);
    const e = await refused(create(c));
    expect([e.code, e.quota]).toEqual(['limit_exceeded', 'creations_per_second']);
    expect(await running(c)).toBe(3);
    await sleep(1_100); // 1/s: a token within the second
    await create(c);
  });

  it("flows: the customer's own number, then back to the default", async () => {
    const c = customer();
    await setQuotas(c, { flows: 2 });
    await env.client.createFlow({ customer_id: c, actions: TALK });
    await env.client.createFlow({ customer_id: c, actions: TALK });
    const e = await refused(env.client.createFlow({ customer_id: c, actions: TALK }));
    expect([e.code, e.quota]).toEqual(['limit_exceeded', 'flows']);
    expect((await env.client.listFlows({ customer_id: c })).result.length).toBe(2);
    const reset = await env.client.call<QuotaReply>(SUBJECTS.adminQuotas('reset'), { customer_id: c });
    expect(reset.quotas['flows']).toBe(10_000);
    await env.client.createFlow({ customer_id: c, actions: TALK });
  });

  it('variable sizes: at creation and later, with the limits the activeflow was created with', async () => {
    const c = customer();
    await setQuotas(c, { variable_value_bytes: 10, variables_bytes: 2_000 });
    const e = await refused(create(c, { variables: { k: '12345678901' } }));
    expect([e.code, e.quota]).toEqual(['limit_exceeded', 'variable_value_bytes']);
    expect(await running(c)).toBe(0);
    expect((await getQuotas(c)).usage.running_activeflows).toBe(0); // nothing was taken for it
    const af = await create(c, { variables: { k: '1234567890' } });
    const set = await refused(env.client.setVariables(af.id, { big: 'x'.repeat(11) }));
    expect([set.code, set.quota]).toEqual(['limit_exceeded', 'variable_value_bytes']);
    const total = await refused(env.client.setVariables(af.id, Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, '1234567890']))));
    expect(total.quota).toBe('variables_bytes');
    expect((await env.client.variables(af.id)).variables['big']).toBeUndefined();
  });

  it('an on_complete child takes the slot its parent gave back; beyond the quota it is not started, and the parent still ends', async () => {
    const c = customer();
    const child = await env.client.createFlow({ customer_id: c, actions: TALK });
    const parentFlow = await env.client.createFlow({ customer_id: c, actions: [{ type: 'stop' }], on_complete_flow_id: child.id });
    const children = async () => (await env.client.listActiveflows({ customer_id: c, status: 'running' })).result.filter((a) => a.flow_id === child.id);
    const settle = async (want: number) => {
      for (let i = 0; i < 100 && (await children()).length !== want; i++) await sleep(50);
    };
    // At its quota of 1, the parent's end hands its slot to its child.
    await setQuotas(c, { running_activeflows: 1 });
    const parent = await create(c, { flow_id: parentFlow.id, actions: undefined });
    await env.client.execute(parent.id);
    await settle(1);
    expect((await children()).length).toBe(1);
    expect((await getQuotas(c)).usage.running_activeflows).toBe(1);
    await env.client.stop((await children())[0]!.id);
    // Two running, then the quota lowered to one: the ending parent's slot is not enough for its child.
    await setQuotas(c, { running_activeflows: 2 });
    for (let i = 0; i < 50 && (await getQuotas(c)).usage.running_activeflows !== 0; i++) await sleep(20);
    const blocker = await create(c);
    const second = await create(c, { flow_id: parentFlow.id, actions: undefined });
    await setQuotas(c, { running_activeflows: 1 });
    await env.client.execute(second.id);
    // Its end gives its slot back, then tries the child (refused), then removes its running key.
    for (let i = 0; i < 100 && (await getQuotas(c)).usage.running_activeflows !== 1; i++) await sleep(50);
    await sleep(500);
    expect((await env.client.get(second.id)).status).toBe('ended');
    expect(await children()).toEqual([]);
    expect((await env.client.listActiveflows({ customer_id: c, status: 'running' })).result.map((a) => a.id)).toEqual([blocker.id]);
    expect((await getQuotas(c)).usage.running_activeflows).toBe(1);
  });

  it('customers: every customer with activeflows running and how many, busiest first, across the counters', async () => {
    const [a, b] = [customer(), customer()];
    const made = await Promise.all([...Array.from({ length: 3 }, () => create(a)), create(b)]);
    interface Customers {
      customers: { customer_id: string; running_activeflows: number }[];
      customer_count: number;
      running_activeflows: number;
    }
    const list = () => env.client.call<Customers>(SUBJECTS.adminCustomers, {});
    const all = await list();
    const mine = all.customers.filter((x) => x.customer_id === a || x.customer_id === b);
    expect(mine).toEqual([
      { customer_id: a, running_activeflows: 3 },
      { customer_id: b, running_activeflows: 1 },
    ]);
    // Whatever else runs on this node, the totals agree with the rows and the rows are ordered.
    expect(all.running_activeflows).toBe(all.customers.reduce((n, x) => n + x.running_activeflows, 0));
    expect(all.customer_count).toBe(all.customers.length);
    const counts = all.customers.map((x) => x.running_activeflows);
    expect(counts).toEqual([...counts].sort((x, y) => y - x));
    expect((await env.client.call<Customers>(SUBJECTS.adminCustomers, { limit: 1 })).customers).toHaveLength(1);
    // A customer whose last activeflow ended is no longer listed.
    await env.client.stop(made[3]!.id);
    for (let i = 0; i < 50 && (await list()).customers.some((x) => x.customer_id === b); i++) await sleep(20);
    expect((await list()).customers.map((x) => x.customer_id)).not.toContain(b);
    for (const body of [{ limit: 0 }, { limit: 1001 }, { limit: 'ten' }, { customer_id: a }]) {
      await expect(env.client.call(SUBJECTS.adminCustomers, body)).rejects.toMatchObject({ code: 'invalid_argument' });
    }
    // The CLI: a table, busiest first, and a bad limit refused before anything is sent.
    const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
    const cli = (...args: string[]) => promisify(execFile)(process.execPath, [BIN, 'customers', ...args], { env: { ...process.env, NATS_URL: env.server.url } });
    const out = (await cli('--limit', '1000')).stdout;
    expect(out).toMatch(new RegExp(`${a}\\s+3\\n`));
    expect(out).toMatch(/\d+ running, \d+ customers/);
    expect(JSON.parse((await cli('--json', '--limit', '1')).stdout).customers).toHaveLength(1);
    expect(await cli('--limit', '0').catch((e: { code: number; stderr: string }) => e)).toMatchObject({ code: 2, stderr: expect.stringMatching(/--limit takes a whole number from 1 to 1000/) });
  });

  it('bad quota requests are refused and change nothing', async () => {
    const c = customer();
    await setQuotas(c, { running_activeflows: 7 });
    for (const body of [
      { customer_id: c, quotas: { running_activeflows: -1 } },
      { customer_id: c, quotas: { runing_activeflows: 3 } },
      { customer_id: c, quotas: {} },
      { customer_id: 'not-a-uuid', quotas: { flows: 1 } },
      { customer_id: c, quotas: { flows: 1.5 } },
    ]) {
      await expect(env.client.call(SUBJECTS.adminQuotas('set'), body)).rejects.toMatchObject({ code: 'invalid_argument' });
    }
    expect((await getQuotas(c)).override).toEqual({ running_activeflows: 7 });
    // null drops one override.
    expect((await setQuotas(c, { running_activeflows: null, flows: 3 })).override).toEqual({ flows: 3 });
  });

  it('the CLI: quotas set, get and reset; a bad value is refused before anything is sent', async () => {
    const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
    const cli = (...args: string[]) => promisify(execFile)(process.execPath, [BIN, 'quotas', ...args], { env: { ...process.env, NATS_URL: env.server.url } });
    const c = customer();
    await create(c);
    const set = await cli('set', '--customer', c, '--running-activeflows', '3', '--creations-per-second', '2.5');
    expect(set.stdout).toMatch(/1 running activeflows/);
    expect(set.stdout).toMatch(/running_activeflows\s+3\s+customer/);
    expect(set.stdout).toMatch(/creations_per_second\s+2\.5\s+customer/);
    expect(set.stdout).toMatch(/flows\s+10000\s+default/);
    expect((await getQuotas(c)).override).toEqual({ running_activeflows: 3, creations_per_second: 2.5 });
    const bad = await cli('set', '--customer', c, '--flows', 'lots').catch((e: { code: number; stderr: string }) => e);
    expect(bad).toMatchObject({ code: 2, stderr: expect.stringMatching(/--flows takes a number >= 0 or "default", not "lots"/) });
    const typo = await cli('set', '--customer', c, '--runing-activeflows', '9').catch((e: { code: number; stderr: string }) => e);
    expect(typo).toMatchObject({ code: 2, stderr: expect.stringMatching(/unknown option --runing-activeflows/) });
    const json = JSON.parse((await cli('get', '--customer', c, '--json')).stdout) as QuotaReply;
    expect(json.usage.running_activeflows).toBe(1);
    await cli('reset', '--customer', c);
    expect((await getQuotas(c)).override).toEqual({});
  });
});
