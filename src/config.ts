/**
 * The node's options: one schema with descriptions and defaults (each default says why), read
 * from the environment; `activeflow node --help` and docs/configuration.md come from it.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { z } from 'zod';
import { DEFAULT_SHARD_COUNT } from './nats/shard-mapping.js';

const int = (min: number) => z.coerce.number().int().min(min);

export const NodeConfig = z.object({
  NATS_URL: z.string().default('nats://127.0.0.1:4222').describe('NATS servers, comma-separated. Default: the local development server of nats-server.conf.'),
  NATS_USER: z
    .string()
    .min(1)
    .optional()
    .describe("User to connect as (with NATS_PASSWORD), when the servers require one; the CLI reads them too. Default: none (the server's no_auth_user, as in the development configs)."),
  NATS_PASSWORD: z.string().min(1).optional().describe('Password of NATS_USER.'),
  NATS_TLS_CA: z
    .string()
    .min(1)
    .optional()
    .describe(
      "CA certificate file that signed the servers' certificates: set it to connect over TLS (the production configs require TLS; scripts/dev-certs.sh makes a development CA). The CLI reads it too.",
    ),
  NATS_TLS_CERT: z.string().min(1).optional().describe('Client certificate file, with NATS_TLS_KEY, when the servers verify clients (mutual TLS).'),
  NATS_TLS_KEY: z.string().min(1).optional().describe('Key file of NATS_TLS_CERT.'),
  NATS_SYSTEM_USER: z
    .string()
    .min(1)
    .optional()
    .describe(
      "A user of the NATS system account. When set (with NATS_SYSTEM_PASSWORD), the node listens to the servers' disconnect events: the shards of a node whose connection dropped are taken the moment its leases run out, instead of at the next reconcile. deploy/cluster configs have one.",
    ),
  NATS_SYSTEM_PASSWORD: z.string().min(1).optional().describe('Password of NATS_SYSTEM_USER.'),
  NODE_ID: z
    .string()
    .regex(/^[A-Za-z0-9_-]{1,64}$/, 'letters, digits, _ and - only')
    .optional()
    .describe("This node's name in logs, metrics and leases. Default: <hostname>-<random>, unique per process."),
  SHARD_COUNT: int(1)
    .max(4096)
    .default(DEFAULT_SHARD_COUNT)
    .describe('Shards per cluster. Stored in af_cluster at first start; a node with another count refuses to start. 256 spreads well over tens of nodes.'),
  NATS_REPLICAS: int(1).max(5).default(1).describe('Replicas of the buckets and the stream: 1 for one server, 3 for a 3-node JetStream cluster.'),
  PASSIVATE_AFTER_MS: int(1000)
    .default(60_000)
    .describe('An actor idle this long is dropped from memory (it stays in KV) and rehydrates on its next request. A call asks every few seconds, so a minute keeps live calls resident.'),
  ENDED_RETENTION_DAYS: int(1).default(30).describe('How long af_ended keeps ended activeflows (and af_index their entries).'),
  EVENT_RETENTION_DAYS: int(1).default(30).describe('How long ACTIVEFLOW_EVENTS keeps events (history, watch, webhooks).'),
  HTTP_TIMEOUT_MS: int(100).default(5_000).describe('Timeout of a fetch or webhook_send HTTP request; a call is waiting meanwhile.'),
  HTTP_MAX_RESPONSE_BYTES: int(1024)
    .default(1024 * 1024)
    .describe('Largest HTTP response read by fetch or webhook_send.'),
  EGRESS_ALLOW: z
    .string()
    .default('')
    .transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== ''),
    )
    .describe(
      "Addresses and CIDR ranges (comma-separated) that fetch, webhook_send and webhooks may reach although they are loopback, private, link-local or metadata addresses; `*` allows everything (a trusted, single-tenant setup). Default: none, so a customer's URL cannot reach the cluster's own network. `npm start` and deploy/local-cluster allow loopback (127.0.0.0/8,::1) for the examples.",
    ),
  WEBHOOK_GIVE_UP_MS: int(1_000)
    .default(15 * 60_000)
    .describe(
      "How long an event for an activeflow's webhook_uri is retried (with backoff up to 30 s) before it is given up and logged. Later events of that activeflow wait behind it, so they arrive in order; other activeflows' events do not wait.",
    ),
  MAX_IDLE_SECONDS: int(0)
    .default(86_400)
    .describe(
      "Ceiling on how long a running activeflow may go without a change before the watchdog ends it (end_reason timeout; its on_complete flow runs). A flow's own max_idle_seconds is capped by it. 0: no ceiling (only flows that set a limit time out).",
    ),
  WATCHDOG_INTERVAL_MS: int(100)
    .default(300_000)
    .describe(
      'How often each node sweeps the shards it owns for idle activeflows. A sweep reads every running snapshot it owns (it does not load actors): with 100,000 running per node, every 5 minutes is about 330 reads/s. A limit is enforced within one interval of passing.',
    ),
  RUNNING_RECONCILE_MS: int(100)
    .default(30_000)
    .describe(
      "How often the running count of each customer (the running_activeflows quota) is checked against the activeflow index, by one node (the owner of shard 0). A count too low is raised at once; one too high is lowered once two checks in a row saw nothing change. A check reads a customer's index entries (as a `list` does), skipping a customer whose count agreed at the last check and was not written since, never twice in a row: a drift is found within two intervals.",
    ),
  SERVICE_TIMEOUT_MS: int(100).default(5_000).describe('Timeout of a request to activeflow.service.<action_type>.'),
  LEASE_TTL_MS: int(500)
    .default(3_000)
    .describe(
      'TTL of the membership and shard leases in af_leases: the shards of a dead node are taken over within it. Renewed every third of it; a node that cannot renew stops serving a quarter of it before expiry. Lower means faster failover, higher rides out longer pauses (GC, a NATS leader election) without moving shards.',
    ),
  STOP_TIMEOUT_MS: int(1_000)
    .default(30_000)
    .describe(
      "Longest a stop (SIGTERM, Ctrl-C) may take: the node leaves, hands every shard over and finishes in-flight requests, then exits 0. If that needs longer (NATS unreachable), it exits 1 and its leases expire on their own. Keep it below the supervisor's kill timeout (systemd TimeoutStopSec, Kubernetes terminationGracePeriodSeconds).",
    ),
  QUOTA_RUNNING_ACTIVEFLOWS: int(0)
    .default(50_000)
    .describe(
      'Default per-customer quota: activeflows running at once across the cluster (one revision-checked counter per customer in af_quotas). Overridden per customer with `activeflow quotas set`.',
    ),
  QUOTA_CREATIONS_PER_SECOND: z.coerce
    .number()
    .min(0)
    .default(1_000)
    .describe('Default per-customer quota: sustained activeflow creations per second (a token bucket on each node, refilled at its share of the shards).'),
  QUOTA_CREATION_BURST: int(1).default(2_000).describe("Default per-customer quota: creations allowed at once after a quiet spell (the token bucket's size)."),
  QUOTA_FLOWS: int(0).default(10_000).describe('Default per-customer quota: stored flows (VoIPBIN allows 10,000).'),
  QUOTA_VARIABLE_KEYS: int(1).default(100).describe('Default per-customer quota: variables a caller may supply at creation (docs/behaviour.md: 100).'),
  QUOTA_VARIABLE_VALUE_BYTES: int(1)
    .default(32 * 1024)
    .describe('Default per-customer quota: largest variable value in UTF-8 bytes (docs/behaviour.md: 32 KiB).'),
  QUOTA_INJECTED_VARIABLES_BYTES: int(1)
    .default(64 * 1024)
    .describe('Default per-customer quota: keys plus values supplied at creation (docs/behaviour.md: 64 KiB).'),
  QUOTA_VARIABLES_BYTES: int(1)
    .default(256 * 1024)
    .describe("Default per-customer quota: keys plus values of one activeflow's variables (ours: it bounds the snapshot)."),
  ADMISSION_CONCURRENCY: int(1)
    .default(256)
    .describe(
      'Requests a node runs at once. One customer alone may use them all (its writes stay pipelined); see ADMISSION_PER_CUSTOMER for when customers share the node. Beyond it, requests wait in one queue per customer, served round robin.',
    ),
  ADMISSION_PER_CUSTOMER: int(1)
    .default(32)
    .describe(
      "Requests one customer may run at once while other customers are active (a request in the last second). A quiet customer's request is slowed by every request running beside it, so a flood keeps this few running while others share the node (npm run bench:fairness: during a flood a quiet customer's next p99 was 19.5 ms at 32, 92 ms with no limit).",
    ),
  ADMISSION_QUEUE_PER_CUSTOMER: int(1)
    .default(2_000)
    .describe('Requests one customer may have waiting on a node; more are refused with limit_exceeded (quota pending_requests, 429 on REST) instead of queueing without bound.'),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info').describe('pino log level. Variable values are never logged at info.'),
  HTTP_HOST: z
    .string()
    .min(1)
    .default('127.0.0.1')
    .describe(
      'Address the REST gateway listens on (`activeflow gateway`, or `activeflow node --http <port>`). 0.0.0.0 listens on every interface (a container); the default keeps a development machine private.',
    ),
  HTTP_MAX_BODY_BYTES: int(1024)
    .max(16 * 1024 * 1024)
    .default(1024 * 1024)
    .describe('Largest REST request body; a larger one is refused with 413 before it is read. 1 MiB holds a flow of a few thousand actions.'),
});
export type NodeConfig = z.infer<typeof NodeConfig>;

/** `activeflow gateway`: the NATS connection, the HTTP listener, and nothing of a node's. */
export const GatewayConfig = NodeConfig.pick({
  NATS_URL: true,
  NATS_USER: true,
  NATS_PASSWORD: true,
  NATS_TLS_CA: true,
  NATS_TLS_CERT: true,
  NATS_TLS_KEY: true,
  LOG_LEVEL: true,
  HTTP_HOST: true,
  HTTP_MAX_BODY_BYTES: true,
}).extend({
  HTTP_PORT: int(0).max(65_535).default(8080).describe('Port of the REST gateway (`activeflow gateway`).'),
  GATEWAY_RETRY_MS: int(0).default(10_000).describe('How long the gateway retries a request the runtime cannot answer yet (a shard moving, NATS electing a leader) before it answers 503.'),
});
export type GatewayConfig = z.infer<typeof GatewayConfig>;

