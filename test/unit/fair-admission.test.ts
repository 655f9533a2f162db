/** Fair admission: a bounded number run; waiting requests are served round robin per customer. */
import { describe, expect, it } from 'vitest';
import { FairAdmission } from '../../src/quota/fair-admission.js';

/** A task that finishes when told to, recording when it started. */
function gate(log: string[], name: string): { task: () => Promise<string>; open: () => void } {
  let open!: () => void;
  const done = new Promise<void>((r) => (open = r));
  return {
    task: async () => {
      log.push(name);
      await done;
      return name;
    },
    open,
  };
}

/** Submits gated tasks by name: what started (`log`), and how to finish each (`gates`). */
function gated(a: FairAdmission) {
  const log: string[] = [];
  const gates = new Map<string, () => void>();
  const submit = (customer: string, name: string) => {
    const g = gate(log, name);
    gates.set(name, g.open);
    return a.run(() => customer, g.task);
  };
  return { log, gates, submit };
}

describe('FairAdmission', () => {
  it('runs at once below the concurrency', async () => {
    const a = new FairAdmission({ concurrency: 2, perCustomer: 2, maxQueuedPerCustomer: 10 });
    const log: string[] = [];
    const g1 = gate(log, '1');
    const g2 = gate(log, '2');
    const p = [a.run(() => 'a', g1.task), a.run(() => 'a', g2.task)];
    expect(log).toEqual(['1', '2']);
    g1.open();
    g2.open();
    expect(await Promise.all(p)).toEqual(['1', '2']);
  });

  it('a customer alone uses every place; once another is active it is held to its share, and the other goes first', async () => {
    let now = 0;
    const a = new FairAdmission({ concurrency: 6, perCustomer: 2, maxQueuedPerCustomer: 100, activeWindowMs: 1_000 }, () => now);
    const { log, gates, submit } = gated(a);
    const all = ['f1', 'f2', 'f3', 'f4'].map((n) => submit('flood', n));
    expect(log).toEqual(['f1', 'f2', 'f3', 'f4']); // alone: past its share of 2
    all.push(submit('quiet', 'q1'));
    expect(log.at(-1)).toBe('q1'); // a free place: the quiet one starts at once
    all.push(submit('flood', 'f5'));
    expect(a.queued).toBe(1); // 6 places, 5 used, but the flood is over its share while quiet is active
    gates.get('f1')!();
    gates.get('f2')!();
    await new Promise((r) => setImmediate(r));
    expect(log).not.toContain('f5'); // places are free, but the flood still runs its share (f3, f4)
    gates.get('f3')!();
    await new Promise((r) => setImmediate(r));
    expect(log).toContain('f5'); // one running, below its share of 2: its turn came
    // The quiet customer goes quiet: after the window the flood may use every place again.
    now = 2_000;
    for (let i = 6; i <= 9; i++) all.push(submit('flood', `f${i}`));
    // f4..f8 run (5, past its share of 2) beside q1; f9 waits only for the node's 6 places.
    expect(log.filter((n) => n.startsWith('f')).length).toBe(8);
    expect(a.queued).toBe(1);
    for (const open of gates.values()) open();
    await Promise.all(all);
  });

  it("serves a quiet customer within a turn, however long a flooding customer's queue is", async () => {
    const a = new FairAdmission({ concurrency: 1, perCustomer: 1, maxQueuedPerCustomer: 1_000 });
    const { log, gates, submit } = gated(a);
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
    const a = new FairAdmission({ concurrency: 1, perCustomer: 1, maxQueuedPerCustomer: 2 });
    const log: string[] = [];
    const first = gate(log, 'x');
    const running = a.run(() => 'a', first.task);
    const queued = [
      a.run(
        () => 'a',
        async () => 'a1',
      ),
      a.run(
        () => 'a',
        async () => 'a2',
      ),
    ];
    await expect(
      a.run(
        () => 'a',
        async () => 'a3',
      ),
    ).rejects.toMatchObject({ code: 'limit_exceeded', quota: 'pending_requests' });
    const other = a.run(
      () => 'b',
      async () => 'b1',
    );
    first.open();
    expect(await Promise.all([running, ...queued, other])).toEqual(['x', 'a1', 'a2', 'b1']);
  });

  it('a failing task frees its place', async () => {
    const a = new FairAdmission({ concurrency: 1, perCustomer: 1, maxQueuedPerCustomer: 5 });
    const failing = a.run(
      () => 'a',
      async () => {
        throw new Error('boom');
      },
    );
    const next = a.run(
      () => 'a',
      async () => 'ok',
    );
    await expect(failing).rejects.toThrow('boom');
    expect(await next).toBe('ok');
  });
});
