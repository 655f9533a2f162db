/**
 * The ownership core on its own: events in, commands out, time as an input. Each test drives one
 * rule the cluster's safety rests on; the simulation (cluster-sim.test.ts) drives them all at once.
 */
import { describe, expect, it } from 'vitest';
import {
  creationShards,
  initialView,
  nextWake,
  type OwnershipCommand,
  type OwnershipEvent,
  type OwnershipView,
  ownershipConfig,
  serves,
  servingShards,
  step,
  takeable,
} from '../../src/cluster/ownership-core.js';

const TTL = 300;
const SAFETY = 75;

/** A node `a` alone (or beside `others`), started at t=0 with its membership joined. */
function started(others: string[] = [], shardCount = 4): { view: OwnershipView; commands: OwnershipCommand[] } {
  let view = initialView(ownershipConfig('a', shardCount, TTL), 0);
  view = step(view, { type: 'membership', joined: true }, 0).view;
  return step(view, { type: 'started', live: ['a', ...others], drained: [], holders: new Map() }, 0);
}

function run(view: OwnershipView, event: OwnershipEvent, now: number): { view: OwnershipView; commands: OwnershipCommand[] } {
  return step(view, event, now);
}

const ofType = <T extends OwnershipCommand['type']>(cs: OwnershipCommand[], type: T) => cs.filter((c): c is Extract<OwnershipCommand, { type: T }> => c.type === type);

