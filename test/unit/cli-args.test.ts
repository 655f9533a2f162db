/**
 * A strict command line: an unknown command or option is an error (exit 2) that suggests the
 * closest known one, never silently ignored; every option a command accepts is in its --help.
 */
import { describe, expect, it } from 'vitest';
import { COMMANDS, main, optionsOf } from '../../src/cli/main.js';
import { closest, editDistance } from '../../src/cli/suggest.js';

async function run(...argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, { out: (t) => (out += `${t}\n`), err: (t) => (err += `${t}\n`) });
  return { code, out, err };
}

describe('the command line', () => {
  it('the overview documents the exit statuses', async () => {
    const r = await run('--help');
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/Exit status: 0 done; 1 failed[\s\S]*2 a usage error[\s\S]*130/);
  });

  it('each command of the overview loads the command of that name and summary (they load lazily)', async () => {
    expect(COMMANDS.length).toBeGreaterThan(20);
    for (const c of COMMANDS) expect(await c.load()).toMatchObject({ name: c.name, summary: c.summary });
  });

  it('refuses an unknown option, naming the closest one (list --stauts must not list everything)', async () => {
    const r = await run('list', '--stauts', 'running', '--customer', '11111111-1111-4111-8111-111111111111');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown option --stauts; did you mean --status\?/);
    expect(r.out).toBe('');
  });

  it('refuses an unknown option with no close match, pointing at --help', async () => {
    const r = await run('nodes', '--frobnicate');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown option --frobnicate\n/);
    expect(r.err).toMatch(/activeflow nodes --help/);
  });

  it('suggests the closest command for a mistyped one', async () => {
    const r = await run('shrads');
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown command "shrads"; did you mean shards\?/);
    expect((await run('xyzzy')).err).not.toMatch(/did you mean/);
  });

  it('accepts every option a command documents (quotas take each quota as an option)', async () => {
    const quotas = optionsOf((await import('../../src/cli/quotas-command.js')).quotasCommand);
    for (const q of ['running-activeflows', 'creations-per-second', 'flows', 'variable-keys']) expect(quotas.has(q), q).toBe(true);
    expect((await run('simulate', '--compact', '--help')).code).toBe(0);
  });

  it('edit distance counts a swap of two letters as one edit', () => {
    expect(editDistance('tlak', 'talk')).toBe(1);
    expect(editDistance('stauts', 'status')).toBe(1);
    expect(closest('stauts', ['status', 'stuck', 'customer'])).toBe('status');
    expect(closest('qqqqqq', ['status'])).toBeUndefined();
  });
});
