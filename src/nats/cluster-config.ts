/**
 * Configuration of a 3-server NATS JetStream cluster for activeflow: routes between the servers,
 * a system account (for connect/disconnect events), fast ping settings (a hung client is noticed
 * in about 3 s instead of 2 minutes), and the shard mapping. deploy/cluster/*.conf are generated
 * from this (`npm run docs`), and the cluster tests use it directly.
 */
import { DEV_ROLE_PASSWORDS, roleUsers, type RolePasswords } from './roles.js';
import { shardMappingConfig } from './shard-mapping.js';

export interface ClusterServerConfig {
  name: string;
  host: string;
  clientPort: number;
  clusterPort: number;
  monitorPort?: number;
  storeDir: string;
  /** `host:clusterPort` of every server of the cluster, this one included. */
  routes: string[];
  shardCount: number;
  clusterName?: string;
  /** Passwords, or `$VAR` references nats-server resolves from its environment. Default: dev ones. */
  passwords?: AccountPasswords;
  /** Let clients without credentials in as the app user (development). Default true. */
  noAuthUser?: boolean;
  /** The role users' passwords (src/nats/roles.ts). Default: dev ones. */
  rolePasswords?: RolePasswords;
  /** TLS for clients and for the routes between the servers (production); none by default. */
  tls?: { certFile: string; keyFile: string; caFile: string };
}

/** A nats-server `tls { }` block. */
export function tlsBlock(t: { certFile: string; keyFile: string; caFile: string }, indent = ''): string {
  return [`${indent}tls {`, `${indent}  cert_file: "${t.certFile}"`, `${indent}  key_file: "${t.keyFile}"`, `${indent}  ca_file: "${t.caFile}"`, `${indent}  timeout: 2`, `${indent}}`].join('\n');
}

export interface AccountPasswords {
  system: string;
  /** The unrestricted "activeflow" user (development, tools); null leaves it out (production). */
  app: string | null;
}

const DEV_PASSWORDS: AccountPasswords = { system: '"system-dev-only"', app: '"activeflow-dev-only"' };

export function clusterServerConfig(c: ClusterServerConfig): string {
  return `# activeflow: one of three NATS servers of a JetStream cluster (R3 buckets and stream)
server_name: ${c.name}
listen: ${c.host}:${c.clientPort}
${c.monitorPort !== undefined ? `http: ${c.host}:${c.monitorPort}\n` : ''}ping_interval: "1s"
ping_max: 2
jetstream {
  store_dir: "${c.storeDir}"
}
${c.tls === undefined ? '' : `${tlsBlock(c.tls)}\n`}cluster {
  name: ${c.clusterName ?? 'activeflow'}
  listen: ${c.host}:${c.clusterPort}
${c.tls === undefined ? '' : `${tlsBlock(c.tls, '  ')}\n`}  routes: [
${c.routes.map((r) => `    nats-route://${r}`).join('\n')}
  ]
}
${accountsConfig(c.shardCount, c.passwords, c.noAuthUser ?? true, c.rolePasswords ?? DEV_ROLE_PASSWORDS)}`;
}

/**
 * The accounts: APP (the nodes and their clients; JetStream, the shard mapping) and SYS, whose user
 * lets nodes hear the servers' disconnect events (NATS_SYSTEM_USER). The passwords are for
 * development; a deployment replaces them (see docs/operations.md).
 */
export function accountsConfig(shardCount: number, passwords: AccountPasswords = DEV_PASSWORDS, noAuthUser = true, roles: RolePasswords | null = DEV_ROLE_PASSWORDS): string {
  const users = [...(passwords.app === null ? [] : [`{ user: "activeflow", password: ${passwords.app} }`]), ...(roles === null ? [] : roleUsers(roles))];
  return `accounts {
  SYS: { users: [ { user: "system", password: ${passwords.system} } ] }
  APP: {
    jetstream: enabled
    # "activeflow", where present, may do anything in the account (development); the role users
    # (src/nats/roles.ts) may do only what their job needs.
    users: [
${users.map((u) => `      ${u}`).join('\n')}
    ]
${shardMappingConfig(shardCount)
  .split('\n')
  .map((l) => `    ${l}`)
  .join('\n')}
  }
}
system_account: SYS
${noAuthUser ? 'no_auth_user: activeflow\n' : ''}`;
}
