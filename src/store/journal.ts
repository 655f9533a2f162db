/**
 * The journal: every activeflow's entries (src/store/journal-entry.ts) in the `ACTIVEFLOW_EVENTS`
 * stream, on `activeflow.events.<customer_id>.<activeflow_id>`. A move's entry is its one durable
 * write, appended only if the subject's last sequence is the one its writer read or wrote last: a
 * writer that lost the activeflow (another node fenced it, or wrote since) is refused, as a
 * revision-checked KV update is (it is the same check: a KV bucket is a stream too).
 *
 * An activeflow's last entry is read from the stream's leader, never a direct get: a replica that
 * lags would answer an older one, and a load would miss moves that were acknowledged. The entries
 * up to it may come from any replica (`between`): what reaches that last entry is complete.
 */
import type { JetStreamClient, JetStreamManager, MsgRequest } from '@nats-io/jetstream';
import { headers } from '@nats-io/transport-node';
import type { StreamEvent } from '../../machines/index.js';
import { isMessageGone } from '../errors.js';
import { EVENTS_STREAM } from './buckets.js';
import { decodeJson, encodeJson } from './codec.js';
import { foldMessage, foldsOnto, JOURNAL_FORMAT, type JournalEntry, parseStreamMessage, type ReaderState, type StreamMessage } from './journal-entry.js';
import { isRevisionConflict, RevisionConflict } from './revision-conflict.js';

/** Messages asked of a replica in one batched direct get. */
const BATCH = 256;

export const journalSubject = (customerId: string, activeflowId: string): string => `activeflow.events.${customerId}.${activeflowId}`;

/**
 * On every entry: `1` when its activeflow has a webhook_uri, else `0`. The webhook deliverer reads
 * every entry of the stream, and without this header it had to decode each one to find the few it
 * delivers.
 */
export const WEBHOOK_HEADER = 'Activeflow-Webhook';

/** The last message of a journal, read without validating its body: what a load needs of it. */
export interface LastEntry {
  seq: number;
  /** The entry's number (0 for an event written before the journal). */
  n: number;
  kind: JournalEntry['kind'] | 'event';
  /** For an event written before the journal: its `seq`. */
  eventSeq?: number;
}

export interface Stored {
  /** The stream sequence. */
  seq: number;
  message: StreamMessage;
}

/**
 * The one write of a move: `entry` on `subject` if the subject's last stream sequence is
 * `expectedLast` (0: it has none); its stream sequence, or RevisionConflict. (Journal.append, and
 * the node bench's design floor, which must write exactly as a node does.)
 */
export async function appendEntry(js: JetStreamClient, subject: string, entry: JournalEntry, expectedLast: number, webhook: boolean): Promise<number> {
  const h = headers();
  h.set(WEBHOOK_HEADER, webhook ? '1' : '0');
  try {
    const ack = await js.publish(subject, encodeJson(entry), { headers: h, expect: { lastSubjectSequence: expectedLast } });
    return ack.seq;
  } catch (e) {
    if (isRevisionConflict(e)) throw new RevisionConflict(subject, { cause: e });
    throw e;
  }
}

