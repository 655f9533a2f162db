/**
 * The running activeflows of each customer, across the cluster: one counter per customer in
 * `af_quotas` under `running.<customer_id>`, changed only by revision-checked writes, so two
 * nodes admitting the same customer's creations at once can never both take the last slot.
 *
 * A slot is taken before the activeflow is created and given back if the create fails; an end
 * gives it back before the running snapshot is removed (a step of the end that recovery repeats).
 * KV has no transaction across two keys, so a crash between those two writes makes the count
 * drift by one: giving back before removing means the drift is a count too low (the customer
 * may run one more), never a slot lost for good that would lock a customer out.
 */
import type { KV } from '@nats-io/kv';
import { ActiveflowError } from '../errors.js';
import { decodeJson, encodeJson } from '../store/codec.js';

const PREFIX = 'running.';
const isConflict = (e: unknown) => /wrong last sequence|key exists/i.test((e as Error).message ?? '');

export class RunningCount {
  constructor(private readonly kv: KV) {}

  async of(customerId: string): Promise<number> {
    const e = await this.kv.get(PREFIX + customerId);
    return e !== null && e.operation === 'PUT' ? (decodeJson(e.value) as { running: number }).running : 0;
  }

  /** Takes a slot, or refuses with `limit_exceeded` (quota running_activeflows) when none is left. */
  async take(customerId: string, limit: number): Promise<void> {
    await this.change(customerId, (n) => {
      if (n >= limit) {
        throw new ActiveflowError('limit_exceeded', `customer ${customerId} has ${n} running activeflows; at most ${limit} are allowed (quota running_activeflows)`, { quota: 'running_activeflows' });
      }
      return n + 1;
    });
  }

  /** Gives a slot back (never below zero). */
  async give(customerId: string): Promise<void> {
    await this.change(customerId, (n) => Math.max(0, n - 1));
  }

  private async change(customerId: string, next: (n: number) => number): Promise<void> {
    const key = PREFIX + customerId;
    for (let attempt = 0; ; attempt++) {
      const e = await this.kv.get(key);
      const present = e !== null && e.operation === 'PUT';
      const n = present ? (decodeJson(e.value) as { running: number }).running : 0;
      const value = encodeJson({ running: next(n) });
      try {
        if (e === null) await this.kv.create(key, value);
        else await this.kv.update(key, value, e.revision);
        return;
      } catch (err) {
        if (!isConflict(err) || attempt >= 50) throw err;
        // another node changed the count meanwhile: read it again (a short jitter spreads the retries)
        await new Promise((r) => setTimeout(r, Math.random() * Math.min(20, 1 + attempt * 2)));
      }
    }
  }
}
