// `npm run build`: compiles machines/, actors/ and src/ to dist/ (and copies the dashboard's
// files), unless dist/ is already current. `--force` builds anyway. npm start and npm test run it.
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildState, DIST, ROOT, STAMP } from '../bin/build-state.mjs';

const force = process.argv.includes('--force');
if (!force && buildState() !== 'stale') process.exit(0);
const started = Date.now();
rmSync(STAMP, { force: true });
if (force) rmSync(DIST, { recursive: true, force: true });
const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
try {
  execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, stdio: 'inherit' });
} catch {
  console.error('activeflow build: the TypeScript compiler failed (above); dist/ is left stale, so `activeflow` runs the sources through tsx');
  process.exit(1);
}
// Files the gateway serves as they are.
const dashboard = join('src', 'gateway', 'dashboard');
mkdirSync(join(DIST, dashboard), { recursive: true });
cpSync(join(ROOT, dashboard), join(DIST, dashboard), { recursive: true, filter: (f) => !f.endsWith('.ts') });
writeFileSync(STAMP, `${new Date().toISOString()}\n`);
console.error(`activeflow build: dist/ compiled in ${((Date.now() - started) / 1000).toFixed(1)} s`);
