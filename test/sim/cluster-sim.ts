/**
 * A deterministic simulation of the cluster: N nodes run the real ownership core
 * (src/cluster/ownership-core.ts) and the real actor write path (ActorRegistry, ActiveflowActor, the
 * real SnapshotStore, Journal and ActiveflowIndex, the real engine and its XState machine) over
 * simulated servers (test/sim/sim-servers.ts: KV buckets with revisions and a TTL, the events
 * stream with its expected-last-sequence check, watches), a simulated network (per-link delays,
 * slow spells, drops, partitions between a node and the servers; order kept within a link, as TCP
 * does, and not across links), per-node clocks with offset and drift, and crashes, pauses, graceful
 * stops, restarts and drains, all drawn from one seed. Same seed, same run, event for event: the
 * actors' promises are settled by the simulation's events, and their continuations run to the end
 * after each event, before the next (nothing waits on real time).
 *
 * Checked at every step:
 * - exclusive: no two nodes serve a shard at the same instant (each judged by its own clock);
 * - fenced: a move appended to a journal was not based on an entry another node's loaded handle
 *   holds as the last (so at most one node can act on an activeflow);
 * - durable: an activeflow's journal holds its acknowledged moves in order, each once, plus at most
 *   the one in flight;
 * - linearizable reads: a read answers at least every move acknowledged before it was sent;
 * and once faults stop: every shard served by exactly one node within a bound, every client done.
 *
 * Nodes passivate their idle actors now and then (checkpointed, then loaded again by the next
 * request). Activeflows are created during the run (test/sim/sim-activeflows.ts) and most end: each
 * customer's running count goes through the real RunningCount (src/quota/running-count.ts: one
 * write per customer in flight per node, a lost answer found again by the node's last write id)
 * and the real reconcile decisions (src/quota/running-reconcile.ts), as the actor's running slot
 * (its CreationAdmission). At the quiet point after the run, every customer's count equals its
 * activeflows that run.
 */
import {
  initialView,
  isUnfenced,
  nextWake,
  type OwnershipCommand,
  type OwnershipConfig,
  type OwnershipEvent,
  type OwnershipView,
  type Renewal,
  ownershipConfig,
  serves,
  step as coreStep,
  takeable,
} from '../../src/cluster/ownership-core.js';
import { ActiveflowActor, ActorRegistry, type ActorReply, type CreationAdmission, type EffectRunner } from '../../actors/index.js';
import { errors } from '@nats-io/transport-node';
import { DEFAULT_LIMITS, type EffectResult, type EngineState, FINISH } from '../../machines/index.js';
import { formatTimestamp, type HostClock } from '../../src/clock.js';
import type { LeaseValue } from '../../src/cluster/shard-lease.js';
import { silentLogger } from '../../src/log.js';
import type { RetryTiming } from '../../src/retry.js';
import { RunningCount } from '../../src/quota/running-count.js';
import type { StoredCount } from '../../src/quota/running-count-write.js';
import { type Checked, correction, maySkip } from '../../src/quota/running-reconcile.js';
import { ActiveflowIndex, IndexEntry } from '../../src/store/activeflow-index.js';
import { encodeJson } from '../../src/store/codec.js';
import { Journal } from '../../src/store/journal.js';
import { HistoryChunks } from '../../src/store/history-chunks.js';
import { SnapshotStore } from '../../src/store/snapshot-store.js';
import { StackLists } from '../../src/store/stack-lists.js';
import { ACTIVEFLOWS, afOf, CUSTOMERS, customerId, ends, idOf, MOVES, SHARDS, SimFlow } from './sim-activeflows.js';
import { type Call, SimBucket, SimStream, simJetStream, simKv, type StreamMessage } from './sim-servers.js';

export type StepFn = (view: OwnershipView, event: OwnershipEvent, now: number) => { view: OwnershipView; commands: OwnershipCommand[] };

export interface SimOptions {
  seed: number;
  /** The real core's step, or a deliberately broken one (the mutation tests). */
  step?: StepFn;
  /** A handover releases its lease before its in-flight requests finish (a mutation of the shell). */
  releaseEarly?: boolean;
  /** A suspect's lease is taken whatever connection it was written on (a mutation of the shell's claim). */
  stealAnyConnection?: boolean;
  /** A load that finds no created entry does not write the index entry again (a mutation of the actor's load: the index drops a running entry written outside a creation). */
  noReindex?: boolean;
  /** A running index entry is put over whatever is there (a mutation of ActiveflowIndex.record). */
  indexOverwrite?: boolean;
  /** A handle the registry forgot goes on with the requests queued on it (ActiveflowActor.forget does nothing). */
  keepForgotten?: boolean;
  /** A release forgets and removes the handle registered under each id at its end, even one made after it began (ActorRegistry.release as it was). */
  releaseAnyHandle?: boolean;
  /** A handle settled for a handover leaves an end whose last steps failed to its retry timer (ActiveflowActor.settle as it was). */
  settleSkipsEnd?: boolean;
  /** Keep a readable trace (the last `traceLines` lines are returned with a failure). */
  traceLines?: number;
}

export interface SimResult {
  seed: number;
  ok: boolean;
  violation: string | null;
  /** The trace's last lines, oldest first. */
  trace: string[];
  stats: {
    events: number;
    moves: number;
    reads: number;
    handovers: number;
    steals: number;
    crashes: number;
    pauses: number;
    partitions: number;
    /** Slots the reconcile corrected (up and down). */
    corrections: number;
    /** Renewal answers that reached the core together, in one `renewals` event. */
    batchedRenewals: number;
    simulatedMs: number;
  };
}

class Violation extends Error {}

/** mulberry32: small, fast, and the same on every machine. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

type Request = { kind: 'create'; af: number } | { kind: 'next'; af: number; move: number } | { kind: 'get'; af: number };
type Reply = { ok: true; moves: number } | { ok: false; code: 'unavailable' | 'timeout' | 'no_responders' };

const FAULTS = ['crash', 'pause', 'partition', 'slow', 'degrade', 'stop', 'drain', 'drops'] as const;
/** A quota no creation reaches here: the counts are under test, not the refusals. */
const QUOTA = 1_000;
const RECONCILE_MS = 150;

/**
 * Seeds beyond the first 1,000 that catch a mutation no seed up to 1,000 catches, run with them by
 * `npm test` and `npm run simulate:cluster`: 1151 a failed sweep not tried again (no-sweep-retry:
 * an end a crash interrupted is never finished, and its slot stays counted), 3937 a running index
 * entry put over an ended one (index-overwrite: a late index write undoes an end, and the count
 * stays one too high), and 7498 a handle the registry forgot going on with its queued requests
 * (keep-forgotten), and 20315 a handover that left an end whose last steps had failed to a retry
 * the forgotten handle no longer runs (settle-skips-end: nothing finishes it until the activeflow
 * is loaded again, and its slot stays counted). These paths are rare at this workload, and the seeds that catch them move
 * whenever a request is added or taken away (an end that reads less: the seeds before, 4119 and
 * 16164, no longer do). Real-process tests cover these rules too
 * (test/integration/activeflow-index.test.ts, test/integration/actor-handles.test.ts).
 */
export const REGRESSION_SEEDS: readonly number[] = [1151, 3937, 7498, 20315];

/** ActorRegistry.release before seed 360: what it removed was whatever the id named by then. */
async function releaseAnyHandle(this: ActorRegistry, shard: number): Promise<void> {
  const r = this as unknown as { ofShard(s: number): [string, ActiveflowActor][]; remove(id: string): void; forgetPassivated(s: number): void; deps: { store: { forget(id: string): void } } };
  const leaving = r.ofShard(shard);
  await Promise.all(leaving.map(([, a]) => a.settle()));
  for (const [id, a] of leaving) {
    a.forget();
    r.remove(id);
    r.deps.store.forget(id);
  }
  r.forgetPassivated(shard);
}

/** ActiveflowActor.settle before seed 20315: the queue drained and a checkpoint, nothing more. */
async function settleSkipsEnd(this: ActiveflowActor): Promise<void> {
  const a = this as unknown as { queued: number; tail: Promise<unknown>; checkpoint(): Promise<void> };
  while (a.queued > 0) await a.tail;
  await a.checkpoint();
}

