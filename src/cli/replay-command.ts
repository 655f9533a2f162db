/**
 * `activeflow replay`: re-runs recorded activeflows through this installation's engine and says
 * whether each is identical (src/replay/replay-journal.ts). For an upgrade: run the new version's
 * CLI against the activeflows running on the old one (docs/operations.md, "Upgrading the engine
 * safely").
 */
import type { Activeflow } from '../../machines/schema.js';
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
  usage: 'activeflow replay <activeflow id> | --customer <id> [--since <time>] [--limit <n>]',
  summary: "Re-run recorded activeflows through this engine and compare every move with its record: 'identical', or the first divergence.",
  valued: ['customer', 'since', 'limit'],
  help: `Re-runs an activeflow's journal (every move: its request, clock, entropy and effect results)
through this installation's engine, from its created entry, and compares each move's outcome
(cursor, status, variables, executed actions, events) with the record.

  activeflow replay <activeflow id>
      prints "identical", or the first divergence: the move, its request and what differs
  activeflow replay --customer <id> [--since <time>] [--limit <n>]
      the customer's activeflows (created since <time>: 2026-12-01T00:00:00Z, or 2h, 1d ago),
      at most <n> (default 1000), with a progress bar and a summary

Options:
  --json            print the results as JSON
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)

Exit status: 0 all identical; 1 a divergence (or, for one activeflow, a record that cannot be
replayed: past the stream's retention); 2 bad arguments.`,
  run(args, io) {
    const id = args.positionals[0];
    const customer = args.options.get('customer');
    if ((id === undefined) === (customer === undefined)) {
      io.err(`activeflow replay: name one activeflow or --customer <id>. usage: ${this.usage}`);
      return 2;
    }
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
      const count = (o: ReplayResult['outcome']) => results.filter((r) => r.outcome === o).length;
      if (args.flags.has('json')) io.out(JSON.stringify({ results, identical: count('identical'), diverged: count('diverged'), unreadable: count('unreadable') }, null, 2));
      else {
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
      return count('diverged') > 0 ? 1 : 0;
    });
  },
};
