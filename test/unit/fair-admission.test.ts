/** Fair admission: a bounded number run; waiting requests are served round robin per customer. */
import { describe, expect, it } from 'vitest';
import { FairAdmission } from '../../src/quota/fair-admission.js';

/** A task that finishes when told to, recording when it started. */
function gate(log: string[], name: string): { task: () => Promise<string>; open: () => void } {
  let open!: () => void;
  const done = new Promise<void>((r) => (open = r));
  return { task: async () => { log.push(name); await done; return name; }, open };
}

describe('FairAdmission', () => {
  it('runs at once below the concurrency, without asking whose request it is', async () => {
    const a = new FairAdmission({ concurrency: 2, maxQueuedPerCustomer: 10 });
    let asked = 0;
    const who = () => { asked++; return 'a'; };
    const log: string[] = [];
    const g1 = gate(log, '1');
    const g2 = gate(log, '2');
    const p = [a.run(who, g1.task), a.run(who, g2.task)];
    expect(log).toEqual(['1', '2']);
    expect(asked).toBe(0);
    g1.open(); g2.open();
    expect(await Promise.all(p)).toEqual(['1', '2']);
  });

  it('serves a quiet customer within a turn, however long a flooding customer\'s queue is', async () => {
    const a = new FairAdmission({ concurrency: 1, maxQueuedPerCustomer: 1_000 });
    const log: string[] = [];
    const gates = new Map<string, () => void>();
    const submit = (customer: string, name: string) => {
      const g = gate(log, name);
      gates.set(name, g.open);
      return a.run(() => customer, g.task);
    };
    const all: Promise<string>[] = [submit('flood', 'f0')];
    for (let i = 1; i <= 100; i++) all.push(submit('flood', `f${i}`));
    all.push(submit('quiet', 'q1'));
    expect(a.queued).toBe(101);
    // Finish whatever runs, one at a time, and watch the order they start in.
    for (let i = 0; i < 4; i++) {
      gates.get(log.at(-1)!)!();
      await new Promise((r) => setImmediate(r));
    }
    expect(log.slice(0, 4)).toEqual(['f0', 'f1', 'q1', 'f2']);
    for (const name of [...gates.keys()]) gates.get(name)!();
    while (log.length < 102) {
      for (const open of gates.values()) open();
      await new Promise((r) => setImmediate(r));
    }
    await Promise.all(all);
    expect(a.queued).toBe(0);
  });

  it('refuses a customer whose queue is full with limit_exceeded (pending_requests), and no one else', async () => {
    const a = new FairAdmission({ concurrency: 1, maxQueuedPerCustomer: 2 });
    const log: string[] = [];
    const first = gate(log, 'x');
    const running = a.run(() => 'a', first.task);
    const queued = [a.run(() => 'a', async () => 'a1'), a.run(() => 'a', async () => 'a2')];
    await expect(a.run(() => 'a', async () => 'a3')).rejects.toMatchObject({ code: 'limit_exceeded', quota: 'pending_requests' });
    const other = a.run(() => 'b', async () => 'b1');
    first.open();
    expect(await Promise.all([running, ...queued, other])).toEqual(['x', 'a1', 'a2', 'b1']);
  });

  it('a failing task frees its place', async () => {
    const a = new FairAdmission({ concurrency: 1, maxQueuedPerCustomer: 5 });
    const failing = a.run(() => 'a', async () => { throw new Error('boom'); });
    const next = a.run(() => 'a', async () => 'ok');
    await expect(failing).rejects.toThrow('boom');
    expect(await next).toBe('ok');
  });
});