export async function runSimulation(options: SimOptions): Promise<SimResult> {
  // keep-forgotten breaks ActiveflowActor.forget itself, for this run only (runs never overlap).
  const forget = ActiveflowActor.prototype.forget;
  const settle = ActiveflowActor.prototype.settle;
  const release = ActorRegistry.prototype.release;
  if (options.keepForgotten === true) ActiveflowActor.prototype.forget = () => undefined;
  if (options.settleSkipsEnd === true) ActiveflowActor.prototype.settle = settleSkipsEnd;
  if (options.releaseAnyHandle === true) ActorRegistry.prototype.release = releaseAnyHandle;
  try {
    return await new Simulation(options).run();
  } finally {
    ActiveflowActor.prototype.forget = forget;
    ActiveflowActor.prototype.settle = settle;
    ActorRegistry.prototype.release = release;
  }
}

const SHARD_KEYS = Array.from({ length: SHARDS }, (_, shard) => `shard.${shard}`);

/** Where the nodes' clocks start, for the timestamps the engine records. */
const EPOCH_MS = Date.UTC(2026, 0, 1);

/** Lets every promise continuation the last event made possible run, to the end (a macrotask comes after them all). */
const settleContinuations = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

class Simulation {
  private readonly rand: () => number;
  private t = 0;
  private seq = 0;
  private readonly heap: { at: number; seq: number; fn: () => void }[] = [];
  private readonly revs = { n: 0 };
  readonly leases: SimBucket;
  readonly cluster = new SimBucket({ n: 0 }, null);
  /** af_running, af_ended, af_history, af_index as the real stores write them; af_quotas (`running.<customer>`). */
  readonly running = new SimBucket({ n: 0 }, null);
  readonly ended = new SimBucket({ n: 0 }, null);
  readonly history = new SimBucket({ n: 0 }, null);
  readonly index = new SimBucket({ n: 0 }, null);
  readonly quotas = new SimBucket({ n: 0 }, null);
  /** ACTIVEFLOW_EVENTS: the journals. */
  readonly stream = new SimStream();
  readonly flows: SimFlow[];
  /** What each journal holds, as its entries come: the moves made (null before its created entry) and whether it ended. */
  readonly stored: (number | null)[] = new Array<number | null>(ACTIVEFLOWS).fill(null);
  private readonly storedEnded = new Array<boolean>(ACTIVEFLOWS).fill(false);
  /**
   * Set when an event settled one of the actors' promises or started their async work (`wake`):
   * the continuations then run before the next event. (Waiting for them after every event is
   * correct too, and slower: most events are the leases' own.)
   */
  woken = false;
  /** The highest move each client has sent. */
  private readonly sent = new Array<number>(ACTIVEFLOWS).fill(0);
  readonly ttlMs: number;
  private readonly nodes: SimNode[] = [];
  /** The servers' subscriptions: which node incarnations receive each shard's requests. */
  readonly subs = new Map<number, Set<SimNode>>();
  private readonly trace: string[] = [];
  private readonly traceLines: number;
  readonly acked = new Array<number>(ACTIVEFLOWS).fill(0);
  private readonly done = new Array<boolean>(ACTIVEFLOWS).fill(false);
  readonly stats = { events: 0, moves: 0, reads: 0, handovers: 0, steals: 0, crashes: 0, pauses: 0, partitions: 0, corrections: 0, batchedRenewals: 0, simulatedMs: 0 };
  readonly faultsUntil: number;

  constructor(readonly options: SimOptions) {
    this.rand = rng(options.seed);
    this.traceLines = options.traceLines ?? 200;
    this.ttlMs = 300;
    this.leases = new SimBucket(this.revs, this.ttlMs);
    this.faultsUntil = 2_500 + Math.floor(this.rand() * 2_500);
    this.faultWeights = FAULTS.map(() => this.rand() ** 2);
    this.flows = Array.from({ length: ACTIVEFLOWS }, (_, af) => new SimFlow(af, () => this.rand() < 0.5));
  }

  // ----- the scheduler

