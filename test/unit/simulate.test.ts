import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { runScenario, ScenarioError, type SimulationOutput } from '../../src/simulate/run-scenario.js';
import { tempDir } from '../helpers/temp-dir.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const example = (name: string) => new URL(`../../examples/${name}`, import.meta.url).pathname;

async function cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [BIN, ...args]);
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code: number; stdout: string; stderr: string };
    return { code: err.code, stdout: err.stdout, stderr: err.stderr };
  }
}

const summary = (o: SimulationOutput) => o.results.map((r) => (r.ok ? ((r.result as { type?: string; id?: string }).type ?? (r.result as { id?: string }).id ?? 'ok') : r.error.code));

describe('activeflow simulate (the examples, through the real command)', () => {
  it('ivr-menu: a wrong key repeats the menu, then 2 reaches support and the call ends', async () => {
    const { code, stdout } = await cli('simulate', example('ivr-menu.json'));
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as SimulationOutput;
    expect(summary(out)).toEqual(['answer', 'talk', 'digits_receive', 'ok', 'talk', 'digits_receive', 'ok', 'talk', 'hangup', '00000000-0000-0000-0000-000000000002']);
    expect(out.results[1]!.ok && (out.results[1]!.result as { option: { text: string } })).toMatchObject({ option: { text: 'Hello Ada. Press 1 for sales, 2 for support.' } });
    expect(out.results[7]!.ok && (out.results[7]!.result as { option: { text: string } })).toMatchObject({ option: { text: 'Connecting you to support.' } });
    expect(out.activeflow).toMatchObject({ status: 'ended', end_reason: 'finished' });
    expect(out.variables['voipbin.call.digits']).toBe('');
    expect(out.events.at(-1)!.type).toBe('activeflow_ended');
  });

  it('queue-wait: the hold music loops until service_stop, then the flow goes on after queue_join', async () => {
    const { code, stdout } = await cli('simulate', example('queue-wait.json'), '--compact');
    expect(code).toBe(0);
    expect(stdout.trim().split('\n')).toHaveLength(1);
    const out = JSON.parse(stdout) as SimulationOutput;
    expect(summary(out).filter((s) => s !== 'ok' && !s.includes('-'))).toEqual(['answer', 'play', 'play', 'talk', 'hangup']);
    const talk = out.results[4]!;
    expect(talk.ok && talk.result).toMatchObject({ option: { text: 'Sorry, nobody is free, 5e000000-0000-4000-8000-000000000001 has timed out. Goodbye.' } });
    expect(out.effects).toHaveLength(3); // queue_join and two fetch_flow lookups
  });

  it('on-complete-chain: the follow-up runs four generations, then the depth limit stops it', async () => {
    const { code, stdout } = await cli('simulate', example('on-complete-chain.json'));
    expect(code).toBe(0);
    const out = JSON.parse(stdout) as SimulationOutput;
    expect(out.activeflow).toMatchObject({ reference_type: 'api', status: 'ended', end_reason: 'finished' });
    expect(out.variables).toMatchObject({ confirmed: 'yes (m-1)', message_id: 'm-1' });
    expect(out.children.map((c) => c.variables!['voipbin.activeflow.complete_count'])).toEqual(['1', '2', '3', '4']);
    expect(out.children.at(-1)!.activeflow).toMatchObject({ on_complete_error: expect.stringMatching(/depth limit of 5/) });
    const reports = out.effects.filter((e) => (e as { url?: string }).url === 'https://crm.example.test/report');
    expect(reports.map((e) => JSON.parse((e as { body: string }).body).generation)).toEqual(['1', '2', '3', '4']);
  });

  it('is repeatable: the same scenario prints the same JSON', async () => {
    const [a, b] = await Promise.all([cli('simulate', example('ivr-menu.json')), cli('simulate', example('ivr-menu.json'))]);
    expect(a.stdout).toBe(b.stdout);
  });
});

