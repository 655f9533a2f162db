/**
 * `activeflow replay` and `activeflow.admin.v1.replay` against a real server and node: recorded
 * calls replay identical; a journal whose recorded outcome no engine gives (an entry written by a
 * stale or faulty writer, appended here after the last one) is reported at that entry, exit 1.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { ActiveflowClient } from '../../src/api/client.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import type { ReplayResult } from '../../src/replay/replay-journal.js';
import { Journal } from '../../src/store/journal.js';
import type { MoveEntry } from '../../src/store/journal-entry.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, openStoresFor, startNats, startNode } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const env = {} as { server: NatsServer; node: ActiveflowNode; client: ActiveflowClient; close: () => Promise<void> };

beforeAll(async () => {
  env.server = await startNats();
  env.node = await startNode(env.server);
  const c = await clientFor(env.server);
  env.client = c.client;
  env.close = () => c.nc.close();
}, 30_000);
afterAll(async () => {
  await env.close?.();
  await env.node?.stop();
  await env.server?.stop();
});

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await run(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: env.server.url } })) };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

async function walk(id: string, from: string, moves: number): Promise<void> {
  let current = from;
  for (let i = 0; i < moves; i++) current = (await env.client.next(id, current)).id;
}

describe('replay', () => {
  it('replays recorded calls as identical: one, a customer, and through the admin endpoint', async () => {
    const flow = await env.client.createFlow({
      customer_id: CUSTOMER,
      actions: [{ type: 'answer' }, { type: 'variable_set', option: { key: 'menu', value: 'main' } }, { type: 'talk', option: { text: 'press ${menu}' } }, { type: 'hangup' }],
    });
    const calls = await Promise.all([0, 1, 2].map(() => env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' })));
    for (const c of calls) await walk(c.id, c.current_action.id, 3);
    await env.client.setVariables(calls[0]!.id, { caller: '+15551234' });

    const one = await cli('replay', calls[0]!.id);
    expect(one.code).toBe(0);
    expect(one.stdout).toMatch(new RegExp(`^${calls[0]!.id}: identical, \\d+ moves from its created entry`));

    const many = await cli('replay', '--customer', CUSTOMER, '--json');
    expect(many.code).toBe(0);
    const summary = JSON.parse(many.stdout) as { identical: number; diverged: number; results: ReplayResult[] };
    expect(summary.identical).toBe(3);
    expect(summary.diverged).toBe(0);

    const { nc } = await clientFor(env.server);
    const viaAdmin = JSON.parse(new TextDecoder().decode((await nc.request('activeflow.admin.v1.replay', JSON.stringify({ activeflow_id: calls[1]!.id }), { timeout: 5_000 })).data)) as ReplayResult;
    await nc.close();
    expect(viaAdmin).toMatchObject({ activeflow_id: calls[1]!.id, outcome: 'identical', from: 'created' });
    expect(viaAdmin.moves).toBeGreaterThan(2);
  });

  it('reports a recorded outcome the engine does not give: the entry, its request and what differs; exit 1', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }, { type: 'talk' }, { type: 'talk' }] });
    await walk(af.id, af.current_action.id, 1);
    // An entry that claims the next move stayed where it was: appended after the last one, as a writer would.
    const { nc, storage } = await openStoresFor(env.server);
    const journal = new Journal(storage.js, storage.jsm);
    const all = await journal.all(CUSTOMER, af.id);
    const last = all.at(-1)!;
    const lastMove = [...all].reverse().find((m) => m.message.kind === 'entry' && m.message.entry.kind === 'move')!.message as { entry: MoveEntry };
    const current = (await env.client.get(af.id)).current_action.id;
    const forged: MoveEntry = {
      ...lastMove.entry,
      n: (last.message as { entry: MoveEntry }).entry.n + 1,
      input: { type: 'next', request_id: 'forged', now: lastMove.entry.input.now, entropy: 'forged-entropy', current_action_id: current },
      cursor: { ...lastMove.entry.cursor, action_id: current },
    };
    await journal.append(CUSTOMER, af.id, forged, last.seq, false);
    await nc.close();

    const r = await cli('replay', af.id);
    expect(r.code).toBe(1);
    expect(r.stdout).toContain(`${af.id}: diverged at entry ${forged.n}, after`);
    expect(r.stdout).toContain(`request: next {"current_action_id":"${current}"}`);
    expect(r.stdout).toMatch(/cursor\.action_id: recorded "[0-9a-f-]+", replayed "[0-9a-f-]+"/);
    const many = await cli('replay', '--customer', CUSTOMER);
    expect(many.code).toBe(1);
    expect(many.stdout).toMatch(/ACTIVEFLOWS\s+IDENTICAL\s+DIVERGED/);
  });

  it('exports a journal without its secrets, and replays a folder of exports with no NATS (a corpus for CI)', async () => {
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'answer' }, { type: 'talk' }], variables: { token: 's3cr3t-value' } });
    await env.client.setVariables(af.id, { api_key: 'k3y-value', colour: 'blue' });
    await walk(af.id, af.current_action.id, 2);
    const exported = await cli('export', af.id);
    expect(exported.code).toBe(0);
    expect(exported.stdout).not.toContain('s3cr3t-value');
    expect(exported.stdout).not.toContain('k3y-value');
    expect(exported.stdout).toContain('blue');
    expect(exported.stderr).toMatch(/secret field\(s\) dropped/);
    const x = JSON.parse(exported.stdout) as { redacted: string[]; entries: unknown[] };
    expect(x.redacted).toEqual(expect.arrayContaining([expect.stringMatching(/variables\.token$/), expect.stringMatching(/input\.variables\.api_key$/)]));
    expect((await cli('export', af.id, '--keep-secrets')).stdout).toContain('s3cr3t-value');

    const dir = mkdtempSync(join(tmpdir(), 'af-corpus-'));
    writeFileSync(join(dir, `${af.id}.json`), exported.stdout);
    const other = (await env.client.listActiveflows({ customer_id: CUSTOMER, page_size: 1 })).result[0]!;
    writeFileSync(join(dir, `${other.id}.json`), (await cli('export', other.id)).stdout);
    const good = await cli('replay', '--from-dir', dir, '--servers', 'nats://127.0.0.1:1'); // no NATS needed
    expect(good.stdout).toMatch(/ACTIVEFLOWS\s+IDENTICAL/);
    const counts = JSON.parse((await cli('replay', '--from-dir', dir, '--json')).stdout) as { identical: number; diverged: number; unreadable: number };
    expect(counts.identical + counts.diverged).toBe(2);
    writeFileSync(join(dir, 'notes.json'), '{"hello": 1}');
    const withBad = await cli('replay', '--from-dir', dir);
    expect(withBad.code).toBe(1);
    expect(withBad.stdout).toMatch(/notes\.json: not replayed: not an export/);
    rmSync(dir, { recursive: true });
  });

  it('refuses bad arguments before asking anything', async () => {
    expect((await cli('replay')).code).toBe(2);
    expect((await cli('replay', 'not-an-id')).stderr).toMatch(/not an activeflow id/);
    expect((await cli('replay', '--customer', CUSTOMER, '--since', 'yesterday-ish')).code).toBe(2);
    expect((await cli('replay', '--customer', CUSTOMER, '--limit', '0')).code).toBe(2);
    expect((await cli('replay', '--from-dir', '/nonexistent/corpus')).code).toBe(2);
    expect((await cli('export')).code).toBe(2);
  });
});
