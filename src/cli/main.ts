/** The `activeflow` command line: one table of commands, help generated from it. */
import { parseArgs, type CliIo, type Command } from './command.js';
import { didYouMean } from './suggest.js';
import { VERSION } from '../version.js';
/**
 * The commands, each loaded only when it runs: `activeflow --help` or `activeflow get` must not
 * load the node, the gateway and every library behind them (docs/benchmarks.md, "Startup").
 * A command's summary is here, for the overview; test/unit/cli-args.test.ts checks that each
 * entry matches the command it loads.
 */
export interface CommandEntry {
  name: string;
  summary: string;
  load(): Promise<Command>;
}

const entry = (name: string, summary: string, load: () => Promise<Command>): CommandEntry => ({ name, summary, load });

export const COMMANDS: readonly CommandEntry[] = [
  entry('start', 'Start a local nats-server (nats-server.conf, data in ./data/nats) and one node: the development default.', async () => (await import('./start-command.js')).startCommand),
  entry('node', 'Run a node against the NATS servers in NATS_URL (for operators and tests).', async () => (await import('./node-command.js')).nodeCommand),
  entry('gateway', "Run a REST gateway (VoIPBIN's /v1.0 activeflow and flow API) in front of the nodes.", async () => (await import('./gateway-command.js')).gatewayCommand),
  entry('accesskeys', "Manage the REST gateway's access keys (each bound to one customer).", async () => (await import('./accesskeys-command.js')).accessKeysCommand),
  entry('quotas', "Show or change one customer's quotas (the rest follow the nodes' QUOTA_* defaults).", async () => (await import('./quotas-command.js')).quotasCommand),
  entry('customers', 'List the customers with activeflows running, busiest first, across the cluster.', async () => (await import('./customers-command.js')).customersCommand),
  entry('nodes', 'List the nodes of the cluster: live ones (membership leases) and drained ones.', async () => (await import('./nodes-command.js')).nodesCommand),
  entry('shards', 'Show which node owns which shard, and the shards still moving.', async () => (await import('./cluster-commands.js')).shardsCommand),
  entry('drain', 'Move every shard off a node (it stays drained until undrain).', async () => (await import('./cluster-commands.js')).drainCommand),
  entry('undrain', 'Let a drained node take shards again.', async () => (await import('./cluster-commands.js')).undrainCommand),
  entry('rebalance', 'Have every node move its shards towards the assignment now.', async () => (await import('./cluster-commands.js')).rebalanceCommand),
  entry('simulate', 'Run one activeflow locally from a scenario file (no NATS) and print the outcome as JSON.', async () => (await import('./simulate-command.js')).simulateCommand),
  entry(
    'simulate-calls',
    'Drive calls through a running node like a call service would, and report moves and latency.',
    async () => (await import('./simulate-calls-command.js')).simulateCallsCommand,
  ),
  entry('call', 'Try a flow by hand: a call activeflow, stepped with next as the call service would.', async () => (await import('./call-command.js')).callCommand),
  entry('flows', 'Manage flows: create from a JSON file, list, get, delete.', async () => (await import('./user-commands.js')).flowsCommand),
  entry('get', 'Show one activeflow (its status, cursor and error).', async () => (await import('./user-commands.js')).getCommand),
  entry('list', "List a customer's activeflows.", async () => (await import('./user-commands.js')).listCommand),
  entry('stop', 'Stop an activeflow (its on_complete flow then starts).', async () => (await import('./user-commands.js')).stopCommand),
  entry('next', 'Ask for the next action, as a call service does.', async () => (await import('./user-commands.js')).nextCommand),
  entry('history', 'Print the event history of an activeflow from the event stream.', async () => (await import('./user-commands.js')).historyCommand),
  entry('watch', "Follow an activeflow's events live (Ctrl-C stops).", async () => (await import('./user-commands.js')).watchCommand),
  entry(
    'replay',
    "Re-run recorded activeflows through this engine and compare every move with its record: 'identical', or the first divergence.",
    async () => (await import('./replay-command.js')).replayCommand,
  ),
  entry(
    'export',
    "Write an activeflow's run as an activeflow simulate scenario that reproduces it (secrets dropped); replay --from-dir re-runs such files.",
    async () => (await import('./replay-command.js')).exportCommand,
  ),
  entry('variables', 'Show, set or delete the variables of an activeflow.', async () => (await import('./user-commands.js')).variablesCommand),
];

function overview(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'activeflow: the runtime of live CPaaS communication flows.',
    '',
    'Usage: activeflow <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    "Run `activeflow <command> --help` for a command's options.",
    '',
    'Exit status: 0 done; 1 failed (the message says why: NATS unreachable, a refused request, not',
    'found...); 2 a usage error (unknown command or option, a missing or invalid argument); 130 left',
    'at once by a second Ctrl-C.',
  ].join('\n');
}

/** Options that take a value (`--flow <id>`); every other `--x` is a flag. */
const VALUED = new Set([
  'config',
  'flow',
  'customer',
  'calls',
  'concurrency',
  'digits',
  'file',
  'status',
  'from-seq',
  'limit',
  'page-size',
  'page-token',
  'reason',
  'name',
  'media-ms',
  'current-action',
  'set',
  'key',
  'reference-type',
  'servers',
  'timeout',
  'http',
  'metrics',
  'stuck',
]);

/** The options a command documents in its usage and help: the ones it accepts. */
export function optionsOf(command: Command): Set<string> {
  return new Set(['help', ...[...`${command.usage}\n${command.help}`.matchAll(/--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!)]);
}

export const stdio: CliIo = {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
};

export async function main(argv: readonly string[], io: CliIo = stdio): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === 'help' || name === '--help' || name === '-h') {
    const topic = name === 'help' ? await COMMANDS.find((c) => c.name === rest[0])?.load() : undefined;
    io.out(topic ? `Usage: ${topic.usage}\n\n${topic.help}` : overview());
    return 0;
  }
  if (name === '--version' || name === 'version') {
    io.out(VERSION);
    return 0;
  }
  const found = COMMANDS.find((c) => c.name === name);
  if (found === undefined) {
    io.err(
      `activeflow: unknown command "${name}"${didYouMean(
        name,
        COMMANDS.map((c) => c.name),
      )}\n\n${overview()}`,
    );
    return 2;
  }
  const command = await found.load();
  const args = parseArgs(rest, new Set([...VALUED, ...(command.valued ?? [])]));
  if (args.flags.has('help')) {
    io.out(`Usage: ${command.usage}\n\n${command.help}`);
    return 0;
  }
  // An option the command does not document is a mistake, not something to ignore: `list --stauts
  // running` must not list everything.
  const known = optionsOf(command);
  for (const given of [...args.flags, ...args.options.keys()]) {
    if (!known.has(given)) {
      io.err(`activeflow ${command.name}: unknown option --${given}${didYouMean(given, known, '--')}\nUsage: ${command.usage}\n(\`activeflow ${command.name} --help\` lists its options)`);
      return 2;
    }
  }
  return command.run(args, io);
}
