import { randomUUID } from 'node:crypto';
import { Svcm } from '@nats-io/services';
import { describe, expect, it } from 'vitest';
import { shardMappingConfig, shardOf } from '../../src/nats/shard-mapping.js';
import { encodeJson } from '../../src/store/codec.js';
import { CUSTOMER, OTHER_CUSTOMER } from '../helpers/engine.js';
import { SHARDS, rejects, useNode } from '../helpers/nats.js';

const env = useNode();

describe('routing', () => {
  it("the node's shardOf equals the server's partition for every id (a real server's mapping)", async () => {
    const seen = new Map<string, number>();
    const sub = env.nc.subscribe('activeflow.shard.*.*.route_probe', {
      callback: (_e, m) => {
        const t = m.subject.split('.');
        seen.set(t[3]!, Number(t[2]));
      },
    });
    const ids = Array.from({ length: 3000 }, () => randomUUID());
    for (const id of ids) env.nc.publish(`activeflow.v1.${id}.route_probe`);
    await env.nc.flush();
    for (let i = 0; i < 50 && seen.size < ids.length; i++) await new Promise((r) => setTimeout(r, 20));
    sub.unsubscribe();
    expect(seen.size).toBe(ids.length);
    expect(ids.filter((id) => seen.get(id) !== shardOf(id, SHARDS))).toEqual([]);
    expect(new Set(seen.values()).size).toBeGreaterThan(200); // spread over the shards
  });

  it('nats-server.conf and the code agree on the mapping', async () => {
    const { readFileSync } = await import('node:fs');
    const conf = readFileSync(new URL('../../nats-server.conf', import.meta.url), 'utf8');
    expect(conf.replace(/\s+/g, ' ')).toContain(shardMappingConfig(SHARDS).replace(/\s+/g, ' '));
  });

  it('registers with the services framework: $SRV ping, info and stats answer, and cover the shard path', async () => {
    const m = new Svcm(env.nc).client();
    const pings = [];
    for await (const p of await m.ping('activeflow')) pings.push(p);
    expect(pings).toHaveLength(1);
    const infos = [];
    for await (const i of await m.info('activeflow')) infos.push(i);
    // The verbs of one activeflow are listed by the subject callers use; the server's mapping takes
    // them to the shard's owner, whose pipeline counts them under this endpoint.
    expect(infos[0]!.endpoints.map((e) => e.subject)).toEqual(
      expect.arrayContaining(['activeflow.v1.*.*', 'activeflow.v1.create', 'activeflow.v1.list', 'flow.v1.create', 'activeflow.relay.v1.gateway.open']),
    );
    const statsOf = async (name: string) => {
      const stats = [];
      for await (const s of await m.stats('activeflow')) stats.push(s);
      return stats[0]!.endpoints!.find((e) => e.name === name)!;
    };
    const before = await statsOf('activeflow');
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk', option: { text: 'hi' } }] });
    await env.client.get(af.id);
    await env.client.next(af.id, af.current_action.id);
    const missing = randomUUID();
    expect((await rejects(env.client.get(missing))).code).toBe('not_found');
    const after = await statsOf('activeflow');
    expect(after.num_requests - before.num_requests).toBe(4); // create's second hop (to its shard's owner), get, next, the missing get
    expect(after.num_errors - before.num_errors).toBe(1);
    expect(after.last_error).toContain('not_found');
    expect(after.processing_time).toBeGreaterThan(before.processing_time);
    // The library's own figures time only the hand-off to the pipeline and never see an error.
    expect((await rejects(env.client.getFlow(randomUUID()))).code).toBe('not_found');
    const flowVerb = await statsOf('flow_verb');
    expect(flowVerb.num_errors).toBeGreaterThan(0);
    expect(flowVerb.last_error).toContain('not_found');
    await env.client.listFlows({ customer_id: CUSTOMER });
    expect((await statsOf('flow_list')).num_requests).toBeGreaterThan(0);
  });

  it("a request on an activeflow's subject is answered once: the mapping takes it from the subject the endpoint lists", async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk', option: { text: 'hi' } }] });
    const inbox = `_INBOX.${randomUUID()}`;
    const replies: string[] = [];
    const sub = env.nc.subscribe(inbox, {
      callback: (_e, msg) => {
        replies.push(msg.string());
      },
    });
    env.nc.publish(`activeflow.v1.${af.id}.get`, encodeJson({ customer_id: CUSTOMER }), { reply: inbox });
    for (let i = 0; i < 100 && replies.length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 300)); // room for a second answer, were there one
    sub.unsubscribe();
    expect(replies).toHaveLength(1);
    expect(JSON.parse(replies[0]!)).toMatchObject({ id: af.id });
  });
});

