/**
 * A handle the registry forgets (its shard's lease lost, or handed over) finishes the request in
 * hand, and refuses the ones queued behind it as retryable: run on the old handle, they would load
 * and move the activeflow beside the new handle the registry makes for the next request, and each
 * would take the other's writes for its own (a read answered from the stale one). Found by the
 * cluster simulation (test/sim/cluster-sim.ts; the mutation `keep-forgotten`).
 */
import type { Msg } from '@nats-io/transport-node';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { SUBJECTS } from '../../src/api/subjects.js';
import { decodeJson, encodeJson } from '../../src/store/codec.js';
import { CUSTOMER } from '../helpers/engine.js';
import { SHARDS, useNode } from '../helpers/nats.js';
import { shardOf } from '../../src/nats/shard-mapping.js';
import { ActiveflowIndex } from '../../src/store/activeflow-index.js';
import { CustomerQuotas } from '../../src/quota/customer-quotas.js';

const env = useNode({ serviceTimeoutMs: 10_000 });
afterEach(() => vi.restoreAllMocks());

/** The customers whose running slot is given back, one entry per release, as they happen. */
function countReleases(): string[] {
  const released: string[] = [];
  const release = CustomerQuotas.prototype.release;
  vi.spyOn(CustomerQuotas.prototype, 'release').mockImplementation(function (this: CustomerQuotas, customer: string) {
    released.push(customer);
    return release.call(this, customer);
  });
  return released;
}

describe('a forgotten actor handle', () => {
  it('finishes the request in hand and refuses the queued ones as retryable; the next request reaches a new handle', async () => {
    const held: Msg[] = [];
    const sub = env.nc.subscribe('activeflow.service.queue_join', {
      callback: (_e, m) => {
        held.push(m);
      },
    });
    await env.nc.flush();
    const af = await env.client.createActiveflow({
      customer_id: CUSTOMER,
      reference_type: 'call',
      actions: [
        { type: 'queue_join', option: { queue_id: '9e000000-0000-4000-8000-000000000001' } },
        { type: 'talk', option: { text: 'after' } },
      ],
    });
    // In hand: a move waiting on the queue service.
    const moving = env.client.next(af.id, af.current_action.id);
    await expect.poll(() => held.length).toBe(1);
    // Queued behind it: a get, sent once (no retry), so its own answer is seen.
    const queued = env.nc.request(SUBJECTS.activeflowVerb(af.id, 'get'), encodeJson({ customer_id: CUSTOMER }), { timeout: 10_000 });
    await new Promise((r) => setTimeout(r, 100)); // it reaches the handle's queue
    env.node.registry.drop(shardOf(af.id, SHARDS)); // the shard's lease lost, as the ownership shell does
    held[0]!.respond(encodeJson({ service_id: '5e000000-0000-4000-8000-0000000000aa', push_actions: [{ type: 'talk', option: { text: 'queued' } }] }));
    sub.unsubscribe();

    expect((await moving).option).toEqual({ text: 'queued' }); // the request in hand finished
    const answer = decodeJson((await queued).data) as { error?: { code: string } };
    expect(answer.error?.code).toBe('unavailable'); // refused, retryable
    // The next request loads a new handle, which holds the move the old one made.
    expect((await env.client.get(af.id)).current_action.option).toEqual({ text: 'queued' });
  });

  it("a shard's lost lease or handover forgets that shard's handles only", async () => {
    const made = await Promise.all(Array.from({ length: 12 }, () => env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] })));
    const [first, ...others] = made;
    const shard = shardOf(first!.id, SHARDS);
    const elsewhere = others.filter((a) => shardOf(a.id, SHARDS) !== shard);
    expect(elsewhere.length).toBeGreaterThan(0); // 11 random ids: all in one shard of 256 has odds of 1 in 256^11
    env.node.registry.drop(shard);
    expect(env.node.registry.peek(first!.id)).toBeUndefined();
    for (const a of elsewhere) expect(env.node.registry.peek(a.id)).toBeDefined();
    const second = elsewhere[0]!;
    await env.node.registry.release(shardOf(second.id, SHARDS));
    expect(env.node.registry.peek(second.id)).toBeUndefined();
    for (const a of elsewhere.filter((x) => shardOf(x.id, SHARDS) !== shardOf(second.id, SHARDS))) expect(env.node.registry.peek(a.id)).toBeDefined();
    // Each loads again on its next request, unchanged.
    for (const a of [first!, second]) expect((await env.client.get(a.id)).id).toBe(a.id);
  });

  it("leaves an unfinished end to the shard's next handle: the running slot is given back once", async () => {
    const released = countReleases();
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    // The end's index step fails once: the end stays pending, and its handle tries it again later.
    vi.spyOn(ActiveflowIndex.prototype, 'record').mockRejectedValueOnce(new Error('NATS away for a moment'));
    await env.client.stop(af.id);
    await new Promise((r) => setTimeout(r, 30)); // the end's last steps run after the reply
    expect(released).toEqual([]);
    // Before that retry (250 ms), the shard's lease is lost; the next request loads a new handle,
    // which finishes the end (one slot back).
    env.node.registry.drop(shardOf(af.id, SHARDS));
    expect((await env.client.get(af.id)).status).toBe('ended');
    expect(released).toEqual([CUSTOMER]);
    // The forgotten handle's retry comes and goes without giving the slot back a second time.
    await new Promise((r) => setTimeout(r, 600));
    expect(released).toEqual([CUSTOMER]);
  });

  it('a handover tries an end whose last steps failed once more before it lets the handle go', async () => {
    const released = countReleases();
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
    vi.spyOn(ActiveflowIndex.prototype, 'record').mockRejectedValueOnce(new Error('NATS away for a moment'));
    await env.client.stop(af.id);
    await new Promise((r) => setTimeout(r, 30)); // the end's last steps ran, and failed
    expect(released).toEqual([]);
    // The shard handed over (as a stopping node does) before the end's retry is due (250 ms): once
    // released, the end is finished, by this handle, without waiting for anyone to load it again.
    await env.node.registry.release(shardOf(af.id, SHARDS));
    expect(released).toEqual([CUSTOMER]);
    const got = await env.nc.request(SUBJECTS.activeflowVerb(af.id, 'get'), encodeJson({ customer_id: CUSTOMER }), { timeout: 10_000 });
    expect((decodeJson(got.data) as { status?: string }).status).toBe('ended');
    const listed = await env.client.listActiveflows({ customer_id: CUSTOMER, status: 'running' });
    expect(listed.result.map((a) => a.id)).not.toContain(af.id);
  });
});
