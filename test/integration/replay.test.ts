/**
 * `activeflow replay` and `activeflow.admin.v1.replay` against a real server and node: recorded
 * calls replay identical; a journal whose recorded outcome no engine gives (an entry written by a
 * stale or faulty writer, appended here after the last one) is reported at that entry, exit 1.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import type { ReplayResult } from '../../src/replay/replay-journal.js';
import { Journal } from '../../src/store/journal.js';
import type { MoveEntry } from '../../src/store/journal-entry.js';
import { CUSTOMER } from '../helpers/engine.js';
import { clientFor, openStoresFor, useNode } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const env = useNode();

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    return { code: 0, ...(await run(process.execPath, [BIN, ...args], { env: { ...process.env, NATS_URL: env.server.url } })) };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

/** Calls the first test recorded, all replaying identical. */
let identicalIds: string[] = [];

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
    identicalIds = calls.map((c) => c.id);
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
    const x = JSON.parse(exported.stdout) as { exported: { redacted: string[] } };
    expect(x.exported.redacted).toEqual(expect.arrayContaining([expect.stringMatching(/variables\.token$/), expect.stringMatching(/input\.variables\.api_key$/)]));
    expect((await cli('export', af.id, '--keep-secrets')).stdout).toContain('s3cr3t-value');

    const dir = mkdtempSync(join(tmpdir(), 'af-corpus-'));
    writeFileSync(join(dir, `${af.id}.json`), exported.stdout);
    writeFileSync(join(dir, `${identicalIds[0]}.json`), (await cli('export', identicalIds[0]!)).stdout);
    const good = await cli('replay', '--from-dir', dir, '--servers', 'nats://127.0.0.1:1'); // no NATS needed
    expect(good.stdout).toMatch(/ACTIVEFLOWS\s+IDENTICAL/);
    const counts = JSON.parse((await cli('replay', '--from-dir', dir, '--json')).stdout) as { identical: number; diverged: number; unreadable: number };
    expect(counts).toMatchObject({ identical: 2, diverged: 0, unreadable: 0 }); // secrets dropped alike everywhere: still identical
    expect(good.code).toBe(0);
    writeFileSync(join(dir, 'notes.json'), '{"hello": 1}');
    const withBad = await cli('replay', '--from-dir', dir);
    expect(withBad.code).toBe(1);
    expect(withBad.stdout).toMatch(/notes\.json: not replayed: not an export/);
    rmSync(dir, { recursive: true });
  });

  it('exports a run as a simulate scenario that reproduces it exactly: a fetch, an HTTP answer, an on_complete child', async () => {
    const http = createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify([{ type: 'talk', option: { text: `fetched ${req.url}` } }]));
    });
    await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(http.address() as { port: number }).port}/actions`;
    const child = await env.client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'variable_set', option: { key: 'followed_up', value: 'yes ${caller}' } }] });
    const parent = await env.client.createFlow({
      customer_id: CUSTOMER,
      actions: [{ type: 'answer' }, { type: 'fetch', option: { event_url: url } }, { type: 'talk', option: { text: 'after the fetch' } }],
      on_complete_flow_id: child.id,
    });
    const af = await env.client.createActiveflow({ customer_id: CUSTOMER, flow_id: parent.id, reference_type: 'call', variables: { caller: 'bob' } });
    let current = af.current_action.id;
    for (let i = 0; i < 10 && current !== '00000000-0000-0000-0000-000000000002'; i++) current = (await env.client.next(af.id, current)).id;
    const ended = await env.client.get(af.id);
    expect(ended.status).toBe('ended');
    const childId = ended.on_complete_activeflow_id;
    await expect.poll(async () => (await env.client.get(childId).catch(() => null))?.status, { timeout: 5_000 }).toBe('ended');
    await new Promise<void>((r) => http.close(() => r()));

    const exported = await cli('export', af.id);
    expect(exported.code).toBe(0);
    const dir = mkdtempSync(join(tmpdir(), 'af-export-'));
    writeFileSync(join(dir, 'run.json'), exported.stdout);
    const simulated = await cli('simulate', join(dir, 'run.json'), '--compact'); // no NATS, no HTTP server: all from the file
    expect(simulated.code).toBe(0);
    const out = JSON.parse(simulated.stdout) as { activeflow: unknown; events: unknown[]; children: { activeflow_id: string; activeflow: unknown; events: unknown[] }[] };
    expect(out.events).toEqual((await env.client.history(af.id)).events);
    expect(out.activeflow).toEqual(await env.client.get(af.id));
    expect(out.children.map((c) => c.activeflow_id)).toEqual([childId]);
    expect(out.children[0]!.events).toEqual((await env.client.history(childId)).events);
    expect(out.children[0]!.activeflow).toEqual(await env.client.get(childId));
    expect((await cli('replay', '--from-dir', dir)).code).toBe(0);
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