export class Journal {
  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
  ) {}

  /**
   * Appends an entry if the activeflow's last stream sequence is `expectedLast` (0: it has none);
   * its stream sequence, or RevisionConflict.
   */
  append(customerId: string, activeflowId: string, entry: JournalEntry, expectedLast: number, webhook: boolean): Promise<number> {
    return appendEntry(this.js, journalSubject(customerId, activeflowId), entry, expectedLast, webhook);
  }

  /**
   * The activeflow's last message, from the stream's leader; null when it has none. Its body is
   * not validated (a `created` entry holds a whole state): the entries a load replays are.
   */
  async last(customerId: string, activeflowId: string): Promise<LastEntry | null> {
    try {
      const msg = await this.jsm.streams.getMessage(EVENTS_STREAM, { last_by_subj: journalSubject(customerId, activeflowId) });
      if (msg === null) return null;
      const body = decodeJson(msg.data) as { v?: unknown; n?: unknown; kind?: unknown; seq?: unknown };
      if (body.v === JOURNAL_FORMAT && typeof body.n === 'number' && typeof body.kind === 'string') return { seq: msg.seq, n: body.n, kind: body.kind as JournalEntry['kind'] };
      if (typeof body.seq === 'number') return { seq: msg.seq, n: 0, kind: 'event', eventSeq: body.seq };
      throw new Error(`the last message of activeflow ${activeflowId}'s journal (stream sequence ${msg.seq}) is neither an entry nor an event`);
    } catch (e) {
      if (isMessageGone(e)) return null;
      throw e;
    }
  }

  /**
   * The activeflow's messages after stream sequence `after`, up to and including `upto` (a load's
   * entries after its checkpoint, at most 31; or a whole journal, `all`). Batched direct gets of
   * up to BATCH messages: any replica may answer one, but a replica can only lack recent messages,
   * never hold other ones, so what reaches `upto` is the truth (`upto` itself came from the leader).
   * A batch that stops short of both `upto` and its size came from a replica that lags: the rest
   * is read from the leader, one message at a time.
   */
  async between(customerId: string, activeflowId: string, after: number, upto: number): Promise<Stored[]> {
    const out: Stored[] = [];
    let at = after;
    while (at < upto) {
      const want = Math.min(BATCH, upto - at);
      const got = await this.batch(customerId, activeflowId, at, upto, want).catch(() => null);
      if (got === null || got.length === 0) break;
      out.push(...got);
      at = got.at(-1)!.seq;
      if (got.length < want) break; // reached `upto`, or the replica that answered has no more
    }
    if (at >= upto) return out;
    return [...out, ...(await this.oneByOne(customerId, activeflowId, at, upto))];
  }

  private async batch(customerId: string, activeflowId: string, after: number, upto: number, size: number): Promise<Stored[]> {
    const out: Stored[] = [];
    const iter = await this.jsm.direct.getBatch(EVENTS_STREAM, { seq: after + 1, next_by_subj: journalSubject(customerId, activeflowId), batch: size });
    for await (const m of iter) {
      if (m.seq > upto) break;
      out.push({ seq: m.seq, message: parseStreamMessage(decodeJson(m.data)) });
      if (m.seq === upto) break;
    }
    return out;
  }

  private async oneByOne(customerId: string, activeflowId: string, after: number, upto: number): Promise<Stored[]> {
    const subject = journalSubject(customerId, activeflowId);
    const out: Stored[] = [];
    let from = after + 1;
    while (from <= upto) {
      // The leader's message get takes `next_by_subj` (nats-server's JSApiMsgGetRequest); the client's type lists only the direct get's.
      const msg = await this.jsm.streams.getMessage(EVENTS_STREAM, { seq: from, next_by_subj: subject } as unknown as MsgRequest).catch((e: unknown) => {
        if (isMessageGone(e)) return null;
        throw e;
      });
      if (msg === null || msg.seq > upto) break;
      out.push({ seq: msg.seq, message: parseStreamMessage(decodeJson(msg.data)) });
      from = msg.seq + 1;
    }
    return out;
  }

  /**
   * Every message of an activeflow up to stream sequence `upto` (by default its last, read from the
   * leader), oldest first. Read as `between` reads: an ordered consumer per read, as this was, cost
   * the server twice the CPU and the reader twice the time for a call's 22 entries, and in a
   * replicated cluster each one is a consumer the meta leader creates and deletes.
   */
  async all(customerId: string, activeflowId: string, upto?: number): Promise<Stored[]> {
    const last = upto ?? (await this.last(customerId, activeflowId))?.seq;
    return last === undefined ? [] : this.between(customerId, activeflowId, 0, last);
  }
}

/** The full events a run of one activeflow's messages (from its first) stands for. */
export function eventsOf(messages: readonly Stored[], fromSeq = 1, limit = Number.POSITIVE_INFINITY): StreamEvent[] {
  const out: StreamEvent[] = [];
  let state: ReaderState | null = null;
  for (const { message } of messages) {
    if (!foldsOnto(state, message)) continue; // its start is past the stream's retention: from the next base on
    const folded = foldMessage(state, message);
    state = folded.state;
    for (const e of folded.events) if (e.seq >= fromSeq && out.length < limit) out.push(e);
    if (out.length >= limit) break;
  }
  return out;
}
