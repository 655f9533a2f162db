/**
 * Shard events logged a batch at a time: a node that starts, stops or takes a dead node's place
 * acquires or releases dozens of shards within milliseconds, and a line for each buried everything
 * else (the start banner among them). Entries that arrive within `windowMs` of the first go out as
 * one line: `{"event":"shards_acquired","count":85,"shards":[{"shard":3,...},...]}`.
 */
import type { Logger } from '../log.js';

export class ShardEventBatch {
  private readonly pending = new Map<string, Record<string, unknown>[]>();
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly log: Logger,
    private readonly windowMs = 200,
  ) {}

  /** Adds one shard's entry to the next `event` line (logged at info). */
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
    for (const [event, shards] of this.pending) this.log.info({ event, count: shards.length, shards });
    this.pending.clear();
  }
}
