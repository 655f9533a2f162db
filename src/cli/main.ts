/** The `activeflow` command line: one table of commands, help generated from it. */
import { readFileSync } from 'node:fs';
import { parseArgs, type CliIo, type Command } from './command.js';
import { didYouMean } from './suggest.js';
import { drainCommand, rebalanceCommand, shardsCommand, undrainCommand } from './cluster-commands.js';
import { accessKeysCommand } from './accesskeys-command.js';
import { callCommand } from './call-command.js';
import { QUOTA_FLAGS, quotasCommand } from './quotas-command.js';
import { gatewayCommand } from './gateway-command.js';
import { nodeCommand } from './node-command.js';
import { nodesCommand } from './nodes-command.js';
import { customersCommand } from './customers-command.js';
import { simulateCallsCommand } from './simulate-calls-command.js';
import { simulateCommand } from './simulate-command.js';
import { startCommand } from './start-command.js';
import { flowsCommand, getCommand, historyCommand, listCommand, nextCommand, stopCommand, variablesCommand, watchCommand } from './user-commands.js';

const COMMANDS: readonly Command[] = [
  startCommand, nodeCommand, gatewayCommand, accessKeysCommand, quotasCommand, customersCommand, nodesCommand, shardsCommand, drainCommand, undrainCommand, rebalanceCommand, simulateCommand, simulateCallsCommand, callCommand, flowsCommand, getCommand, listCommand, stopCommand, nextCommand, historyCommand, watchCommand, variablesCommand,
];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

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
    'Run `activeflow <command> --help` for a command\'s options.',
  ].join('\n');
}

/** Options that take a value (`--flow <id>`); every other `--x` is a flag. */
const VALUED = new Set([...QUOTA_FLAGS, 'config', 'flow', 'customer', 'calls', 'concurrency', 'digits', 'file', 'status', 'from-seq', 'limit', 'page-size', 'page-token', 'reason', 'name', 'media-ms', 'current-action', 'set', 'key', 'reference-type', 'servers', 'timeout', 'http', 'metrics', 'stuck']);

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
    const topic = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    io.out(topic ? `Usage: ${topic.usage}\n\n${topic.help}` : overview());
    return 0;
  }
  if (name === '--version' || name === 'version') {
    io.out(version());
    return 0;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (command === undefined) {
    io.err(`activeflow: unknown command "${name}"${didYouMean(name, COMMANDS.map((c) => c.name))}\n\n${overview()}`);
    return 2;
  }
  const args = parseArgs(rest, VALUED);
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
