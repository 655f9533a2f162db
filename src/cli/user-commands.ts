/** Commands for users of the runtime: flows and activeflows over the control API. */
import { readFileSync } from 'node:fs';
import type { Activeflow, Flow } from '../../machines/schema.js';
import type { StreamEvent } from '../../machines/state.js';
import { RelayReader } from '../nats/relay-reader.js';
import { decodeJson } from '../store/codec.js';
import type { Command, CliIo, ParsedArgs } from './command.js';
import { need, table, withClient } from './connection.js';

const JSON_HELP = '  --json            print the JSON reply\n  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)';
const print = (io: CliIo, args: ParsedArgs, value: unknown, human: () => string) => io.out(args.flags.has('json') ? JSON.stringify(value, null, 2) : human());

function describeActiveflow(af: Activeflow): string {
  const lines = [
    `activeflow ${af.id}  ${af.status}${af.end_reason ? ` (${af.end_reason})` : ''}`,
    `  customer ${af.customer_id}  reference ${af.reference_type || '-'} ${af.reference_id}`,
    `  flow ${af.flow_id}  moves ${af.execute_count}  stacks ${Object.keys(af.stack_map).length}`,
    `  current action ${af.current_action.id} ${af.current_action.type ?? ''}`,
  ];
  if (af.error) lines.push(`  error: ${af.error.action_type} ${af.error.action_id}: ${af.error.message}`);
  return lines.join('\n');
}

function eventLine(e: StreamEvent): string {
  const a = e.data.current_action;
  return `${String(e.seq).padStart(4)}  ${e.at}  ${e.type.padEnd(19)}  ${e.data.status.padEnd(7)}  ${a.id} ${a.type ?? ''}`;
}

function readActionsFile(file: string): { actions: unknown[]; name?: string; detail?: string; on_complete_flow_id?: string; type?: string } {
  const value = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
  // A flow file, or a simulate scenario (its `flow` or its `actions`).
  const source = (value['flow'] ?? value) as Record<string, unknown>;
  if (!Array.isArray(source['actions'])) throw new Error(`${file} has no "actions" array`);
  return source as never;
}

export const flowsCommand: Command = {
  name: 'flows',
  usage: 'activeflow flows create|list|get|delete ...',
  summary: 'Manage flows: create from a JSON file, list, get, delete.',
  help: `  activeflow flows create --customer <id> --file <flow.json> [--name <name>]
      the file holds a flow ({"actions": [...], "name", "on_complete_flow_id"}) or a simulate scenario
  activeflow flows list --customer <id>
  activeflow flows get <flow id>
  activeflow flows delete <flow id>
Options:
${JSON_HELP}`,
  run(args, io) {
    const [sub, id] = args.positionals;
    return withClient(args, io, async (client) => {
      switch (sub) {
        case 'create': {
          const customer = need(args, 'customer', io);
          const file = need(args, 'file', io);
          if (customer === null || file === null) return 2;
          let source: ReturnType<typeof readActionsFile>;
          try {
            source = readActionsFile(file);
          } catch (e) {
            io.err(`activeflow flows create: ${(e as Error).message}`);
            return 2;
          }
          const flow = await client.createFlow({
            customer_id: customer,
            actions: source.actions,
            name: args.options.get('name') ?? source.name ?? '',
            ...(source.detail ? { detail: source.detail } : {}),
            ...(source.on_complete_flow_id ? { on_complete_flow_id: source.on_complete_flow_id } : {}),
          });
          print(io, args, flow, () => `created flow ${flow.id} (${flow.actions.length} actions)`);
          return 0;
        }
        case 'list': {
          const customer = need(args, 'customer', io);
          if (customer === null) return 2;
          const flows: Flow[] = [];
          let token = '';
          do {
            const page = await client.listFlows({ customer_id: customer, page_size: 100, ...(token ? { page_token: token } : {}) });
            flows.push(...page.result);
            token = page.next_page_token;
          } while (token !== '');
          print(io, args, flows, () =>
            flows.length === 0 ? 'no flows' : table([['ID', 'NAME', 'ACTIONS', 'CREATED'], ...flows.map((f) => [f.id, f.name, String(f.actions.length), f.tm_create ?? ''])]),
          );
          return 0;
        }
        case 'get':
        case 'delete': {
          if (id === undefined) {
            io.err(`activeflow flows ${sub}: which flow? usage: activeflow flows ${sub} <flow id>`);
            return 2;
          }
          const flow = sub === 'get' ? await client.getFlow(id) : await client.deleteFlow(id);
          print(io, args, flow, () => `${sub === 'delete' ? 'deleted ' : ''}flow ${flow.id} "${flow.name}": ${flow.actions.map((a) => a.type).join(', ')}`);
          return 0;
        }
        default:
          io.err(`activeflow flows: unknown subcommand "${sub ?? ''}"; use create, list, get or delete`);
          return 2;
      }
    });
  },
};