  at(time: number, fn: () => void): void {
    const e = { at: time, seq: this.seq++, fn };
    const h = this.heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.less(h[p]!, e)) break;
      h[i] = h[p]!;
      i = p;
    }
    h[i] = e;
  }

  private less(a: { at: number; seq: number }, b: { at: number; seq: number }): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private pop(): { at: number; seq: number; fn: () => void } | undefined {
    const h = this.heap;
    const top = h[0];
    const last = h.pop();
    if (top === undefined || last === undefined || h.length === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      const cand = (k: number) => (k === i ? last : h[k]!);
      if (l < h.length && this.less(h[l]!, cand(m))) m = l;
      if (r < h.length && this.less(h[r]!, cand(m))) m = r;
      if (m === i) break;
      h[i] = h[m]!;
      i = m;
    }
    h[i] = last;
    return top;
  }

  get now(): number {
    return this.t;
  }

  random(): number {
    return this.rand();
  }

  between(lo: number, hi: number): number {
    return lo + this.rand() * (hi - lo);
  }

  log(line: string): void {
    if (this.traceLines === 0) return;
    this.trace.push(`${this.t.toFixed(1).padStart(8)} ${line}`);
    if (this.trace.length > this.traceLines * 2) this.trace.splice(0, this.trace.length - this.traceLines);
  }

  /** A violation found inside a node's promise continuation (thrown there, it would only fail that promise). */
  private failure: Violation | null = null;

  fail(message: string): never {
    const v = new Violation(message);
    this.failure ??= v;
    throw v;
  }

  // ----- the run

  async run(): Promise<SimResult> {
    let violation: string | null = null;
    try {
      this.setUp();
      const hardEnd = this.faultsUntil + 20_000;
      let quietChecked = false;
      let countsAt: number | null = null;
      while (this.heap.length > 0) {
        const e = this.pop()!;
        if (e.at > hardEnd) break;
        this.t = e.at;
        if (++this.stats.events > 400_000) this.fail(`more than 400,000 events: something loops (at ${this.t.toFixed(1)} ms)`);
        e.fn();
        // The actors' continuations this event made possible (a promise it settled, a request, a
        // handover it started) run now, at this instant, to the end.
        if (this.woken) {
          this.woken = false;
          await settleContinuations();
          if (this.failure !== null) throw this.failure;
        }
        this.checkExclusive();
        if (!quietChecked && this.t >= this.faultsUntil + this.serveBoundMs) {
          quietChecked = true;
          this.checkServed();
        }
        // Every client done and every shard served: the counts get a few reconciles to settle.
        if (countsAt === null && this.done.every(Boolean) && quietChecked) countsAt = this.t + 8 * RECONCILE_MS + 4 * this.ttlMs;
        if (countsAt !== null && this.t >= countsAt) break;
      }
      if (!quietChecked) this.fail('the run ended before the quiet check');
      const unfinished = this.done.flatMap((d, af) => (d ? [] : [af]));
      if (unfinished.length > 0)
        this.fail(`activeflows ${unfinished.join(', ')} did not finish their moves within 20 s of the faults stopping (acked ${unfinished.map((af) => this.acked[af]).join(', ')})`);
      for (let af = 0; af < ACTIVEFLOWS; af++) {
        if (this.stored[af] !== MOVES || this.storedEnded[af] !== ends(af))
          this.fail(`activeflow ${af}'s journal holds ${this.stored[af]} moves${this.storedEnded[af] ? ' and its end' : ''}, expected ${MOVES}${ends(af) ? ' and its end' : ''}`);
      }
      this.checkCounts();
    } catch (e) {
      if (!(e instanceof Violation)) throw e;
      violation = e.message;
      this.log(`VIOLATION: ${e.message}`);
    }
    this.stats.simulatedMs = Math.round(this.t);
    return { seed: this.options.seed, ok: violation === null, violation, trace: this.trace.slice(-this.traceLines), stats: this.stats };
  }

  /** How long after the faults stop every shard must be served again by exactly one node. */
  get serveBoundMs(): number {
    // A crashed or partitioned holder's lease runs out (TTL), a restarted node rejoins and is
    // listed (TTL/3 each), and the handovers that follow (settle, release, claim) take a few round
    // trips; twice that is the bound.
    return 6 * this.ttlMs + 500;
  }

  private setUp(): void {
    const count = 2 + Math.floor(this.rand() * 3);
    for (let i = 0; i < count; i++) {
      const node = new SimNode(this, `n${i + 1}`, 0);
      this.nodes.push(node);
      this.at(this.between(0, 50), () => node.boot());
    }
    // Created while the faults go on (a creation cut at each of its steps), then moved.
    for (let af = 0; af < ACTIVEFLOWS; af++) this.at(this.between(200, Math.max(600, this.faultsUntil - 1_000)), () => this.sendCreate(af));
    let next = this.between(300, 700);
    while (next < this.faultsUntil) {
      const when = next;
      this.at(when, () => this.fault());
      next += this.between(150, 700);
    }
    this.at(this.faultsUntil, () => this.heal());
  }

  // ----- clients

  /** A create, retried until answered; an answer that the activeflow exists (a retry of one whose answer was lost) is done too. */
  private sendCreate(af: number): void {
    this.request({ kind: 'create', af }, (r) => {
      if (!r.ok) {
        this.at(this.t + this.between(5, 40), () => this.sendCreate(af));
        return;
      }
      // Its checkpoint claims the id; the created entry may come with its first load (a creation cut
      // after its checkpoint is answered `conflict` on its retry, and the load repairs it).
      if (this.running.get(`${af % SHARDS}.${idOf(af)}`, this.t) === null && this.ended.get(idOf(af), this.t) === null) this.fail(`the creation of activeflow ${af} acknowledged but not stored`);
      this.log(`client: activeflow ${af} created`);
      this.at(this.t + this.between(0, 30), () => this.sendMove(af, 1));
      this.at(this.t + this.between(0, 60), () => this.read(af));
    });
  }

  private sendMove(af: number, move: number): void {
    this.sent[af] = Math.max(this.sent[af]!, move);
    this.request({ kind: 'next', af, move }, (r) => {
      if (r.ok) {
        if (r.moves < move) this.fail(`move ${move} of activeflow ${af} acknowledged with ${r.moves} stored moves`);
        this.acked[af] = move;
        this.stats.moves++;
        this.log(`client: move ${move} of activeflow ${af} acknowledged`);
        if ((this.stored[af] ?? 0) < move) this.fail(`move ${move} of activeflow ${af} acknowledged but its journal holds ${this.stored[af]} moves`);
        if (move === MOVES) this.done[af] = true;
        else this.at(this.t + this.between(0, 30), () => this.sendMove(af, move + 1));
      } else {
        this.at(this.t + this.between(5, 40), () => this.sendMove(af, move));
      }
    });
  }

  private read(af: number): void {
    if (this.done[af]) return;
    const before = this.acked[af]!;
    this.request({ kind: 'get', af }, (r) => {
      if (r.ok) {
        this.stats.reads++;
        this.log(`client: a read of activeflow ${af} sent after move ${before} answered ${r.moves} moves`);
        if (r.moves < before) this.fail(`a read of activeflow ${af} answered ${r.moves} moves, but move ${before} was acknowledged before it was sent`);
      }
      this.at(this.t + this.between(20, 120), () => this.read(af));
    });
  }

  /** A request to a shard subject, as a caller's: no responders, or the first answer, or a timeout. */
  private request(req: Request, reply: (r: Reply) => void): void {
    let answered = false;
    const answer = (r: Reply) => {
      if (answered) return;
      answered = true;
      reply(r);
    };
    const shard = req.af % SHARDS;
    // Callers sit beside the servers: their own hop is small and never lost.
    this.at(this.t + this.between(0.1, 0.5), () => {
      const targets = [...(this.subs.get(shard) ?? [])];
      if (targets.length === 0) {
        this.at(this.t + 0.2, () => answer({ ok: false, code: 'no_responders' }));
        return;
      }
      for (const node of targets) node.link.toNode(() => node.handle(req, (r) => node.link.toServer(() => this.at(this.t + this.between(0.1, 0.5), () => answer(r)))));
    });
    this.at(this.t + 1_000, () => answer({ ok: false, code: 'timeout' }));
  }

  // ----- faults

  /** Each seed weighs the kinds of fault its own way, so that some seeds are mostly pauses, some mostly slow handovers... */
  private readonly faultWeights: number[];

  private fault(): void {
    const alive = this.nodes.filter((n) => n.state !== 'down');
    const pick = <T>(xs: readonly T[]): T | undefined => xs[Math.floor(this.rand() * xs.length)];
    let roll = this.rand() * this.faultWeights.reduce((a, b) => a + b, 0);
    let kind = 0;
    while (kind < FAULTS.length - 1 && roll >= this.faultWeights[kind]!) roll -= this.faultWeights[kind++]!;
    const fault = FAULTS[kind]!;
    const node = pick(this.nodes)!;
    if (fault === 'crash') {
      if (node.state === 'down' || alive.length <= 1) return;
      this.stats.crashes++;
      this.log(`FAULT crash ${node.label}`);
      node.crash();
      this.at(this.t + this.between(200, 1_500), () => this.restart(node));
    } else if (fault === 'pause') {
      if (node.state !== 'up') return;
      this.stats.pauses++;
      const ms = this.between(50, 3 * this.ttlMs);
      this.log(`FAULT pause ${node.label} for ${ms.toFixed(0)} ms`);
      node.pause();
      // The servers' pings find a stopped process after a while and close its connection.
      const pings = this.between(this.ttlMs / 2, 2 * this.ttlMs);
      this.at(this.t + pings, () => {
        if (node.state === 'paused') node.link.closeByServer('stale connection');
      });
      this.at(this.t + ms, () => node.resume());
    } else if (fault === 'partition') {
      if (node.state === 'down' || node.link.partitioned) return;
      this.stats.partitions++;
      // One in four is long: a node cut off for seconds, whose client buffers what it publishes
      // meanwhile and sends it on its next connection (writes that land long after their callers
      // gave up and went elsewhere).
      const ms = this.rand() < 0.25 ? this.between(3 * this.ttlMs, 12 * this.ttlMs) : this.between(50, 3 * this.ttlMs);
      this.log(`FAULT partition ${node.label} for ${ms.toFixed(0)} ms`);
      node.link.partition();
      this.at(this.t + ms, () => node.link.heal());
    } else if (fault === 'slow') {
      // A slow spell, up to half a TTL each way: longer than the safety margin, as a congested
      // server or a busy process can be.
      const ms = this.between(100, 800);
      const extra = this.between(5, this.ttlMs / 2);
      this.log(`FAULT slow link ${node.label}: +${extra.toFixed(0)} ms for ${ms.toFixed(0)} ms`);
      node.link.slowUntil = this.t + ms;
      node.link.slowBy = extra;
    } else if (fault === 'degrade') {
      // A link that goes slow and then drops: renewals answered late, then none at all.
      if (node.state === 'down' || node.link.partitioned) return;
      const slowMs = this.between(50, 300);
      const extra = this.between(this.ttlMs / 5, this.ttlMs / 2);
      this.log(`FAULT degrade ${node.label}: +${extra.toFixed(0)} ms for ${slowMs.toFixed(0)} ms, then cut`);
      node.link.slowUntil = this.t + slowMs;
      node.link.slowBy = extra;
      this.at(this.t + slowMs, () => {
        if (node.state === 'down' || node.link.partitioned) return;
        this.stats.partitions++;
        node.link.partition();
        this.at(this.t + this.between(50, 3 * this.ttlMs), () => node.link.heal());
      });
    } else if (fault === 'stop') {
      if (node.state !== 'up' || node.stopping) return;
      this.log(`FAULT graceful stop ${node.label}`);
      node.stop(() => this.at(this.t + this.between(100, 800), () => this.restart(node)));
    } else if (fault === 'drain') {
      const key = `drain.${node.id}`;
      if (this.cluster.get(key, this.t) !== null) {
        this.log(`FAULT undrain ${node.id}`);
        this.writeDrain(node.id, false);
      } else if (this.nodes.filter((n) => this.cluster.get(`drain.${n.id}`, this.t) === null).length > 1) {
        this.log(`FAULT drain ${node.id}`);
        this.writeDrain(node.id, true);
      }
    } else {
      const ms = this.between(20, 200);
      this.log(`FAULT drops on ${node.label} for ${ms.toFixed(0)} ms`);
      node.link.dropUntil = this.t + ms;
    }
  }

  writeDrain(nodeId: string, on: boolean): void {
    const key = `drain.${nodeId}`;
    const e = this.cluster.get(key, this.t);
    if (on) this.cluster.put(key, '{}', this.t);
    else if (e !== null) this.cluster.delete(key, e.revision, this.t);
    this.watchers((n) => n.core({ type: 'drain', node: nodeId, on }));
  }

  /** Every fault ends: partitions heal, paused nodes resume, nodes down start again, drains lifted. */
  private heal(): void {
    this.log('HEAL: faults stop');
    for (const node of this.nodes) {
      node.link.heal();
      if (node.state === 'up' && node.link.closed) node.reconnect();
      node.link.slowUntil = 0;
      node.link.dropUntil = 0;
      if (node.state === 'paused') node.resume();
      if (node.state === 'down' && !node.restarting) this.restart(node);
    }
    for (const node of this.nodes) if (this.cluster.get(`drain.${node.id}`, this.t) !== null) this.writeDrain(node.id, false);
  }

  private restart(old: SimNode): void {
    const i = this.nodes.indexOf(old);
    if (i < 0 || (old.state !== 'down' && !old.stopped)) return;
    const node = new SimNode(this, old.id, old.incarnation + 1);
    this.nodes[i] = node;
    this.log(`restart ${node.label}`);
    node.boot();
  }

  /** The servers saw a node's connection close: a disconnect event, naming that connection, to every other node. */
  suspect(node: SimNode, conn: string): void {
    this.log(`servers: connection ${conn} of ${node.label} closed`);
    this.watchers((n) => {
      if (n.id !== node.id) n.core({ type: 'suspect', node: node.id, conn });
    });
  }

  /** Delivers to every running node that watches (each over its own link). */
  watchers(fn: (n: SimNode) => void): void {
    for (const n of this.nodes) if (n.watching) n.link.toNode(() => fn(n));
  }

  onNodeLeaseChange(nodeId: string, up: boolean): void {
    this.watchers((n) => n.core({ type: 'member', node: nodeId, up }));
  }

  /** A node lease that nobody renews runs out; the servers write a delete marker the watchers see. */
  expireLater(key: string, revision: number): void {
    this.at(this.t + this.ttlMs + this.between(0, 250), () => {
      const e = this.leases.get(key, this.t);
      if (e === null && this.lastNodeRevision.get(key) === revision) this.onNodeLeaseChange(key.slice('node.'.length), false);
    });
  }

  readonly lastNodeRevision = new Map<string, number>();

  // ----- invariants

  /** No two nodes serve a shard at once, and a node serves a shard only while the servers hold its lease in its name. */
  private checkExclusive(): void {
    for (let shard = 0; shard < SHARDS; shard++) {
      let holder: SimNode | null = null;
      for (const n of this.nodes) {
        // A node whose connection is closed can neither hear a request nor answer one.
        if (n.state === 'down' || n.link.closed || !serves(n.view, shard, n.clock())) continue;
        if (holder !== null) this.fail(`shard ${shard} served by ${holder.label} and ${n.label} at once`);
        holder = n;
        const lease = this.leases.get(SHARD_KEYS[shard]!, this.t);
        const value = lease === null ? null : this.leaseValue(lease.value);
        if (value === null || value.node_id !== n.id || value.released_at !== undefined) {
          this.fail(`${n.label} serves shard ${shard}, but the servers hold its lease ${value === null ? 'for nobody (expired)' : `as ${JSON.stringify(value)}`}`);
        }
      }
    }
  }

  /** Lease values as parsed (the check above reads them after every event; a value is written once and read many times). */
  private readonly parsed = new Map<string, LeaseValue>();
  private leaseValue(text: string): LeaseValue {
    let v = this.parsed.get(text);
    if (v === undefined) {
      if (this.parsed.size > 10_000) this.parsed.clear();
      v = JSON.parse(text) as LeaseValue;
      this.parsed.set(text, v);
    }
    return v;
  }

  private checkServed(): void {
    for (let shard = 0; shard < SHARDS; shard++) {
      const servers = this.nodes.filter((n) => n.state === 'up' && !n.link.closed && serves(n.view, shard, n.clock()));
      if (servers.length !== 1) {
        // what each node makes of the shard, for the trace (a handover stuck on a busy actor shows here)
        for (const n of this.nodes) {
          const busy = [...Array(ACTIVEFLOWS).keys()].filter((af) => af % SHARDS === shard && n.registry.peek(idOf(af))?.busy === true);
          this.log(`${n.label} (${n.state}${n.link.closed ? ', connection closed' : ''}): shard ${shard} ${n.view.shards.get(shard)?.phase ?? 'not held'}; busy actors: ${busy.join(', ') || 'none'}`);
        }
        this.fail(`${this.serveBoundMs} ms after the faults stopped, shard ${shard} is served by ${servers.length} nodes`);
      }
    }
  }

  /**
   * At the quiet point: each customer's running count equals its activeflows that run (created,
   * and not ended), whatever the faults did to the writes of the counts.
   */
  private checkCounts(): void {
    for (let c = 0; c < CUSTOMERS; c++) {
      let truth = 0;
      for (let af = c; af < ACTIVEFLOWS; af += CUSTOMERS) if (this.stored[af] !== null && !this.storedEnded[af]) truth++;
      const e = this.quotas.get(`running.${customerId(c)}`, this.t);
      const count = e === null ? 0 : (JSON.parse(e.value) as StoredCount).running;
      if (count !== truth) {
        const indexed = this.index.keys(`${customerId(c)}.`, this.t).filter((k) => isRunning(this.index.get(k, this.t)!.value));
        this.fail(`at the quiet point the running count of customer ${c} is ${count}, but ${truth} of its activeflows run (the index shows ${indexed.join(', ') || 'none'} running)`);
      }
    }
  }

  /**
   * On the servers, as a journal entry is stored: a move's entry must not be based on an entry
   * another node's handle holds as the last (that node could append a move there too), and the
   * journal must hold the acknowledged moves, in order, each once.
   */
  journalEntry(writer: SimNode, m: StreamMessage, expectedLast: number | undefined): void {
    const af = afOf(m.subject.slice(m.subject.lastIndexOf('.') + 1));
    const entry = JSON.parse(m.data) as { kind: string; status?: 'running' | 'ended'; cursor?: { action_id: string } };
    if (entry.kind === 'created') {
      if (this.stored[af] !== null) this.fail(`a second created entry for activeflow ${af}, by ${writer.label}`);
      this.stored[af] = 0;
      return;
    }
    if (entry.kind !== 'move') return;
    for (const n of this.nodes) {
      if (n.state === 'down') continue;
      // A handle still loading may know the entry as last while its fence is on the way: the fence
      // then comes after this move, and the load replays it. A loaded one would act on stale state.
      // On the writer's node, its registry's handle may be the writer (then it is busy), or a new
      // handle beside a forgotten one that goes on writing.
      const other = n.registry.peek(idOf(af));
      if (other?.resident !== true || other.journalAt !== expectedLast || (n === writer && other.busy)) continue;
      this.fail(`${writer.label} appended a move of activeflow ${af} after entry ${expectedLast}, which ${n === writer ? 'another handle there' : n.label} holds loaded as its last`);
    }
    const before = this.stored[af];
    if (before === null) this.fail(`${writer.label} appended a move of activeflow ${af} before its created entry`);
    const moves = this.flows[af]!.moves(entry.status!, entry.cursor!.action_id);
    if (moves !== before! && moves !== before! + 1) this.fail(`activeflow ${af}'s journal went from ${before} moves to ${moves}: a move lost or applied twice`);
    if (moves > this.sent[af]!) this.fail(`activeflow ${af}'s journal holds ${moves} moves, but its client sent ${this.sent[af]}: a move applied twice`);
    if (moves < this.acked[af]!) this.fail(`activeflow ${af}'s journal holds ${moves} moves, but ${this.acked[af]} were acknowledged`);
    this.stored[af] = moves;
    if (entry.status === 'ended') this.storedEnded[af] = true;
  }
}

