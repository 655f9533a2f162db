/**
 * The quotas a node applies when it creates an activeflow: the customer's creation rate and
 * running count, and the variable sizes the activeflow keeps for life.
 */
import type { CreationAdmission } from '../../actors/activeflow-actor.js';
import type { Limits } from '../../machines/index.js';
import type { CreationRate } from './creation-rate.js';
import type { QuotaBook } from './quota-book.js';
import { limitsFor } from './quotas.js';
import type { RunningCount } from './running-count.js';

export class CustomerQuotas implements CreationAdmission {
  constructor(
    private readonly book: QuotaBook,
    private readonly running: RunningCount,
    private readonly rate: CreationRate,
    private readonly baseLimits: Limits,
  ) {}

  limits(customerId: string): Limits {
    return limitsFor(this.baseLimits, this.book.of(customerId));
  }

  admitRate(customerId: string, child: boolean): void {
    if (!child) this.rate.take(customerId, this.book.of(customerId));
  }

  refundRate(customerId: string, child: boolean): void {
    if (!child) this.rate.giveBack(customerId, this.book.of(customerId));
  }

  takeSlot(customerId: string): Promise<void> {
    return this.running.take(customerId, this.book.of(customerId).running_activeflows);
  }

  release(customerId: string): Promise<void> {
    return this.running.give(customerId);
  }
}