function oneActiveflow(name: string, summary: string, action: (args: ParsedArgs, io: CliIo, id: string) => Promise<number>, extraHelp = ''): Command {
  return {
    name,
    usage: `activeflow ${name} <activeflow id>${extraHelp ? ' [options]' : ''}`,
    summary,
    help: `${summary}\nOptions:\n${extraHelp}${JSON_HELP}`,
    run(args, io) {
      const id = args.positionals[0];
      if (id === undefined) {
        io.err(`activeflow ${name}: which activeflow? usage: ${this.usage}`);
        return 2;
      }
      return action(args, io, id);
    },
  };
}

export const getCommand = oneActiveflow('get', 'Show one activeflow (its status, cursor and error).', (args, io, id) =>
  withClient(args, io, async (client) => {
    const af = await client.get(id);
    print(io, args, af, () => describeActiveflow(af));
    return 0;
  }),
);

export const stopCommand = oneActiveflow('stop', 'Stop an activeflow (its on_complete flow then starts).', (args, io, id) =>
  withClient(args, io, async (client) => {
    const af = await client.stop(id);
    print(io, args, af, () => describeActiveflow(af));
    return 0;
  }),
);

export const nextCommand = oneActiveflow(
  'next',
  'Ask for the next action, as a call service does.',
  (args, io, id) =>
    withClient(args, io, async (client) => {
      const current = args.options.get('current-action') ?? (await client.get(id)).current_action.id;
      const action = await client.next(id, current);
      print(io, args, action, () => `${action.id} ${action.type ?? (action.id.endsWith('2') ? '(finish)' : '(empty)')} ${JSON.stringify(action.option ?? {})}`);
      return 0;
    }),
  '  --current-action <id>  the action you performed (default: the current one)\n',
);

export const historyCommand = oneActiveflow(
  'history',
  'Print the event history of an activeflow from the event stream.',
  (args, io, id) =>
    withClient(args, io, async (client) => {
      const { events } = await client.history(id, Number(args.options.get('from-seq') ?? 1));
      print(io, args, events, () => events.map(eventLine).join('\n'));
      return 0;
    }),
  '  --from-seq <n>    start at this sequence number\n',
);

export const variablesCommand: Command = {
  name: 'variables',
  usage: 'activeflow variables <activeflow id> [set k=v ...|delete <key>]',
  summary: 'Show, set or delete the variables of an activeflow.',
  help: `  activeflow variables <id>                 show them
  activeflow variables <id> set k=v [k=v]   set (values are substituted: \${other} works)
  activeflow variables <id> delete <key>    delete one
Options:
${JSON_HELP}`,
  run(args, io) {
    const [id, op, ...rest] = args.positionals;
    if (id === undefined) {
      io.err(`activeflow variables: which activeflow? usage: ${this.usage}`);
      return 2;
    }
    return withClient(args, io, async (client) => {
      let r: { variables: Record<string, string> };
      if (op === 'set') {
        const pairs = rest.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)] as const);
        if (pairs.length === 0 || pairs.some(([k]) => k === '')) {
          io.err('activeflow variables set: give key=value pairs');
          return 2;
        }
        r = await client.setVariables(id, Object.fromEntries(pairs));
      } else if (op === 'delete') {
        if (rest[0] === undefined) {
          io.err('activeflow variables delete: which key?');
          return 2;
        }
        r = await client.deleteVariable(id, rest[0]);
      } else {
        r = await client.variables(id);
      }
      print(io, args, r, () =>
        table([
          ['KEY', 'VALUE'],
          ...Object.entries(r.variables)
            .sort()
            .map(([k, v]) => [k, v.length > 80 ? `${v.slice(0, 77)}...` : v]),
        ]),
      );
      return 0;
    });
  },
};