const isRunning = (value: string): boolean => {
  const e = IndexEntry.parse(JSON.parse(value));
  return e.status === 'running' && !e.deleted;
};

/** One node's link to the servers: delays, order within the link, drops, partitions. */
class Link {
  partitioned = false;
  /** The servers closed this connection (a crash, a partition or a pause their pings found). */
  closed = false;
  generation = 0;
  slowUntil = 0;
  slowBy = 0;
  dropUntil = 0;
  private lastIn = 0;
  private lastOut = 0;
  /**
   * Sent either way over a cut that the connection has not died of (yet): TCP delivers it once the
   * cut heals, if the connection still lives then; a write that lands late, after its caller gave up.
   */
  private readonly heldOut: (() => void)[] = [];
  private readonly heldIn: (() => void)[] = [];
  /** Published after the client noticed its connection gone: its reconnect buffer, sent on the next connection. */
  private readonly buffered: (() => void)[] = [];

  constructor(
    private readonly sim: Simulation,
    private readonly node: SimNode,
  ) {}

  private delay(): number {
    const base = this.sim.between(0.2, 2) + (this.sim.random() < 0.02 ? this.sim.between(5, 30) : 0);
    return base + (this.sim.now < this.slowUntil ? this.slowBy : 0);
  }

  /** Server to node: lost on a closed connection or in a drop spell, held over a cut. */
  toNode(fn: () => void): void {
    if (this.closed || this.sim.now < this.dropUntil) return;
    if (this.partitioned) {
      this.heldIn.push(fn);
      return;
    }
    this.lastIn = Math.max(this.lastIn, this.sim.now + this.delay());
    this.sim.at(this.lastIn, () => this.node.deliver(fn));
  }

