import { SUBJECTS } from '../api/subjects.js';
import { Quotas, type QuotaOverride } from '../quota/quotas.js';
import type { Command } from './command.js';
import { need, table, withClient } from './connection.js';

const NAMES = Object.keys(Quotas.shape) as (keyof Quotas)[];
const flag = (name: string) => name.replace(/_/g, '-');
/** The options that take a value (`--running-activeflows 500`), for the argument parser. */
export const QUOTA_FLAGS: readonly string[] = NAMES.map(flag);
const KNOWN = new Set([...QUOTA_FLAGS, 'customer', 'json', 'servers', 'help']);

interface QuotaReply {
  customer_id: string;
  override: QuotaOverride;
  quotas: Quotas;
  usage: { running_activeflows: number };
}

export const quotasCommand: Command = {
  name: 'quotas',
  usage: 'activeflow quotas get|set|reset --customer <id> ...',
  summary: "Show or change one customer's quotas (the rest follow the nodes' QUOTA_* defaults).",
  valued: QUOTA_FLAGS,
  help: `  activeflow quotas get --customer <id>
      the quotas in force, which of them are the customer's own, and its running activeflows
  activeflow quotas set --customer <id> [--<quota> <n|default>]...
      e.g. --running-activeflows 500 --creations-per-second 20; "default" drops an override.
      Every node applies a change within moments.
  activeflow quotas reset --customer <id>
      drops every override: the defaults apply again
Quotas: ${NAMES.map((n) => `--${flag(n)}`).join(', ')}
  (refusals are limit_exceeded errors, 429 on REST, naming the quota; see docs/quotas.md)
Options:
  --json            print the JSON reply
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    const [verb] = args.positionals;
    if (verb !== 'get' && verb !== 'set' && verb !== 'reset') {
      io.err('activeflow quotas: say get, set or reset (see `activeflow quotas --help`)');
      return 2;
    }
    const unknown = [...args.flags, ...args.options.keys()].filter((o) => !KNOWN.has(o));
    if (unknown.length > 0) {
      io.err(`activeflow quotas: unknown option --${unknown[0]} (the quotas: ${QUOTA_FLAGS.join(', ')})`);
      return 2;
    }
    const customer = need(args, 'customer', io);
    if (customer === null) return 2;
    const change: Record<string, number | null> = {};
    if (verb === 'set') {
      for (const name of NAMES) {
        const raw = args.options.get(flag(name));
        if (raw === undefined) continue;
        const n = Number(raw);
        if (raw !== 'default' && !(Number.isFinite(n) && n >= 0)) {
          io.err(`activeflow quotas set: --${flag(name)} takes a number >= 0 or "default", not "${raw}"`);
          return 2;
        }
        change[name] = raw === 'default' ? null : n;
      }
      if (Object.keys(change).length === 0) {
        io.err(`activeflow quotas set: name a quota to change, e.g. --running-activeflows 500 (the quotas: ${NAMES.map(flag).join(', ')})`);
        return 2;
      }
    }
    return withClient(args, io, async (client) => {
      const reply = await client.call<QuotaReply>(SUBJECTS.adminQuotas(verb), verb === 'set' ? { customer_id: customer, quotas: change } : { customer_id: customer });
      if (args.flags.has('json')) {
        io.out(JSON.stringify(reply, null, 2));
        return 0;
      }
      io.out(`customer ${reply.customer_id}: ${reply.usage.running_activeflows} running activeflows`);
      io.out(table([['QUOTA', 'VALUE', 'SOURCE'], ...NAMES.map((n) => [n, String(reply.quotas[n]), n in reply.override ? 'customer' : 'default'])]));
      return 0;
    });
  },
};
