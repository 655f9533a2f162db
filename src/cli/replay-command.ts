/**
 * `activeflow replay`: re-runs recorded activeflows through this installation's engine and says
 * whether each is identical (src/replay/replay-journal.ts). For an upgrade: run the new version's
 * CLI against the activeflows running on the old one (docs/operations.md, "Upgrading the engine
 * safely").
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Activeflow } from '../../machines/schema.js';
import { exportRun, REDACTED_FIELDS as REDACTED, RunExport } from '../replay/journal-export.js';
import { childrenOf } from '../replay/scenario-export.js';
import { describeReplay, type ReplayResult, replayJournal } from '../replay/replay-journal.js';
import { JournalEntry } from '../store/journal-entry.js';
import type { Command } from './command.js';
import { table, withClient } from './connection.js';
import { progressBar } from './progress.js';
import { parseDuration } from './user-commands.js';

const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** The entries of a journal as `history` hands them over (events written before the journal are left out: a rebase holds their state). */
function journalOf(raw: unknown[]): JournalEntry[] {
  return raw.filter((e) => (e as { v?: unknown }).v === 2).map((e) => JournalEntry.parse(e));
}

/** `--since`: a time (2026-12-01T00:00:00Z) or how long ago (2h, 1d). */
function sinceMs(text: string): number | null {
  const ago = parseDuration(text);
  if (ago !== null) return Date.now() - ago;
  const at = Date.parse(text);
  return Number.isNaN(at) ? null : at;
}

export const replayCommand: Command = {
  name: 'replay',
  usage: 'activeflow replay <activeflow id> | --customer <id> [--since <time>] [--limit <n>] | --from-dir <dir>',
  summary: "Re-run recorded activeflows through this engine and compare every move with its record: 'identical', or the first divergence.",
  valued: ['customer', 'since', 'limit', 'from-dir'],
  help: `Re-runs an activeflow's journal (every move: its request, clock, entropy and effect results)
through this installation's engine, from its created entry, and compares each move's outcome
(cursor, status, variables, executed actions, events) with the record.

  activeflow replay <activeflow id>
      prints "identical", or the first divergence: the move, its request and what differs
  activeflow replay --customer <id> [--since <time>] [--limit <n>]
      the customer's activeflows (created since <time>: 2026-12-01T00:00:00Z, or 2h, 1d ago),
      at most <n> (default 1000), with a progress bar and a summary
  activeflow replay --from-dir <dir>
      every export in <dir> (activeflow export <id> > <dir>/<id>.json): a corpus of real calls,
      replayed without NATS against this version, for CI before an upgrade

Options:
  --json            print the results as JSON
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)

Exit status: 0 all identical; 1 a divergence (or, for one activeflow or a folder, a record that
cannot be replayed: past the stream's retention, or not an export); 2 bad arguments.`,
  run(args, io) {
    const id = args.positionals[0];
    const customer = args.options.get('customer');
    const dir = args.options.get('from-dir');
    if ([id, customer, dir].filter((x) => x !== undefined).length !== 1) {
      io.err(`activeflow replay: name one activeflow, --customer <id> or --from-dir <dir>. usage: ${this.usage}`);
      return 2;
    }
    if (dir !== undefined) return replayDir(dir, args.flags.has('json'), io);
    if (id !== undefined && !ID.test(id)) {
      io.err(`activeflow replay: "${id}" is not an activeflow id (a UUID)`);
      return 2;
    }
    const since = args.options.get('since');
    const from = since === undefined ? null : sinceMs(since);
    if (from === null && since !== undefined) {
      io.err(`activeflow replay: --since takes a time (2026-12-01T00:00:00Z) or a duration (90s, 15m, 2h, 1d), not "${since}"`);
      return 2;
    }
    const limit = Number(args.options.get('limit') ?? 1000);
    if (!Number.isInteger(limit) || limit < 1) {
      io.err(`activeflow replay: --limit takes a whole number of activeflows, not "${args.options.get('limit')}"`);
      return 2;
    }
    return withClient(args, io, async (client) => {
      const replay = async (activeflowId: string): Promise<ReplayResult> => replayJournal(activeflowId, journalOf(await client.entries(activeflowId)));
      if (id !== undefined) {
        const r = await replay(id.toLowerCase());
        io.out(args.flags.has('json') ? JSON.stringify(r, null, 2) : describeReplay(r));
        return r.outcome === 'identical' ? 0 : 1;
      }
      const picked: Activeflow[] = [];
      let token = '';
      do {
        const page = await client.listActiveflows({ customer_id: customer!, page_size: 100, ...(token ? { page_token: token } : {}) });
        for (const af of page.result) if ((from === null || Date.parse(af.tm_create) >= from) && picked.length < limit) picked.push(af);
        token = picked.length < limit ? page.next_page_token : '';
      } while (token !== '');
      const bar = progressBar('replaying');
      const results: ReplayResult[] = [];
      for (const af of picked) {
        results.push(
          await replay(af.id).catch(
            (e: unknown): ReplayResult => ({ activeflow_id: af.id, outcome: 'unreadable', moves: 0, from: null, recorded_by: [], replayed_by: '', reason: (e as Error).message }),
          ),
        );
        bar.update(results.length, picked.length);
      }
      bar.finish();
      summarize(results, args.flags.has('json'), io);
      return results.some((r) => r.outcome === 'diverged') ? 1 : 0;
    });
  },
};