  /**
   * Node to server (the node must be running to send). Held over a cut (see heldOut), buffered
   * once the client knows its connection is gone (see buffered), lost on a connection the servers
   * closed and in a drop spell. `control`: a protocol message of the connection itself (a
   * subscription made or removed), which a drop spell does not lose: over TCP it arrives, or the
   * connection breaks (and the new one subscribes again).
   */
  toServer(fn: () => void, control = false): void {
    if (this.node.state !== 'up') return;
    if (this.node.disconnectSeen) {
      if (!control) this.buffered.push(fn); // (the new connection subscribes again anyway)
      return;
    }
    if (this.closed || (!control && this.sim.now < this.dropUntil)) return;
    if (this.partitioned) {
      this.heldOut.push(fn);
      return;
    }
    this.send(fn);
  }

  private send(fn: () => void): void {
    const generation = this.generation;
    this.lastOut = Math.max(this.lastOut, this.sim.now + this.delay());
    this.sim.at(this.lastOut, () => {
      if (this.closed || this.generation !== generation) return; // its connection is gone, and what it carried
      if (this.partitioned) this.heldOut.push(fn);
      else fn();
    });
  }

  /** A request and its reply; `onReply` gets null after a timeout. */
  call<T>(op: () => T, onReply: (r: T | null) => void, timeoutMs: number): void {
    let settled = false;
    const settle = (r: T | null) => {
      if (settled) return;
      settled = true;
      onReply(r);
    };
    this.toServer(() => {
      const r = op();
      this.toNode(() => settle(r));
    });
    this.node.timer(this.node.clock() + timeoutMs, () => settle(null));
  }

  /** Cut between the node and the servers: each side finds out in its own time. */
  partition(): void {
    this.partitioned = true;
    const generation = this.generation;
    // The servers' pings close the connection after a while, and they tell the others.
    this.sim.at(this.sim.now + this.sim.between(20, this.sim.ttlMs), () => {
      if (this.partitioned && this.generation === generation) this.closeByServer('stale connection');
    });
    // The node's client finds out in its own time, too.
    this.sim.at(this.sim.now + this.sim.between(20, 2 * this.sim.ttlMs), () => {
      if (this.partitioned && this.generation === generation) this.node.deliver(() => this.node.noticeDisconnect());
    });
  }

  heal(): void {
    if (!this.partitioned) return;
    this.partitioned = false;
    // What each side sent over the cut arrives, if the connection lived through it.
    const out = this.heldOut.splice(0);
    const inn = this.heldIn.splice(0);
    if (!this.closed && !this.node.disconnectSeen) {
      for (const fn of out) this.send(fn);
      for (const fn of inn) this.toNode(fn);
    }
    // A connection that survived the cut carries on (what it sent meanwhile of its subscriptions
    // arrives: TCP sends it again); one either side gave up is made again.
    if (this.closed || this.node.disconnectSeen) this.node.deliver(() => this.node.reconnect());
    else this.node.deliver(() => this.node.resubscribe());
  }

  /** The servers close the connection: its subscriptions go, and the others hear of it. */
  closeByServer(reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.heldOut.length = 0;
    this.heldIn.length = 0;
    for (const set of this.sim.subs.values()) set.delete(this.node);
    this.sim.log(`servers close ${this.node.conn}: ${reason}`);
    this.sim.suspect(this.node, this.node.conn);
  }

  open(): void {
    this.closed = false;
    this.generation++;
    for (const fn of this.buffered.splice(0)) this.send(fn);
  }
}

class SimNode {
  state: 'up' | 'paused' | 'down' = 'up';
  readonly link: Link;
  view: OwnershipView;
  readonly cfg: OwnershipConfig;
  /** The real actors of this node's shards, over the simulated servers. */
  readonly registry: ActorRegistry;
  private readonly backlog: (() => void)[] = [];
  /** Renewal answers not given to the core yet (see `renewed`). */
  private readonly renewals: Renewal[] = [];
  private readonly offset: number;
  private readonly drift: number;
  private wakeAt: number | null = null;
  private wakeToken = 0;
  private readonly mySubs = new Set<number>();
  watching = false;
  disconnectSeen = false;
  stopping = false;
  stopped = false;
  restarting = false;
  private onStopped: (() => void) | null = null;
  private membership: { revision: number; lastSentAt: number; renewing: boolean; validUntil: number } | null = null;
  /** Creations in hand (the no-reindex mutation tells a creation's index write from a load's by it). */
  private readonly creating = new Set<string>();

  constructor(
    private readonly sim: Simulation,
    readonly id: string,
    readonly incarnation: number,
  ) {
    this.link = new Link(sim, this);
    this.offset = sim.between(-200, 200);
    this.drift = sim.between(-0.001, 0.001);
    this.cfg = ownershipConfig(id, SHARDS, sim.ttlMs);
    this.view = initialView(this.cfg, this.clock());
    this.registry = this.makeRegistry();
  }

  get label(): string {
    return `${this.id}#${this.incarnation}`;
  }

  /** This node's clock: its own offset and rate. */
  clock(): number {
    return this.sim.now * (1 + this.drift) + this.offset;
  }

  /** A timer on this node's clock; it fires late if the node is paused, never if it is down. */
  timer(atLocal: number, fn: () => void): void {
    // Rounded up to the next microsecond, so that the node's clock has reached `atLocal` when it fires.
    const global = Math.ceil(((atLocal - this.offset) / (1 + this.drift)) * 1000 + 1) / 1000;
    this.sim.at(Math.max(this.sim.now, global), () => this.deliver(fn));
  }

  deliver(fn: () => void): void {
    if (this.state === 'down') return;
    if (this.state === 'paused') this.backlog.push(fn);
    else fn();
  }

  pause(): void {
    this.state = 'paused';
  }

  resume(): void {
    if (this.state !== 'paused') return;
    this.state = 'up';
    this.sim.log(`resume ${this.label}`);
    // What the socket held is read first; then the client finds the connection closed, if it was.
    for (const fn of this.backlog.splice(0)) if (this.state === 'up') fn();
    if (this.state === 'up' && this.link.closed && !this.link.partitioned) this.reconnect();
  }

