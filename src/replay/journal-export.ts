/**
 * An activeflow's journal as a file (`activeflow export`): what `activeflow replay --from-dir`
 * re-runs, so a platform team can keep a corpus of real calls and replay it against every upgrade
 * (docs/operations.md, "Upgrading the engine safely"). Pure.
 *
 * Secrets stay out: every field whose name is in the redact list (Authorization and the like), in
 * the state, the requests, the effect results and the recorded changes alike, is dropped, and the
 * export lists the paths it dropped. Dropped everywhere the same way, a record still replays,
 * unless a move's outcome depended on a redacted value (then replay says where).
 */
import { z } from 'zod';
import { JournalEntry } from '../store/journal-entry.js';
import { VERSION } from '../version.js';

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

export const JournalExport = z.object({
  format: z.literal('activeflow-journal'),
  format_version: z.literal(1),
  activeflow_id: z.string(),
  exported_at: z.string(),
  /** The engine of the installation that exported it (each entry names the one that wrote it). */
  exported_by: z.string(),
  /** Paths of the fields dropped as secrets (`entries[3].input.variables.token`). */
  redacted: z.array(z.string()),
  entries: z.array(JournalEntry),
});
export type JournalExport = z.infer<typeof JournalExport>;

const normal = (name: string) => name.toLowerCase().replaceAll('_', '-');

function redact(value: unknown, path: string, names: ReadonlySet<string>, dropped: string[]): unknown {
  if (Array.isArray(value)) return value.map((v, i) => redact(v, `${path}[${i}]`, names, dropped));
  if (typeof value !== 'object' || value === null) return value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const p = `${path}.${k}`;
    if (names.has(normal(k))) dropped.push(p);
    else out[k] = redact(v, p, names, dropped);
  }
  return out;
}

/** The export of a journal (oldest entry first); `redactFields: []` keeps everything. */
export function exportJournal(activeflowId: string, entries: readonly JournalEntry[], now: string, redactFields: readonly string[] = REDACTED_FIELDS): JournalExport {
  const names = new Set(redactFields.map(normal));
  const dropped: string[] = [];
  const kept = entries.map((e, i) => redact(e, `entries[${i}]`, names, dropped) as JournalEntry);
  return { format: 'activeflow-journal', format_version: 1, activeflow_id: activeflowId, exported_at: now, exported_by: VERSION, redacted: dropped, entries: kept };
}
