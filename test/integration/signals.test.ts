/**
 * Stops that always end, driven with real signals: a terminal's Ctrl-C to the whole process group
 * of `activeflow start`, a second Ctrl-C, NATS gone before the signal (node and gateway), and a
 * busy port. Every process exits within its bound, and no nats-server is left behind.
 */
import { execSync, spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exited, spawnNode, startNats } from '../helpers/nats.js';
import { tempDir } from '../helpers/temp-dir.js';

const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;

/** `activeflow start` on a free port, in its own process group (as a terminal runs it). */
async function start(): Promise<{ child: ChildProcess; conf: string; err: () => string; out: () => string }> {
  const dir = tempDir('af-signals-');
  const conf = join(dir, 'nats-server.conf');
  const shipped = readFileSync(new URL('../../nats-server.conf', import.meta.url), 'utf8');
  writeFileSync(conf, shipped.replace('listen: 127.0.0.1:4222', 'listen: 127.0.0.1:-1').replace(/^http: .*$/m, ''));
  const child = spawn(process.execPath, [BIN, 'start', '--config', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let err = '';
  let out = '';
  child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
  child.stdout!.on('data', (b: Buffer) => (out += b.toString()));
  await expect.poll(() => /activeflow is running/.test(err), { timeout: 30_000 }).toBe(true);
  return { child, conf, err: () => err, out: () => out };
}

const serversFor = (conf: string) => execSync(`pgrep -f "^[^ ]*nats-server -c ${conf}" || true`, { encoding: 'utf8' }).trim();

async function timed(child: ChildProcess): Promise<{ code: number | null; ms: number }> {
  const t0 = Date.now();
  const code = await exited(child);
  return { code, ms: Date.now() - t0 };
}

describe('signals', () => {
  it('Ctrl-C of `activeflow start` (SIGINT to its whole process group): the node hands over and stops, then the server; exit 0', async () => {
    const { child, conf, err, out } = await start();
    expect(serversFor(conf)).not.toBe('');
    // A quiet start: its 256 shards are logged a batch to a line, not a line each.
    await expect
      .poll(
        () =>
          out()
            .split('\n')
            .filter((l) => l.includes('"shards_acquired"'))
            .reduce((n, l) => n + (JSON.parse(l) as { count: number }).count, 0),
        { timeout: 10_000 },
      )
      .toBe(256);
    expect(
      out()
        .split('\n')
        .filter((l) => l.includes('"shards_acquired"')).length,
    ).toBeLessThan(10);
    process.kill(-child.pid!, 'SIGINT');
    const { code, ms } = await timed(child);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(15_000);
    expect(err()).not.toMatch(/shard_fenced/); // the server outlived the node: shards were handed over
    expect(serversFor(conf)).toBe('');
  }, 60_000);

  it('a second Ctrl-C leaves at once (exit 130), and still takes the server with it', async () => {
    const { child, conf } = await start();
    process.kill(-child.pid!, 'SIGINT');
    await new Promise((r) => setTimeout(r, 200)); // two signals at once would arrive as one
    process.kill(-child.pid!, 'SIGINT');
    const { code, ms } = await timed(child);
    expect(code).toBe(130);
    expect(ms).toBeLessThan(5_000);
    await expect.poll(() => serversFor(conf), { timeout: 5_000 }).toBe('');
  }, 60_000);

  it('a node whose NATS is gone stops at once on SIGTERM, instead of waiting STOP_TIMEOUT_MS to hand over', async () => {
    const server = await startNats();
    const node = await spawnNode(server, { NODE_ID: 'orphan', STOP_TIMEOUT_MS: '30000' });
    let out = '';
    node.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    server.signal('SIGKILL');
    await expect.poll(() => out.includes('"nats_disconnected"'), { timeout: 10_000 }).toBe(true);
    let err = '';
    node.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    node.kill('SIGTERM');
    const { code, ms } = await timed(node);
    expect(code).toBe(1); // it could not hand over: a supervisor should know
    expect(ms).toBeLessThan(5_000);
    expect(out).toMatch(/"node_stopping_without_nats"/);
    expect(err).toMatch(/NATS is unreachable: stopped without handing the shards over; their leases expire on their own/);
    await server.stop();
  }, 60_000);

  it('a node and its NATS server signalled together (a whole deployment stopped): the hand-over is given up once NATS is gone, within 10 s', async () => {
    const server = await startNats();
    const node = await spawnNode(server, { NODE_ID: 'together' });
    let out = '';
    node.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    // As a container runtime stops a stack: every process gets SIGTERM at once, and waits 10 s
    // before it kills. Each step of the hand-over waited out its own timeout here: 19 s.
    server.signal('SIGTERM');
    node.kill('SIGTERM');
    const { code, ms } = await timed(node);
    expect(code).toBe(1); // it could not hand over: a supervisor should know
    expect(ms).toBeLessThan(10_000);
    expect(out).toMatch(/"node_stopping_without_nats"/);
    // and nothing after the stop (its membership renewals used to go on, and log the lease lost)
    const lines = out.trim().split('\n');
    expect(lines.at(-1)).toMatch(/"node_stopped"/);
    await server.stop();
  }, 60_000);

  it('`activeflow gateway`: exits promptly when NATS went first; a busy port is exit 1 that names it', async () => {
    const server = await startNats();
    const node = await spawnNode(server, { NODE_ID: 'gw-node' }); // makes the buckets
    const gateway = spawn(process.execPath, [BIN, 'gateway'], { env: { ...process.env, NATS_URL: server.url, HTTP_PORT: '0' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    gateway.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    gateway.stderr!.on('data', (b: Buffer) => (out += b.toString()));
    await expect.poll(() => out.includes('gateway_listening'), { timeout: 20_000 }).toBe(true);
    server.signal('SIGKILL');
    await new Promise((r) => setTimeout(r, 300));
    gateway.kill('SIGINT');
    const { code, ms } = await timed(gateway);
    expect(code).toBe(0);
    expect(ms).toBeLessThan(5_000);

    await server.restart();
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const port = (busy.address() as { port: number }).port;
    const second = spawn(process.execPath, [BIN, 'gateway'], { env: { ...process.env, NATS_URL: server.url, HTTP_PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    second.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    second.stdout!.resume();
    const busyRun = await timed(second);
    expect(busyRun.code).toBe(1);
    expect(busyRun.ms).toBeLessThan(10_000);
    expect(err).toMatch(new RegExp(`127\\.0\\.0\\.1:${port} is in use: stop what listens there, or set HTTP_PORT`));
    busy.close();
    node.kill('SIGTERM');
    await exited(node);
    await server.stop();
  }, 90_000);
});
