/**
 * A store written before the journal (format 1: a snapshot per move in af_running, VoIPBIN's full
 * events in ACTIVEFLOW_EVENTS) is read as it is: no migration command. test/fixtures/store-v1.json
 * was written by that version (running, variables set, ended, and one whose last event never
 * reached the stream). Each activeflow's first load starts its journal from its snapshot.
 */
import { readFileSync } from 'node:fs';
import { headers } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { StreamEvent } from '../../machines/index.js';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import type { Storage } from '../../src/store/buckets.js';
import { currentState } from '../../src/store/current-state.js';
import { Journal } from '../../src/store/journal.js';
import { SnapshotStore } from '../../src/store/snapshot-store.js';
import { clientFor, openStoresFor, SHARDS, startNats, startNode } from '../helpers/nats.js';

interface Fixture {
  customer_id: string;
  ids: { running: string; forwarded: string; ended: string; gap: string };
  kv: Record<string, Record<string, string>>;
  stream: { subject: string; data: string; headers: Record<string, string> }[];
}
const fixture = JSON.parse(readFileSync(new URL('../fixtures/store-v1.json', import.meta.url), 'utf8')) as Fixture;
const FINISH = '00000000-0000-0000-0000-000000000002';

const env = {} as { server: NatsServer; node: ActiveflowNode; client: ActiveflowClient; close: () => Promise<void>; storage: Storage };
const v1Events = (id: string): StreamEvent[] => fixture.stream.filter((m) => m.subject.endsWith(id)).map((m) => JSON.parse(Buffer.from(m.data, 'base64').toString()) as StreamEvent);

beforeAll(async () => {
  env.server = await startNats();
  const { nc, storage } = await openStoresFor(env.server); // the buckets and the stream, as a node makes them
  env.storage = storage;
  const buckets = { af_running: storage.running, af_ended: storage.ended, af_history: storage.history, af_index: storage.index, af_flows: storage.flows };
  for (const [bucket, entries] of Object.entries(fixture.kv)) {
    for (const [key, value] of Object.entries(entries)) await buckets[bucket as keyof typeof buckets].put(key, Buffer.from(value, 'base64'));
  }
  for (const m of fixture.stream) {
    const h = headers();
    for (const [k, v] of Object.entries(m.headers)) h.set(k, v);
    await storage.js.publish(m.subject, Buffer.from(m.data, 'base64'), { headers: h });
  }
  env.node = await startNode(env.server);
  const c = await clientFor(env.server);
  env.client = c.client;
  env.close = async () => {
    await c.nc.close();
    await nc.close();
  };
}, 60_000);

afterAll(async () => {
  await env.close?.();
  await env.node?.stop();
  await env.server?.stop();
});

describe('a store written before the journal', () => {
  it('is current as stored, for a reader that does not load it: a child of one gets its variables', async () => {
    const { forwarded } = fixture.ids;
    const stored = await new SnapshotStore(env.storage.running, env.storage.ended, SHARDS).load(forwarded);
    expect(stored!.position).toBeNull(); // not loaded yet: no journal of its own
    const state = await currentState(new SnapshotStore(env.storage.running, env.storage.ended, SHARDS), new Journal(env.storage.js, env.storage.jsm), forwarded);
    expect(state).toEqual(stored!.state);
    const child = await env.client.createActiveflow({ customer_id: fixture.customer_id, reference_type: 'call', reference_activeflow_id: forwarded, actions: [] });
    expect((await env.client.variables(child.id)).variables['color']).toBe('blue');
  });

  it('answers get and history exactly as that version stored them', async () => {
    const { running, ended } = fixture.ids;
    const runningEvents = v1Events(running);
    expect((await env.client.history(running)).events).toEqual(runningEvents);
    expect(await env.client.get(running)).toMatchObject(runningEvents.at(-1)!.data); // get has the internal fields too
    const endedEvents = v1Events(ended);
    expect(endedEvents.at(-1)!.type).toBe('activeflow_ended');
    expect((await env.client.history(ended)).events).toEqual(endedEvents);
    expect(await env.client.get(ended)).toMatchObject({ status: 'ended', end_reason: 'finished' });
  });

  it('goes on from there: moves are journaled after a rebase entry, and events stay contiguous', async () => {
    const { running, forwarded } = fixture.ids;
    let current = (await env.client.get(running)).current_action.id;
    for (;;) {
      const a = await env.client.next(running, current);
      if (a.id === FINISH) break;
      current = a.id;
    }
    const events = (await env.client.history(running)).events;
    expect(events.map((e) => e.seq)).toEqual(events.map((_, i) => i + 1));
    expect(events.slice(0, 3)).toEqual(v1Events(running));
    expect(events.at(-1)!.type).toBe('activeflow_ended');
    const { entries } = await env.client.call<{ entries: { kind?: string; type?: string }[] }>(`activeflow.v1.${running}.history`, { form: 'entries' });
    expect(entries.filter((e) => e.type !== undefined)).toHaveLength(3); // the three events format 1 wrote
    expect(entries.filter((e) => e.kind === 'rebase')).toHaveLength(1);
    expect(entries.filter((e) => e.kind === 'move').length).toBeGreaterThan(0);
    expect((await env.client.variables(forwarded)).variables['color']).toBe('blue');
  });

  it("publishes with the rebase the events a crash kept from the stream (format 1's outbox)", async () => {
    const { gap } = fixture.ids;
    const stored = v1Events(gap);
    expect(stored.map((e) => e.seq)).toEqual([1, 2]); // the fixture's third event was lost
    const events = (await env.client.history(gap)).events;
    expect(events.map((e) => e.seq)).toEqual([1, 2, 3]);
    expect(await env.client.get(gap)).toMatchObject(events[2]!.data);
  });

  it('is read the same after a restart: the journal starts once', async () => {
    const { gap, running } = fixture.ids;
    const before = await env.client.history(gap);
    await env.node.stop();
    env.node = await startNode(env.server);
    expect(await env.client.history(gap)).toEqual(before);
    for (const id of [gap, running]) {
      const { entries } = await env.client.call<{ entries: { kind?: string }[] }>(`activeflow.v1.${id}.history`, { form: 'entries' });
      expect(entries.filter((e) => e.kind === 'rebase')).toHaveLength(1);
    }
  });
});
