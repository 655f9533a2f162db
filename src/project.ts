/**
 * The project's folder and its package.json, found from wherever this module runs: `src/` under
 * tsx, `dist/src/` once compiled, `/opt/activeflow/dist/src/` in the image.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface PackageJson {
  name: string;
  version: string;
  natsServer: { pinned: string; minimum: string };
}

/** The nearest folder above this module with activeflow's package.json. */
export const PROJECT_ROOT = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file) && (JSON.parse(readFileSync(file, 'utf8')) as { name?: string }).name === 'activeflow') return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('activeflow: cannot find the project folder (its package.json) above this module');
    dir = up;
  }
})();

export const PACKAGE = JSON.parse(readFileSync(join(PROJECT_ROOT, 'package.json'), 'utf8')) as PackageJson;
