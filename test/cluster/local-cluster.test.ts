/**
 * `deploy/local-cluster` with real signals: a busy port is refused before anything starts; one
 * Ctrl-C (SIGINT to the script's process group, as a terminal sends it) has every node hand its
 * shards over, then stops the servers, exit 0; a second Ctrl-C while stopping has the nodes leave
 * at once and still stops the servers, exit 130; with the servers gone first it still ends promptly. Its ports are moved by an offset and its data
 * kept in a temporary folder, so it runs beside anything else.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';

const SCRIPT = new URL('../../deploy/local-cluster', import.meta.url).pathname;
const folders: string[] = [];
const children: ChildProcess[] = [];

afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) process.kill(-c.pid!, 'SIGKILL');
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});

/** An offset whose ports are all free on loopback (the script checks them again). */
async function freeOffset(nodes: number): Promise<number> {
  for (let tries = 0; tries < 20; tries++) {
    const offset = 20_000 + Math.floor(Math.random() * 30_000);
    const ports = [4222, 4223, 4224, 6222, 6223, 6224, 8222, 8223, 8224, ...Array.from({ length: nodes }, (_, i) => 9464 + i)].map((p) => p + offset);
    const free = await Promise.all(
      ports.map(
        (p) =>
          new Promise<boolean>((resolve) => {
            const s = createServer()
              .once('error', () => resolve(false))
              .listen(p, '127.0.0.1', () => s.close(() => resolve(true)));
          }),
      ),
    );
    if (free.every(Boolean)) return offset;
  }
  throw new Error('no free ports');
}

function run(nodes: number, offset: number): { child: ChildProcess; data: string; err: () => string; exited: Promise<number | null> } {
  const data = mkdtempSync(join(tmpdir(), 'local-cluster-'));
  folders.push(data);
  let err = '';
  const child = spawn('bash', [SCRIPT, String(nodes)], {
    env: { ...process.env, LOCAL_CLUSTER_PORT_OFFSET: String(offset), LOCAL_CLUSTER_DATA: data },
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: true, // its own process group, as a terminal's foreground job
  });
  children.push(child);
  child.stdout!.resume();
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code, signal) => resolve(code ?? (signal === null ? null : 128))));
  return { child, data, err: () => err, exited };
}

/** The processes whose command line names this cluster's data folder or its nodes' metrics ports. */
function leftOver(data: string, offset: number, nodes: number): string {
  const patterns = [data, ...Array.from({ length: nodes }, (_, i) => `--metrics ${9464 + i + offset}`)];
  return patterns
    .map((p) => {
      try {
        return execFileSync('pgrep', ['-f', '--', p], { encoding: 'utf8' }).trim();
      } catch {
        return ''; // pgrep: nothing matched
      }
    })
    .join('');
}

const nodeLog = (data: string, n: number) => readFileSync(join(data, `node-${n}.log`), 'utf8');

describe('deploy/local-cluster', () => {
  it('refuses a busy port before it starts anything, naming the port', async () => {
    const offset = await freeOffset(1);
    const busy: Server = await new Promise((resolve) => {
      const s = createServer().listen(4223 + offset, '127.0.0.1', () => resolve(s));
    });
    try {
      const { err, exited, data } = run(1, offset);
      expect(await exited).toBe(1);
      expect(err()).toContain(`port(s) ${4223 + offset} on 127.0.0.1 are in use`);
      expect(leftOver(data, offset, 1)).toBe('');
    } finally {
      busy.close();
    }
  }, 60_000);

  it('one Ctrl-C: every node hands its shards over, then the servers stop; exit 0 and nothing left running', async () => {
    const offset = await freeOffset(2);
    const { child, err, exited, data } = run(2, offset);
    await expect.poll(() => err(), { timeout: 100_000, interval: 250 }).toContain('Press Ctrl-C to stop everything.');
    expect(err()).toContain(`nats://127.0.0.1:${4222 + offset}`);
    process.kill(-child.pid!, 'SIGINT');
    expect(await exited).toBe(0);
    for (const n of [1, 2]) {
      const log = nodeLog(data, n);
      expect(log).toContain('"node_stopped"');
      expect(log).not.toContain('"shard_fenced"'); // handed over, not left to expire
    }
    // The first node to stop handed its shards to the other one.
    expect(nodeLog(data, 1) + nodeLog(data, 2)).toMatch(/"shards_released".*"to":"node-[12]"/);
    expect(leftOver(data, offset, 2)).toBe('');
  }, 180_000);

  it('NATS gone first: Ctrl-C still ends promptly (the nodes give up handing over at once), nothing left running', async () => {
    const offset = await freeOffset(1);
    const { child, err, exited, data } = run(1, offset);
    await expect.poll(() => err(), { timeout: 100_000, interval: 250 }).toContain('Press Ctrl-C to stop everything.');
    execFileSync('pkill', ['-KILL', '-f', '--', `${data}/nats-`]);
    await expect.poll(() => nodeLog(data, 1), { timeout: 10_000, interval: 100 }).toContain('"nats_disconnected"'); // the node knows
    process.kill(-child.pid!, 'SIGINT');
    const started = Date.now();
    expect(await exited).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
    expect(nodeLog(data, 1)).toContain('"node_stopping_without_nats"');
    expect(leftOver(data, offset, 1)).toBe('');
  }, 180_000);

  it('a second Ctrl-C while stopping: the nodes leave at once, the servers still stop; exit 130', async () => {
    const offset = await freeOffset(1);
    const { child, err, exited, data } = run(1, offset);
    await expect.poll(() => err(), { timeout: 100_000, interval: 250 }).toContain('Press Ctrl-C to stop everything.');
    process.kill(-child.pid!, 'SIGINT');
    await expect.poll(() => err(), { timeout: 5_000, interval: 50 }).toContain('stopping the nodes');
    process.kill(-child.pid!, 'SIGINT');
    const started = Date.now();
    expect(await exited).toBe(130);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(err()).toContain('leaving at once');
    expect(leftOver(data, offset, 1)).toBe('');
  }, 180_000);
});
