// Whether dist/ (what `npm run build` emits) is current with the sources, shared by the command
// (bin/activeflow.mjs, which runs dist/ when it is) and the build (scripts/build.mjs, which
// compiles only when it is not). Plain JavaScript: it runs before anything is compiled.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const DIST = join(ROOT, 'dist');
export const ENTRY = join(DIST, 'src', 'cli', 'main.js');
/** Written last by a build: its time is the build's. */
export const STAMP = join(DIST, '.built');
/** What a build reads: a change to any of them makes dist/ stale. */
const SOURCES = ['machines', 'actors', 'src', 'tsconfig.json', 'tsconfig.build.json', 'package.json'];

function newest(path) {
  const st = statSync(path, { throwIfNoEntry: false });
  if (st === undefined) return 0;
  if (!st.isDirectory()) return st.mtimeMs;
  let t = st.mtimeMs; // a deleted file changes its folder's time
  for (const e of readdirSync(path)) t = Math.max(t, newest(join(path, e)));
  return t;
}

/**
 * 'fresh': dist/ was built after the last change to the sources; 'stale': it was not, or there is
 * none; 'only': there are no sources to build from (an image holds dist/ alone), so dist/ it is.
 */
export function buildState() {
  if (!existsSync(join(ROOT, 'src'))) return existsSync(ENTRY) ? 'only' : 'stale';
  const built = statSync(STAMP, { throwIfNoEntry: false });
  if (built === undefined || !existsSync(ENTRY)) return 'stale';
  return SOURCES.every((s) => newest(join(ROOT, s)) <= built.mtimeMs) ? 'fresh' : 'stale';
}
