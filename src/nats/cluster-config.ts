/**
 * Configuration of a 3-server NATS JetStream cluster for activeflow: routes between the servers,
 * a system account (for connect/disconnect events), fast ping settings (a hung client is noticed
 * in about 3 s instead of 2 minutes), and the shard mapping. deploy/cluster/*.conf are generated
 * from this (`npm run docs`), and the cluster tests use it directly.
 */
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
}

export interface AccountPasswords {
  system: string;
  app: string;
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
cluster {
  name: ${c.clusterName ?? 'activeflow'}
  listen: ${c.host}:${c.clusterPort}
  routes: [
${c.routes.map((r) => `    nats-route://${r}`).join('\n')}
  ]
}
${accountsConfig(c.shardCount, c.passwords, c.noAuthUser ?? true)}`;
}

/**
 * The accounts: APP (the nodes and their clients; JetStream, the shard mapping) and SYS, whose user
 * lets nodes hear the servers' disconnect events (NATS_SYSTEM_USER). The passwords are for
 * development; a deployment replaces them (see docs/operations.md).
 */
export function accountsConfig(shardCount: number, passwords: AccountPasswords = DEV_PASSWORDS, noAuthUser = true): string {
  return `accounts {
  SYS: { users: [ { user: "system", password: ${passwords.system} } ] }
  APP: {
    jetstream: enabled
    users: [ { user: "activeflow", password: ${passwords.app} } ]
${shardMappingConfig(shardCount).split('\n').map((l) => `    ${l}`).join('\n')}
  }
}
system_account: SYS
${noAuthUser ? 'no_auth_user: activeflow\n' : ''}`;
}
