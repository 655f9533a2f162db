/**
 * The host's clock and entropy, the two things the pure core may not read itself. Tests and the
 * simulator use a fixed clock and seeded entropy so that a run is exactly repeatable.
 */
import { randomUUID } from 'node:crypto';

export interface HostClock {
  /** Now, as `YYYY-MM-DDTHH:MM:SS.ffffffZ`. */
  now(): string;
  /** Fresh random bits for the ids of one event. */
  entropy(): string;
}

/** `2026-11-27T10:00:00.123000Z`: VoIPBIN's REST format, microseconds from milliseconds. */
export function formatTimestamp(date: Date): string {
  return `${date.toISOString().slice(0, 23)}000Z`;
}

/** Parses any ISO 8601 time into the stored format; null when it is not a time. */
export function normalizeTimestamp(text: string): string | null {
  if (!/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}/.test(text)) return null;
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? null : formatTimestamp(new Date(ms));
}

/** The last reading and its text: under load many events fall in one millisecond. */
let lastMs = Number.NaN;
let lastText = '';

export const systemClock: HostClock = {
  now: () => {
    const ms = Date.now();
    if (ms !== lastMs) {
      lastText = formatTimestamp(new Date(ms));
      lastMs = ms;
    }
    return lastText;
  },
  // randomUUID draws from a pooled buffer: 0.08 us against 2 us for randomBytes(16) (122 random bits either way).
  entropy: () => randomUUID(),
};

/**
 * A recorded clock (an exported run's, docs/simulate.md): each read of `now` then `entropy` gives
 * the next recorded pair, in order; past the last one, `after` answers.
 */
export function recordedClock(reads: readonly { now: string; entropy: string }[], after: HostClock): HostClock {
  let i = 0;
  return {
    now: () => (i < reads.length ? reads[i]!.now : after.now()),
    entropy: () => (i < reads.length ? reads[i++]!.entropy : after.entropy()),
  };
}

/** A clock that stands still and entropy that counts from a seed: identical runs, every time. */
export function fixedClock(now: string, seed = 'activeflow'): HostClock {
  let n = 0;
  return { now: () => now, entropy: () => `${seed}:${++n}` };
}
