import { SUBJECTS } from '../api/subjects.js';
import type { NodeInfo } from '../cluster/membership-registry.js';
import type { Command } from './command.js';
import { table, withClient } from './connection.js';

export const nodesCommand: Command = {
  name: 'nodes',
  usage: 'activeflow nodes [--json]',
  summary: 'List the live nodes of the cluster (from their membership leases).',
  help: `Lists the nodes that hold a membership lease now: a node appears when it starts, and
disappears when it stops (at once) or dies (within LEASE_TTL_MS).
Options:
  --json            print the JSON reply
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    return withClient(args, io, async (client) => {
      const { nodes } = await client.call<{ nodes: NodeInfo[] }>(SUBJECTS.adminNodes);
      if (args.flags.has('json')) io.out(JSON.stringify(nodes, null, 2));
      else io.out(nodes.length === 0 ? 'no live nodes' : table([['NODE', 'SINCE', 'EPOCH'], ...nodes.map((n) => [n.node_id, n.acquired_at, String(n.epoch)])]));
      return 0;
    });
  },
};
