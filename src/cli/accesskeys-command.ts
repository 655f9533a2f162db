import { SUBJECTS } from '../api/subjects.js';
import type { AccessKeyInfo } from '../gateway/access-keys.js';
import type { Command } from './command.js';
import { need, table, withClient } from './connection.js';

export const accessKeysCommand: Command = {
  name: 'accesskeys',
  usage: 'activeflow accesskeys create|list|delete ...',
  summary: "Manage the REST gateway's access keys (each bound to one customer).",
  help: `  activeflow accesskeys create --customer <id> [--name <name>]
  activeflow accesskeys create --operator [--name <name>]
      prints the new key once: only its hash is stored, so keep it. An operator's key reads
      every customer's data (with ?customer_id=), the cluster, and the dashboard's full view
  activeflow accesskeys list [--customer <id>]
  activeflow accesskeys delete <key id>
      the key stops working at every gateway within moments
Options:
  --json            print the JSON reply
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    const [verb, id] = args.positionals;
    if (verb !== 'create' && verb !== 'list' && verb !== 'delete') {
      io.err('activeflow accesskeys: say create, list or delete (see `activeflow accesskeys --help`)');
      return 2;
    }
    return withClient(args, io, async (client) => {
      if (verb === 'create') {
        const operator = args.flags.has('operator');
        const customer = operator ? null : need(args, 'customer', io);
        if (!operator && customer === null) return 2;
        const name = args.options.get('name');
        const key = await client.call<AccessKeyInfo & { token: string }>(SUBJECTS.adminAccessKeys('create'), {
          ...(operator ? { operator: true } : { customer_id: customer }),
          ...(name === undefined ? {} : { name }),
        });
        const whose = operator ? 'an operator (every customer, the cluster, the dashboard)' : `customer ${key.customer_id}`;
        if (args.flags.has('json')) io.out(JSON.stringify(key, null, 2));
        else io.out(`access key ${key.id} for ${whose}:\n\n  ${key.token}\n\nKeep it now: it is not shown again. Use it as "Authorization: Bearer <key>" or ?accesskey=<key>.`);
        return 0;
      }
      if (verb === 'list') {
        const customer = args.options.get('customer');
        const { result } = await client.call<{ result: AccessKeyInfo[] }>(SUBJECTS.adminAccessKeys('list'), customer === undefined ? {} : { customer_id: customer });
        if (args.flags.has('json')) io.out(JSON.stringify(result, null, 2));
        else
          io.out(
            result.length === 0
              ? 'no access keys'
              : table([['ID', 'CUSTOMER', 'NAME', 'KEY', 'CREATED'], ...result.map((k) => [k.id, k.role === 'operator' ? 'operator' : k.customer_id, k.name || '-', k.token_hint, k.tm_create])]),
          );
        return 0;
      }
      if (id === undefined) {
        io.err('activeflow accesskeys delete: give the key id (`activeflow accesskeys list` shows them)');
        return 2;
      }
      const deleted = await client.call<AccessKeyInfo>(SUBJECTS.adminAccessKeys('delete'), { id });
      io.out(`deleted access key ${deleted.id} (customer ${deleted.customer_id})`);
      return 0;
    });
  },
};
