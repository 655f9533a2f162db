/**
 * `activeflow export`: an activeflow's run as a file. It is an `activeflow simulate` scenario that
 * reproduces the run (src/replay/scenario-export.ts), carrying the activeflow's journal besides
 * (`journal`), which `activeflow replay --from-dir` re-runs: a platform team keeps a corpus of real
 * calls and replays it against every upgrade (docs/operations.md, "Upgrading the engine safely").
 * Pure.
 *
 * Secrets stay out: every field whose name is in the redact list (Authorization and the like), in
 * the scenario and the journal alike, is dropped, and the export lists the paths it dropped.
 * Dropped everywhere the same way, a record still replays, unless a move's outcome depended on a
 * redacted value (then replay says where).
 */
import { z } from 'zod';
import { JournalEntry } from '../store/journal-entry.js';
import { VERSION } from '../version.js';
import { exportScenario } from './scenario-export.js';

/** Field names dropped from an export (compared without case, `-` and `_` alike). */
export const REDACTED_FIELDS = [
  'authorization',
  'proxy-authorization',
  'cookie',
  'set-cookie',
  'x-api-key',
  'api-key',
  'apikey',
  'password',
  'secret',
  'token',
  'access-token',
  'refresh-token',
  'client-secret',
];

/** What `replay --from-dir` reads of an export (the rest is the scenario). */
export const RunExport = z.looseObject({
  exported: z.object({
    activeflow_id: z.string(),
    exported_at: z.string(),
    /** The engine of the installation that exported it (each journal entry names the one that wrote it). */
    exported_by: z.string(),
    /** Paths of the fields dropped as secrets (`journal[3].input.variables.token`). */
    redacted: z.array(z.string()),
    /** What the scenario could not reproduce, if anything (a child asked more than its execute). */
    notes: z.array(z.string()),
  }),
  journal: z.array(JournalEntry),
});
export type RunExport = z.infer<typeof RunExport>;

const normal = (name: string) => name.toLowerCase().replaceAll('_', '-');

function redact(value: unknown, path: string, names: ReadonlySet<string>, dropped: string[]): unknown {
  if (Array.isArray(value)) return value.map((v, i) => redact(v, `${path}[${i}]`, names, dropped));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const p = path === '' ? k : `${path}.${k}`;
    if (names.has(normal(k))) dropped.push(p);
    else out[k] = redact(v, p, names, dropped);
  }
  return out;
}

/**
 * The export of `rootId`'s run, from its journal and its on_complete children's (oldest entry
 * first); `redactFields: []` keeps everything.
 */
export function exportRun(rootId: string, journals: ReadonlyMap<string, readonly JournalEntry[]>, now: string, redactFields: readonly string[] = REDACTED_FIELDS): Record<string, unknown> {
  const { scenario, notes } = exportScenario(rootId, journals);
  const names = new Set(redactFields.map(normal));
  const dropped: string[] = [];
  const body = redact({ ...scenario, journal: journals.get(rootId) }, '', names, dropped) as Record<string, unknown>;
  return { exported: { activeflow_id: rootId, exported_at: now, exported_by: VERSION, redacted: dropped, notes }, ...body };
}
