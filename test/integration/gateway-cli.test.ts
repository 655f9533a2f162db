/**
 * The gateway as operators run it: `activeflow accesskeys` and `activeflow gateway` (a process of
 * its own), and `activeflow node --http` (in the node's process). Both stop with exit 0 on SIGTERM.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { exited, startNats, startNode } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
let server: NatsServer;
let node: ActiveflowNode;

beforeAll(async () => {
  server = await startNats();
  node = await startNode(server, { nodeId: 'in-process' }); // the spawned node splits the shards with it
});
afterAll(async () => {
  await node?.stop();
  await server?.stop();
});

const cli = (...args: string[]) => run(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: server.url } });

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

/** Spawns the CLI and resolves once it logs `gateway_listening`. */
async function spawnListening(args: string[], env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: server.url, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no gateway_listening within 15 s:\n${out}`)), 15_000);
    const onData = (b: Buffer) => {
      out += b.toString();
      if (out.includes('"gateway_listening"')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
  });
  return child;
}

describe('activeflow accesskeys and activeflow gateway', () => {
  it('a key made with the CLI opens the gateway for its customer; deleted, it does not', async () => {
    const created = JSON.parse((await cli('accesskeys', 'create', '--customer', CUSTOMER, '--name', 'ci', '--json')).stdout) as { id: string; token: string };
    expect(created.token).toMatch(/^afk_/);
    expect((await cli('accesskeys', 'list', '--customer', CUSTOMER)).stdout).toMatch(new RegExp(`${created.id}.*ci.*afk_`));
    const port = await freePort();
    const gateway = await spawnListening(['gateway'], { HTTP_PORT: String(port), LOG_LEVEL: 'info' });
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1.0/flows`, { headers: { authorization: `Bearer ${created.token}` } });
      expect(res.status).toBe(200);
      expect((await cli('accesskeys', 'delete', created.id)).stdout).toMatch(/deleted access key/);
      await expect.poll(async () => (await fetch(`http://127.0.0.1:${port}/v1.0/flows`, { headers: { authorization: `Bearer ${created.token}` } })).status).toBe(401);
    } finally {
      gateway.kill('SIGTERM');
      expect(await exited(gateway)).toBe(0);
    }
  }, 30_000);

  it('refuses bad arguments with a clear message', async () => {
    await expect(cli('accesskeys', 'create')).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/--customer is required/) });
    await expect(cli('accesskeys', 'create', '--customer', 'nope')).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/customer_id/) });
    await expect(cli('accesskeys', 'rotate')).rejects.toMatchObject({ code: 2 });
    await expect(cli('node', '--http', 'eighty')).rejects.toMatchObject({ code: 2, stderr: expect.stringMatching(/--http takes a port/) });
  });

  it("activeflow node --http serves the gateway in the node's own process", async () => {
    const { token } = JSON.parse((await cli('accesskeys', 'create', '--customer', CUSTOMER, '--json')).stdout) as { token: string };
    const port = await freePort();
    const child = await spawnListening(['node', '--http', String(port)], { NODE_ID: 'http-node', LOG_LEVEL: 'info' });
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v1.0/activeflows`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
        body: JSON.stringify({ actions: [{ type: 'variable_set', option: { key: 'k', value: 'v' } }] }),
      });
      expect(res.status).toBe(200);
      expect(await res.json()).toMatchObject({ customer_id: CUSTOMER, reference_type: 'api', status: 'ended', end_reason: 'finished' });
    } finally {
      child.kill('SIGTERM');
      expect(await exited(child)).toBe(0);
    }
  }, 40_000);
});
