/**
 * The quotas in force for each customer: the defaults, overridden per customer by the entries of
 * `af_quotas` under `override.<customer_id>`. Every node keeps the overrides in memory from a
 * watch of that key space, so a check is a map lookup and an operator's change applies within
 * moments on every node.
 */
import type { KV, KvWatchEntry } from '@nats-io/kv';
import type { Logger } from '../log.js';
import { decodeJson, encodeJson } from '../store/codec.js';
import { followKeys, type Following } from '../store/kv-follow.js';
import { isRevisionConflict } from '../store/revision-conflict.js';
import { QuotaOverride, type Quotas } from './quotas.js';

const PREFIX = 'override.';

export class QuotaBook {
  private readonly overrides = new Map<string, QuotaOverride>();
  private following: Following | null = null;

  constructor(
    private readonly kv: KV,
    readonly defaults: Quotas,
    private readonly log: Logger,
  ) {}

  /** Loads the overrides (one watch replay) and follows them until stop(); a lost watch is reopened. */
  async start(): Promise<void> {
    this.following = followKeys(
      this.kv,
      `${PREFIX}*`,
      (e) => this.apply(e),
      (e) => this.log.warn({ event: 'quota_watch_failed', err: e }, 'following quota overrides again'),
    );
    await this.following.ready;
  }

  stop(): void {
    this.following?.stop();
  }

  private apply(e: KvWatchEntry): void {
    const customer = e.key.slice(PREFIX.length);
    if (e.operation !== 'PUT') {
      this.overrides.delete(customer);
      return;
    }
    const parsed = QuotaOverride.safeParse(decodeJson(e.value));
    if (parsed.success) this.overrides.set(customer, parsed.data);
    else this.log.warn({ event: 'quota_override_invalid', customer_id: customer }, 'ignored: not a quota override');
  }

  /** The quotas of one customer. */
  of(customerId: string): Quotas {
    const o = this.overrides.get(customerId);
    return o === undefined ? this.defaults : { ...this.defaults, ...o };
  }

  /** What is stored for a customer (read from the bucket, not the cache), and the result. */
  async get(customerId: string): Promise<{ customer_id: string; override: QuotaOverride; quotas: Quotas }> {
    const e = await this.kv.get(PREFIX + customerId);
    const override = e !== null && e.operation === 'PUT' ? QuotaOverride.parse(decodeJson(e.value)) : {};
    return { customer_id: customerId, override, quotas: { ...this.defaults, ...override } };
  }

  /** Merges `change` into the customer's override (a null value goes back to the default). */
  async set(customerId: string, change: Record<string, number | null>): Promise<{ customer_id: string; override: QuotaOverride; quotas: Quotas }> {
    for (;;) {
      const e = await this.kv.get(PREFIX + customerId);
      const current = e !== null && e.operation === 'PUT' ? QuotaOverride.parse(decodeJson(e.value)) : {};
      const next: Record<string, number> = { ...current } as Record<string, number>;
      for (const [k, v] of Object.entries(change)) {
        if (v === null) delete next[k];
        else next[k] = v;
      }
      const override = QuotaOverride.parse(next);
      try {
        if (e === null) await this.kv.create(PREFIX + customerId, encodeJson(override));
        else await this.kv.update(PREFIX + customerId, encodeJson(override), e.revision);
      } catch (err) {
        if (isRevisionConflict(err)) continue; // raced another operator: merge again
        throw err;
      }
      this.overrides.set(customerId, override);
      return { customer_id: customerId, override, quotas: { ...this.defaults, ...override } };
    }
  }

  /** Drops a customer's override: the defaults apply again. */
  async reset(customerId: string): Promise<{ customer_id: string; override: QuotaOverride; quotas: Quotas }> {
    await this.kv.delete(PREFIX + customerId);
    this.overrides.delete(customerId);
    return { customer_id: customerId, override: {}, quotas: this.defaults };
  }
}
