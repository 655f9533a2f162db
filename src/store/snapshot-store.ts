/**
 * The checkpoints of activeflows: a running one's persisted XState snapshot in `af_running` under
 * `<shard>.<id>`, an ended one's final state in `af_ended` under `<id>`, each naming the journal
 * entry it reflects (`af_journal`: the entry's stream sequence and number). An activeflow is its
 * checkpoint plus the journal entries after it (src/store/journal.ts); the journal's revision check
 * is the fence, and checkpoint writes are revision-checked too, so an older one never replaces a
 * newer one (docs/architecture.md, "The journal"). A checkpoint without `af_journal` was written
 * before the journal, as a snapshot per move: it is the whole state, and its first load here
 * starts the activeflow's journal from it.
 */
import type { KV } from '@nats-io/kv';
import type { Snapshot } from 'xstate';
import { EngineState } from '../../machines/index.js';
import { shardOf } from '../nats/shard-mapping.js';
import { decodeJson, encodeJson } from './codec.js';
import type { HistoryChunks } from './history-chunks.js';
import { liveKeys, purgeKeys, valueAt, valuesNow } from './kv-keys.js';
import { isRevisionConflict, RevisionConflict } from './revision-conflict.js';
import { isMessageTtlDisabled } from '../errors.js';
import type { StackLists } from './stack-lists.js';

/**
 * What a running checkpoint stores aside in `af_history` (keys `<activeflow_id>.*`): the history
 * beyond its tail, so that a checkpoint's size does not grow with the history. Stacks' action lists
 * are inline; stores of earlier versions also have them aside (src/store/stack-lists.ts).
 */
export interface Aside {
  kv: KV;
  history: HistoryChunks;
  stacks: StackLists;
}

/** Set on a stored snapshot once anything of its activeflow was stored aside: the end cleans up. */
interface AsideMarks {
  af_history_chunks?: string[];
  af_aside?: true;
}

/** How long the marker of a removed running key stays (the shortest TTL nats-server takes). */
const MARKER_TTL = '1s';

export type Revision = number & { readonly __brand: 'Revision' };

export type RunningSummary = Pick<EngineState['activeflow'], 'id' | 'customer_id' | 'flow_id' | 'status' | 'tm_create' | 'tm_update'>;

/** The journal entry a checkpoint reflects: its stream sequence (0: none yet) and number. */
export interface JournalPosition {
  seq: number;
  n: number;
}

/**
 * A running checkpoint its node wrote and may trust when it loads the activeflow again: the
 * journal entry it reflects and its revision in af_running (ActorRegistry, ActiveflowActor.load).
 */
export interface OwnCheckpoint extends JournalPosition {
  revision: Revision;
}

export type StoredActiveflow =
  | { kind: 'running'; snapshot: Snapshot<unknown>; state: EngineState; revision: Revision; position: JournalPosition | null }
  | { kind: 'ended'; state: EngineState; revision: Revision; runningRevision: Revision | null; position: JournalPosition | null };

/**
 * A checkpoint's state: its outbox's events and replies are left out (they were the last move's,
 * in its journal entry already; a load needs only the effects, for a cycle held by one or the
 * children of an end). ~3 KB of the bench call's 12 KB ended record.
 */
export function checkpointState(state: EngineState): EngineState {
  return { ...state, outbox: { replies: [], effects: state.outbox.effects, events: [] } };
}

function positionOf(value: unknown): JournalPosition | null {
  const p = (value as { af_journal?: Partial<JournalPosition> }).af_journal;
  return typeof p?.seq === 'number' && typeof p.n === 'number' ? { seq: p.seq, n: p.n } : null;
}

export class SnapshotStore {
  /** Whether af_running takes markers that expire (openStorage allows message TTLs; a server before 2.11 cannot). */
  private markersExpire = true;

  constructor(
    private readonly running: KV,
    private readonly ended: KV,
    readonly shardCount: number,
    private readonly aside: Aside | null = null,
  ) {}

  runningKey(id: string): string {
    return `${shardOf(id, this.shardCount)}.${id}`;
  }

