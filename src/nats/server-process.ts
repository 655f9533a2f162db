/**
 * A nats-server child process: for `npm start` (the embedded default) and for the tests, which
 * start their own servers on free loopback ports (`-1`) and read the real port from the ports file.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { PROJECT_ROOT } from '../project.js';
import { PINNED_SERVER_VERSION } from './server-version.js';

/**
 * The nats-server to run, resolved as scripts/install-deps.sh does: NATS_SERVER_BIN if set, the
 * project's own build of the pinned release (.tools/), else `nats-server` on PATH (whose version the
 * nodes check when they connect).
 */
export function natsServerBinary(): string {
  const fromEnv = process.env['NATS_SERVER_BIN'];
  if (fromEnv !== undefined && fromEnv !== '') return fromEnv;
  const built = join(PROJECT_ROOT, '.tools', `nats-server-v${PINNED_SERVER_VERSION}`, 'nats-server');
  return existsSync(built) ? built : 'nats-server';
}

export interface NatsServerOptions {
  /** A fixed port; default a free one chosen by the server. */
  port?: number;
  /** JetStream's store; default a fresh temporary folder, removed by `stop({ clean: true })`. */
  storeDir?: string;
  /** More configuration, appended verbatim (mappings, accounts, cluster blocks...). */
  extraConfig?: string;
  /** A configuration file to use as it is, instead of the generated one. */
  configFile?: string;
  serverName?: string;
  /** JetStream's `sync_interval` (`always`, or a duration such as `1s`); default the server's (2 minutes). */
  syncInterval?: string;
}

/** Servers started by this process: killed if it exits without stopping them (a crashed test). */
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export class NatsServerError extends Error {
  override readonly name = 'NatsServerError';
}

export class NatsServer {
  private constructor(
    readonly url: string,
    readonly port: number,
    readonly storeDir: string,
    readonly workDir: string,
    private child: ChildProcess,
    private readonly options: NatsServerOptions,
    private readonly ownsStore: boolean,
  ) {}

  static async start(options: NatsServerOptions = {}): Promise<NatsServer> {
    const workDir = mkdtempSync(join(tmpdir(), 'af-nats-'));
    const ownsStore = options.storeDir === undefined;
    const storeDir = options.storeDir ?? join(workDir, 'store');
    mkdirSync(storeDir, { recursive: true });
    const { child, port } = await launch(workDir, storeDir, options);
    return new NatsServer(`nats://127.0.0.1:${port}`, port, storeDir, workDir, child, options, ownsStore);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Sends a signal (SIGKILL to crash it, SIGSTOP to pause it). */
  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /**
   * Stops the server (SIGTERM, then SIGKILL after 5 s) and removes its work folder (config, ports
   * file). A store the caller named is kept (`activeflow start`'s ./data/nats, a cluster's
   * folder); one the server made for itself goes with it.
   */
  async stop(): Promise<void> {
    await terminate(this.child);
    rmSync(this.workDir, { recursive: true, force: true });
    if (this.ownsStore) rmSync(this.storeDir, { recursive: true, force: true });
  }

  /** Starts the server again on the same port and store (after a stop or a crash). */
  async restart(): Promise<void> {
    await terminate(this.child);
    const { child } = await launch(this.workDir, this.storeDir, { ...this.options, port: this.port });
    this.child = child;
  }
}

function configText(storeDir: string, workDir: string, options: NatsServerOptions): string {
  return [
    `listen: 127.0.0.1:${options.port ?? -1}`,
    `server_name: ${options.serverName ?? 'af_test'}`,
    `ports_file_dir: "${workDir}"`,
    `jetstream { store_dir: "${storeDir}"${options.syncInterval === undefined ? '' : `, sync_interval: ${options.syncInterval}`} }`,
    options.extraConfig ?? '',
  ].join('\n');
}

async function launch(workDir: string, storeDir: string, options: NatsServerOptions): Promise<{ child: ChildProcess; port: number }> {
  const configFile = options.configFile ?? join(workDir, 'nats-server.conf');
  if (options.configFile === undefined) writeFileSync(configFile, configText(storeDir, workDir, options));
  for (const f of readdirSync(workDir)) if (f.endsWith('.ports')) rmSync(join(workDir, f));
  let stderr = '';
  // Its own process group: a terminal's Ctrl-C goes to `activeflow start` only, which stops the
  // node (handing its shards over through this server) and then the server, in that order.
  const child = spawn(natsServerBinary(), ['-c', configFile, ...(options.configFile ? ['--ports_file_dir', workDir] : [])], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  child.stderr?.on('data', (b: Buffer) => {
    stderr = (stderr + b.toString()).slice(-4000);
  });
  const failed = new Promise<never>((_, reject) => {
    child.once('error', (e: NodeJS.ErrnoException) =>
      reject(
        new NatsServerError(
          e.code === 'ENOENT'
            ? `nats-server not found; run \`bash scripts/install-deps.sh\` (it builds nats-server ${PINNED_SERVER_VERSION} into .tools/), set NATS_SERVER_BIN to a nats-server binary, or set NATS_URL to a running server`
            : `nats-server could not start: ${e.message}`,
        ),
      ),
    );
    child.once('exit', (code) => reject(new NatsServerError(`nats-server exited with ${code} while starting:\n${stderr}`)));
  });
  const ready = (async () => {
    for (let i = 0; i < 200; i++) {
      const file = readdirSync(workDir).find((f) => f.startsWith('nats-server_') && f.endsWith('.ports'));
      if (file !== undefined) {
        try {
          const ports = JSON.parse(readFileSync(join(workDir, file), 'utf8')) as { nats: string[] };
          const port = Number(new URL(ports.nats[0]!.replace('nats://', 'http://')).port);
          if (port > 0) return port;
        } catch {
          // written but not complete yet
        }
      }
      await sleep(25);
    }
    throw new NatsServerError(`nats-server did not report its port within 5 s:\n${stderr}`);
  })();
  const port = await Promise.race([ready, failed]);
  failed.catch(() => undefined);
  child.removeAllListeners('exit');
  live.add(child);
  child.once('exit', () => live.delete(child));
  return { child, port };
}

async function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGCONT');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}
