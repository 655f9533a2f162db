/**
 * A real 3-server NATS JetStream cluster on loopback for the cluster tests: free ports are found
 * first (routes need them up front), each server has its own store, any of them can be killed
 * (SIGKILL) and restarted on the same ports and store.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { clusterServerConfig } from './cluster-config.js';
import { NatsServer } from './server-process.js';

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

export class NatsCluster {
  private constructor(
    readonly servers: NatsServer[],
    readonly names: string[],
    private readonly dir: string,
  ) {}

  static async start(shardCount = 256): Promise<NatsCluster> {
    const dir = mkdtempSync(join(tmpdir(), 'af-cluster-'));
    const ports = await Promise.all(Array.from({ length: 6 }, freePort));
    const names = ['n1', 'n2', 'n3'];
    const routes = names.map((_, i) => `127.0.0.1:${ports[3 + i]}`);
    const servers = await Promise.all(
      names.map((name, i) => {
        const file = join(dir, `${name}.conf`);
        writeFileSync(
          file,
          clusterServerConfig({
            name,
            host: '127.0.0.1',
            clientPort: ports[i]!,
            clusterPort: ports[3 + i]!,
            storeDir: join(dir, name),
            routes,
            shardCount,
          }),
        );
        return NatsServer.start({ configFile: file, storeDir: join(dir, name) });
      }),
    );
    return new NatsCluster(servers, names, dir);
  }

  get urls(): string[] {
    return this.servers.map((s) => s.url);
  }

  byName(name: string): NatsServer {
    return this.servers[this.names.indexOf(name)]!;
  }

  async stop(): Promise<void> {
    await Promise.all(this.servers.map((s) => s.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