  /** The node's client noticed its connection is gone (it keeps trying to make a new one). */
  noticeDisconnect(): void {
    if (this.state !== 'up' || this.disconnectSeen) return;
    this.disconnectSeen = true;
    this.sim.log(`${this.label} notices its connection is gone`);
    this.core({ type: 'disconnected' });
    // The client gives the connection up and makes a new one, as soon as the servers can be
    // reached (a partition's heal reconnects it otherwise). A notice read late, after the cut
    // healed (a paused process reads its timers when it wakes), must lead there too.
    const generation = this.link.generation;
    this.timer(this.clock() + this.sim.between(2, 20), () => {
      if (this.disconnectSeen && !this.link.partitioned && this.link.generation === generation) this.reconnect();
    });
  }

  /** A new connection: the disconnect is handled first, then nothing from the old one counts. */
  reconnect(): void {
    if (this.state !== 'up') return;
    this.noticeDisconnect();
    if (!this.link.closed) this.link.closeByServer('client reconnected');
    this.link.open();
    this.disconnectSeen = false;
    this.sim.log(`${this.label} reconnects as ${this.conn}`);
    this.core({ type: 'reconnected' });
    this.resubscribe();
  }

  /** The connection's name, as the servers give it in their events. */
  get conn(): string {
    return `${this.label}/c${this.link.generation}`;
  }

  crash(): void {
    this.state = 'down';
    this.watching = false;
    this.backlog.length = 0;
    for (const shard of this.mySubs) this.sim.subs.get(shard)?.delete(this);
    this.mySubs.clear();
    // The process is gone: its TCP connection closes and the servers say so at once.
    this.link.closeByServer('process gone');
  }

  // ----- start, membership, stop

  boot(): void {
    this.sim.log(`boot ${this.label}`);
    this.watching = true;
    // Listing the members and the shard holders, as the shell does before it starts the core.
    this.link.call(
      () => ({ ...this.listMembers(), holders: this.listHolders() }),
      (r) => {
        this.core(r === null ? { type: 'started', live: [], drained: [], holders: new Map() } : { type: 'started', ...r });
        this.joinMembership();
        this.reconcileLater();
        this.passivateLater();
      },
      2 * this.sim.ttlMs,
    );
  }

  private listMembers(): { live: string[]; drained: string[] } {
    const live = this.sim.leases.keys('node.', this.sim.now).map((k) => k.slice('node.'.length));
    const drained = this.sim.cluster.keys('drain.', this.sim.now).map((k) => k.slice('drain.'.length));
    return { live, drained: drained.filter((d) => live.includes(d)) };
  }

  private listHolders(): Map<number, string> {
    const holders = new Map<number, string>();
    for (const key of this.sim.leases.keys('shard.', this.sim.now)) {
      const v = JSON.parse(this.sim.leases.get(key, this.sim.now)!.value) as LeaseValue;
      if (v.released_at === undefined) holders.set(Number(key.slice('shard.'.length)), v.node_id);
    }
    return holders;
  }

  /** The membership lease (NodeMembership): created, renewed every TTL/3, taken again when lost. */
  private joinMembership(): void {
    if (this.stopping) return;
    const key = `node.${this.id}`;
    const sentAt = this.clock();
    this.link.call(
      () => {
        const r = this.sim.leases.create(key, JSON.stringify({ node_id: this.id }), this.sim.now);
        if (r !== null) this.noteNodeLease(key, r);
        return r;
      },
      (revision) => {
        if (revision === null || this.stopping) {
          if (!this.stopping) this.timer(this.clock() + this.sim.ttlMs / 3, () => this.joinMembership());
          return;
        }
        this.membership = { revision, lastSentAt: sentAt, renewing: false, validUntil: sentAt + this.sim.ttlMs - this.cfg.safetyMs };
        this.core({ type: 'membership', joined: true });
        this.renewMembershipLater();
      },
      2 * this.sim.ttlMs,
    );
  }

  private noteNodeLease(key: string, revision: number): void {
    this.sim.lastNodeRevision.set(key, revision);
    this.sim.onNodeLeaseChange(this.id, true);
    this.sim.expireLater(key, revision);
  }

  private renewMembershipLater(): void {
    const m = this.membership;
    if (m === null) return;
    this.timer(m.lastSentAt + this.sim.ttlMs / 3, () => {
      if (this.membership !== m || this.stopping) return;
      const sentAt = this.clock();
      m.lastSentAt = sentAt;
      if (sentAt >= m.validUntil) return this.lostMembership();
      const key = `node.${this.id}`;
      this.link.call(
        () => {
          const r = this.sim.leases.update(key, JSON.stringify({ node_id: this.id }), m.revision, this.sim.now);
          if (r !== null) this.noteNodeLease(key, r);
          return r;
        },
        (revision) => {
          if (this.membership !== m) return;
          if (revision === null) return this.lostMembership();
          m.revision = revision;
          m.validUntil = sentAt + this.sim.ttlMs - this.cfg.safetyMs;
          this.renewMembershipLater();
        },
        2 * this.sim.ttlMs,
      );
    });
  }

  private lostMembership(): void {
    this.membership = null;
    this.core({ type: 'membership', joined: false });
    this.timer(this.clock() + this.sim.ttlMs / 3, () => this.joinMembership());
  }

  /** A graceful stop: leave the membership (delete the lease), hand every shard over, exit. */
  stop(then: () => void): void {
    this.stopping = true;
    this.onStopped = then;
    const m = this.membership;
    this.membership = null;
    const key = `node.${this.id}`;
    const leave = () => {
      this.core({ type: 'membership', joined: false });
      this.core({ type: 'stop' });
    };
    if (m === null) {
      leave();
      return;
    }
    this.link.call(
      () => {
        if (this.sim.leases.delete(key, m.revision, this.sim.now)) this.sim.onNodeLeaseChange(this.id, false);
        return true;
      },
      () => leave(),
      2 * this.sim.ttlMs,
    );
  }

  // ----- the core and its commands (what src/cluster/shard-ownership.ts does against NATS)

  core(event: OwnershipEvent): void {
    if (this.state === 'down') return;
    const { view, commands } = this.stepCore(event);
    this.view = view;
    for (const c of commands) this.execute(c);
    const at = nextWake(this.view);
    if (at !== this.wakeAt) {
      this.wakeAt = at;
      const token = ++this.wakeToken;
      if (at !== null)
        this.timer(at, () => {
          if (token === this.wakeToken) {
            this.wakeAt = null;
            this.core({ type: 'tick' });
          }
        });
    }
  }

  /**
   * As the shell does: renewal answers read in one turn of the event loop go to the core as one
   * `renewals` event (here: those delivered within a microsecond, as the answers held while a node
   * was paused are, and many sent together). No random draw, so each seed draws the faults it drew
   * before (the runs differ only by that microsecond).
   */
  private renewed(r: Renewal): void {
    this.renewals.push(r);
    if (this.renewals.length > 1) return;
    this.timer(this.clock(), () => {
      const results = this.renewals.splice(0);
      if (results.length > 1) this.sim.stats.batchedRenewals += results.length;
      this.core(results.length === 1 ? { type: 'renewed', ...results[0]! } : { type: 'renewals', results });
    });
  }

  private stepCore(event: OwnershipEvent): { view: OwnershipView; commands: OwnershipCommand[] } {
    return (this.sim.options.step ?? coreStep)(this.view, event, this.clock());
  }

