/**
 * Over TLS: a nats-server that requires it (certificates from scripts/dev-certs.sh), a node and a
 * client that trust its CA, the CLI with NATS_TLS_CA; a client without TLS is refused.
 */
import { execFile, spawnSync } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActiveflowClient } from '../../src/api/client.js';
import { tlsBlock } from '../../src/nats/cluster-config.js';
import { connectNats } from '../../src/nats/connect.js';
import { NatsServer } from '../../src/nats/server-process.js';
import { shardMappingConfig } from '../../src/nats/shard-mapping.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { startNode } from '../helpers/nats.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const certs = tempDir('af-tls-');
let server: NatsServer;
let node: ActiveflowNode;

beforeAll(async () => {
  expect(spawnSync('bash', [new URL('../../scripts/dev-certs.sh', import.meta.url).pathname, certs]).status).toBe(0);
  server = await NatsServer.start({ extraConfig: `${tlsBlock({ certFile: `${certs}/server.crt`, keyFile: `${certs}/server.key`, caFile: `${certs}/ca.crt` })}\n${shardMappingConfig(256)}` });
  node = await startNode(server, { tls: { caFile: `${certs}/ca.crt` } });
});
afterAll(async () => {
  await node?.stop();
  await server?.stop();
});

describe('TLS', () => {
  it('a node and a client that trust the CA work end to end; a client without TLS is refused', async () => {
    const nc = await connectNats(server.url, 'tls-client', undefined, { caFile: `${certs}/ca.crt` });
    try {
      const client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 5_000 });
      const af = await client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'talk', option: { text: 'secret' } }], reference_type: 'call' });
      expect((await client.next(af.id, af.current_action.id)).type).toBe('talk');
    } finally {
      await nc.close();
    }
    const { connect } = await import('@nats-io/transport-node');
    await expect(connect({ servers: server.url, timeout: 2_000, reconnect: false })).rejects.toThrow(/certificate|tls/i);
  });

  it('the CLI connects with NATS_TLS_CA, and without it says what is wrong', async () => {
    const env = { ...process.env, NATS_URL: server.url };
    const { stdout } = await run(process.execPath, [BIN, 'nodes', '--json'], { env: { ...env, NATS_TLS_CA: `${certs}/ca.crt` } });
    expect(JSON.parse(stdout)).toEqual(expect.arrayContaining([expect.objectContaining({ node_id: 'test-node' })]));
    await expect(run(process.execPath, [BIN, 'nodes'], { env, timeout: 20_000 })).rejects.toMatchObject({ code: 1, stderr: expect.stringMatching(/cannot reach NATS.*certificate.*set NATS_TLS_CA/) });
  }, 30_000);
});
