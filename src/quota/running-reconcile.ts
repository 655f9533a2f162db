/**
 * Keeps the per-customer running counts (src/quota/running-count.ts) equal to the activeflows
 * that run, whatever a crash left. The truth is the index (`af_index`, one entry per activeflow
 * with its status), read per customer as `list` reads it.
 *
 * Why the index tells which way to correct: a create takes its slot before it writes its index
 * entry, and an end writes `ended` there before it gives its slot back. So an index showing more
 * running than the count is drift (a crash between a slot and a write, or activeflows that ran
 * before quotas existed): the count is raised at once, revision-checked, so a change meanwhile
 * wins. An index showing fewer may be a create between its slot and its index write: the count is
 * lowered only when, two reconciles in a row, neither the counter (same revision) nor the index
 * changed. A customer whose count agreed at the last check and has not been written since is
 * skipped once (its index is the costly read), never twice in a row: a drift can also come without a
 * count write (a creation cut before its slot and its index entry, whose load writes the entry
 * again), so every customer's index is read at least every other check, i.e. within a minute at
 * the default 30 s. One node runs it (the owner of shard 0); each correction is counted in
 * `activeflow_running_count_corrections_total` and logged.
 */
import type { Logger } from '../log.js';
import type { ActiveflowIndex } from '../store/activeflow-index.js';
import type { RunningCount } from './running-count.js';

export interface ReconcileDeps {
  running: RunningCount;
  index: ActiveflowIndex;
  /** Whether this node is the one that reconciles now. */
  isReconciler: () => boolean;
  intervalMs: number;
  log: Logger;
  /** A correction by `by` slots, up or down. */
  onCorrection: (direction: 'up' | 'down', by: number) => void;
}

/** What a reconcile remembers of a customer from its last check. */
export interface Checked {
  /** The counter's revision then. */
  revision: number;
  /** How many the index showed running then. */
  truth: number;
  /** Whether the check after it was skipped. */
  skipped: boolean;
}

/**
 * Whether this check may skip reading the customer's index: the count agreed at the last check,
 * has not been written since, and the last check was not a skip itself. Pure (the simulation runs it).
 */
export function maySkip(before: Checked | undefined, counter: { revision: number; running: number }): boolean {
  return before !== undefined && !before.skipped && before.revision === counter.revision && before.truth === counter.running;
}

/**
 * The count to set, or null to leave it: raised at once to what the index shows running; lowered
 * only when the check before saw the same counter and the same index (no creation in between its
 * slot and its index entry). Pure (the simulation runs it).
 */
export function correction(before: Checked | undefined, counter: { revision: number; running: number }, truth: number): number | null {
  if (truth > counter.running) return truth;
  const quiet = before !== undefined && before.revision === counter.revision && before.truth === truth;
  return truth < counter.running && quiet ? truth : null;
}

export class RunningReconcile {
  /** What each customer looked like at the last reconcile. */
  private readonly last = new Map<string, Checked>();
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;

  constructor(private readonly d: ReconcileDeps) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.running === null && this.d.isReconciler()) {
        this.running = this.reconcile()
          .catch((e: unknown) => this.d.log.warn({ event: 'running_reconcile_failed', err: e }))
          .finally(() => {
            this.running = null;
          });
      }
    }, this.d.intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer !== null) clearInterval(this.timer);
    await this.running;
  }

  /** One pass over every customer with a counter. */
  async reconcile(): Promise<void> {
    for (const customerId of await this.d.running.customers()) {
      const counter = await this.d.running.read(customerId);
      if (counter === null) continue;
      const before = this.last.get(customerId);
      // Most drift comes with a count write (a slot given twice, one given for an activeflow never
      // counted), so a customer that agreed and was not written since is skipped, once.
      if (maySkip(before, counter)) {
        this.last.set(customerId, { ...before!, skipped: true });
        continue;
      }
      const truth = await this.d.index.runningCount(customerId);
      this.last.set(customerId, { revision: counter.revision, truth, skipped: false });
      const to = correction(before, counter, truth);
      if (to !== null && (await this.d.running.correct(customerId, counter, to))) {
        const direction = to > counter.running ? 'up' : 'down';
        this.d.onCorrection(direction, Math.abs(to - counter.running));
        this.d.log.warn(
          { event: 'running_count_corrected', customer_id: customerId, from: counter.running, to },
          `the running count of customer ${customerId} was ${counter.running}, ${to} run: corrected`,
        );
        this.last.delete(customerId);
      }
    }
  }
}