describe('flows', () => {
  it('create, get, list, update, delete; ids given to actions', async () => {
    const flow = await env.client.createFlow({ customer_id: CUSTOMER, name: 'menu', actions: [{ type: 'answer' }, { type: 'talk', option: { text: 'hi' } }] });
    expect(flow).toMatchObject({ customer_id: CUSTOMER, type: 'flow', name: 'menu', tm_delete: null });
    expect(flow.actions.every((a) => /^[0-9a-f-]{36}$/.test(a.id))).toBe(true);
    expect(await env.client.getFlow(flow.id)).toEqual(flow);
    expect(await env.client.getFlow(flow.id, CUSTOMER)).toEqual(flow);
    const updated = await env.client.updateFlow(flow.id, { customer_id: CUSTOMER, name: 'menu v2' });
    expect(updated).toMatchObject({ name: 'menu v2', actions: flow.actions });
    const page = await env.client.listFlows({ customer_id: CUSTOMER });
    expect(page.result.map((f) => f.id)).toContain(flow.id);
    expect((await env.client.deleteFlow(flow.id)).tm_delete).not.toBeNull();
    expect((await rejects(env.client.getFlow(flow.id))).code).toBe('not_found');
    // a deleted flow cannot be instantiated
    expect((await rejects(env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' }))).code).toBe('not_found');
  });

  it('another customer sees not_found, never the flow', async () => {
    const flow = await env.client.createFlow({ customer_id: CUSTOMER, actions: [] });
    expect((await rejects(env.client.getFlow(flow.id, OTHER_CUSTOMER))).code).toBe('not_found');
    expect((await rejects(env.client.createActiveflow({ customer_id: OTHER_CUSTOMER, flow_id: flow.id, reference_type: 'call' }))).code).toBe('not_found');
  });

  it("pages through a customer's flows", async () => {
    const customer = randomUUID();
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await env.client.createFlow({ customer_id: customer, actions: [] })).id);
    const first = await env.client.listFlows({ customer_id: customer, page_size: 2 });
    const second = await env.client.listFlows({ customer_id: customer, page_size: 2, page_token: first.next_page_token });
    const third = await env.client.listFlows({ customer_id: customer, page_size: 2, page_token: second.next_page_token });
    expect([...first.result, ...second.result, ...third.result].map((f) => f.id).sort()).toEqual(ids.sort());
    expect(third.next_page_token).toBe('');
  });
});

describe('activeflows over NATS', () => {
  it('runs a call: create, next until FINISH, then ended; history has every event in order', async () => {
    const af = await env.client.createActiveflow({
      customer_id: CUSTOMER,
      reference_type: 'call',
      actions: [{ type: 'answer' }, { type: 'talk', option: { text: 'hi ${who}' } }],
      variables: { who: 'Ada' },
    });
    expect(af).toMatchObject({ status: 'running', customer_id: CUSTOMER, execute_count: 0 });
    const answer = await env.client.next(af.id, af.current_action.id);
    const talk = await env.client.next(af.id, answer.id);
    expect(talk.option).toEqual({ text: 'hi Ada' });
    const finish = await env.client.next(af.id, talk.id);
    expect(finish.id).toBe('00000000-0000-0000-0000-000000000002');
    expect(await env.client.get(af.id)).toMatchObject({ status: 'ended', end_reason: 'finished', execute_count: 3 });
    const { events } = await env.client.history(af.id);
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect(events.map((e) => e.type)).toEqual(['activeflow_created', 'activeflow_updated', 'activeflow_updated', 'activeflow_updated', 'activeflow_updated', 'activeflow_ended']);
    expect(events[0]!.data).not.toHaveProperty('stack_map');
    expect((await env.client.history(af.id, 5)).events.map((e) => e.seq)).toEqual([5, 6]);
  });

  it('a retried next (lost reply) gets the same answer; a stale one is a conflict', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }, { type: 'hangup' }] });
    const a1 = await env.client.next(af.id, af.current_action.id);
    const a2 = await env.client.next(af.id, a1.id);
    expect(await env.client.next(af.id, a1.id)).toEqual(a2);
    expect((await rejects(env.client.next(af.id, af.current_action.id))).code).toBe('conflict');
    expect((await env.client.get(af.id)).execute_count).toBe(2);
  });

  it('serves every verb', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'hangup' }], variables: { a: '1' } });
    const answer = await env.client.next(af.id, af.current_action.id);
    expect((await env.client.pushActions(af.id, [{ type: 'talk' }])).forward_action_id).not.toBe('00000000-0000-0000-0000-000000000000');
    const talk = await env.client.next(af.id, answer.id);
    expect(talk.type).toBe('talk');
    expect((await env.client.addActions(af.id, [{ type: 'beep' }])).current_action.id).toBe(talk.id);
    expect((await env.client.forward(af.id, answer.id)).forward_action_id).toBe(answer.id);
    expect((await env.client.setVariables(af.id, { b: '${a}2' })).variables).toMatchObject({ a: '1', b: '12' });
    expect((await env.client.deleteVariable(af.id, 'a')).variables).not.toHaveProperty('a');
    expect(await env.client.variables(af.id)).toMatchObject({ id: af.id, variables: { b: '12' } });
    expect(await env.client.substitute(af.id, '[${b}]')).toEqual({ data: '[12]' });
    expect((await rejects(env.client.serviceStop(af.id, randomUUID()))).code).toBe('not_found');
    expect((await rejects(env.client.execute(af.id))).code).toBe('conflict');
    expect((await rejects(env.client.continue(af.id, talk.id))).code).toBe('conflict');
    expect(await env.client.stop(af.id, { reason: 'reference_ended' })).toMatchObject({ status: 'ended', end_reason: 'reference_ended' });
    expect((await rejects(env.client.next(af.id, talk.id))).code).toBe('ended');
    expect((await env.client.delete(af.id)).tm_delete).not.toBeNull();
    expect((await rejects(env.client.get(af.id))).code).toBe('not_found');
  });

  it('an api activeflow runs with execute on create', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'api', execute: true, actions: [{ type: 'variable_set', option: { key: 'x', value: 'y' } }] });
    expect(af).toMatchObject({ status: 'ended', end_reason: 'finished' });
    expect((await env.client.variables(af.id)).variables['x']).toBe('y');
  });

  it('checks the customer on every verb and on list', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [] });
    for (const verb of ['get', 'stop', 'variables_get', 'delete']) {
      expect((await rejects(env.client.call(`activeflow.v1.${af.id}.${verb}`, { customer_id: OTHER_CUSTOMER }))).code, verb).toBe('not_found');
    }
    expect((await env.client.get(af.id, CUSTOMER)).status).toBe('running');
    const other = await env.client.listActiveflows({ customer_id: OTHER_CUSTOMER });
    expect(other.result.map((a) => a.id)).not.toContain(af.id);
  });

  it('lists with filters and pages', async () => {
    const customer = randomUUID();
    const ref = randomUUID();
    const a = await env.client.createActiveflow({ customer_id: customer, reference_type: 'call', reference_id: ref, actions: [{ type: 'talk' }] });
    const b = await env.client.createActiveflow({ customer_id: customer, reference_type: 'api', actions: [] });
    const c = await env.client.createActiveflow({ customer_id: customer, reference_type: 'api', actions: [], execute: true });
    const all = await env.client.listActiveflows({ customer_id: customer });
    expect(all.result.map((x) => x.id).sort()).toEqual([a.id, b.id, c.id].sort());
    expect((await env.client.listActiveflows({ customer_id: customer, status: 'ended' })).result.map((x) => x.id)).toEqual([c.id]);
    expect((await env.client.listActiveflows({ customer_id: customer, reference_id: ref })).result.map((x) => x.id)).toEqual([a.id]);
    expect((await env.client.listActiveflows({ customer_id: customer, reference_type: 'api' })).result).toHaveLength(2);
    const p1 = await env.client.listActiveflows({ customer_id: customer, page_size: 2 });
    const p2 = await env.client.listActiveflows({ customer_id: customer, page_size: 2, page_token: p1.next_page_token });
    expect([...p1.result, ...p2.result].map((x) => x.id).sort()).toEqual([a.id, b.id, c.id].sort());
    expect(p2.next_page_token).toBe('');
  });

  it('a change repeated with the same request_id (a lost reply) is applied once and answered the same', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'hangup' }] });
    const a = await env.client.next(af.id, af.current_action.id);
    const body = encodeJson({ actions: [{ type: 'talk' }], request_id: 'push-1' });
    const first = JSON.parse(new TextDecoder().decode((await env.nc.request(`activeflow.v1.${af.id}.push_actions`, body, { timeout: 2000 })).data));
    const again = JSON.parse(new TextDecoder().decode((await env.nc.request(`activeflow.v1.${af.id}.push_actions`, body, { timeout: 2000 })).data));
    expect(again.forward_action_id).toBe(first.forward_action_id);
    expect(Object.keys((await env.client.get(af.id)).stack_map)).toHaveLength(2);
    expect((await env.client.next(af.id, a.id)).type).toBe('talk');
  });

  it('a repeated delete with the same request_id answers like the first; without one it is not_found', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    const body = encodeJson({ request_id: 'del-1' });
    const first = await env.nc.request(`activeflow.v1.${af.id}.delete`, body, { timeout: 2000 });
    const again = await env.nc.request(`activeflow.v1.${af.id}.delete`, body, { timeout: 2000 });
    expect(again.headers?.get('Nats-Service-Error')).toBeUndefined();
    expect(JSON.parse(new TextDecoder().decode(again.data))).toEqual(JSON.parse(new TextDecoder().decode(first.data)));
    expect((await rejects(env.client.delete(af.id))).code).toBe('not_found');
    expect((await rejects(env.client.get(af.id))).code).toBe('not_found');
  });

  it('a duplicate id is a conflict', async () => {
    const id = randomUUID();
    await env.client.createActiveflow({ id, customer_id: CUSTOMER, reference_type: 'call', actions: [] });
    expect((await rejects(env.client.createActiveflow({ id, customer_id: CUSTOMER, reference_type: 'call', actions: [] }))).code).toBe('conflict');
    // an ended one's id too (its running key is gone by then), and the duplicate changes nothing
    await env.client.stop(id);
    expect((await rejects(env.client.createActiveflow({ id, customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk', option: { text: 'x' } }] }))).code).toBe('conflict');
    expect(await env.client.get(id)).toMatchObject({ status: 'ended', end_reason: 'stopped' });
  });

  it('an activeflow that logs nothing holds no logger of its own, created, moved, loaded again or ended (memory per resident activeflow)', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }, { type: 'talk' }] });
    const handle = () => (env.node.registry as unknown as { actors: Map<string, { logger: unknown; resident: boolean }> }).actors.get(af.id)!;
    expect(handle().logger).toBeNull();
    await env.client.next(af.id, af.current_action.id);
    expect(handle().logger).toBeNull();
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    await env.client.get(af.id); // loaded again
    expect(handle().resident).toBe(true);
    expect(handle().logger).toBeNull();
    await env.client.stop(af.id);
    expect(handle().logger).toBeNull();
  });

  it('activeflows with the same limits share one copy of them in memory, created or loaded again', async () => {
    const create = () => env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }, { type: 'talk' }] });
    const [a, b] = [await create(), await create()];
    const limitsOf = (id: string) => (env.node.registry as unknown as { actors: Map<string, { committed: { limits: object } }> }).actors.get(id)!.committed.limits;
    expect(limitsOf(a.id)).toBe(limitsOf(b.id));
    await env.client.next(a.id, a.current_action.id);
    await env.node.registry.passivateIdle(Number.MAX_SAFE_INTEGER);
    await env.client.get(a.id); // loaded again: its limits come from its checkpoint
    expect(limitsOf(a.id)).toBe(limitsOf((await create()).id));
    expect(Object.isFrozen(limitsOf(a.id))).toBe(true);
  });

  it('a reference_activeflow_id gives the variables its activeflow has now, not those of its last checkpoint', async () => {
    const talk = (text: string) => ({ type: 'talk', option: { text } });
    const parent = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [talk('a'), talk('b')] });
    // changes journalled after the creation's checkpoint (a checkpoint comes every CHECKPOINT_EVERY entries)
    await env.client.setVariables(parent.id, { color: 'blue' });
    await env.client.setVariables(parent.id, { size: 'large' });
    await env.client.deleteVariable(parent.id, 'size');
    const child = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', reference_activeflow_id: parent.id, actions: [] });
    const { variables } = await env.client.variables(child.id);
    expect(variables['color']).toBe('blue');
    expect(variables).not.toHaveProperty('size');
    expect(variables['voipbin.activeflow.reference_activeflow_id']).toBe(parent.id);
  });

  it("another customer's activeflow as reference_activeflow_id is not_found, as a missing one: its variables are not copied", async () => {
    const parent = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    await env.client.setVariables(parent.id, { pin: '1234' });
    const id = randomUUID();
    const theirs = await rejects(env.client.createActiveflow({ id, customer_id: OTHER_CUSTOMER, reference_type: 'call', reference_activeflow_id: parent.id, actions: [] }));
    const missing = await rejects(env.client.createActiveflow({ customer_id: OTHER_CUSTOMER, reference_type: 'call', reference_activeflow_id: randomUUID(), actions: [] }));
    expect(theirs.code).toBe('not_found');
    expect(theirs.message.replace(parent.id, '<id>')).toBe(missing.message.replace(/[0-9a-f-]{36}/, '<id>'));
    expect((await rejects(env.client.get(id))).code).toBe('not_found'); // nothing was created
  });
});

