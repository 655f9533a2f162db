/**
 * What this node's webhook deliverer already settled, kept across its terms as deliverer: a lease
 * lost for a moment (a NATS restart, a slow renewal) must not make it send again what it sent just
 * before. Without it, a nats-server restart sent an event twice: it was delivered while the server
 * was down, its removal from the retry lane failed, and the next term found it still there.
 *
 * - `main`: ACTIVEFLOW_EVENTS sequences delivered (or moved to the retry lane) whose ack may not
 *   have reached the server; redelivered, they are acked, not sent again.
 * - `retry`: WEBHOOK_RETRY sequences delivered or given up, not yet deleted; found again, they are
 *   deleted, not sent again.
 *
 * Only within this process: after a crash the successor sends them again (at least once).
 */
import { RecentMap } from '../recent-map.js';

const REMEMBERED = 16_384;

export class DeliveryMemory {
  readonly main = new RecentMap<number, true>(REMEMBERED);
  readonly retry = new RecentMap<number, true>(REMEMBERED);
}
