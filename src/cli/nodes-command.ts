import { SUBJECTS } from '../api/subjects.js';
import type { NodeInfo } from '../cluster/membership-registry.js';
import type { Command } from './command.js';
import { table, withClient } from './connection.js';

export const nodesCommand: Command = {
  name: 'nodes',
  usage: 'activeflow nodes [--json]',
  summary: 'List the nodes of the cluster: live ones (membership leases) and drained ones.',
  help: `Lists the nodes that hold a membership lease now, and the nodes an operator drained (a
drained node that is not running is listed as not live until \`activeflow undrain\` clears it).
A node appears when it starts, and disappears when it stops (at once) or dies (within LEASE_TTL_MS).
Options:
  --json            print the JSON reply
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    return withClient(args, io, async (client) => {
      const { nodes } = await client.call<{ nodes: NodeInfo[] }>(SUBJECTS.adminNodes);
      if (args.flags.has('json')) io.out(JSON.stringify(nodes, null, 2));
      else {
        io.out(
          nodes.length === 0
            ? 'no live nodes'
            : table([
                ['NODE', 'STATE', 'SINCE', 'EPOCH'],
                ...nodes.map((n) => [n.node_id, n.draining ? (n.live ? 'draining' : 'drained, not running') : 'live', n.acquired_at ?? '-', n.epoch === null ? '-' : String(n.epoch)]),
              ]),
        );
      }
      return 0;
    });
  },
};