describe('the ownership core', () => {
  it('counts for its share of the creation rate the shards on their way to it, and only what it serves once it drains', () => {
    let { view, commands } = started(['b'], 64);
    const claims = ofType(commands, 'claim').map((c) => c.shard);
    expect(claims.length).toBeGreaterThan(10); // its half of 64, a few at a time
    // Serving none yet, it counts the target's: a newcomer's buckets are not sized at nothing.
    const targeted = view.target.filter((n) => n === 'a').length;
    expect(targeted).toBeGreaterThan(20);
    expect(targeted).toBeLessThan(44);
    expect(servingShards(view)).toEqual([]);
    expect(creationShards(view)).toBe(targeted);
    view = run(view, { type: 'claimed', shard: claims[0]!, sentAt: 1, granted: { revision: 5, previous: null } }, 2).view;
    expect(creationShards(view)).toBe(targeted);
    // Drained, the target gives it nothing: it counts what it serves, here nothing (its one shard is on its way out).
    view = run(view, { type: 'drain', node: 'a', on: true }, 3).view;
    expect(view.target.filter((n) => n === 'a')).toEqual([]);
    expect(servingShards(view)).toEqual([]);
    expect(creationShards(view)).toBe(0);
  });

  it('claims the shards the target gives it, and serves one only once its claim is granted', () => {
    const { view, commands } = started();
    expect(ofType(commands, 'claim').map((c) => c.shard)).toEqual([0, 1, 2, 3]);
    expect(serves(view, 0, 1)).toBe(false);
    const r = run(view, { type: 'claimed', shard: 0, sentAt: 10, granted: { revision: 5, previous: null } }, 12);
    expect(serves(r.view, 0, 12)).toBe(true);
    expect(ofType(r.commands, 'serve')).toEqual([expect.objectContaining({ shard: 0, sweep: true, handedOver: false })]);
  });

  it('counts a lease valid from when its write was sent, not when the answer came, and stops serving before the servers can expire it', () => {
    let { view } = started();
    view = run(view, { type: 'claimed', shard: 0, sentAt: 10, granted: { revision: 5, previous: null } }, 60).view;
    // Valid until sentAt + TTL - safety = 235, whatever the answer's delay.
    expect(serves(view, 0, 234)).toBe(true);
    expect(serves(view, 0, 235)).toBe(false);
    // The renewal is due TTL/3 after the claim was sent; without an answer the lease is dropped at 235.
    const renew = run(view, { type: 'tick' }, 110);
    expect(ofType(renew.commands, 'renew')).toEqual([expect.objectContaining({ shard: 0, revision: 5, sentAt: 110 })]);
    const dropped = run(renew.view, { type: 'tick' }, 235);
    expect(ofType(dropped.commands, 'drop')).toEqual([expect.objectContaining({ shard: 0 })]);
    // Confirmed: valid until 110 + 225.
    const confirmed = run(renew.view, { type: 'renewed', shard: 0, sentAt: 110, revision: 9 }, 230);
    expect(serves(confirmed.view, 0, 334)).toBe(true);
    expect(serves(confirmed.view, 0, 335)).toBe(false);
  });

  it('drops a shard at once when a renewal is refused', () => {
    let { view } = started();
    view = run(view, { type: 'claimed', shard: 1, sentAt: 0, granted: { revision: 5, previous: null } }, 1).view;
    view = run(view, { type: 'tick' }, 100).view;
    const r = run(view, { type: 'renewed', shard: 1, sentAt: 100, revision: null }, 101);
    expect(ofType(r.commands, 'drop')).toEqual([{ type: 'drop', shard: 1, reason: 'renewal refused' }]);
    expect(serves(r.view, 1, 101)).toBe(false);
  });

  it('takes renewals answered together as one event, with the outcome of each in turn when no deadline passed', () => {
    let { view } = started();
    for (const shard of [0, 1, 2, 3]) view = run(view, { type: 'claimed', shard, sentAt: 0, granted: { revision: 10 + shard, previous: null } }, 1).view;
    const due = run(view, { type: 'tick' }, 100);
    const renewals = ofType(due.commands, 'renew').map((c) => ({ shard: c.shard, sentAt: c.sentAt, revision: c.shard === 2 ? null : 20 + c.shard }));
    expect(renewals.map((r) => r.shard)).toEqual([0, 1, 2, 3]);
    const together = run(due.view, { type: 'renewals', results: renewals }, 103);
    let apart = due.view;
    const apartCommands: OwnershipCommand[] = [];
    for (const r of renewals) {
      const one = run(apart, { type: 'renewed', ...r }, 103);
      apart = one.view;
      apartCommands.push(...one.commands);
    }
    expect(together.commands).toEqual(apartCommands);
    // the refused one is dropped, and claimed again at once (the target still names this node)
    expect(together.commands.map((c) => `${c.type} ${'shard' in c ? c.shard : ''}`)).toEqual(['drop 2', 'claim 2']);
    expect(together.view).toEqual(apart);
    expect(servingShards(together.view)).toEqual([0, 1, 3]);
    expect(serves(together.view, 0, 100 + TTL - SAFETY - 1)).toBe(true);
  });

  it('keeps a shard past its deadline whose own confirmed renewal is in the batch (one by one, an earlier answer could drop it first)', () => {
    let { view } = started();
    for (const shard of [0, 1]) view = run(view, { type: 'claimed', shard, sentAt: 0, granted: { revision: 10 + shard, previous: null } }, 1).view;
    const due = run(view, { type: 'tick' }, 100); // renewals sent at 100; the leases ran to 0 + TTL - SAFETY = 225
    const results = [0, 1].map((shard) => ({ shard, sentAt: 100, revision: 20 + shard }));
    const late = TTL - SAFETY + 5;
    expect(serves(due.view, 1, late)).toBe(false);
    const together = run(due.view, { type: 'renewals', results }, late);
    expect(ofType(together.commands, 'drop')).toEqual([]);
    expect(servingShards(together.view)).toEqual([0, 1]);
    expect(serves(together.view, 1, 100 + TTL - SAFETY - 1)).toBe(true);
    expect(serves(together.view, 1, 100 + TTL - SAFETY)).toBe(false);
    // one by one: the first answer's decision drops shard 1, whose answer had not come yet
    const first = run(due.view, { type: 'renewed', ...results[0]! }, late);
    expect(ofType(first.commands, 'drop')).toEqual([{ type: 'drop', shard: 1, reason: 'no renewal confirmed before the safety deadline' }]);
  });

  it('leaves the view it was given as it was (its maps are copied on change only, and not at all when nothing changed)', () => {
    let { view } = started();
    for (const shard of [0, 1, 2, 3]) view = run(view, { type: 'claimed', shard, sentAt: 0, granted: { revision: 10 + shard, previous: null } }, 1).view;
    const before = structuredClone({ ...view, cfg: undefined });
    const shards = view.shards;
    const due = run(view, { type: 'tick' }, 100);
    run(due.view, { type: 'renewed', shard: 1, sentAt: 100, revision: null }, 101);
    expect(structuredClone({ ...view, cfg: undefined })).toEqual(before);
    expect(view.shards).toBe(shards);
    expect(due.view.shards).not.toBe(shards); // the renewals in flight changed each shard's lease
    const idle = run(due.view, { type: 'tick' }, 102);
    expect(idle.commands).toEqual([]);
    expect(idle.view.shards).toBe(due.view.shards);
    expect(idle.view.holders).toBe(due.view.holders);
  });

  it('serves a lease transferred to it only once its own renewal confirms it (an announcement can be read late)', () => {
    let { view } = started(['b']);
    const shard = view.target.indexOf('a');
    for (const [s, v] of view.shards) if (v.phase === 'claiming') view = run(view, { type: 'claimed', shard: s, sentAt: 0, granted: null }, 1).view;
    const marker = { node_id: 'a', acquired_at: new Date(0).toISOString(), transferred_from: 'b', stopped_at: new Date(0).toISOString() };
    const adopted = run(view, { type: 'announced', shard, revision: 40, marker }, 5_000);
    expect(ofType(adopted.commands, 'serve')).toHaveLength(1);
    expect(ofType(adopted.commands, 'renew')).toEqual([expect.objectContaining({ shard, revision: 40, sentAt: 5_000 })]);
    expect(serves(adopted.view, shard, 5_001)).toBe(false);
    const refused = run(adopted.view, { type: 'renewed', shard, sentAt: 5_000, revision: null }, 5_002);
    expect(serves(refused.view, shard, 5_002)).toBe(false);
    expect(ofType(refused.commands, 'drop')).toHaveLength(1);
    const confirmed = run(adopted.view, { type: 'renewed', shard, sentAt: 5_000, revision: 41 }, 5_002);
    expect(serves(confirmed.view, shard, 5_002)).toBe(true);
    expect(serves(confirmed.view, shard, 5_000 + TTL - SAFETY)).toBe(false);
  });

  it('hands a shard over only after its in-flight requests settled: settle, then one transfer write, then an announcement', () => {
    let { view } = started();
    for (const shard of [0, 1, 2, 3]) view = run(view, { type: 'claimed', shard, sentAt: 0, granted: { revision: 10 + shard, previous: null } }, 1).view;
    expect(servingShards(view)).toEqual([0, 1, 2, 3]);
    // b joins: the shards it wins are settled first, two at a time.
    const joined = run(view, { type: 'member', node: 'b', up: true }, 20);
    const toB = joined.view.target.flatMap((t, s) => (t === 'b' ? [s] : []));
    expect(toB.length).toBeGreaterThan(0);
    const settling = ofType(joined.commands, 'settle').map((c) => c.shard);
    expect(settling).toEqual(toB.slice(0, 2));
    expect(ofType(joined.commands, 'release')).toEqual([]);
    const shard = settling[0]!;
    expect(serves(joined.view, shard, 21)).toBe(false);
    const settled = run(joined.view, { type: 'settled', shard }, 25);
    const release = ofType(settled.commands, 'release');
    expect(release).toEqual([expect.objectContaining({ shard, revision: 10 + shard, marker: expect.objectContaining({ node_id: 'b', transferred_from: 'a' }) })]);
    const done = run(settled.view, { type: 'release_done', shard, revision: 99 }, 27);
    expect(ofType(done.commands, 'announce')).toEqual([{ type: 'announce', shard, revision: 99, marker: release[0]!.marker! }]);
    expect(done.view.shards.has(shard)).toBe(false);
  });

  it('marks a shard taken without a handover unfenced until its sweep, and one handed over not', () => {
    let { view } = started();
    view = run(view, { type: 'claimed', shard: 0, sentAt: 0, granted: { revision: 3, previous: null } }, 1).view;
    const marker = { node_id: 'b', acquired_at: new Date(0).toISOString(), released_at: new Date(0).toISOString() };
    view = run(view, { type: 'claimed', shard: 1, sentAt: 0, granted: { revision: 4, previous: marker } }, 1).view;
    const s0 = view.shards.get(0);
    const s1 = view.shards.get(1);
    expect(s0?.phase === 'serving' && s0.unfenced).toBe(true);
    expect(s1?.phase === 'serving' && s1.unfenced).toBe(false);
    view = run(view, { type: 'swept', shard: 0, ok: true, attempt: 0 }, 50).view;
    const swept = view.shards.get(0);
    expect(swept?.phase === 'serving' && swept.unfenced).toBe(false);
  });

  it('sweeps a shard again, later each time, while its sweep fails and it is served unfenced; then no more', () => {
    let { view } = started();
    view = run(view, { type: 'claimed', shard: 0, sentAt: 0, granted: { revision: 3, previous: null } }, 1).view;
    let r = run(view, { type: 'swept', shard: 0, ok: false, attempt: 0 }, 50);
    expect(ofType(r.commands, 'sweep')).toEqual([{ type: 'sweep', shard: 0, afterMs: 500, attempt: 1 }]);
    r = run(r.view, { type: 'swept', shard: 0, ok: false, attempt: 1 }, 51);
    expect(ofType(r.commands, 'sweep')).toEqual([{ type: 'sweep', shard: 0, afterMs: 1_000, attempt: 2 }]);
    expect(ofType(run(r.view, { type: 'swept', shard: 0, ok: false, attempt: 12 }, 52).commands, 'sweep')[0]?.afterMs).toBe(30_000);
    r = run(r.view, { type: 'swept', shard: 0, ok: true, attempt: 2 }, 53);
    const s0 = r.view.shards.get(0);
    expect(s0?.phase).toBe('serving');
    expect(s0?.phase === 'serving' && s0.unfenced).toBe(false);
    // swept (fenced) or no longer served: a late failure asks for nothing
    expect(ofType(run(r.view, { type: 'swept', shard: 0, ok: false, attempt: 0 }, 54).commands, 'sweep')).toEqual([]);
    expect(ofType(run(r.view, { type: 'swept', shard: 5, ok: false, attempt: 0 }, 54).commands, 'sweep')).toEqual([]);
  });

  it("tries a suspected node's shards at once and every suspectRetryMs, by timer, until its lease runs out", () => {
    let { view } = started(['b']);
    const mine = view.target.flatMap((t, s) => (t === 'a' ? [s] : []));
    for (const shard of mine) view = run(view, { type: 'claimed', shard, sentAt: 0, granted: { revision: 10 + shard, previous: null } }, 1).view;
    const theirs = view.target.flatMap((t, s) => (t === 'b' ? [s] : []));
    // b holds its shards: known from the first listing.
    view = { ...view, holders: new Map(theirs.map((s) => [s, 'b'] as const)) };
    const suspected = run(view, { type: 'suspect', node: 'b', conn: null }, 100);
    expect(ofType(suspected.commands, 'claim').map((c) => c.shard)).toEqual(theirs);
    let v = suspected.view;
    for (const shard of theirs) v = run(v, { type: 'claimed', shard, sentAt: 100, granted: null }, 102).view;
    // Its own renewals and the listing went out at 100; what wakes it next is the retry.
    expect(nextWake(v)).toBe(152);
    const retried = run(v, { type: 'tick' }, 152);
    expect(ofType(retried.commands, 'claim').map((c) => c.shard)).toEqual(theirs);
  });

  it('on stop hands every shard over and then says it stopped; abandon drops them without a write', () => {
    let { view } = started(['b']);
    const mine = view.target.flatMap((t, s) => (t === 'a' ? [s] : []));
    for (const shard of mine) view = run(view, { type: 'claimed', shard, sentAt: 0, granted: { revision: 10 + shard, previous: null } }, 1).view;
    const abandoned = run(view, { type: 'abandon' }, 5);
    expect(ofType(abandoned.commands, 'drop').map((c) => c.shard)).toEqual(mine);
    expect(ofType(abandoned.commands, 'release')).toEqual([]);
    expect(ofType(abandoned.commands, 'stopped')).toHaveLength(1);

    let r = run(view, { type: 'stop' }, 5);
    const all: OwnershipCommand[] = [...r.commands];
    for (let t = 6; t < 100 && !r.view.stopped; t++) {
      for (const c of ofType(r.commands, 'settle')) r = run(r.view, { type: 'settled', shard: c.shard }, t);
      all.push(...r.commands);
      for (const c of ofType(r.commands, 'release')) {
        r = run(r.view, { type: 'release_done', shard: c.shard, revision: 100 + c.shard }, t);
        all.push(...r.commands);
      }
    }
    expect(r.view.stopped).toBe(true);
    expect(
      ofType(all, 'release')
        .map((c) => [c.shard, c.marker?.node_id])
        .sort(),
    ).toEqual(mine.map((s) => [s, 'b']));
    expect(ofType(all, 'stopped')).toHaveLength(1);
  });
});

