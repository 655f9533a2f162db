/**
 * The compiled command (`npm run build`, dist/): it is what `activeflow` runs when it is current,
 * it stands alone as the image holds it (dist/, bin/, package.json, the dependencies; no sources,
 * no tsx), and it behaves like the sources.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, statSync, symlinkSync, utimesSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
// @ts-expect-error: plain JavaScript, run before anything is compiled
import { buildState, ROOT } from '../../bin/build-state.mjs';

const run = (cwd: string, args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [join(cwd, 'bin', 'activeflow.mjs'), ...args], { cwd, env: { ...process.env, ...env }, encoding: 'utf8', timeout: 60_000 });

let image: string;

beforeAll(() => {
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build.mjs')], { stdio: 'inherit' });
  image = mkdtempSync(join(tmpdir(), 'activeflow-image-'));
  for (const part of ['dist', 'bin', 'package.json']) cpSync(join(ROOT, part), join(image, part), { recursive: true });
  symlinkSync(join(ROOT, 'node_modules'), join(image, 'node_modules'));
}, 120_000);
afterAll(() => rmSync(image, { recursive: true, force: true }));

describe('the compiled command', () => {
  it('is current after a build, and stale once a source file changes', () => {
    expect((buildState as () => string)()).toBe('fresh');
    const file = join(ROOT, 'src', 'version.ts');
    const { atime, mtime } = statSync(file);
    try {
      utimesSync(file, atime, new Date(Date.now() + 60_000));
      expect((buildState as () => string)()).toBe('stale');
    } finally {
      utimesSync(file, atime, mtime);
    }
    expect((buildState as () => string)()).toBe('fresh');
  });

  it('stands alone as the image holds it, and answers as the sources do', () => {
    const scenario = join(ROOT, 'examples', 'ivr-menu.json');
    const compiled = run(image, ['simulate', scenario]);
    expect(compiled.stderr).toBe('');
    expect(compiled.status).toBe(0);
    const sources = run(ROOT, ['simulate', scenario], { ACTIVEFLOW_RUN: 'tsx' });
    expect(sources.status).toBe(0);
    expect(JSON.parse(compiled.stdout)).toEqual(JSON.parse(sources.stdout));
    expect(run(image, ['--version']).stdout.trim()).toBe(JSON.parse(execFileSync('cat', [join(ROOT, 'package.json')], { encoding: 'utf8' })).version);
    // The gateway's dashboard files travel with dist/ (read when its module loads).
    const gateway = run(image, ['gateway', '--help']);
    expect(gateway.status).toBe(0);
    expect(gateway.stdout).toMatch(/Usage: activeflow gateway/);
    const probe = spawnSync(process.execPath, ['--input-type=module', '-e', `await import(${JSON.stringify(join(image, 'dist', 'src', 'gateway', 'http-gateway.js'))}); console.log('loaded')`], {
      encoding: 'utf8',
    });
    expect(probe.stdout.trim()).toBe('loaded');
  }, 120_000);

  it('without tsx and without a current dist/, says what to run', () => {
    const bare = mkdtempSync(join(tmpdir(), 'activeflow-bare-'));
    try {
      cpSync(join(ROOT, 'bin'), join(bare, 'bin'), { recursive: true });
      cpSync(join(ROOT, 'package.json'), join(bare, 'package.json'));
      cpSync(join(ROOT, 'src', 'version.ts'), join(bare, 'src', 'version.ts'), { recursive: true });
      const r = run(bare, ['--help']);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/run `npm run build`, or `npm install`/);
    } finally {
      rmSync(bare, { recursive: true, force: true });
    }
  });
});
