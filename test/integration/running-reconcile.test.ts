/**
 * The running counts are corrected to what runs (src/quota/running-reconcile.ts): a count a crash
 * left too low is raised, one too high (as the 2.9 server's revision bug left them) is lowered once
 * nothing moves, and busy creations and ends meanwhile never make it wrong at a quiet point.
 */
import { randomUUID } from 'node:crypto';
import { Kvm } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import { SUBJECTS } from '../../src/api/subjects.js';
import { useNode } from '../helpers/nats.js';

const env = useNode({ runningReconcileMs: 200 });
const TALK = [{ type: 'talk', option: { text: 'hi' } }];

const usage = async (customer_id: string) => (await env.client.call<{ usage: { running_activeflows: number } }>(SUBJECTS.adminQuotas('get'), { customer_id })).usage.running_activeflows;
const corrections = (direction: 'up' | 'down') => env.node.metrics.runningCountCorrections.get().then((m) => m.values.find((v) => v.labels.direction === direction)?.value ?? 0);

/** What a crash (or an old server's bug) leaves: the counter set to `running`, behind the node's back. */
async function tamper(customer: string, running: number): Promise<void> {
  const kv = await new Kvm(env.nc).open('af_quotas');
  await kv.put(`running.${customer}`, JSON.stringify({ running }));
}

describe('running count reconcile', () => {
  it('raises a count a crash left too low, at once', async () => {
    const c = randomUUID();
    for (let i = 0; i < 3; i++) await env.client.createActiveflow({ customer_id: c, reference_type: 'call', actions: TALK });
    const before = await corrections('up');
    await tamper(c, 1);
    await expect.poll(() => usage(c), { timeout: 5_000 }).toBe(3);
    expect(await corrections('up')).toBe(before + 2);
  });

  it('lowers a count too high once two checks saw nothing move, so a customer is not held below its quota', async () => {
    const c = randomUUID();
    for (let i = 0; i < 2; i++) await env.client.createActiveflow({ customer_id: c, reference_type: 'call', actions: TALK });
    const before = await corrections('down');
    await tamper(c, 9);
    await expect.poll(() => usage(c), { timeout: 5_000 }).toBe(2);
    expect(await corrections('down')).toBe(before + 7);
  });

  it('creations and ends racing the reconcile leave the count exact at the quiet point after', async () => {
    const c = randomUUID();
    const [up, down] = [await corrections('up'), await corrections('down')];
    const made = await Promise.all(Array.from({ length: 30 }, () => env.client.createActiveflow({ customer_id: c, reference_type: 'call', actions: TALK })));
    await Promise.all(made.slice(0, 12).map((af) => env.client.stop(af.id)));
    await Promise.all(Array.from({ length: 10 }, () => env.client.createActiveflow({ customer_id: c, reference_type: 'call', actions: TALK })));
    const runningNow = async () => (await env.client.listActiveflows({ customer_id: c, status: 'running', page_size: 100 })).result.length;
    await expect.poll(runningNow, { timeout: 5_000 }).toBe(28);
    // Quiet: several reconciles pass, and the count is the truth (and stays it).
    await new Promise((r) => setTimeout(r, 1_000));
    expect(await usage(c)).toBe(28);
    // Nothing was off, so nothing was corrected: no in-flight create or end was taken for drift.
    expect([await corrections('up'), await corrections('down')]).toEqual([up, down]);
  });
});
