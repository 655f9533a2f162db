/**
 * machines/ is the pure core (STYLE.md lesson 1): it imports xstate, zod and its own files only,
 * and reads no clock, randomness, timers, network or process state.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const dir = new URL('../../machines/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.ts'));

describe('the pure core', () => {
  it.each(files)('%s imports only xstate, zod and machines/', (file) => {
    const text = readFileSync(new URL(file, dir), 'utf8');
    const imports = [...text.matchAll(/from\s+'([^']+)'/g)].map((m) => m[1]!);
    for (const spec of imports) expect(spec === 'xstate' || spec === 'zod' || /^\.\/[\w-]+\.js$/.test(spec), `${file}: ${spec}`).toBe(true);
  });

  it.each(files)('%s reads no clock, randomness, timers, network or process', (file) => {
    const code = readFileSync(new URL(file, dir), 'utf8').replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, '');
    for (const banned of [/\bDate\b/, /Math\.random/, /\bsetTimeout\b/, /\bsetInterval\b/, /\bfetch\(/, /\bprocess\./, /\bcrypto\b/, /\brequire\(/, /\bperformance\./]) {
      expect(banned.test(code), `${file}: ${banned}`).toBe(false);
    }
  });
});
