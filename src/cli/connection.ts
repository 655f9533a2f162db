import type { NatsConnection } from '@nats-io/transport-node';
import { ActiveflowClient } from '../api/client.js';
import { ActiveflowError } from '../errors.js';

import { connectNats, natsAccess, parseServers } from '../nats/connect.js';
import type { CliIo, ParsedArgs } from './command.js';

/** Connects to `--servers` or NATS_URL (default the local development server), runs `fn`, closes. */
export async function withClient(args: ParsedArgs, io: CliIo, fn: (client: ActiveflowClient, nc: NatsConnection) => Promise<number>): Promise<number> {
  const servers = parseServers(args.options.get('servers') ?? process.env['NATS_URL'] ?? 'nats://127.0.0.1:4222');
  let nc: NatsConnection;
  try {
    const access = natsAccess(process.env);
    nc = await connectNats(servers, 'activeflow-cli', access.credentials, access.tls);
  } catch (e) {
    const message = (e as Error).message;
    const hint = /certificate|tls|ssl/i.test(message)
      ? 'The servers use TLS: set NATS_TLS_CA to the CA file that signed their certificate (and NATS_TLS_CERT/NATS_TLS_KEY if they verify clients).'
      : 'Start it with `npm start`, or set NATS_URL.';
    io.err(`activeflow: cannot reach NATS at ${servers.join(',')}: ${message}. ${hint}`);
    return 1;
  }
  try {
    // Short attempts inside a longer window: a request that reached a node just killed is retried.
    return await fn(new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 10_000 }), nc);
  } catch (e) {
    if (e instanceof ActiveflowError) {
      io.err(`activeflow: ${e.code}: ${e.message}`);
      return e.code === 'invalid_argument' ? 2 : 1;
    }
    throw e;
  } finally {
    await nc.close().catch(() => undefined);
  }
}

/** A plain table: columns padded to their widest cell. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i]!))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

export function need(args: ParsedArgs, name: string, io: CliIo): string | null {
  const v = args.options.get(name);
  if (v === undefined || v === '') {
    io.err(`activeflow: --${name} is required`);
    return null;
  }
  return v;
}
