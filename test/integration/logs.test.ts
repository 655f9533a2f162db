/**
 * A node's logs, as an operator reads them: JSON lines whose per-activeflow events carry the node,
 * shard, customer and activeflow ids; LOG_LEVEL decides what is written; and neither a password nor
 * a variable's value appears at info level.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { accountsConfig } from '../../src/nats/cluster-config.js';
import { connectNats } from '../../src/nats/connect.js';
import { shardOf } from '../../src/nats/shard-mapping.js';
import { NatsServer } from '../../src/nats/server-process.js';
import { ActiveflowClient } from '../../src/api/client.js';
import { CUSTOMER } from '../helpers/engine.js';
import { exited, spawnNode } from '../helpers/nats.js';

const cleanups: (() => Promise<unknown>)[] = [];
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

const PASSWORD = 'app-pw-SECRET-9183';
const PIN = 'PIN-SECRET-4242';

async function nodeLogs(level: string): Promise<{ lines: Record<string, unknown>[]; raw: string; id: string }> {
  const server = await NatsServer.start({ extraConfig: accountsConfig(256, { system: '"sys-pw"', app: `"${PASSWORD}"` }, false) });
  cleanups.push(() => server.stop());
  const child = await spawnNode(server, { NATS_USER: 'activeflow', NATS_PASSWORD: PASSWORD, LOG_LEVEL: level, NODE_ID: 'log-node' });
  let raw = '';
  child.stdout!.on('data', (b: Buffer) => (raw += b.toString()));
  child.stderr!.on('data', (b: Buffer) => (raw += b.toString()));
  const nc = await connectNats(server.url, 'log-client', { user: 'activeflow', pass: PASSWORD });
  const client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 10_000 });
  // A variable with a secret, used in an option, and an HTTP effect that fails (a warning).
  const af = await client.createActiveflow({
    customer_id: CUSTOMER,
    reference_type: 'call',
    variables: { pin: PIN },
    actions: [
      { type: 'talk', option: { text: 'your pin is ${pin}' } },
      { type: 'webhook_send', option: { uri: 'http://127.0.0.1:9/?pin=${pin}', method: 'POST', data: '${pin}' } },
      { type: 'answer' },
    ],
  });
  let current = af.current_action.id;
  for (let i = 0; i < 2; i++) current = (await client.next(af.id, current)).id; // talk, then (past webhook_send) answer
  await client.setVariables(af.id, { pin2: PIN });
  await new Promise((r) => setTimeout(r, 1_500)); // the webhook_send fails meanwhile
  await nc.close();
  child.kill('SIGTERM');
  expect(await exited(child)).toBe(0);
  const lines = raw
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { lines, raw, id: af.id };
}

describe('node logs', () => {
  it('at info: JSON lines; per-activeflow events name node, shard, customer and activeflow; no password, no variable value', async () => {
    const { lines, raw, id } = await nodeLogs('info');
    expect(lines.length).toBeGreaterThan(0);
    expect(lines.every((l) => typeof l['level'] === 'number' && (l['level'] as number) >= 30)).toBe(true);
    expect(lines.every((l) => l['node_id'] === 'log-node' || l['component'] !== undefined)).toBe(true);
    const mine = lines.filter((l) => l['activeflow_id'] === id);
    expect(mine.length).toBeGreaterThan(0); // the failed webhook_send
    for (const l of mine) expect(l).toMatchObject({ node_id: 'log-node', shard: shardOf(id, 256), customer_id: CUSTOMER });
    expect(raw).not.toContain(PASSWORD);
    expect(raw).not.toContain(PIN);
  }, 40_000);

  it('LOG_LEVEL=debug adds the per-request detail, with the same ids', async () => {
    const { lines, raw, id } = await nodeLogs('debug');
    const debug = lines.filter((l) => l['level'] === 20 && l['activeflow_id'] === id);
    expect(debug.length).toBeGreaterThan(0);
    for (const l of debug) expect(l).toMatchObject({ node_id: 'log-node', shard: shardOf(id, 256), customer_id: CUSTOMER });
    expect(raw).not.toContain(PASSWORD);
  }, 40_000);
});
