/**
 * Deliberately broken versions of the protocol, each a one-line change of a rule the cluster's
 * safety rests on. The simulation must catch every one within the seeds CI runs
 * (test/unit/cluster-sim.test.ts); `npm run simulate:cluster -- --mutation <name>` shows how.
 */
import { type OwnershipView, type ShardView, step as coreStep } from '../../src/cluster/ownership-core.js';
import type { SimOptions, StepFn } from './cluster-sim.js';

function mapServing(view: OwnershipView, f: (s: Extract<ShardView, { phase: 'serving' }>) => ShardView): OwnershipView {
  const shards = new Map(view.shards);
  for (const [shard, s] of shards) if (s.phase === 'serving') shards.set(shard, f(s));
  return { ...view, shards };
}

/** A shard taken after a crash is treated as handed over: its activeflows are not fenced before use. */
const skipFence: StepFn = (view, event, now) => {
  const r = coreStep(view, event, now);
  return { ...r, view: mapServing(r.view, (s) => ({ ...s, unfenced: false })) };
};

/** A renewal counts from when its answer arrived, not from when it was sent. */
const renewLate: StepFn = (view, event, now) => {
  const r = coreStep(view, event, now);
  const results = event.type === 'renewed' ? [event] : event.type === 'renewals' ? event.results : [];
  const shards = new Map(r.view.shards);
  for (const { shard, revision } of results) {
    const s = shards.get(shard);
    if (revision !== null && s?.phase === 'serving') shards.set(shard, { ...s, lease: { ...s.lease, validUntil: now + view.cfg.ttlMs - view.cfg.safetyMs } });
  }
  return { ...r, view: { ...r.view, shards } };
};

/** A lease transferred to this node is served at once, before its first renewal confirms it. */
const trustTransfer: StepFn = (view, event, now) => {
  const r = coreStep(view, event, now);
  if (event.type !== 'announced') return r;
  return { ...r, view: mapServing(r.view, (s) => (s.lease.confirmed ? s : { ...s, lease: { ...s.lease, confirmed: true, validUntil: now + view.cfg.ttlMs - view.cfg.safetyMs } })) };
};

/** A node that loses its connection keeps serving its shards on the next one. */
const ignoreDisconnect: StepFn = (view, event, now) => (event.type === 'disconnected' ? coreStep(view, { type: 'tick' }, now) : coreStep(view, event, now));

/** A sweep that failed is not tried again: the shard's activeflows load only on their next request. */
const noSweepRetry: StepFn = (view, event, now) => {
  const r = coreStep(view, event, now);
  return { ...r, commands: r.commands.filter((c) => c.type !== 'sweep') };
};

/**
 * A mutation, what it breaks, the first seed that catches it (`npm run simulate:cluster -- --mutation
 * <name>` finds it again when a change moves it; the test tries it first, then every CI seed), and
 * (when it must be caught by a particular invariant) that invariant's message.
 */
export const MUTATIONS: Record<string, Omit<SimOptions, 'seed'> & { what: string; caughtBy: number; violation?: RegExp }> = {
  'skip-fence': { caughtBy: 4, what: 'a shard taken after a crash is not fenced', step: skipFence },
  'renew-late': { caughtBy: 40, what: "a renewal's validity counts from its answer, not its request", step: renewLate },
  'release-early': { caughtBy: 1, what: 'a handover releases its lease before its in-flight requests finish', releaseEarly: true },
  'trust-transfer': { caughtBy: 310, what: 'a transferred lease is served before its first renewal confirms it', step: trustTransfer },
  'ignore-disconnect': { caughtBy: 161, what: 'a node keeps serving across a lost connection', step: ignoreDisconnect },
  'steal-any-connection': { caughtBy: 1, what: "a suspect's lease is taken whatever connection it was written on", stealAnyConnection: true },
  'no-reindex': { caughtBy: 44, what: 'a load that finds no created entry does not write the index entry again', noReindex: true, violation: /running count/ },
  'index-overwrite': { caughtBy: 3937, what: 'a running index entry is written over an ended one (a late write undoes an end)', indexOverwrite: true, violation: /running count/ },
  'no-sweep-retry': { caughtBy: 1151, what: 'a failed sweep is not tried again (an end a crash interrupted is never finished)', step: noSweepRetry, violation: /running count/ },
  'release-any-handle': { caughtBy: 360, what: "a handover's release takes out whatever handle is registered now, not only those it waited for", releaseAnyHandle: true, violation: /after releasing/ },
  'settle-skips-end': { caughtBy: 20315, what: 'a handover leaves an end whose last steps failed to a retry its forgotten handle no longer runs', settleSkipsEnd: true, violation: /running count/ },
  'keep-forgotten': { caughtBy: 7498, what: 'a handle the registry forgot goes on with the requests queued on it', keepForgotten: true, violation: /read of activeflow|holds loaded/ },
};