describe('bad input', () => {
  const raw = async (subject: string, data: Uint8Array) => {
    const msg = await env.nc.request(subject, data, { timeout: 2000 });
    return { headers: msg.headers, body: JSON.parse(new TextDecoder().decode(msg.data)) };
  };

  it('answers clear errors with the service-error headers', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [] });
    const bad = await raw(`activeflow.v1.${af.id}.next`, new TextEncoder().encode('{not json'));
    expect(bad.body.error).toMatchObject({ code: 'invalid_argument', message: expect.stringMatching(/not valid JSON/) });
    expect(bad.headers?.get('Nats-Service-Error-Code')).toBe('400');
    const unknownField = await raw(`activeflow.v1.${af.id}.stop`, encodeJson({ force: true }));
    expect(unknownField.body.error.message).toMatch(/Unrecognized key: "force"/);
    const big = await raw(`activeflow.v1.${af.id}.variables_set`, encodeJson({ variables: { k: 'x'.repeat(600 * 1024) } }));
    expect(big.body.error.message).toMatch(/at most 524288 are accepted/);
    const verb = await raw(`activeflow.v1.${af.id}.teleport`, encodeJson({}));
    expect(verb.body.error.message).toMatch(/unknown verb "teleport"/);
    const id = await raw('activeflow.v1.not-a-uuid.get', encodeJson({}));
    expect(id.body.error.message).toMatch(/is not an activeflow id/);
    const missing = await raw(`activeflow.v1.${randomUUID()}.get`, encodeJson({}));
    expect(missing.body.error.code).toBe('not_found');
    expect(missing.headers?.get('Nats-Service-Error-Code')).toBe('404');
    expect(await env.client.get(af.id)).toMatchObject({ status: 'running', execute_count: 0 });
  });

  it('a create with bad fields names them and stores nothing', async () => {
    const id = randomUUID();
    const e = await rejects(env.client.createActiveflow({ id, customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk', option: { text: 5 } }] }));
    expect([e.code, e.message]).toEqual(['invalid_argument', expect.stringMatching(/actions\.0\.option\.text/)]);
    expect((await rejects(env.client.get(id))).code).toBe('not_found');
  });
});
