/**
 * Shard events logged a batch at a time: a node that starts, stops or takes a dead node's place
 * acquires or releases dozens of shards within milliseconds, and a line for each buried everything
 * else (the start banner among them). Entries that arrive within `windowMs` of the first go out
 * together: `{"event":"shards_acquired","count":64,"shards":[{"shard":3,...},...]}`, at most
 * PER_LINE shards to a line. One line for all 256 shards of a stop was ~18 KB, and container
 * runtimes split lines longer than 16 KB (Docker's json-file driver, containerd's CRI logs), which
 * breaks the JSON for whatever collects the logs.
 */
import type { Logger } from '../log.js';

/** Shards per line: ~75 bytes each at most (a release with its target node and timings), ~5 KB a line. */
export const PER_LINE = 64;

export class ShardEventBatch {
  private readonly pending = new Map<string, ({ shard: number } & Record<string, unknown>)[]>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly windowMs = 200,
  ) {}

  /** Adds one shard's entry to the next `event` lines (logged at info). */
  add(event: string, entry: { shard: number } & Record<string, unknown>): void {
    let list = this.pending.get(event);
    if (list === undefined) {
      list = [];
      this.pending.set(event, list);
    }
    list.push(entry);
    if (this.timer === null) {
      this.timer = setTimeout(() => this.flush(), this.windowMs);
      this.timer.unref();
    }
  }

  /** Logs what is pending now (also on stop, so that nothing is lost). */
  flush(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    for (const [event, entries] of this.pending) {
      for (let i = 0; i < entries.length; i += PER_LINE) {
        const shards = entries.slice(i, i + PER_LINE);
        this.log.info({ event, count: shards.length, shards });
      }
    }
    this.pending.clear();
  }
}