describe('the ownership core and lost connections', () => {
  it("takes a suspect's leases at once when they were written on the connection the servers saw close, and only those", () => {
    let { view } = started(['b']);
    for (const [s, v] of view.shards) if (v.phase === 'claiming') view = run(view, { type: 'claimed', shard: s, sentAt: 0, granted: null }, 1).view;
    const theirs = view.target.flatMap((t, s) => (t === 'b' ? [s] : []));
    view = { ...view, holders: new Map(theirs.map((s) => [s, 'b'] as const)) };
    const r = run(view, { type: 'suspect', node: 'b', conn: 'S1/7' }, 10);
    expect(ofType(r.commands, 'claim').map((c) => [c.shard, c.steal])).toEqual(theirs.map((s) => [s, { node: 'b', conn: 'S1/7' }]));
    // What the shell then takes: the lease written on that connection, not one written on a newer one.
    expect(takeable({ node_id: 'b', acquired_at: '', conn: 'S1/7' }, 'a', { node: 'b', conn: 'S1/7' })).toBe(true);
    expect(takeable({ node_id: 'b', acquired_at: '', conn: 'S2/9' }, 'a', { node: 'b', conn: 'S1/7' })).toBe(false);
    expect(takeable({ node_id: 'b', acquired_at: '' }, 'a', null)).toBe(false);
    // A stolen lease is served with every activeflow fenced first.
    const granted = run(r.view, { type: 'claimed', shard: theirs[0]!, sentAt: 10, granted: { revision: 50, previous: { node_id: 'b', acquired_at: '', conn: 'S1/7' } } }, 12);
    const s = granted.view.shards.get(theirs[0]!);
    expect(s?.phase === 'serving' && s.unfenced).toBe(true);
  });

  it('stops serving when its own connection is lost, claims nothing until it is back, then serves each shard once a renewal on the new connection confirms it', () => {
    let { view } = started();
    view = run(view, { type: 'claimed', shard: 0, sentAt: 0, granted: { revision: 3, previous: null } }, 1).view;
    view = run(view, { type: 'claimed', shard: 1, sentAt: 0, granted: null }, 1).view;
    const lost = run(view, { type: 'disconnected' }, 5);
    expect(ofType(lost.commands, 'drop')).toEqual([]);
    expect(ofType(lost.commands, 'claim')).toEqual([]);
    expect(serves(lost.view, 0, 5)).toBe(false);
    // No renewal goes out while disconnected, even when one is due.
    expect(ofType(run(lost.view, { type: 'tick' }, 150).commands, 'renew')).toEqual([]);
    // The claims of shards 2 and 3 were on their way: granted after the loss, they wait for a renewal.
    const late = run(lost.view, { type: 'claimed', shard: 2, sentAt: 0, granted: { revision: 9, previous: null } }, 6);
    expect(serves(late.view, 2, 6)).toBe(false);
    const back = run(late.view, { type: 'reconnected' }, 7);
    expect(ofType(back.commands, 'claim').map((c) => c.shard)).toEqual([1]);
    // Shard 0, held through the loss, is renewed on the new connection and served once confirmed;
    // refused (its lease was taken from the closed connection), it is dropped.
    const renew0 = ofType(back.commands, 'renew').find((c) => c.shard === 0)!;
    expect(renew0).toEqual(expect.objectContaining({ revision: 3, sentAt: 7 }));
    expect(serves(back.view, 0, 7)).toBe(false);
    expect(serves(run(back.view, { type: 'renewed', shard: 0, sentAt: 7, revision: 4 }, 8).view, 0, 8)).toBe(true);
    expect(ofType(run(back.view, { type: 'renewed', shard: 0, sentAt: 7, revision: null }, 8).commands, 'drop')).toHaveLength(1);
    expect(ofType(late.commands, 'renew')).toEqual([]); // not while disconnected
    const renewal = ofType(back.commands, 'renew').find((c) => c.shard === 2)!;
    const confirmed = run(back.view, { type: 'renewed', shard: 2, sentAt: renewal.sentAt, revision: 10 }, 8);
    expect(serves(confirmed.view, 2, 8)).toBe(true);
    // Its own lease from before the loss is its to take again (fenced: that tenure ended without a handover).
    expect(takeable({ node_id: 'a', acquired_at: '', conn: 'old' }, 'a')).toBe(true);
  });
});
