/**
 * Which node delivers webhooks: the one holding the `webhooks` lease in af_leases (see
 * WebhookDispatcher for why only one). Every node tries to take it every third of the lease TTL;
 * the holder starts the dispatcher, and stops it the moment its lease is fenced. A node that stops
 * releases the lease with a marker, so another takes over within a third of the TTL instead of a
 * whole one, and knows it may start delivering at once.
 */
import type { KV } from '@nats-io/kv';
import { ShardLease } from '../cluster/shard-lease.js';
import type { Logger } from '../log.js';
import type { WebhookDispatcher } from './webhook-dispatcher.js';

const KEY = 'webhooks';

export class WebhookLeadership {
  private lease: ShardLease | null = null;
  private dispatcher: WebhookDispatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private trying: Promise<void> | null = null;
  private stopped = false;

  constructor(
    private readonly leases: KV,
    private readonly nodeId: string,
    private readonly ttlMs: number,
    private readonly makeDispatcher: () => WebhookDispatcher,
    private readonly log: Logger,
  ) {}

  get leading(): boolean {
    return this.lease !== null && !this.lease.isFenced;
  }

  async start(): Promise<void> {
    await this.tryLead();
    this.timer = setInterval(
      () => {
        if (this.trying === null) this.trying = this.tryLead().finally(() => (this.trying = null));
      },
      Math.max(100, Math.floor(this.ttlMs / 3)),
    );
    this.timer.unref();
  }

  private async tryLead(): Promise<void> {
    if (this.stopped || this.leading) return;
    const lease = await ShardLease.acquire(this.leases, KEY, this.nodeId, {
      ttlMs: this.ttlMs,
      safetyMs: Math.floor(this.ttlMs / 4),
      onFence: (reason) => void this.lose(reason),
    }).catch(() => null);
    if (lease === null) return;
    this.lease = lease;
    lease.keep();
    const dispatcher = this.makeDispatcher();
    this.dispatcher = dispatcher;
    try {
      await dispatcher.start({ clean: lease.handedOver, mayAct: () => !lease.isFenced && Date.now() < lease.validUntilMs });
      if (this.dispatcher !== dispatcher) return; // lost while it started
      this.log.info({ event: 'webhooks_leading' }, 'this node delivers the webhooks');
    } catch (e) {
      this.log.warn({ event: 'webhooks_start_failed', err: e });
      await this.lose('the dispatcher did not start');
      await lease.release({ handOver: true }); // stopped: it holds nothing
    }
  }

  private async lose(reason: string): Promise<void> {
    const d = this.dispatcher;
    this.dispatcher = null;
    this.lease = null;
    if (d !== null) {
      this.log.warn({ event: 'webhooks_lease_lost', reason }, 'this node stops delivering webhooks');
      await d.stop();
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    await this.trying;
    const lease = this.lease;
    const d = this.dispatcher;
    this.dispatcher = null;
    this.lease = null;
    await d?.stop();
    // A released marker, not a delete: it tells the next holder that everything held was given
    // back, so it may start at once instead of waiting out the ack wait (WebhookDispatcher).
    await lease?.release({ handOver: true });
  }
}