/** The table (or JSON) of many replays, then each one that was not identical. */
function summarize(results: readonly ReplayResult[], json: boolean, io: { out(text: string): void }): void {
  const count = (o: ReplayResult['outcome']) => results.filter((r) => r.outcome === o).length;
  if (json) {
    io.out(JSON.stringify({ results, identical: count('identical'), diverged: count('diverged'), unreadable: count('unreadable') }, null, 2));
    return;
  }
  const moves = results.reduce((n, r) => n + r.moves, 0);
  const versions = [...new Set(results.flatMap((r) => r.recorded_by))].join(', ') || '-';
  io.out(
    table([
      ['ACTIVEFLOWS', 'IDENTICAL', 'DIVERGED', 'NOT REPLAYED', 'MOVES', 'RECORDED BY ENGINE'],
      [String(results.length), String(count('identical')), String(count('diverged')), String(count('unreadable')), String(moves), versions],
    ]),
  );
  for (const r of results) if (r.outcome !== 'identical') io.out(describeReplay(r));
}

/** `--from-dir`: every `*.json` export of a folder, replayed here, no NATS. */
function replayDir(dir: string, json: boolean, io: { out(text: string): void; err(text: string): void }): number {
  let files: string[];
  try {
    files = readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .sort();
  } catch (e) {
    io.err(`activeflow replay: cannot read ${dir}: ${(e as Error).message}`);
    return 2;
  }
  const results = files.map((f): ReplayResult => {
    try {
      const x = RunExport.parse(JSON.parse(readFileSync(join(dir, f), 'utf8')));
      return replayJournal(x.exported.activeflow_id, x.journal);
    } catch (e) {
      return { activeflow_id: f, outcome: 'unreadable', moves: 0, from: null, recorded_by: [], replayed_by: '', reason: `not an export of activeflow export (${(e as Error).message.split('\n')[0]})` };
    }
  });
  summarize(results, json, io);
  return results.some((r) => r.outcome !== 'identical') ? 1 : 0;
}

export const exportCommand: Command = {
  name: 'export',
  usage: 'activeflow export <activeflow id> [--keep-secrets] [> <file>.json]',
  summary: "Write an activeflow's run as an activeflow simulate scenario that reproduces it (secrets dropped); replay --from-dir re-runs such files.",
  help: `Prints an activeflow's run as an \`activeflow simulate\` scenario that reproduces it exactly: its
flows as it used them (fetched and on_complete ones included), its initial variables and limits,
the recorded clock, the recorded HTTP and service responses as canned ones, and its requests as
steps. \`activeflow simulate <file>\` then gives the same events and final state, its on_complete
children's included. The file also carries the journal (\`journal\`), which
\`activeflow replay --from-dir\` re-runs.
Fields named like secrets (${REDACTED.join(', ')}) are dropped wherever they
occur, and listed under "exported.redacted".
Options:
  --keep-secrets    drop nothing
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    const id = args.positionals[0];
    if (id === undefined || !ID.test(id)) {
      io.err(`activeflow export: which activeflow? usage: ${this.usage}`);
      return 2;
    }
    return withClient(args, io, async (client) => {
      // the activeflow's journal, then its on_complete children's, depth first
      const journals = new Map<string, JournalEntry[]>();
      const queue = [id.toLowerCase()];
      while (queue.length > 0) {
        const next = queue.shift()!;
        const journal = journalOf(await client.entries(next).catch(() => []));
        if (journal.length === 0 && next !== id.toLowerCase()) continue; // a child that is gone: the export says so
        journals.set(next, journal);
        queue.push(...childrenOf(journal).filter((c) => !journals.has(c)));
      }
      let x: Record<string, unknown>;
      try {
        x = exportRun(id.toLowerCase(), journals, new Date().toISOString(), args.flags.has('keep-secrets') ? [] : REDACTED);
      } catch (e) {
        io.err(`activeflow export: ${(e as Error).message}`);
        return 1;
      }
      io.out(JSON.stringify(x, null, 2));
      const meta = x['exported'] as { redacted: string[]; notes: string[] };
      if (meta.redacted.length > 0) io.err(`activeflow export: ${meta.redacted.length} secret field(s) dropped (listed under "exported.redacted"); --keep-secrets keeps them`);
      for (const note of meta.notes) io.err(`activeflow export: note: ${note}`);
      return 0;
    });
  },
};