  /**
   * Reads an activeflow; a running key left beside an ended record (a crash mid-end) reads as ended.
   *
   * `own`: the revision of the running checkpoint this node wrote last and still holds the shard of,
   * nobody else having written the activeflow since (ActiveflowActor.load). That checkpoint is read
   * by its revision from whichever server answers, and taken as it is: it is this process's own
   * encoding of a state it held, so it is not validated again (what validation would change in
   * such a checkpoint, nothing, is a property test: test/unit/checkpoint.test.ts).
   * Should no server at hand hold it, the running key's last value is read from the leader (and
   * validated, unless it is that same revision), and af_ended only if that key is gone after all.
   */
  async load(id: string, own?: Revision): Promise<StoredActiveflow | null> {
    if (own !== undefined) {
      const found = await this.checkpointAt(id, own);
      if (found !== null) return this.runningRecord(found.value, found.revision, found.revision !== own);
    }
    const [r, e] = await Promise.all([this.running.get(this.runningKey(id)), this.ended.get(id)]);
    const runningEntry = r !== null && r.operation === 'PUT' ? r : null;
    if (e !== null && e.operation === 'PUT') {
      const value = decodeJson(e.value);
      return {
        kind: 'ended',
        state: EngineState.parse(value),
        revision: e.revision as Revision,
        runningRevision: runningEntry ? (runningEntry.revision as Revision) : null,
        position: positionOf(value),
      };
    }
    if (runningEntry === null) return null;
    return this.runningRecord(runningEntry.value, runningEntry.revision as Revision, true);
  }

  private async runningRecord(value: Uint8Array, revision: Revision, validate: boolean): Promise<StoredActiveflow> {
    let snapshot = decodeJson(value) as Snapshot<unknown>;
    const position = positionOf(snapshot);
    if (this.aside !== null) snapshot = await this.aside.stacks.join(await this.aside.history.join(snapshot));
    // The actor restores from the validated context, so defaults for fields that older snapshots
    // lack are filled in.
    const context = (snapshot as unknown as { context: unknown }).context;
    const state = validate ? EngineState.parse(context) : (context as EngineState);
    if (this.aside !== null) {
      for (const stack of Object.values(state.activeflow.stack_map)) stack.actions = this.aside.stacks.intern(stack.actions);
    }
    return { kind: 'running', snapshot: { ...(snapshot as object), context: state } as unknown as Snapshot<unknown>, state, revision, position };
  }

  /**
   * The running checkpoint at `revision`, by a direct get from whichever server has it; else the
   * running key's last value from the leader (another revision, or null when the key is gone).
   */
  private async checkpointAt(id: string, revision: Revision): Promise<{ value: Uint8Array; revision: Revision } | null> {
    const key = this.runningKey(id);
    // Whatever keeps a direct get from answering (a bucket made without allow_direct has no
    // responder for it), the leader's read decides.
    const value = await valueAt(this.running, key, revision).catch(() => null);
    if (value !== null) return { value, revision };
    const e = await this.running.get(key);
    return e !== null && e.operation === 'PUT' ? { value: e.value, revision: e.revision as Revision } : null;
  }

  /**
   * Whether this id has an ended record, for duplicate-id checks at creation: a running one is
   * refused by `create` itself (af_running's running key is created only if absent), but an ended
   * one's running key is gone, so only this read tells.
   */
  async hasEnded(id: string): Promise<boolean> {
    const e = await this.ended.get(id);
    return e !== null && e.operation === 'PUT';
  }

  /** The first checkpoint, before the activeflow's first journal entry (position 0/0); refused if the id exists. */
  async create(id: string, snapshot: Snapshot<unknown>): Promise<Revision> {
    const key = this.runningKey(id);
    try {
      return (await this.running.create(key, encodeJson({ ...(snapshot as object), af_journal: { seq: 0, n: 0 } }))) as Revision;
    } catch (e) {
      if (isRevisionConflict(e)) throw new RevisionConflict(key, { cause: e });
      throw e;
    }
  }

  /** A checkpoint of a running activeflow at `position`, if the key is still at `revision`. */
  async update(id: string, snapshot: Snapshot<unknown>, revision: Revision, position: JournalPosition): Promise<Revision> {
    const key = this.runningKey(id);
    const stored = this.aside === null ? snapshot : this.aside.stacks.split(await this.aside.history.split(snapshot));
    try {
      return (await this.running.update(key, encodeJson({ ...(stored as object), af_journal: position }), revision)) as Revision;
    } catch (e) {
      if (isRevisionConflict(e)) throw new RevisionConflict(key, { cause: e });
      throw e;
    }
  }

  /** The checkpoint of an ended activeflow (a re-write of the same state is harmless). */
  async writeEnded(id: string, state: EngineState, position: JournalPosition, revision: Revision | null): Promise<Revision> {
    const value = encodeJson({ ...checkpointState(state), af_journal: position });
    try {
      if (revision === null) return (await this.ended.put(id, value)) as Revision;
      return (await this.ended.update(id, value, revision)) as Revision;
    } catch (e) {
      if (isRevisionConflict(e)) throw new RevisionConflict(id, { cause: e });
      throw e;
    }
  }

