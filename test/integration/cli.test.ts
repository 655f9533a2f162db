/** The user CLI, run as a user runs it (child processes), against a real server and node. */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { startNats, startNode } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const EXAMPLE = new URL('../../examples/ivr-menu.json', import.meta.url).pathname;
let server: NatsServer;
let node: ActiveflowNode;

beforeAll(async () => {
  server = await startNats();
  node = await startNode(server);
});
afterAll(async () => {
  await node?.stop();
  await server?.stop();
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const r = await run(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: server.url } });
    return { code: 0, ...r };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

describe('activeflow CLI', () => {
  it('creates a flow from a file, drives calls through it, and inspects them', async () => {
    const created = await cli('flows', 'create', '--customer', CUSTOMER, '--file', EXAMPLE, '--name', 'ivr', '--json');
    expect(created.code).toBe(0);
    const flow = JSON.parse(created.stdout) as { id: string; actions: unknown[] };
    expect(flow.actions).toHaveLength(9);
    expect((await cli('flows', 'list', '--customer', CUSTOMER)).stdout).toMatch(new RegExp(`${flow.id}\\s+ivr\\s+9`));

    const sim = await cli('simulate-calls', '--flow', flow.id, '--customer', CUSTOMER, '--calls', '12', '--concurrency', '4', '--digits', '9,2', '--media-ms', '0', '--json');
    expect(sim.code).toBe(0);
    const report = JSON.parse(sim.stdout) as { calls: number; moves: number; errors: number; p50Ms: number };
    expect(report).toMatchObject({ calls: 12, errors: 0 });
    expect(report.moves).toBe(12 * 7); // answer, talk, digits, talk (menu again), digits, talk (support), hangup
    expect(sim.stderr).toMatch(/calls 12\/12/);

    const list = JSON.parse((await cli('list', '--customer', CUSTOMER, '--status', 'ended', '--json')).stdout) as { id: string; end_reason: string }[];
    expect(list).toHaveLength(12);
    expect(list.every((a) => a.end_reason === 'reference_ended')).toBe(true);
    const id = list[0]!.id;
    expect((await cli('get', id)).stdout).toMatch(/ended \(reference_ended\)/);
    const history = (await cli('history', id)).stdout.trim().split('\n');
    expect(history[0]).toMatch(/^\s*1\s.*activeflow_created/);
    expect(history.at(-1)).toMatch(/activeflow_ended/);
    expect((await cli('variables', id, '--json')).stdout).toMatch(/"voipbin.call.digits": ""/);
    const watched = await cli('watch', id);
    expect(watched.stdout.trim().split('\n')).toHaveLength(history.length);
  }, 60_000);

  it('drives one activeflow by hand: next, variables, stop', async () => {
    const flow = JSON.parse((await cli('flows', 'create', '--customer', CUSTOMER, '--file', EXAMPLE, '--json')).stdout) as { id: string };
    const { ActiveflowClient } = await import('../../src/api/client.js');
    const { connectNats } = await import('../../src/nats/connect.js');
    const nc = await connectNats(server.url, 'cli-test');
    const af = await new ActiveflowClient(nc).createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
    await nc.close();
    expect((await cli('next', af.id)).stdout).toMatch(/answer/);
    expect((await cli('next', af.id)).stdout).toMatch(/talk .*Hello/);
    expect((await cli('variables', af.id, 'set', 'customer_name=Bob', 'x=${customer_name}!')).stdout).toMatch(/x\s+Bob!/);
    expect((await cli('variables', af.id, 'delete', 'x')).stdout).not.toMatch(/^x\s/m);
    expect((await cli('stop', af.id)).stdout).toMatch(/ended \(stopped\)/);
    const again = await cli('next', af.id);
    expect([again.code, again.stderr]).toEqual([1, expect.stringMatching(/ended:/)]);
  }, 60_000);

  it('watch follows a running activeflow live and stops when it ends', async () => {
    const { spawn } = await import('node:child_process');
    const { ActiveflowClient } = await import('../../src/api/client.js');
    const { connectNats } = await import('../../src/nats/connect.js');
    const nc = await connectNats(server.url, 'watch-test');
    const client = new ActiveflowClient(nc);
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }] });
    const watcher = spawn(process.execPath, [BIN, 'watch', af.id], { env: { ...process.env, NATS_URL: server.url }, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    watcher.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    for (let i = 0; i < 100 && !out.includes('activeflow_created'); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toMatch(/activeflow_created/);
    expect(out).not.toMatch(/answer/);
    const a = await client.next(af.id, af.current_action.id); // happens while watch runs
    const t = await client.next(af.id, a.id);
    await client.next(af.id, t.id);
    const code = await new Promise<number | null>((r) => watcher.once('exit', r));
    await nc.close();
    expect(code).toBe(0);
    const lines = out.trim().split('\n');
    expect(lines.map((l) => l.split(/\s+/).filter(Boolean)[2])).toEqual([
      'activeflow_created',
      'activeflow_updated',
      'activeflow_updated',
      'activeflow_updated',
      'activeflow_updated',
      'activeflow_ended',
    ]);
    expect(lines[1]).toMatch(/answer/);
  }, 60_000);

  it('says what is wrong and exits non-zero', async () => {
    expect(await cli('get', '00000000-0000-4000-8000-000000000999')).toMatchObject({ code: 1, stderr: expect.stringMatching(/not_found/) });
    expect(await cli('flows', 'create', '--customer', CUSTOMER)).toMatchObject({ code: 2, stderr: expect.stringMatching(/--file is required/) });
    expect(await cli('list')).toMatchObject({ code: 2, stderr: expect.stringMatching(/--customer is required/) });
    expect(await cli('get', 'nope')).toMatchObject({ code: 2, stderr: expect.stringMatching(/invalid_argument/) });
    const down = await run(process.execPath, [BIN, 'get', '00000000-0000-4000-8000-000000000999'], { env: { ...process.env, NATS_URL: 'nats://127.0.0.1:1' } }).catch(
      (e: { code: number; stderr: string }) => e,
    );
    expect(down).toMatchObject({ code: 1, stderr: expect.stringMatching(/cannot reach NATS.*npm start/) });
  }, 60_000);
});

