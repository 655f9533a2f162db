/** Operators' commands: where the shards are, drain and undrain a node, rebalance now. */
import { SUBJECTS } from '../api/subjects.js';
import type { ShardsReply } from '../cluster/cluster-admin.js';
import type { Move } from '../cluster/shard-map.js';
import type { CliIo, Command, ParsedArgs } from './command.js';
import { table, withClient } from './connection.js';
import { progressBar } from './progress.js';

/** The `<node>` of `drain` and `undrain`; null (after saying why) when it is missing. */
function nodeArgument(args: ParsedArgs, io: CliIo, command: string): string | null {
  const node = args.positionals[0];
  if (node === undefined) io.err(`activeflow: which node? \`activeflow ${command} <node>\`; \`activeflow nodes\` lists them`);
  return node ?? null;
}

const SERVERS = '  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)';

/** Shard numbers as ranges: 0-3,7,9-12. */
export function ranges(shards: readonly number[]): string {
  const out: string[] = [];
  for (let i = 0; i < shards.length; i++) {
    let j = i;
    while (j + 1 < shards.length && shards[j + 1] === shards[j]! + 1) j++;
    out.push(i === j ? `${shards[i]}` : `${shards[i]}-${shards[j]}`);
    i = j;
  }
  return out.join(',');
}

export const shardsCommand: Command = {
  name: 'shards',
  usage: 'activeflow shards [--all] [--json]',
  summary: 'Show which node owns which shard, and the shards still moving.',
  help: `Shows, per node, how many shards it holds now (from the shard leases) and how many the
assignment wants it to hold; shards without an owner are between two owners (or nobody can take
them). --all lists every shard with its owner, target and lease epoch.
Options:
  --all             one line per shard
  --json            print the JSON reply
${SERVERS}`,
  run(args, io) {
    return withClient(args, io, async (client) => {
      const reply = await client.call<ShardsReply>(SUBJECTS.adminShards);
      if (args.flags.has('json')) {
        io.out(JSON.stringify(reply, null, 2));
        return 0;
      }
      if (args.flags.has('all')) {
        io.out(table([['SHARD', 'OWNER', 'TARGET', 'EPOCH'], ...reply.shards.map((s) => [String(s.shard), s.owner ?? '-', s.target ?? '-', s.epoch === null ? '-' : String(s.epoch)])]));
        return 0;
      }
      const unowned = reply.shards.filter((s) => s.owner === null).map((s) => s.shard);
      io.out(
        table([
          ['NODE', 'STATE', 'SHARDS', 'TARGET', 'RANGES'],
          ...reply.nodes.map((n) => [
            n.node_id,
            n.draining ? 'draining' : 'live',
            String(n.shards),
            String(n.target_shards),
            ranges(reply.shards.filter((s) => s.owner === n.node_id).map((s) => s.shard)),
          ]),
        ]),
      );
      io.out(`${reply.shard_count} shards; ${reply.moving} moving; ${unowned.length} without an owner${unowned.length > 0 ? ` (${ranges(unowned)})` : ''}`);
      return 0;
    });
  },
};

interface NodeStatus {
  node_id: string;
  shards: number[];
  resident_actors: number;
}

export const drainCommand: Command = {
  name: 'drain',
  usage: 'activeflow drain <node> [--wait] [--timeout <s>] [--until-stop] [--force]',
  summary: 'Move every shard off a node (it stays drained until undrain).',
  help: `Marks the node drained: it hands each of its shards to the node the assignment picks (it
finishes the requests in flight first), and takes none until \`activeflow undrain <node>\`, even
across its restarts. Callers retry through each move with the bundled client.
Refused when no other node could take the shards (start one first), unless --force.
Options:
  --wait            show progress until the node holds no shard and no actor, then exit
  --timeout <s>     give up waiting after this many seconds (default 120; exit 1)
  --until-stop      the drain lasts only until the node stops (for a pod's preStop hook: the
                    pod's name never comes back, so its mark must not outlive it)
  --force           drain even the last node (its shards go unserved)
${SERVERS}`,
  run(args, io) {
    const node = nodeArgument(args, io, 'drain');
    if (node === null) return 2;
    const timeoutS = Number(args.options.get('timeout') ?? '120');
    if (!Number.isFinite(timeoutS) || timeoutS <= 0) {
      io.err('activeflow: --timeout must be a number of seconds above 0');
      return 2;
    }
    return withClient(args, io, async (client) => {
      const r = await client.call<{ moving: number }>(SUBJECTS.adminDrain, {
        node_id: node,
        ...(args.flags.has('force') ? { force: true } : {}),
        ...(args.flags.has('until-stop') ? { until_stop: true } : {}),
      });
      io.out(`node ${node} drained; ${r.moving} shard(s) to move`);
      if (!args.flags.has('wait')) return 0;
      const bar = progressBar(`draining ${node}`);
      const deadline = Date.now() + timeoutS * 1000;
      let total = r.moving;
      for (;;) {
        let status: NodeStatus | null = null;
        try {
          status = await client.call<NodeStatus>(SUBJECTS.adminNodeStatus(node));
        } catch {
          status = null; // the node stopped: it holds nothing
        }
        const held = status === null ? 0 : status.shards.length;
        total = Math.max(total, held);
        bar.update(total - held, total);
        if (status === null || (held === 0 && status.resident_actors === 0)) break;
        if (Date.now() > deadline) {
          bar.finish();
          io.err(`activeflow: node ${node} still holds ${held} shard(s) and ${status.resident_actors} actor(s) after ${timeoutS} s; see its log, or \`activeflow shards\``);
          return 1;
        }
        await new Promise((res) => setTimeout(res, 100));
      }
      bar.finish();
      io.out(`node ${node} holds no shard and no actor; it can be stopped`);
      return 0;
    });
  },
};

export const undrainCommand: Command = {
  name: 'undrain',
  usage: 'activeflow undrain <node>',
  summary: 'Let a drained node take shards again.',
  help: `Clears the drain mark of a node: the assignment counts it again, and it takes its share of
the shards back (each one moves the way a drain moves it). Also clears the mark of a drained node
that no longer runs.
Options:
${SERVERS}`,
  run(args, io) {
    const node = nodeArgument(args, io, 'undrain');
    if (node === null) return 2;
    return withClient(args, io, async (client) => {
      const r = await client.call<{ was_draining: boolean }>(SUBJECTS.adminUndrain, { node_id: node });
      io.out(r.was_draining ? `node ${node} undrained; it takes its shards back` : `node ${node} was not drained`);
      return 0;
    });
  },
};

export const rebalanceCommand: Command = {
  name: 'rebalance',
  usage: 'activeflow rebalance [--json]',
  summary: 'Have every node move its shards towards the assignment now.',
  help: `Nodes move shards on their own when nodes join, leave or are drained (at once, and every
third of the lease TTL). This asks them all to do it now and prints the moves it brings.
Options:
  --json            print the JSON reply
${SERVERS}`,
  run(args, io) {
    return withClient(args, io, async (client) => {
      const { moves } = await client.call<{ moves: Move[] }>(SUBJECTS.adminRebalance);
      if (args.flags.has('json')) io.out(JSON.stringify(moves, null, 2));
      else io.out(moves.length === 0 ? 'every shard is where it should be' : table([['SHARD', 'FROM', 'TO'], ...moves.map((m) => [String(m.shard), m.from ?? '-', m.to ?? '-'])]));
      return 0;
    });
  },
};