  /**
   * This node no longer holds the activeflow in memory (passivated, handed over): what it knew of
   * its stored chunks and lists goes too; the next load reads their keys from the snapshot again.
   */
  forget(id: string): void {
    this.aside?.history.forget(id);
    this.aside?.stacks.forget(id);
  }

  /** Activeflows whose stored chunks or lists this node remembers (memory that must follow the actors). */
  get trackedAside(): number {
    return (this.aside?.history.tracked ?? 0) + (this.aside?.stacks.tracked ?? 0);
  }

  /**
   * Ending, last step: the running snapshot goes (only if it is still the one we wrote).
   *
   * `bare`: the caller wrote that checkpoint itself with nothing stored aside (the creation's, which
   * is never split): it is not read back for its marks. An activeflow that ends before its first
   * checkpoint (CHECKPOINT_EVERY moves) or passivation, which is most calls, ends without a read.
   */
  async deleteRunning(id: string, revision: Revision, bare = false): Promise<void> {
    try {
      if (this.aside !== null) {
        // The checkpoint being removed, read as a load of one's own checkpoint reads it.
        const last = bare ? null : await this.checkpointAt(id, revision);
        if (last !== null) {
          // What was stored aside goes first, in one purge that leaves no delete marker (a marker per
          // key would grow the bucket for ever). Safe before the running key: with the ended record
          // written, a load reads that record and never this snapshot. If the purge fails, the end
          // fails here and its retry purges again; done after the delete, nothing would retry it.
          const marks = decodeJson(last.value) as AsideMarks;
          if (marks.af_aside === true || (marks.af_history_chunks ?? []).length > 0) await purgeKeys(this.aside.kv, `${id}.>`);
        }
        if (bare || last !== null) this.forget(id);
      }
      await this.removeRunningKey(id, revision);
    } catch (e) {
      if (isRevisionConflict(e)) throw new RevisionConflict(this.runningKey(id), { cause: e });
      throw e;
    }
  }

  /**
   * The running key goes, revision-checked, and leaves nothing behind: an id is never used again,
   * and a marker per activeflow that ever ran would stay in af_running for ever (every key listing
   * walking them all). One write: a purge of the key (it rolls up the checkpoint) whose marker
   * expires after MARKER_TTL. Where the bucket takes no message TTL, a delete (the checked step)
   * and then a purge of its marker, two requests, the second allowed to fail (a marker is all that
   * is left).
   */
  private async removeRunningKey(id: string, revision: Revision): Promise<void> {
    const key = this.runningKey(id);
    if (this.markersExpire) {
      try {
        await this.running.purge(key, { previousSeq: revision, ttl: MARKER_TTL });
        return;
      } catch (e) {
        if (!isMessageTtlDisabled(e)) throw e;
        this.markersExpire = false;
      }
    }
    await this.running.delete(key, { previousSeq: revision });
    await purgeKeys(this.running, key).catch(() => undefined);
  }

  /**
   * What a background check needs of each running activeflow of a shard, read in one pass (no read
   * per activeflow, no history or list read back, no validation): for sweeps that act on few of
   * them, through the actor, which loads and checks the activeflow properly.
   */
  async runningSummaries(shard: number): Promise<RunningSummary[]> {
    const out: RunningSummary[] = [];
    for (const [key, value] of await valuesNow(this.running, `${shard}.*`)) {
      const af = (decodeJson(value) as { context?: { activeflow?: Partial<RunningSummary> } }).context?.activeflow;
      if (af?.id === undefined || af.status === undefined || af.tm_create === undefined) continue;
      out.push({ id: key.slice(key.indexOf('.') + 1), customer_id: af.customer_id ?? '', flow_id: af.flow_id ?? '', status: af.status, tm_create: af.tm_create, tm_update: af.tm_update ?? null });
    }
    return out;
  }

  /** Ids of the running activeflows of one shard (a listing filtered by the server). */
  async runningIdsOfShard(shard: number): Promise<string[]> {
    return (await liveKeys(this.running, `${shard}.*`)).map((key) => key.slice(key.indexOf('.') + 1));
  }

  /** Ids of the running activeflows of the given shards (one key listing). */
  async runningIds(shards: ReadonlySet<number>): Promise<string[]> {
    const ids: string[] = [];
    for (const key of await liveKeys(this.running, '>')) {
      const dot = key.indexOf('.');
      if (shards.has(Number(key.slice(0, dot)))) ids.push(key.slice(dot + 1));
    }
    return ids;
  }
}