  private execute(c: OwnershipCommand): void {
    const sim = this.sim;
    const timeout = 2 * sim.ttlMs;
    switch (c.type) {
      case 'list':
        this.link.call(
          () => this.listMembers(),
          (r) => this.core(r === null ? { type: 'list_failed' } : { type: 'listed', ...r, changes: c.changes }),
          timeout,
        );
        return;
      case 'claim': {
        const sentAt = this.clock();
        const key = `shard.${c.shard}`;
        const value = JSON.stringify({ ...c.value, conn: this.conn });
        const done = (granted: { revision: number; previous: LeaseValue | null } | null) => this.core({ type: 'claimed', shard: c.shard, sentAt, granted });
        if (c.marker !== null) {
          const seen = c.marker;
          this.link.call(
            () => sim.leases.update(key, value, seen.revision, sim.now),
            (r) => done(r === null ? null : { revision: r, previous: seen.marker }),
            timeout,
          );
          return;
        }
        // Create; if the key exists, read it, and take it only if it is a marker we may take.
        this.link.call(
          () => sim.leases.create(key, value, sim.now),
          (created) => {
            if (created !== null) return done({ revision: created, previous: null });
            this.link.call(
              () => sim.leases.get(key, sim.now),
              (e) => {
                if (e === null) return done(null);
                const previous = JSON.parse(e.value) as LeaseValue;
                const steal = c.steal !== null && sim.options.stealAnyConnection === true ? { ...c.steal, conn: previous.conn ?? '' } : c.steal;
                if (!takeable(previous, this.id, steal)) return done(null);
                if (steal !== null && previous.node_id === steal.node) sim.stats.steals++;
                this.link.call(
                  () => sim.leases.update(key, value, e.revision, sim.now),
                  (r) => done(r === null ? null : { revision: r, previous }),
                  timeout,
                );
              },
              timeout,
            );
          },
          timeout,
        );
        return;
      }
      case 'renew':
        this.link.call(
          () => sim.leases.update(`shard.${c.shard}`, JSON.stringify({ ...c.value, conn: this.conn }), c.revision, sim.now),
          (r) => this.renewed({ shard: c.shard, sentAt: c.sentAt, revision: r }),
          timeout,
        );
        return;
      case 'serve':
        sim.log(`${this.label} serves shard ${c.shard} (epoch ${c.epoch}${c.handedOver ? ', handed over' : ', fencing'})`);
        this.exitedBy.delete(c.shard);
        this.subscribe(c.shard);
        if (c.sweep) this.sweep(c.shard, 50, 0);
        return;
      case 'sweep':
        this.sweep(c.shard, c.afterMs, c.attempt);
        return;
      case 'settle': {
        this.unsubscribe(c.shard);
        this.wake();
        if (sim.options.releaseEarly === true) {
          this.core({ type: 'settled', shard: c.shard });
          void this.registry.release(c.shard);
          return;
        }
        void this.registry
          .release(c.shard)
          .catch(() => undefined)
          .then(() => this.core({ type: 'settled', shard: c.shard }));
        return;
      }
      case 'release': {
        this.exitedBy.set(c.shard, 'release');
        const key = `shard.${c.shard}`;
        const marker = c.marker;
        this.link.call(
          () => {
            if (marker !== null) return sim.leases.update(key, JSON.stringify(marker), c.revision, sim.now);
            sim.leases.delete(key, c.revision, sim.now);
            return null;
          },
          (r) => this.core({ type: 'release_done', shard: c.shard, revision: r }),
          timeout,
        );
        return;
      }
      case 'announce':
        sim.stats.handovers++;
        this.link.toServer(() => sim.watchers((n) => n.core({ type: 'announced', shard: c.shard, revision: c.revision, marker: c.marker })));
        return;
      case 'drop':
        sim.log(`${this.label} drops shard ${c.shard}: ${c.reason}`);
        this.exitedBy.set(c.shard, 'drop');
        this.unsubscribe(c.shard);
        for (let af = c.shard; af < ACTIVEFLOWS; af += SHARDS) {
          const handle = this.registry.peek(idOf(af));
          if (handle !== undefined) this.dropped.set(af, [...(this.dropped.get(af) ?? []).filter((h) => h.busy), handle]);
        }
        this.wake();
        this.registry.drop(c.shard);
        return;
      case 'released':
        sim.log(`${this.label} released shard ${c.shard}${c.to === null ? '' : ` to ${c.to}`}`);
        return;
      case 'note':
        sim.log(`${this.label} ${c.event} ${JSON.stringify(c.fields)}`);
        return;
      case 'stopped':
        if (this.stopping && !this.stopped) {
          this.stopped = true;
          this.state = 'down';
          this.watching = false;
          this.link.closeByServer('stopped');
          sim.log(`${this.label} stopped`);
          this.onStopped?.();
        }
        return;
    }
  }

  private subscribe(shard: number): void {
    this.mySubs.add(shard);
    this.link.toServer(() => {
      if (this.mySubs.has(shard) && this.state !== 'down') this.sim.subs.get(shard)?.add(this) ?? this.sim.subs.set(shard, new Set([this]));
    }, true);
  }

  private unsubscribe(shard: number): void {
    this.mySubs.delete(shard);
    this.link.toServer(() => {
      if (!this.mySubs.has(shard)) this.sim.subs.get(shard)?.delete(this);
    }, true);
  }

  resubscribe(): void {
    if (this.state === 'down') return;
    for (const [shard, set] of this.sim.subs) if (!this.mySubs.has(shard)) set.delete(this);
    for (const shard of this.mySubs) this.subscribe(shard);
  }

  // ----- the actors, on this node, over the simulated servers

  /** Async work of this node's actors may go on: its continuations run before the next event. */
  private wake(): void {
    this.sim.woken = true;
  }

  /** One round trip to the servers over this node's link; a timeout fails it as the client's would. */
  private readonly call: Call = <T>(op: () => T): Promise<T> =>
    new Promise<T>((resolve, reject) => {
      this.link.call(
        () => ({ value: op() }),
        (r) => {
          this.wake();
          if (r === null) reject(new errors.TimeoutError());
          else resolve(r.value);
        },
        2 * this.sim.ttlMs,
      );
    });

  /** The node's actors as the node wires them (src/node/activeflow-node.ts), over this node's link and clock. */
  private makeRegistry(): ActorRegistry {
    const sim = this.sim;
    const now = () => sim.now;
    const { js, jsm } = simJetStream(sim.stream, this.call, {
      sending: (subject, entry) => {
        if (entry.kind === 'move') this.checkMayWrite(afOf(subject.slice(subject.lastIndexOf('.') + 1)));
      },
      stored: (m, expectedLast) => sim.journalEntry(this, m, expectedLast),
    });
    const history = simKv(sim.history, this.call, now, 'af_history');
    const timing: RetryTiming = { sleep: (ms) => this.sleep(ms), random: () => sim.random() };
    const realIndex = new ActiveflowIndex(simKv(sim.index, this.call, now, 'af_index'), timing);
    const index = this.mutatedIndex(realIndex);
    let entropy = 0;
    const clock: HostClock = {
      now: () => formatTimestamp(new Date(EPOCH_MS + this.clock())),
      entropy: () => `${this.label}-entropy-${++entropy}`,
    };
    const effects: EffectRunner = {
      // an awaited webhook: answered after a while (on this node's clock), or never if the node dies
      perform: (effect) =>
        new Promise<EffectResult>((resolve) =>
          this.timer(this.clock() + sim.between(2, 40), () => {
            this.wake();
            resolve(effect.type === 'http_request' ? { kind: 'http', status: 200, body: '' } : { kind: 'failure', message: `no ${effect.type} here` });
          }),
        ),
      launch: () => undefined,
      startChild: () => Promise.resolve(),
    };
    // The running slots: the real count writer, over af_quotas, on this node's clock and timers.
    let writes = 0;
    const counts = new RunningCount(simKv(sim.quotas, this.call, now, 'af_quotas'), this.id, {
      timing,
      newId: () => `${this.label}/w${++writes}`,
      now: () => EPOCH_MS + this.clock(),
    });
    const admission: CreationAdmission = {
      limits: () => DEFAULT_LIMITS,
      admitRate: () => undefined,
      refundRate: () => undefined,
      takeSlot: (customer: string) => counts.take(customer, QUOTA),
      release: (customer: string) => counts.give(customer),
    };
    return new ActorRegistry(
      {
        store: new SnapshotStore(simKv(sim.running, this.call, now, 'af_running'), simKv(sim.ended, this.call, now, 'af_ended'), SHARDS, {
          kv: history,
          history: new HistoryChunks(history),
          stacks: new StackLists(history),
        }),
        journal: new Journal(js, jsm),
        index,
        effects,
        clock,
        log: silentLogger,
        limits: DEFAULT_LIMITS,
        findFlow: () => Promise.resolve(null),
        findParent: () => Promise.resolve(null),
        mustFence: (id) => isUnfenced(this.view, afOf(id) % SHARDS),
        stillServed: (id) => serves(this.view, afOf(id) % SHARDS, this.clock()),
        admission,
        later: (ms, fn) => void this.sleep(ms).then(fn),
      },
      Number.POSITIVE_INFINITY,
      (id) => afOf(id) % SHARDS,
    );
  }

