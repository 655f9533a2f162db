/**
 * One frozen copy of each distinct set of limits among the activeflows in memory. An activeflow
 * keeps the limits it was created with (machines/limits.ts), and each held its own object of them,
 * made at its creation (from its customer's quotas) and again at each load: about 100 bytes per
 * resident activeflow, where a node's activeflows share a handful of distinct sets.
 */
import type { Limits } from '../../machines/index.js';
import { RecentMap } from '../recent-map.js';

/** Distinct sets kept (one per quota override in use, at most): a bound, not a size anyone reaches. */
const KEPT = 1_000;
const shared = new RecentMap<string, Limits>(KEPT);

export function sharedLimits(limits: Limits): Limits {
  const key = JSON.stringify(limits);
  const found = shared.get(key);
  if (found !== undefined) return found;
  const copy = Object.freeze({ ...limits });
  shared.set(key, copy);
  return copy;
}