describe('activeflow call', () => {
  const callCli = (input: string | null, ...args: string[]) =>
    new Promise<{ code: number | null; out: string }>((resolve) => {
      const child = spawn(process.execPath, [BIN, 'call', ...args], { env: { ...process.env, NATS_URL: server.url }, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (b: Buffer) => (out += b.toString()));
      child.stderr.on('data', (b: Buffer) => (out += b.toString()));
      if (input === null) child.stdin.end();
      else child.stdin.end(input);
      child.on('exit', (code) => resolve({ code, out }));
    });

  it('walks a flow as the call service sees it, typing --digits at each digits_receive (no terminal)', async () => {
    const flow = JSON.parse((await cli('flows', 'create', '--customer', CUSTOMER, '--file', EXAMPLE, '--json')).stdout) as { id: string };
    const r = await callCli(null, '--flow', flow.id, '--digits', '9,2');
    expect(r.code).toBe(0);
    const types = [...r.out.matchAll(/^ *\d+ {2}(\w+) /gm)].map((m) => m[1]);
    expect(types).toEqual(['answer', 'talk', 'digits_receive', 'talk', 'digits_receive', 'talk', 'hangup']);
    expect(r.out).toContain('"text":"Hello . Press 1 for sales, 2 for support."'); // substituted (no customer_name here)
    expect(r.out).toContain('Connecting you to support.');
    expect(r.out).toMatch(/\(finish: the flow ended/);
  });

  it('interactively: Enter performs, digits are the keys pressed, h hangs up', async () => {
    const flow = JSON.parse((await cli('flows', 'create', '--customer', CUSTOMER, '--file', EXAMPLE, '--json')).stdout) as { id: string };
    const r = await callCli('\n\n1\n\nh\n', '--flow', flow.id, '--interactive'); // answer, talk, press 1, sales talk, hang up
    expect(r.code).toBe(0);
    expect(r.out).toContain('Connecting you to sales.');
    expect(r.out).toMatch(/hung up: the activeflow ended \(reference_ended\)/);
    const missing = await cli('call');
    expect([missing.code, missing.stderr]).toEqual([2, expect.stringMatching(/--flow is required/)]);
  });
});