  /** The index as the mutations break it: a running entry put over anything, or dropped outside a creation. */
  private mutatedIndex(real: ActiveflowIndex): ActiveflowIndex {
    const { indexOverwrite, noReindex } = this.sim.options;
    if (indexOverwrite !== true && noReindex !== true) return real;
    const kv = simKv(this.sim.index, this.call, () => this.sim.now, 'af_index');
    return Object.assign(Object.create(real) as ActiveflowIndex, {
      record: async (af: Parameters<ActiveflowIndex['record']>[0]) => {
        const running = af.status === 'running' && af.tm_delete === null;
        if (running && noReindex === true && !this.creating.has(af.id)) return;
        if (running && indexOverwrite === true) {
          const entry: IndexEntry = { status: af.status, reference_type: af.reference_type, reference_id: af.reference_id, tm_create: af.tm_create, deleted: false };
          await kv.put(`${af.customer_id}.${af.id}`, encodeJson(entry));
          return;
        }
        await real.record(af);
      },
    });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) =>
      this.timer(this.clock() + ms, () => {
        this.wake();
        resolve();
      }),
    );
  }

  /**
   * A journal append of a move leaves only while its shard is served here, or being handed over
   * and not yet settled, or from a handle forgotten at a drop (a request in hand when the lease was
   * lost finishes; the journal refuses its entry if the next owner has fenced the activeflow).
   * Never from a handle released at a handover.
   */
  private checkMayWrite(af: number): void {
    // A handle forgotten at a drop finishes the request in hand, whatever this node did with the
    // shard since: the next owner fences it (a handover before the sweep passes the fence on).
    if (this.dropped.get(af)?.some((h) => h.busy) === true) return;
    const shard = af % SHARDS;
    const s = this.view.shards.get(shard);
    if (s?.phase === 'serving' || (s?.phase === 'leaving' && !s.settled)) return;
    if (this.exitedBy.get(shard) === 'drop') return;
    this.sim.fail(`${this.label} sends a move of activeflow ${af} after releasing shard ${shard}`);
  }

  /**
   * The sweep, as the shell's warm(): after `ms`, the shard's running activeflows listed, each
   * loaded (and so fenced) through its actor, only while the shard is still ours; then `swept`.
   */
  private sweep(shard: number, ms: number, attempt: number): void {
    const sim = this.sim;
    this.timer(this.clock() + ms, () => {
      this.wake();
      void this.call(() => sim.running.keys(`${shard}.`, sim.now).map((k) => k.slice(k.indexOf('.') + 1)))
        .then(async (ids) => {
          let ok = true;
          for (const id of ids) {
            if (!serves(this.view, shard, this.clock())) return false;
            await this.registry
              .get(id)
              .warm()
              .catch(() => {
                ok = false;
              });
          }
          return ok && serves(this.view, shard, this.clock());
        })
        .catch(() => false)
        .then((ok) => this.core({ type: 'swept', shard, ok, attempt }));
    });
  }

  /** How this node last stopped serving each shard. */
  private readonly exitedBy = new Map<number, 'drop' | 'release'>();
  /** Handles of each activeflow this node forgot at a drop (their request in hand may still finish). */
  private readonly dropped = new Map<number, ActiveflowActor[]>();

  // ----- the request path: the pipeline's ownership check, then the actor

  handle(req: Request, reply: (r: Reply) => void): void {
    const shard = req.af % SHARDS;
    if (!serves(this.view, shard, this.clock())) {
      reply({ ok: false, code: 'unavailable' });
      return;
    }
    const flow = this.sim.flows[req.af]!;
    const id = idOf(req.af);
    const actor = this.registry.get(id);
    this.wake();
    let answer: Promise<ActorReply>;
    if (req.kind === 'create') {
      this.creating.add(id);
      answer = actor.create(flow.create()).finally(() => this.creating.delete(id));
    } else if (req.kind === 'next') answer = actor.request('next', { current_action_id: flow.from(req.move) });
    else answer = actor.read(undefined, (state: EngineState) => flow.movesOf(state));
    answer.then(
      (r) => {
        if (r.ok) reply({ ok: true, moves: req.kind === 'create' ? 0 : req.kind === 'get' ? (r.value as number) : this.movesOfReply(req.af, r.value) });
        // a repeated create (its first answer was lost) finds the activeflow there
        else if (req.kind === 'create' && r.error.code === 'conflict') reply({ ok: true, moves: 0 });
        else reply({ ok: false, code: 'unavailable' });
      },
      () => reply({ ok: false, code: 'unavailable' }),
    );
  }

  /** The moves a `next` answer stands for: the action it gives (the finish action once the flow ended). */
  private movesOfReply(af: number, action: unknown): number {
    const id = (action as { id: string }).id;
    return id === FINISH ? MOVES : this.sim.flows[af]!.moves('running', id);
  }

  // ----- the reconcile, on the node that serves shard 0 (as RunningReconcile)

  private readonly checked = new Map<number, Checked>();

  /**
   * Idle actors leave memory now and then, as the node's passivation does (every one idle at that
   * moment: the simulation's time is not the actors' last-use clock): each checkpointed first, and
   * loaded again by its next request from the checkpoint and the journal's last entry at once (the
   * customer is known).
   */
  private passivateLater(): void {
    this.timer(this.clock() + this.sim.between(100, 600), () => {
      if (this.state === 'down' || this.stopped) return;
      this.wake();
      void this.registry.passivateIdle(Number.POSITIVE_INFINITY).then(
        (n) => n > 0 && this.sim.log(`${this.label} passivates ${n} idle actors`),
        () => undefined,
      );
      this.passivateLater();
    });
  }

  reconcileLater(): void {
    this.timer(this.clock() + RECONCILE_MS, () => {
      if (this.state === 'down') return;
      if (!serves(this.view, 0, this.clock())) return this.reconcileLater();
      this.reconcileCustomer(0, () => this.reconcileLater());
    });
  }

  private reconcileCustomer(c: number, then: () => void): void {
    if (c >= CUSTOMERS) {
      then();
      return;
    }
    const sim = this.sim;
    const key = `running.${customerId(c)}`;
    const nextOne = () => this.reconcileCustomer(c + 1, then);
    this.link.call(
      () => ({ e: sim.quotas.get(key, sim.now) }),
      (read) => {
        const e = read?.e ?? null;
        if (e === null) return nextOne();
        const stored = JSON.parse(e.value) as StoredCount;
        const counter = { revision: e.revision, running: stored.running };
        const before = this.checked.get(c);
        if (maySkip(before, counter)) {
          this.checked.set(c, { ...before!, skipped: true });
          return nextOne();
        }
        this.link.call(
          () => sim.index.keys(`${customerId(c)}.`, sim.now).filter((k) => isRunning(sim.index.get(k, sim.now)!.value)).length,
          (truth) => {
            if (truth === null) return nextOne();
            this.checked.set(c, { revision: counter.revision, truth, skipped: false });
            const to = correction(before, counter, truth);
            if (to === null) return nextOne();
            this.link.call(
              () => sim.quotas.update(key, JSON.stringify({ ...stored, running: to } satisfies StoredCount), e.revision, sim.now),
              (r) => {
                if (r !== null && r !== undefined) {
                  sim.stats.corrections += Math.abs(to - counter.running);
                  sim.log(`${this.label} corrects the running count of customer ${c}: ${counter.running} to ${to}`);
                  this.checked.delete(c);
                }
                nextOne();
              },
              2 * sim.ttlMs,
            );
          },
          2 * sim.ttlMs,
        );
      },
      2 * sim.ttlMs,
    );
  }
}
