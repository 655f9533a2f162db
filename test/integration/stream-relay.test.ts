/**
 * Stream relays (src/node/stream-relay.ts, src/nats/relay-reader.ts): a reader sees every message
 * once and in order, even when its consumer is lost under it, and leaves no consumer behind.
 */
import { jetstreamManager } from '@nats-io/jetstream';
import { describe, expect, it } from 'vitest';
import { RelayReader, type RelayMessage } from '../../src/nats/relay-reader.js';
import { connectNats } from '../../src/nats/connect.js';
import { CUSTOMER } from '../helpers/engine.js';
import { useNode } from '../helpers/nats.js';

const env = useNode();
const TALKS = Array.from({ length: 30 }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } }));

const relayConsumers = async () => (await (await jetstreamManager(env.nc)).consumers.list('ACTIVEFLOW_EVENTS').next()).map((c) => c.name).filter((n) => n.startsWith('relay_'));

/** Walks an activeflow through its actions: one event per move. */
async function walk(id: string, first: string, moves: number): Promise<void> {
  let current = first;
  for (let i = 0; i < moves; i++) current = (await env.client.next(id, current)).id;
}

describe('stream relays', () => {
  it('every event once and in order, across a consumer deleted under the reader', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, actions: TALKS, reference_type: 'call' });
    const reader = await RelayReader.open(env.nc, 'gateway', { stream: 'events', filter: `activeflow.events.${CUSTOMER}.${af.id}`, deliver: 'all' });
    const seen: RelayMessage[] = [];
    const reading = (async () => {
      for await (const m of reader) {
        seen.push(m);
        if (seen.length === 21) break;
      }
    })();
    await walk(af.id, af.current_action.id, 10);
    await expect.poll(() => seen.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(11);
    // Its consumer vanishes (a server restart does that to a consumer in memory).
    const jsm = await jetstreamManager(env.nc);
    for (const name of await relayConsumers()) await jsm.consumers.delete('ACTIVEFLOW_EVENTS', name);
    await walk(af.id, (await env.client.get(af.id)).current_action.id, 10);
    await reading;
    const seqs = seen.map((m) => m.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(21);
    // the journal's entries, each once and in order: created, then the twenty moves
    const entryNumbers = seen.map((m) => (JSON.parse(new TextDecoder().decode(m.data)) as { n: number }).n);
    expect(entryNumbers).toEqual(Array.from({ length: 21 }, (_, i) => i + 1));
    // Leaving the loop stopped the reader and closed its relay.
    await expect.poll(relayConsumers, { timeout: 3_000 }).toEqual([]);
  }, 30_000);

  it('a reader that dies without closing leaves no consumer: the server deletes it within seconds', async () => {
    const nc = await connectNats(env.server.url, 'doomed-reader');
    const reader = await RelayReader.open(nc, 'operator', { stream: 'events', filter: 'activeflow.events.*.*', deliver: 'new' });
    expect(await relayConsumers()).toHaveLength(1);
    void reader;
    // The connection ends as if the process died: no close request is sent.
    (nc as unknown as { protocol: { transport: { disconnect(): void } } }).protocol.transport.disconnect();
    await nc.close().catch(() => undefined);
    await expect.poll(relayConsumers, { timeout: 12_000, interval: 500 }).toEqual([]);
  }, 20_000);

  it('caughtUp resolves after what was stored is read, and at once when there is nothing', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, actions: TALKS, reference_type: 'call' });
    await walk(af.id, af.current_action.id, 5);
    const reader = await RelayReader.open(env.nc, 'gateway', { stream: 'events', filter: `activeflow.events.${CUSTOMER}.${af.id}`, deliver: 'all' });
    const seen: number[] = [];
    void (async () => {
      for await (const m of reader) seen.push(m.seq);
    })();
    await reader.caughtUp;
    expect(seen).toHaveLength(6); // created, then five moves
    reader.stop();
    const empty = await RelayReader.open(env.nc, 'gateway', { stream: 'events', filter: `activeflow.events.${CUSTOMER}.${af.id}`, deliver: 'new' });
    await empty.caughtUp;
    empty.stop();
    await expect.poll(relayConsumers, { timeout: 3_000 }).toEqual([]);
  });
});
