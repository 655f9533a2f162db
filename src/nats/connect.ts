import { connect, type NatsConnection } from '@nats-io/transport-node';
import { isTransient } from '../errors.js';
import type { Logger } from '../log.js';
import { retry } from '../retry.js';
import { judgeServerVersion, ServerVersionError } from './server-version.js';
import { applyRequestSettleFix } from './request-settle.js';
import { inboxPrefixOf, ROLES, type Role } from './roles.js';

/** `NATS_URL` may list several servers, comma-separated (the client wants an array). */
export function parseServers(text: string): string[] {
  return text
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
}

/**
 * Connects with reconnection that never gives up: a node outlives restarts of its servers.
 * The name shows up in the server's connection list and its disconnect events.
 */
export interface TlsFiles {
  /** The CA that signed the servers' certificates. */
  caFile: string;
  /** A client certificate and key, when the servers verify clients (mutual TLS). */
  certFile?: string;
  keyFile?: string;
}

export async function connectNats(servers: string[] | string, name: string, credentials?: { user: string; pass: string }, tls?: TlsFiles): Promise<NatsConnection> {
  applyRequestSettleFix();
  const list = Array.isArray(servers) ? servers : parseServers(servers);
  if (list.length === 0) throw new Error('no NATS server given; set NATS_URL (for example nats://127.0.0.1:4222)');
  const role = (ROLES as readonly string[]).includes(credentials?.user ?? '') ? (credentials!.user as Role) : undefined;
  return connect({
    servers: list,
    name,
    ...(credentials ?? {}),
    // A role may only subscribe to its own inboxes (roles.ts).
    ...(role === undefined ? {} : { inboxPrefix: inboxPrefixOf(role) }),
    ...(tls === undefined ? {} : { tls: { ...tls } }),
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    pingInterval: 5_000,
    timeout: 5_000,
    // An Error with a captured stack per request cost a fifth of a node's CPU under load
    // (measured with --cpu-prof); errors keep their types and messages without it.
    noAsyncTraces: true,
  });
}

/** How long a starting node or gateway waits for its servers to answer: they may be starting beside it. */
export const NATS_START_WAIT_MS = 30_000;

/**
 * connectNats for a node or a gateway that may start before its servers do (a deployment brought
 * up at once: in Kubernetes a node that exited at once went into CrashLoopBackOff, 10 s, 20 s,
 * 40 s..., until they were up). Servers that cannot be reached are waited for, up to
 * NATS_START_WAIT_MS, said in the log at once; what waiting does not mend (a refused password)
 * fails at once.
 */
export async function connectWhenUp(log: Logger, servers: string[], name: string, credentials?: { user: string; pass: string }, tls?: TlsFiles): Promise<NatsConnection> {
  try {
    return await retry(() => connectNats(servers, name, credentials, tls), {
      backoff: { firstMs: 250, maxMs: 2_000 },
      forMs: NATS_START_WAIT_MS,
      retryable: isTransient,
      onRetry: (e, attempt) => {
        if (attempt === 1 || attempt % 10 === 0)
          log.warn({ event: 'nats_not_ready', servers, err: (e as Error).message }, `waiting for NATS at ${servers.join(',')} (at most ${NATS_START_WAIT_MS / 1000} s)`);
      },
    });
  } catch (e) {
    if (!isTransient(e)) throw e;
    throw new Error(`NATS at ${servers.join(',')} did not answer for ${NATS_START_WAIT_MS / 1000} s (${(e as Error).message}); is nats-server running there, and is NATS_URL right?`, { cause: e });
  }
}

/**
 * The minimum server version, checked by every node and gateway right after it connects (from the
 * server's INFO): below it a process refuses to start against a cluster, and warns on a single
 * server (judgeServerVersion says why).
 */
export function checkServerVersion(nc: NatsConnection, log: Logger): void {
  const info = nc.info;
  if (info === undefined) return;
  const verdict = judgeServerVersion(info);
  if (verdict.kind === 'refuse') throw new ServerVersionError(verdict.message);
  if (verdict.kind === 'warn') log.warn({ event: 'nats_server_too_old', version: info.version }, verdict.message);
}

/** Whether a connection is up now, as its status events tell. */
export interface ConnectionState {
  readonly connected: boolean;
  /**
   * Resolves once the connection has been down for `ms` in a row (a reconnect within that starts
   * the count again); `cancel` stops waiting.
   */
  downFor(ms: number): { down: Promise<void>; cancel(): void };
}

/**
 * Follows what happens to a connection (disconnects, reconnects, stale connections, server errors,
 * slow consumers) and logs it, so that a stall in a node's log can be told apart from a stall in the
 * server; says whether it is up (a stop does not wait on a server that is gone).
 */
export function watchConnection(nc: NatsConnection, log: Logger): ConnectionState {
  /** Told of every change, for `downFor`. */
  const watchers = new Set<(connected: boolean) => void>();
  const state = {
    connected: !nc.isClosed(),
    downFor(ms: number) {
      let timer: NodeJS.Timeout | null = null;
      let resolve!: () => void;
      const down = new Promise<void>((r) => (resolve = r));
      const watch = (connected: boolean) => {
        if (timer !== null) clearTimeout(timer);
        timer = connected ? null : setTimeout(resolve, ms);
        timer?.unref();
      };
      watchers.add(watch);
      watch(state.connected);
      return {
        down,
        cancel: () => {
          watchers.delete(watch);
          if (timer !== null) clearTimeout(timer);
        },
      };
    },
  };
  const set = (connected: boolean) => {
    state.connected = connected;
    for (const w of watchers) w(connected);
  };
  void (async () => {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          set(false);
          log.warn({ event: 'nats_disconnected', server: s.server }, 'lost the NATS connection; reconnecting');
          break;
        case 'reconnect':
          set(true);
          log.info({ event: 'nats_reconnected', server: s.server });
          break;
        case 'staleConnection':
          log.warn({ event: 'nats_stale_connection' }, 'the NATS server stopped answering pings; reconnecting');
          break;
        case 'error':
          log.warn({ event: 'nats_server_error', err: s.error });
          break;
        case 'slowConsumer':
          log.warn({ event: 'nats_slow_consumer', subject: s.sub.getSubject(), pending: s.pending });
          break;
        default:
          break;
      }
    }
    set(false);
  })();
  return state;
}

/** How to reach NATS as configured: the user, and TLS files (from a config or the environment). */
export function natsAccess(c: Partial<Record<'NATS_USER' | 'NATS_PASSWORD' | 'NATS_TLS_CA' | 'NATS_TLS_CERT' | 'NATS_TLS_KEY', string | undefined>>): {
  credentials?: { user: string; pass: string };
  tls?: TlsFiles;
} {
  return {
    ...(c.NATS_USER && c.NATS_PASSWORD ? { credentials: { user: c.NATS_USER, pass: c.NATS_PASSWORD } } : {}),
    ...(c.NATS_TLS_CA ? { tls: { caFile: c.NATS_TLS_CA, ...(c.NATS_TLS_CERT && c.NATS_TLS_KEY ? { certFile: c.NATS_TLS_CERT, keyFile: c.NATS_TLS_KEY } : {}) } } : {}),
  };
}
