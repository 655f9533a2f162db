/**
 * The repository stands alone: whoever clones it has nothing beside it, so no tracked file may
 * point at a path outside it (a relative path that climbs above the root, or an absolute path into
 * the folder the project was developed in).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { describe, expect, it } from 'vitest';
import { PROJECT_ROOT } from '../../src/project.js';

/** Relative paths: `../x`, `../../x/y`... as they stand in code, docs and configs. */
const RELATIVE = /(?<![\w./-])((?:\.\.\/)+)([\w@.-]+(?:\/[\w@.-]+)*)/g;
/** Absolute paths into a development machine's work folders. */
const ABSOLUTE = /\/work\/(?:shared|main)\b/g;

function pathsOutside(file: string, text: string): string[] {
  const found: string[] = [];
  for (const m of text.matchAll(RELATIVE)) {
    const target = resolve(dirname(join(PROJECT_ROOT, file)), m[1]! + m[2]!);
    const rel = relative(PROJECT_ROOT, target);
    if (rel.startsWith(`..${sep}`) || rel === '..') found.push(m[0]);
  }
  for (const m of text.matchAll(ABSOLUTE)) found.push(m[0]);
  return found;
}

describe('the repository stands alone', () => {
  it('the check finds a path that climbs out, and passes one that stays in', () => {
    // Built at run time, so that this file itself points nowhere.
    const up3 = ['..', '..', '..', 'shared', 'spec', 'a.yaml'].join('/');
    const up1 = ['..', 'shared', 'DESIGN.md'].join('/');
    const work = ['', 'work', 'shared'].join('/');
    expect(pathsOutside('test/integration/x.test.ts', `new URL('${up3}', import.meta.url)`)).toEqual([up3]);
    expect(pathsOutside('README.md', `see \`${up1}\``)).toEqual([up1]);
    expect(pathsOutside('test/integration/x.test.ts', "import '../../src/errors.js'")).toEqual([]);
    expect(pathsOutside('docs/api.md', '[rest](../docs/rest.md)')).toEqual([]);
    expect(pathsOutside('src/a.ts', `readFileSync('${work}/NATS-FACTS.md')`)).toEqual([work]);
  });

  it('no tracked file points outside it', () => {
    const files = execFileSync('git', ['ls-files', '-z'], { cwd: PROJECT_ROOT, encoding: 'utf8' })
      .split('\0')
      .filter((f) => f !== '');
    expect(files.length).toBeGreaterThan(100);
    const outside: string[] = [];
    for (const file of files) {
      if (file === 'package-lock.json') continue; // npm's own resolution paths, none of ours
      let text: string;
      try {
        text = readFileSync(join(PROJECT_ROOT, file), 'utf8');
      } catch {
        continue; // deleted in the work tree
      }
      if (text.includes('\0')) continue; // binary
      for (const p of pathsOutside(file, text)) outside.push(`${file}: ${p}`);
    }
    expect(outside).toEqual([]);
  });
});
