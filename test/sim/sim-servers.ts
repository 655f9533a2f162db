/**
 * What the simulated NATS servers hold (KV buckets, the events stream) and what a node's client
 * calls on them: just the calls the real stores make (src/store/snapshot-store.ts, journal.ts,
 * activeflow-index.ts), with the servers' own rules (a revision per write, a create refused when
 * the key exists, an update or delete refused unless the key is at the expected revision, a
 * publish refused unless the subject's last sequence is the expected one) and the client's own
 * errors (JetStreamApiError 10071 for a refused check, TimeoutError for an answer that never came).
 * So the real SnapshotStore, Journal and ActiveflowIndex run over the simulated network unchanged.
 *
 * Each call is one round trip over the node's link (`Call`): the operation runs on the servers when
 * the request arrives, and its answer comes back over the link, or never (a drop, a partition, a
 * crash): then the caller's promise fails with a timeout, as the client's does.
 */
import type { KV } from '@nats-io/kv';
import { JetStreamApiCodes, JetStreamApiError, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';

interface Entry {
  value: string;
  revision: number;
  writtenAt: number;
}

/** One KV bucket on the simulated servers: a revision per write, an optional TTL per bucket (max_age). */
export class SimBucket {
  private readonly entries = new Map<string, Entry>();
  constructor(
    private readonly seq: { n: number },
    private readonly ttlMs: number | null,
  ) {}

  get(key: string, now: number): Entry | null {
    const e = this.entries.get(key);
    if (e === undefined) return null;
    if (this.ttlMs !== null && now >= e.writtenAt + this.ttlMs) {
      this.entries.delete(key);
      return null;
    }
    return e;
  }

  create(key: string, value: string, now: number): number | null {
    if (this.get(key, now) !== null) return null;
    return this.put(key, value, now);
  }

  update(key: string, value: string, revision: number, now: number): number | null {
    const e = this.get(key, now);
    if (e === null || e.revision !== revision) return null;
    return this.put(key, value, now);
  }

  delete(key: string, revision: number, now: number): boolean {
    const e = this.get(key, now);
    if (e === null || e.revision !== revision) return false;
    this.entries.delete(key);
    return true;
  }

  put(key: string, value: string, now: number): number {
    const revision = ++this.seq.n;
    this.entries.set(key, { value, revision, writtenAt: now });
    return revision;
  }

  /** The key whose value is at `revision`, if it still is (a direct get by sequence). */
  at(revision: number, now: number): { key: string; entry: Entry } | null {
    for (const [key, entry] of this.entries) if (entry.revision === revision) return this.get(key, now) === null ? null : { key, entry };
    return null;
  }

  /** Removes keys without a revision check and without a marker (a stream purge by subject). */
  purge(filter: string): void {
    const prefix = filter.endsWith('.>') ? filter.slice(0, -1) : null;
    for (const key of [...this.entries.keys()]) if (prefix === null ? key === filter : key.startsWith(prefix)) this.entries.delete(key);
  }

  keys(prefix: string, now: number): string[] {
    return [...this.entries.keys()].filter((k) => k.startsWith(prefix) && this.get(k, now) !== null).sort();
  }
}

export interface StreamMessage {
  seq: number;
  subject: string;
  data: string;
}

/** The events stream: one sequence for all subjects, a publish checked against its subject's last sequence. */
export class SimStream {
  private readonly messages: StreamMessage[] = [];
  private readonly lastOf = new Map<string, number>();

  /** The new message's sequence, or null when the subject's last sequence is not `expectedLast`. */
  publish(subject: string, data: string, expectedLast: number | undefined): StreamMessage | null {
    if (expectedLast !== undefined && (this.lastOf.get(subject) ?? 0) !== expectedLast) return null;
    const m = { seq: this.messages.length + 1, subject, data };
    this.messages.push(m);
    this.lastOf.set(subject, m.seq);
    return m;
  }

  last(subject: string): StreamMessage | null {
    const seq = this.lastOf.get(subject);
    return seq === undefined ? null : this.messages[seq - 1]!;
  }

  /** The subject's messages from sequence `from` on, at most `batch`. */
  from(subject: string, from: number, batch: number): StreamMessage[] {
    const out: StreamMessage[] = [];
    for (let i = Math.max(0, from - 1); i < this.messages.length && out.length < batch; i++) if (this.messages[i]!.subject === subject) out.push(this.messages[i]!);
    return out;
  }
}

/** One round trip to the servers over a node's link: `op` runs there; the answer, or a TimeoutError. */
export type Call = <T>(op: () => T) => Promise<T>;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The client's error for a refused revision or sequence check (what isRevisionConflict classifies). */
function wrongLastSequence(): JetStreamApiError {
  return new JetStreamApiError({ code: 400, err_code: JetStreamApiCodes.StreamWrongLastSequence, description: 'wrong last sequence' });
}

const REFUSED = Symbol('refused');

/** A node's handle on a bucket: the KV calls the stores make (get, create, update, put, delete, purge, a stream purge). */
export function simKv(bucket: SimBucket, call: Call, now: () => number, name: string): KV {
  const checked = async <T>(op: () => T | typeof REFUSED): Promise<T> => {
    const r = await call(op);
    if (r === REFUSED) throw wrongLastSequence();
    return r;
  };
  const kv = {
    prefix: `$KV.${name}`,
    stream: `KV_${name}`,
    get: (key: string) =>
      call(() => {
        const e = bucket.get(key, now());
        return e === null ? null : { key, value: encoder.encode(e.value), revision: e.revision, operation: 'PUT' as const };
      }),
    create: (key: string, data: Uint8Array) => checked(() => bucket.create(key, decoder.decode(data), now()) ?? REFUSED),
    update: (key: string, data: Uint8Array, revision: number) => checked(() => bucket.update(key, decoder.decode(data), revision, now()) ?? REFUSED),
    put: (key: string, data: Uint8Array) => call(() => bucket.put(key, decoder.decode(data), now())),
    delete: (key: string, opts?: { previousSeq?: number }) =>
      checked(() => {
        if (opts?.previousSeq === undefined) {
          bucket.purge(key);
          return undefined;
        }
        return bucket.delete(key, opts.previousSeq, now()) ? undefined : REFUSED;
      }),
    // A revision-checked purge of one key (its marker expires: nothing stays behind here either).
    purge: (key: string, opts?: { previousSeq?: number }) =>
      checked(() => {
        if (opts?.previousSeq === undefined) {
          bucket.purge(key);
          return undefined;
        }
        return bucket.delete(key, opts.previousSeq, now()) ? undefined : REFUSED;
      }),
    jsm: {
      streams: {
        purge: (_stream: string, opts: { filter: string }) =>
          call(() => {
            bucket.purge(opts.filter.slice(`$KV.${name}.`.length));
            return { success: true, purged: 0 };
          }),
      },
      direct: {
        getMessage: (_stream: string, q: { seq: number }) =>
          call(() => {
            const found = bucket.at(q.seq, now());
            return found === null ? null : { subject: `$KV.${name}.${found.key}`, data: encoder.encode(found.entry.value), seq: q.seq };
          }),
      },
    },
  };
  return kv as unknown as KV;
}

/**
 * A node's JetStream client and manager for the Journal: a publish with an expected last subject
 * sequence, the leader's message get (last by subject, next by subject), and the batched direct get.
 * `hooks.sending` sees an entry as the node sends it, `hooks.stored` as the servers store it (the
 * simulation's invariants look at both).
 */
export function simJetStream(
  stream: SimStream,
  call: Call,
  hooks: { sending(subject: string, entry: { kind: string }): void; stored(m: StreamMessage, expectedLast: number | undefined): void },
): { js: JetStreamClient; jsm: JetStreamManager } {
  const stored = (m: StreamMessage | null) => (m === null ? null : { seq: m.seq, subject: m.subject, data: encoder.encode(m.data) });
  const js = {
    publish: async (subject: string, data: Uint8Array, opts?: { expect?: { lastSubjectSequence?: number } }) => {
      const expected = opts?.expect?.lastSubjectSequence;
      const text = decoder.decode(data);
      hooks.sending(subject, JSON.parse(text) as { kind: string });
      const r = await call(() => {
        const m = stream.publish(subject, text, expected);
        if (m === null) return REFUSED;
        hooks.stored(m, expected);
        return m.seq;
      });
      if (r === REFUSED) throw wrongLastSequence();
      return { seq: r, stream: 'ACTIVEFLOW_EVENTS', duplicate: false };
    },
    consumers: {
      get: () => Promise.reject(new Error('the simulation has no consumers (a whole-journal read is for stores written before the journal)')),
    },
  };
  const jsm = {
    streams: {
      getMessage: (_stream: string, q: { last_by_subj?: string; seq?: number; next_by_subj?: string }) =>
        call(() => (q.last_by_subj !== undefined ? stored(stream.last(q.last_by_subj)) : stored(stream.from(q.next_by_subj!, q.seq!, 1)[0] ?? null))),
    },
    direct: {
      getBatch: async (_stream: string, q: { seq: number; next_by_subj: string; batch: number }) => {
        const batch = await call(() => stream.from(q.next_by_subj, q.seq, q.batch).map((m) => stored(m)!));
        return (async function* () {
          yield* batch;
        })();
      },
    },
  };
  return { js: js as unknown as JetStreamClient, jsm: jsm as unknown as JetStreamManager };
}
