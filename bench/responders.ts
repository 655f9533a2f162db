/**
 * The bench's ceilings and floor, served from a process of their own as the node is (started by
 * bench/node.bench.ts, `node --import tsx bench/responders.ts <nats url>`). Connected as the node
 * connects (connectNats: no async stack per request, the settled-request fix), so that a ratio
 * to them measures the node and not a difference in client settings: with the client's defaults
 * the one-write ceiling came out about a third lower (docs/benchmarks.md, "The journal").
 *
 * - `bench.echo`: replies at once (with the request, or with N zero bytes when it is the number N).
 * - `bench.durable1`: one KV put, then the reply: one durable write per request.
 * - `bench.durable2`: a KV put and a stream publish, then the reply (a move's two writes before the journal).
 * - `bench.floor`: the least a move is under this design, and nothing else: the activeflow's XState
 *   actor takes `next`, the engine's reduce runs through the host loop, the move's journal entry is
 *   encoded and published with the fence (expected last subject sequence), and the action is sent
 *   back as JSON. No admission, ownership, metrics, creation or end writes: what the node adds to
 *   this is what a ratio of moves to it shows. The body is `{"id": <uuid>, "current_action_id"?}`;
 *   an activeflow that ended starts again in memory (its journal subject goes on).
 */
import { createActor, type Actor } from 'xstate';
import { Kvm } from '@nats-io/kv';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { activeflowMachine, createActiveflow, type ActiveflowMachine, type EngineState } from '../machines/index.js';
import { driveAsync, replyValue, requestCycle } from '../actors/host-cycle.js';
import { moveEntry } from '../src/store/journal-entry.js';
import { appendEntry } from '../src/store/journal.js';
import { decodeJson, encodeJson } from '../src/store/codec.js';
import { systemClock } from '../src/clock.js';
import { connectNats } from '../src/nats/connect.js';
import { VERSION } from '../src/version.js';

const FLOOR_CUSTOMER = '11111111-1111-4111-8111-111111111111';
/** The floor's flow: the bench's 20-action call. */
const FLOOR_ACTIONS = Array.from({ length: 20 }, (_, i) => ({ type: 'talk', option: { text: `Hello \${name}, step ${i}` } }));

const nc = await connectNats(process.argv[2]!, 'bench-responders');
const js = jetstream(nc);
const jsm = await jetstreamManager(nc);
const kv = await new Kvm(nc).create('bench_durable', { history: 1 });
await jsm.streams.add({ name: 'BENCH_EVENTS', subjects: ['bench.events.>'] });
await jsm.streams.add({ name: 'BENCH_FLOOR', subjects: ['bench.floor_journal.>'] });
const value = new Uint8Array(2048).fill(97);
let i = 0;

nc.subscribe('bench.echo', {
  callback: (_e, m) => {
    m.respond(m.data.length > 8 ? m.data : new Uint8Array(Number(new TextDecoder().decode(m.data))));
  },
});
nc.subscribe('bench.durable1', {
  callback: (_e, m) => {
    void kv.put(`k${i++ % 5000}`, value).then(() => m.respond(m.data));
  },
});
nc.subscribe('bench.durable2', {
  callback: (_e, m) => {
    const n = i++ % 5000;
    void Promise.all([kv.put(`k${n}`, value), js.publish(`bench.events.${n}`, value)]).then(() => m.respond(m.data));
  },
});

interface Held {
  actor: Actor<ActiveflowMachine>;
  /** The journal subject's last sequence: the fence of the next publish. */
  seq: number;
  n: number;
  requests: number;
}
const held = new Map<string, Held>();

function start(id: string): Held {
  const created = createActiveflow({
    request: { id, customer_id: FLOOR_CUSTOMER, actions: FLOOR_ACTIONS, reference_type: 'call' } as never,
    flow: null,
    parent: null,
    now: systemClock.now(),
    entropy: systemClock.entropy(),
  });
  if (!created.ok) throw new Error(created.error.message);
  const actor = createActor(activeflowMachine, { input: created.state });
  actor.start();
  const h: Held = { actor, seq: held.get(id)?.seq ?? 0, n: 1, requests: 0 };
  held.set(id, h);
  return h;
}

nc.subscribe('bench.floor', {
  callback: (_e, m) => {
    const body = decodeJson(m.data) as { id: string; current_action_id?: string };
    const found = held.get(body.id);
    const h = found === undefined || found.actor.getSnapshot().status === 'done' ? start(body.id) : found;
    const requestId = `${body.id}:${++h.requests}`;
    // A new call starts where its activeflow is; a running one says where the caller is.
    const current = (h === found ? body.current_action_id : undefined) ?? h.actor.getSnapshot().context.activeflow.current_action.id;
    const cycle = requestCycle({
      verb: 'next',
      body: { current_action_id: current },
      requestId,
      effectRequestId: () => `${requestId}:e`,
      stamp: () => ({ now: systemClock.now(), entropy: systemClock.entropy() }),
    });
    void driveAsync(cycle, async (step) => {
      if (step.kind !== 'transition') return undefined; // a talk's effects are the call's, not awaited here
      const before = h.actor.getSnapshot().context;
      h.actor.send(step.event);
      const after: EngineState = h.actor.getSnapshot().context;
      const entry = moveEntry(before, after, step.event, h.n + 1, VERSION);
      h.seq = await appendEntry(js, `bench.floor_journal.${FLOOR_CUSTOMER}.${body.id}`, entry, h.seq, false); // as a node writes it
      h.n = entry.n;
      return after;
    }).then(
      ({ reply, state }) => {
        const v = reply === undefined ? { ok: false as const, error: { message: 'no reply' } } : replyValue(reply, state);
        m.respond(encodeJson(v.ok ? v.value : { error: v.error.message }));
      },
      (e: unknown) => m.respond(encodeJson({ error: String(e) })),
    );
  },
});
await nc.flush();
console.log('responders ready');