export const listCommand: Command = {
  name: 'list',
  usage: 'activeflow list --customer <id> [--status running|ended] [--reference-type call] [--stuck <duration>]',
  summary: "List a customer's activeflows.",
  help: `Lists a customer's activeflows (all pages).\nOptions:\n  --customer <id>\n  --status <running|ended>\n  --reference-type <type>\n  --stuck <duration>  only running ones unchanged for longer than this (90s, 15m, 2h, 1d):\n                      what the idle watchdog (MAX_IDLE_SECONDS, a flow's max_idle_seconds) will end\n${JSON_HELP}`,
  run(args, io) {
    const customer = need(args, 'customer', io);
    if (customer === null) return Promise.resolve(2);
    const stuckText = args.options.get('stuck');
    const stuckMs = stuckText === undefined ? undefined : parseDuration(stuckText);
    if (stuckMs === null) {
      io.err(`activeflow list: --stuck takes a duration such as 90s, 15m, 2h or 1d, not "${stuckText}"`);
      return Promise.resolve(2);
    }
    if (stuckMs !== undefined) args.options.set('status', 'running');
    return withClient(args, io, async (client) => {
      const all: Activeflow[] = [];
      let token = '';
      do {
        const page = await client.listActiveflows({
          customer_id: customer,
          page_size: 100,
          ...(token ? { page_token: token } : {}),
          ...(args.options.get('status') ? { status: args.options.get('status') } : {}),
          ...(args.options.get('reference-type') ? { reference_type: args.options.get('reference-type') } : {}),
        });
        all.push(...page.result);
        token = page.next_page_token;
      } while (token !== '');
      if (stuckMs !== undefined) {
        const now = Date.now();
        all.splice(0, all.length, ...all.filter((a) => now - Date.parse(a.tm_update ?? a.tm_create) > stuckMs));
      }
      print(io, args, all, () =>
        all.length === 0
          ? 'no activeflows'
          : table([
              ['ID', 'STATUS', 'REFERENCE', 'MOVES', 'CURRENT'],
              ...all.map((a) => [a.id, a.status + (a.end_reason ? `/${a.end_reason}` : ''), a.reference_type, String(a.execute_count), a.current_action.type ?? a.current_action.id]),
            ]),
      );
      return 0;
    });
  },
};

export const watchCommand = oneActiveflow(
  'watch',
  "Follow an activeflow's events live (Ctrl-C stops).",
  (args, io, id) =>
    withClient(args, io, async (client, nc) => {
      const af = await client.get(id);
      // not loaded by the other commands
      const [{ parseStreamMessage }, { EventMaterializer }] = await Promise.all([import('../store/journal-entry.js'), import('../store/event-materializer.js')]);
      // The stream holds journal entries; their events are made here, from the activeflow's first
      // entry on (or asked of a node, past the stream's retention).
      const events = new EventMaterializer(async (_at, message) =>
        message.kind === 'entry' && message.entry.kind === 'move' && message.entry.events.length > 0
          ? { events: (await client.history(id, message.entry.events[0]!.seq, message.entry.events.length)).events, state: null }
          : { events: [], state: null },
      );
      // Operators may not make consumers (docs/operations.md): a node opens one for them.
      const messages = await RelayReader.open(nc, 'operator', { stream: 'events', filter: `activeflow.events.${af.customer_id}.${id}`, deliver: 'all' });
      const stop = () => messages.stop();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      let ended = false;
      for await (const m of messages) {
        for (const e of await events.events({ customerId: af.customer_id, activeflowId: id, seq: m.seq }, parseStreamMessage(decodeJson(m.data)))) {
          io.out(args.flags.has('json') ? JSON.stringify(e) : eventLine(e));
          if (e.type === 'activeflow_ended' && !args.flags.has('follow')) ended = true;
        }
        if (ended) break;
      }
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      return 0;
    }),
  '  --follow          keep following after the activeflow ends\n',
);

/** `90s`, `15m`, `2h`, `1d` (or plain seconds) in ms; null when it is none of those. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(text.trim());
  if (m === null) return null;
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? 's') as 'ms' | 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}
