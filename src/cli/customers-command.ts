import { SUBJECTS } from '../api/subjects.js';
import type { Command } from './command.js';
import { table, withClient } from './connection.js';

interface CustomersReply {
  customers: { customer_id: string; running_activeflows: number }[];
  customer_count: number;
  running_activeflows: number;
}

export const customersCommand: Command = {
  name: 'customers',
  usage: 'activeflow customers [--limit <n>] [--json]',
  summary: 'List the customers with activeflows running, busiest first, across the cluster.',
  help: `Lists each customer with running activeflows and how many (the running counts that the
running_activeflows quota is checked against), busiest first. \`activeflow quotas get --customer <id>\`
shows one customer's quotas beside its count.
Options:
  --limit <n>       how many customers to list, 1-1000 (default 100)
  --json            print the JSON reply
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    const raw = args.options.get('limit');
    const limit = raw === undefined ? undefined : Number(raw);
    if (limit !== undefined && (!Number.isInteger(limit) || limit < 1 || limit > 1000)) {
      io.err(`activeflow customers: --limit takes a whole number from 1 to 1000, not "${raw}"`);
      return 2;
    }
    return withClient(args, io, async (client) => {
      const reply = await client.call<CustomersReply>(SUBJECTS.adminCustomers, limit === undefined ? {} : { limit });
      if (args.flags.has('json')) io.out(JSON.stringify(reply, null, 2));
      else if (reply.customers.length === 0) io.out('no activeflows are running');
      else {
        io.out(table([['CUSTOMER', 'RUNNING'], ...reply.customers.map((c) => [c.customer_id, String(c.running_activeflows)])]));
        const shown = reply.customers.length < reply.customer_count ? ` (the busiest ${reply.customers.length} shown)` : '';
        io.out(`${reply.running_activeflows} running, ${reply.customer_count} customers${shown}`);
      }
      return 0;
    });
  },
};
