import type { NatsConnection } from '@nats-io/transport-node';
import { describeConfig, GatewayConfig, readGatewayConfig } from '../config.js';
import { AccessKeyCache } from '../gateway/access-keys.js';
import { HttpGateway } from '../gateway/http-gateway.js';
import type { Logger } from '../log.js';
import { createLogger } from '../log.js';
import { checkServerVersion, connectWhenUp, natsAccess, parseServers } from '../nats/connect.js';
import type { Command } from './command.js';
import { stopOnSignals } from './signals.js';

/** How long a starting gateway waits for a node to answer. */
const NODE_WAIT_MS = 60_000;

/** The gateway on a connection: the access keys (read through a node), then the HTTP listener. */
export async function startGateway(
  nc: NatsConnection,
  o: { port: number; host: string; maxBodyBytes: number; retryForMs?: number; log: Logger },
): Promise<{ gateway: HttpGateway; stop: () => Promise<void> }> {
  // Gateways and nodes often start together (a deployment): wait a while for a node to answer.
  const waiting = setTimeout(() => o.log.info({ event: 'gateway_waiting_for_node' }, 'waiting for a node to answer: the gateway reads its access keys through one'), 2_000);
  let keys: AccessKeyCache;
  try {
    keys = await AccessKeyCache.start(nc, NODE_WAIT_MS);
  } catch (e) {
    throw new Error(`cannot read the access keys (${(e as Error).message}): start a node, it serves them`, { cause: e });
  } finally {
    clearTimeout(waiting);
  }
  let gateway: HttpGateway;
  try {
    gateway = await HttpGateway.start({ nc, keys, log: o.log, port: o.port, host: o.host, maxBodyBytes: o.maxBodyBytes, ...(o.retryForMs === undefined ? {} : { retryForMs: o.retryForMs }) });
  } catch (e) {
    keys.stop();
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EADDRINUSE') throw new Error(`${o.host}:${o.port} is in use: stop what listens there, or set HTTP_PORT (and HTTP_HOST) to a free one`, { cause: e });
    if (code === 'EACCES') throw new Error(`${o.host}:${o.port} may not be opened by this user: choose a port above 1023 with HTTP_PORT`, { cause: e });
    throw e;
  }
  o.log.info({ event: 'gateway_listening', url: gateway.url }, `REST gateway on ${gateway.url}/v1.0 (OpenAPI at ${gateway.url}/openapi.json)`);
  return {
    gateway,
    stop: async () => {
      await gateway.stop();
      keys.stop();
    },
  };
}

export const gatewayCommand: Command = {
  name: 'gateway',
  usage: 'activeflow gateway',
  summary: "Run a REST gateway (VoIPBIN's /v1.0 activeflow and flow API) in front of the nodes.",
  help: `Serves VoIPBIN's public REST API for activeflows and flows under /v1.0, backed by the nodes'
NATS API, and its OpenAPI document at /openapi.json. Stateless: run as many as you like.
Requests need an access key (\`activeflow accesskeys create --customer <id>\`), sent as
"Authorization: Bearer <key>" or ?accesskey=<key>; each key sees only its customer's data.
Ctrl-C or SIGTERM stops it: requests in progress finish first. The API is described in docs/rest.md.

Configuration, from the environment:
${describeConfig(GatewayConfig.shape)}`,
  async run(_args, io) {
    let config: GatewayConfig;
    try {
      config = readGatewayConfig();
    } catch (e) {
      io.err(`activeflow gateway: bad configuration: ${(e as Error).message}`);
      return 2;
    }
    const log = createLogger({ component: 'gateway' });
    let nc: NatsConnection;
    try {
      const access = natsAccess(config);
      nc = await connectWhenUp(log, parseServers(config.NATS_URL), 'activeflow-gateway', access.credentials, access.tls);
    } catch (e) {
      io.err(`activeflow gateway: cannot reach NATS at ${config.NATS_URL}: ${(e as Error).message}. Start it with \`npm start\`, or set NATS_URL.`);
      return 1;
    }
    try {
      checkServerVersion(nc, log);
    } catch (e) {
      io.err(`activeflow gateway: ${(e as Error).message}`);
      await nc.close().catch(() => undefined);
      return 1;
    }
    let running: { stop: () => Promise<void> };
    try {
      running = await startGateway(nc, { port: config.HTTP_PORT, host: config.HTTP_HOST, maxBodyBytes: config.HTTP_MAX_BODY_BYTES, retryForMs: config.GATEWAY_RETRY_MS, log });
    } catch (e) {
      io.err(`activeflow gateway: ${(e as Error).message}`);
      await nc.close().catch(() => undefined);
      return 1;
    }
    return stopOnSignals(async () => {
      await running.stop();
      // A drain needs the server; with NATS gone there is nothing left to flush.
      await nc.drain().catch(() => nc.close());
    }, 30_000);
  },
};