export function readGatewayConfig(env: Record<string, string | undefined> = process.env): GatewayConfig {
  return readConfig(GatewayConfig, env);
}

export function defaultNodeId(): string {
  return `${hostname()
    .replace(/[^A-Za-z0-9_-]/g, '-')
    .slice(0, 40)}-${randomBytes(3).toString('hex')}`;
}

export function readNodeConfig(env: Record<string, string | undefined> = process.env): NodeConfig {
  return readConfig(NodeConfig, env);
}

/** Variables that only work together. */
const PAIRS: readonly [string, string, string][] = [
  ['NATS_USER', 'NATS_PASSWORD', 'set both or neither'],
  ['NATS_TLS_CERT', 'NATS_TLS_KEY', 'set both (mutual TLS) or neither'],
  ['NATS_SYSTEM_USER', 'NATS_SYSTEM_PASSWORD', 'set both (to listen to disconnect events) or neither'],
];

/** The schema's variables from `env` (empty ones count as unset), validated, pairs checked. */
function readConfig<S extends z.ZodObject>(schema: S, env: Record<string, string | undefined>): z.output<S> {
  const known = Object.fromEntries(
    Object.keys(schema.shape)
      .filter((k) => env[k] !== undefined && env[k] !== '')
      .map((k) => [k, env[k]]),
  );
  const config = schema.parse(known) as Record<string, unknown>;
  for (const [a, b, how] of PAIRS) {
    if (a in schema.shape && (config[a] === undefined) !== (config[b] === undefined)) throw new Error(`${a} and ${b} go together: ${how}`);
  }
  return config as z.output<S>;
}

/** `--help` text for the environment variables. */
export function describeConfig(shape: Record<string, z.ZodType> = NodeConfig.shape): string {
  return Object.entries(shape)
    .map(([key, schema]) => {
      const def = (schema as z.ZodType & { _zod: { def: { defaultValue?: unknown } } })._zod.def.defaultValue;
      return `  ${key}${def !== undefined ? ` (default ${JSON.stringify(def)})` : ''}\n      ${schema.description ?? ''}`;
    })
    .join('\n');
}
