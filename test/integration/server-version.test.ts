/**
 * The minimum server version, end to end: a node and a gateway that connect to a cluster server
 * reporting an old version refuse to start, naming the bug and the fix. The "server" is a socket
 * that speaks just enough of the NATS protocol to hand out its INFO (the "fake server
 * info"): a real old binary is not something every machine has.
 */
import { spawn } from 'node:child_process';
import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.js';
import { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { MINIMUM_SERVER_VERSION } from '../../src/nats/server-version.js';
import { exited, nodeOptions } from '../helpers/nats.js';

let server: Server;
let url = '';
const sockets = new Set<Socket>();

beforeAll(async () => {
  server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    const info = {
      server_id: 'FAKE',
      server_name: 'old-1',
      version: '2.9.10',
      proto: 1,
      go: 'go1.19',
      host: '127.0.0.1',
      port: 0,
      headers: true,
      max_payload: 1048576,
      jetstream: true,
      cluster: 'activeflow',
    };
    socket.write(`INFO ${JSON.stringify(info)}\r\n`);
    socket.on('data', (b) => {
      for (const line of b.toString().split('\r\n')) if (line === 'PING') socket.write('PONG\r\n');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  url = `nats://127.0.0.1:${(server.address() as { port: number }).port}`;
});

afterAll(async () => {
  for (const s of sockets) s.destroy();
  await new Promise((r) => server.close(r));
});

describe('a cluster server older than the minimum', () => {
  it('a node refuses to start, naming the bug and the release that fixed it', async () => {
    const started = ActiveflowNode.start({ ...nodeOptions({ url } as never), servers: [url], log: silentLogger });
    await expect(started).rejects.toThrow(/nats-server 2\.9\.10 \(old-1\) is older than .*nats-io\/nats-server#4320.*fixed in 2\.9\.21/s);
    await expect(started).rejects.toThrow(new RegExp(`Upgrade the NATS servers to ${MINIMUM_SERVER_VERSION.replaceAll('.', '\\.')} or later`));
  });

  it('`activeflow gateway` exits 1 with the same message', async () => {
    const child = spawn(process.execPath, [new URL('../../bin/activeflow.mjs', import.meta.url).pathname, 'gateway'], {
      env: { ...process.env, NATS_URL: url, HTTP_PORT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let err = '';
    child.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    child.stdout!.resume();
    expect(await exited(child)).toBe(1);
    expect(err).toMatch(/activeflow gateway: nats-server 2\.9\.10 .*#4320/);
  }, 20_000);
});
