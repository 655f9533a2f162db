/**
 * The reading side of a stream relay (src/node/stream-relay.ts): the gateway and operators read
 * streams through consumers that a node makes for them, since they may not make consumers.
 *
 * A reader subscribes to its delivery subject first (a bound push consumer of the client library,
 * which answers flow control and watches the heartbeats), then asks a node to open the relay.
 * It keeps the order the way an ordered consumer does: a gap in the delivery sequence, missed
 * heartbeats or a deleted consumer open a new relay from the stream sequence after the last one
 * delivered, so its reader sees every message once, in order, across server restarts.
 */
import { randomBytes } from 'node:crypto';
import { jetstream, type ConsumerMessages } from '@nats-io/jetstream';
import { nanos, type MsgHdrs, type NatsConnection } from '@nats-io/transport-node';
import { ActiveflowClient } from '../api/client.js';
import type { RelayOpen } from '../api/schemas.js';
import { RELAY_HEARTBEAT_MS, SUBJECTS, type RelayRole } from '../api/subjects.js';
import { StopSignal } from '../cluster/async-limits.js';
import { retry, type Backoff } from '../retry.js';

export type RelaySpec = Omit<RelayOpen, 'token'>;

export interface RelayMessage {
  /** The message's place in the stream. */
  seq: number;
  subject: string;
  data: Uint8Array;
  headers: MsgHdrs | undefined;
}

interface Opened {
  token: string;
  messages: ConsumerMessages;
  pending: number;
}

/** Between tries of a reopen while no node answers. */
const REOPEN_BACKOFF: Backoff = { firstMs: 100, maxMs: 2_000, jitter: true };

export class RelayReader implements AsyncIterable<RelayMessage> {
  private current: Opened;
  private lastSeq = 0;
  private readonly halt = new StopSignal();
  private markCaughtUp!: () => void;
  /** Resolves once every message there was when the relay first opened has been read. */
  readonly caughtUp = new Promise<void>((r) => (this.markCaughtUp = r));

  private constructor(
    private readonly nc: NatsConnection,
    private readonly role: RelayRole,
    private readonly spec: RelaySpec,
    first: Opened,
    private readonly client: ActiveflowClient,
  ) {
    this.current = first;
    if (first.pending === 0) this.markCaughtUp();
  }

  /** Opens a relay; refused (an ActiveflowError) when the spec is not one the role may read. */
  static async open(nc: NatsConnection, role: RelayRole, spec: RelaySpec, retryForMs = 5_000): Promise<RelayReader> {
    const client = new ActiveflowClient(nc, { retryForMs, requestTimeoutMs: 2_000 });
    return new RelayReader(nc, role, spec, await RelayReader.relay(nc, client, role, spec), client);
  }

  private static async relay(nc: NatsConnection, client: ActiveflowClient, role: RelayRole, spec: RelaySpec): Promise<Opened> {
    const token = randomBytes(12).toString('hex');
    const consumer = await jetstream(nc).consumers.getBoundPushConsumer({ deliver_subject: SUBJECTS.relayDeliver(role, token), idle_heartbeat: nanos(RELAY_HEARTBEAT_MS) });
    const messages = await consumer.consume();
    try {
      await nc.flush(); // subscribed at the server before anything is delivered
      const opened = await client.call<{ pending: number }>(SUBJECTS.relay(role, 'open'), { ...spec, token });
      return { token, messages, pending: opened.pending };
    } catch (e) {
      messages.stop();
      throw e;
    }
  }

  /** Every message, once, in order; leaving the loop early stops the reader. */
  async *[Symbol.asyncIterator](): AsyncIterator<RelayMessage> {
    try {
      while (!this.halt.stopped) {
        const { messages } = this.current;
        const lost = this.watchStatus(messages);
        let expected = 1;
        for await (const m of messages) {
          if (m.info.deliverySequence !== expected) break; // a message was lost on the way: reopen after the last one read
          expected++;
          this.lastSeq = m.info.streamSequence;
          yield { seq: m.seq, subject: m.subject, data: m.data, headers: m.headers };
          if (m.info.pending === 0) this.markCaughtUp();
        }
        lost.stop();
        if (this.halt.stopped) return;
        await this.reopen();
      }
    } finally {
      this.stop();
    }
  }

  /** Ends the iteration of `messages` when its consumer is lost (heartbeats missed, deleted). */
  private watchStatus(messages: ConsumerMessages): { stop(): void } {
    let done = false;
    void (async () => {
      for await (const s of messages.status()) {
        if (done) return;
        if (s.type === 'heartbeats_missed' || s.type === 'consumer_deleted') {
          messages.stop();
          return;
        }
      }
    })();
    return { stop: () => (done = true) };
  }

  /** Replaces the relay with one that starts after the last message read, trying until it opens or the reader stops. */
  private async reopen(): Promise<void> {
    this.current.messages.stop();
    this.closeRelay(this.current.token);
    const spec: RelaySpec = this.lastSeq === 0 ? this.spec : { ...this.spec, start_seq: this.lastSeq + 1 };
    try {
      this.current = await retry(() => RelayReader.relay(this.nc, this.client, this.role, spec), { backoff: REOPEN_BACKOFF, halt: this.halt });
      if (this.current.pending === 0) this.markCaughtUp();
    } catch {
      // stopped while no node answered: the iteration ends
    }
  }

  /** Deletes a relay's consumer now rather than when the server notices nobody reads it. */
  private closeRelay(token: string): void {
    if (this.nc.isClosed()) return;
    void this.nc.request(SUBJECTS.relay(this.role, 'close'), JSON.stringify({ token }), { timeout: 2_000 }).catch(() => undefined);
  }

  stop(): void {
    if (this.halt.stopped) return;
    this.halt.stop();
    this.current.messages.stop();
    this.closeRelay(this.current.token);
  }
}
