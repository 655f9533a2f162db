/**
 * Stream reads for the roles that may not create consumers (the gateway, operators).
 *
 * nats-server checks a push consumer's `deliver_subject` against nobody's permissions: whoever may
 * create a consumer can have the stream delivered to any subject (a call service's, say). So only
 * nodes create consumers, and they choose where a consumer delivers: a reader subscribes to
 * `activeflow.deliver.<role>.<token>` (which only its role may subscribe to), then asks
 * `activeflow.relay.v1.<role>.open` for a push consumer delivering there. The server itself moves
 * the messages; the node only makes and deletes consumers. Which role asks is known from the
 * subject, which the server lets only that role publish to; what each role may read is below.
 *
 * The consumers are ephemeral, in memory, without acks, with flow control and heartbeats (the
 * reader notices a lost consumer and opens another from where it was), and the server deletes one
 * a few seconds after its reader's subscription goes: a reader that dies leaves nothing behind.
 */
import { AckPolicy, DeliverPolicy, type ConsumerConfig, type JetStreamManager } from '@nats-io/jetstream';
import { nanos } from '@nats-io/transport-node';
import type { RelayOpen } from '../api/schemas.js';
import { RELAY_HEARTBEAT_MS, SUBJECTS, type RelayRole } from '../api/subjects.js';
import { ActiveflowError, isConsumerNotFound } from '../errors.js';
import { BUCKETS, EVENTS_STREAM } from '../store/buckets.js';

/** A reader whose subscription is gone has its consumer deleted by the server after this long. */
export const RELAY_INACTIVE_MS = 5_000;

const ID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}';

interface Readable {
  stream: string;
  filter: RegExp;
  what: string;
}

/** What each role may read: the streams and the subjects of them. */
const READABLE: Readonly<Record<RelayRole, Partial<Record<RelayOpen['stream'], Readable>>>> = {
  gateway: {
    events: { stream: EVENTS_STREAM, filter: new RegExp(`^activeflow\\.events\\.${ID}\\.(${ID}|\\*)$`), what: 'activeflow.events.<customer id>.<activeflow id or *>' },
    accesskeys: { stream: `KV_${BUCKETS.accessKeys}`, filter: new RegExp(`^\\$KV\\.${BUCKETS.accessKeys}\\.key\\.\\*$`), what: `$KV.${BUCKETS.accessKeys}.key.*` },
  },
  operator: {
    events: { stream: EVENTS_STREAM, filter: new RegExp(`^activeflow\\.events\\.(${ID}|\\*)\\.(${ID}|\\*)$`), what: 'activeflow.events.<customer id or *>.<activeflow id or *>' },
  },
};

/** The consumer behind a relay, named after its role and token so that close finds it. */
const consumerName = (role: RelayRole, token: string) => `relay_${role}_${token}`;

export class StreamRelay {
  constructor(private readonly jsm: JetStreamManager) {}

  /** Opens a relay: its consumer, and how many messages it has to deliver now (a reader's catch-up). */
  async open(role: RelayRole, r: RelayOpen): Promise<{ consumer: string; deliver_subject: string; pending: number }> {
    const readable = READABLE[role][r.stream];
    if (readable === undefined) throw new ActiveflowError('invalid_argument', `stream: the ${role} role reads ${Object.keys(READABLE[role]).join(' and ')} only`);
    if (!readable.filter.test(r.filter)) throw new ActiveflowError('invalid_argument', `filter: ${r.stream} is read by subjects ${readable.what}`);
    const start: Partial<ConsumerConfig> =
      r.start_seq !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: r.start_seq }
        : { deliver_policy: { all: DeliverPolicy.All, new: DeliverPolicy.New, last_per_subject: DeliverPolicy.LastPerSubject }[r.deliver] };
    const deliver = SUBJECTS.relayDeliver(role, r.token);
    const info = await this.jsm.consumers.add(readable.stream, {
      name: consumerName(role, r.token),
      deliver_subject: deliver,
      filter_subject: r.filter,
      ...start,
      ack_policy: AckPolicy.None,
      flow_control: true,
      idle_heartbeat: nanos(RELAY_HEARTBEAT_MS),
      inactive_threshold: nanos(RELAY_INACTIVE_MS),
      mem_storage: true,
      num_replicas: 1,
    });
    return { consumer: info.name, deliver_subject: deliver, pending: info.num_pending };
  }

  /** Deletes a relay's consumer (of whichever stream it reads); closing one that is gone is fine. */
  async close(role: RelayRole, token: string): Promise<{ closed: boolean }> {
    let closed = false;
    for (const stream of new Set(Object.values(READABLE[role]).map((x) => x.stream))) {
      closed =
        (await this.jsm.consumers.delete(stream, consumerName(role, token)).catch((e: unknown) => {
          if (isConsumerNotFound(e)) return false;
          throw e;
        })) || closed;
    }
    return { closed };
  }
}
