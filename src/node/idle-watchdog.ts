/**
 * Ends activeflows that have not changed for too long: a call whose service forgot it, a flow
 * waiting on something that will never come. Each node sweeps the shards it owns (so after a
 * failover the new owner does it, from what is stored); an activeflow idle past its limit is
 * stopped with end_reason `timeout`, through its mailbox, and its on_complete flow runs as after
 * any end. The limit is its flow's `max_idle_seconds` if set, capped by the deployment's ceiling
 * (MAX_IDLE_SECONDS); with neither, it is never timed out.
 *
 * The sweep reads each owned shard's snapshots in one pass and only the fields it needs, without
 * loading actors, so it does not fill memory with the idle activeflows it checks; only one past its
 * limit is loaded, by its actor, which checks again. It is sequential, a background chore.
 */
import type { ActorRegistry } from '../../actors/index.js';
import { NIL } from '../../machines/index.js';
import type { Logger } from '../log.js';
import type { FlowStore } from '../store/flow-store.js';
import type { RunningSummary, SnapshotStore } from '../store/snapshot-store.js';

export interface WatchdogDeps {
  snapshots: SnapshotStore;
  flows: FlowStore;
  registry: ActorRegistry;
  ownedShards: () => readonly number[];
  owns: (shard: number) => boolean;
  /** The deployment's ceiling in ms; 0: none (only flows' own limits apply). */
  ceilingMs: number;
  intervalMs: number;
  log: Logger;
  onTimeout?: () => void;
}

/** When an activeflow last changed (ms). */
export const lastChangeMs = (af: Pick<RunningSummary, 'tm_create' | 'tm_update'>): number => Date.parse(af.tm_update ?? af.tm_create);

export class IdleWatchdog {
  private timer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> | null = null;
  private stopped = false;
  timedOut = 0;

  constructor(private readonly deps: WatchdogDeps) {}

  start(): void {
    this.timer = setInterval(() => {
      if (this.sweeping === null && !this.stopped)
        this.sweeping = this.sweep()
          .catch((e: unknown) => this.deps.log.warn({ event: 'watchdog_failed', err: e }))
          .finally(() => (this.sweeping = null));
    }, this.deps.intervalMs);
    this.timer.unref();
  }

  /** One pass over the owned shards. */
  async sweep(): Promise<void> {
    const flowLimits = new Map<string, number>(); // per sweep: a flow's limit may change
    const limitOf = async (af: RunningSummary): Promise<number> => {
      let flowMs = 0;
      if (af.flow_id !== NIL) {
        if (!flowLimits.has(af.flow_id)) flowLimits.set(af.flow_id, ((await this.deps.flows.get(af.flow_id, af.customer_id))?.flow.max_idle_seconds ?? 0) * 1000);
        flowMs = flowLimits.get(af.flow_id)!;
      }
      const limits = [flowMs, this.deps.ceilingMs].filter((x) => x > 0);
      return limits.length === 0 ? Infinity : Math.min(...limits);
    };
    for (const shard of this.deps.ownedShards()) {
      if (this.stopped) return;
      for (const af of await this.deps.snapshots.runningSummaries(shard)) {
        if (this.stopped || !this.deps.owns(shard)) break;
        if (af.status !== 'running') continue;
        const id = af.id;
        const limit = await limitOf(af);
        if (Date.now() - lastChangeMs(af) <= limit) continue;
        // The actor checks again inside its mailbox: a move that came meanwhile keeps it alive.
        if (await this.deps.registry.get(id).timeOut(limit)) {
          this.timedOut++;
          this.deps.onTimeout?.();
          this.deps.log.info(
            { event: 'activeflow_timed_out', activeflow_id: id, customer_id: af.customer_id, idle_ms: Date.now() - lastChangeMs(af) },
            `activeflow ${id} ended: idle past ${limit} ms`,
          );
        }
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.sweeping;
  }
}