describe('simulate errors', () => {
  const dir = tempDir('af-sim-');
  const file = (name: string, content: string) => {
    const p = join(dir, name);
    writeFileSync(p, content);
    return p;
  };

  it('exits 2 with every bad field path on an invalid scenario, and prints nothing on stdout', async () => {
    const r = await cli('simulate', file('bad.json', JSON.stringify({ reference_type: 'fax', actions: [{ type: 'tallk' }], steps: [{ op: 'jump' }] })));
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/invalid scenario/);
    expect(r.stderr).toMatch(/reference_type:/);
    expect(r.stderr).toMatch(/actions\.0\.type:/);
    expect(r.stderr).toMatch(/steps\.0\.op: op must be one of next, execute/);
  });

  it('exits 2 on a missing file, bad JSON, no main stack, a bad now', async () => {
    expect((await cli('simulate', join(dir, 'nope.json'))).stderr).toMatch(/cannot read .*ENOENT/);
    expect((await cli('simulate', file('x.json', '{ nope'))).stderr).toMatch(/is not valid JSON/);
    expect((await cli('simulate', file('y.json', '{}'))).stderr).toMatch(/give the main stack as "actions" or as "flow"/);
    const r = await cli('simulate', file('z.json', '{"actions":[],"now":"yesterday"}'));
    expect([r.code, r.stderr]).toEqual([2, expect.stringMatching(/now: "yesterday" is not an ISO 8601 time/)]);
    expect((await cli('simulate')).code).toBe(2);
  });

  it('exits 0 when steps are rejected, with the errors in results', async () => {
    const r = await cli(
      'simulate',
      file(
        'ok.json',
        JSON.stringify({
          actions: [{ type: 'answer' }],
          steps: [
            { op: 'next', current_action_id: '00000000-0000-4000-8000-000000000009' },
            { op: 'add_actions', actions: [{ type: 'talk' }] },
          ],
        }),
      ),
    );
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as SimulationOutput;
    expect(out.results.map((x) => x.ok || x.error.code)).toEqual(['conflict', 'conflict']);
  });

  it('prints help, and refuses unknown commands', async () => {
    expect((await cli('--help')).stdout).toMatch(/simulate/);
    expect((await cli('simulate', '--help')).stdout).toMatch(/Exit status: 0 when the scenario ran/);
    expect((await cli('frobnicate')).code).toBe(2);
  });
});

describe('scenario format', () => {
  it('drives a call with next until FINISH, and other references with one execute', () => {
    const call = runScenario({ actions: [{ type: 'answer' }, { type: 'talk' }], now: '2026-11-27T10:00:00Z' });
    expect(call.results.map((r) => r.op)).toEqual(['next', 'next', 'next']);
    const api = runScenario({ reference_type: 'api', actions: [{ type: 'variable_set', option: { key: 'a', value: 'b' } }], now: '2026-11-27T10:00:00Z' });
    expect(api.results).toEqual([{ op: 'execute', ok: true, result: expect.objectContaining({ status: 'ended' }) }]);
  });

  it('stops a driven call at max_steps', () => {
    const out = runScenario({
      actions: [
        { id: '00000000-0000-4000-8000-000000000001', type: 'talk' },
        { type: 'goto', option: { target_id: '00000000-0000-4000-8000-000000000001', loop_count: 50 } },
      ],
      max_steps: 3,
    });
    expect(out.results).toHaveLength(3);
    expect(out.activeflow).toMatchObject({ status: 'running' });
  });

  it('supports every step op, and a next without current_action_id uses the current one', () => {
    const out = runScenario({
      reference_type: 'call',
      now: '2026-11-27T10:00:00Z',
      variables: { k: 'v' },
      actions: [
        { id: '00000000-0000-4000-8000-000000000001', type: 'answer' },
        { id: '00000000-0000-4000-8000-000000000002', type: 'talk' },
      ],
      steps: [
        { op: 'next' },
        { op: 'push_actions', actions: [{ type: 'beep' }] },
        { op: 'next' },
        { op: 'add_actions', actions: [{ type: 'echo' }] },
        { op: 'forward', forward_action_id: '00000000-0000-4000-8000-000000000002' },
        { op: 'set_variables', variables: { a: '${k}' } },
        { op: 'delete_variable', key: 'k' },
        { op: 'get_variables' },
        { op: 'substitute', data: '${a}!' },
        { op: 'get' },
        { op: 'next' },
        { op: 'execute' },
        { op: 'continue' },
        { op: 'service_stop', service_id: '00000000-0000-4000-8000-00000000dead' },
        { op: 'stop' },
        { op: 'delete' },
      ],
    });
    expect(out.results.map((r) => (r.ok ? 'ok' : r.error.code))).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'ok', 'conflict', 'conflict', 'not_found', 'ok', 'ok']);
    expect(out.results[5]).toMatchObject({ result: { a: 'v', k: 'v' } });
    expect(out.results[8]).toMatchObject({ result: { data: 'v!' } });
    expect(out.results[10]).toMatchObject({ result: { id: '00000000-0000-4000-8000-000000000002' } });
  });

  it('creation failures are scenario errors', () => {
    expect(() => runScenario({ flow: { actions: [], customer_id: '22222222-2222-4222-8222-222222222222' }, customer_id: '11111111-1111-4111-8111-111111111111' })).toThrow(ScenarioError);
  });

  it('the README quick start runs', () => {
    const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
    expect(readme).toMatch(/npm install && npm start/);
    expect(readme).toMatch(/npm test/);
  });
});
