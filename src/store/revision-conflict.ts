import { JetStreamApiCodes, JetStreamApiError } from '@nats-io/jetstream';

/** A revision-checked KV write was refused: someone else wrote the key since we read it. */
export class RevisionConflict extends Error {
  override readonly name = 'RevisionConflict';
  constructor(
    readonly key: string,
    options?: { cause?: unknown },
  ) {
    super(`revision conflict on ${key}: another writer owns it now`, options);
  }
}

/**
 * The one classifier of refused revision checks, by the client's error class and the server's API
 * codes: a stale expected revision (an update, a delete with a previous sequence) and a create of a
 * key that exists are both "wrong last sequence" (10071; 10164 when the server cannot tell which).
 */
export function isRevisionConflict(e: unknown): boolean {
  return e instanceof JetStreamApiError && (e.code === JetStreamApiCodes.StreamWrongLastSequence || e.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown);
}
