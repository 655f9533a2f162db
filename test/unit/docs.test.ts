import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configMarkdown } from '../../src/config-doc.js';
import { main } from '../../src/cli/main.js';

describe('docs stay true', () => {
  it('docs/configuration.md is generated from the option schema (run `npm run docs` after a change)', () => {
    expect(readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8')).toBe(configMarkdown());
  });

  it('every command in the README and docs exists in the CLI', async () => {
    const out: string[] = [];
    await main(['--help'], { out: (t) => out.push(t), err: () => undefined });
    const help = out.join('\n');
    const text = ['README.md', 'docs/api.md', 'docs/operations.md'].map((f) => readFileSync(new URL(`../../${f}`, import.meta.url), 'utf8')).join('\n');
    const used = new Set([...text.matchAll(/npx activeflow ([a-z][a-z-]*)/g)].map((m) => m[1]!));
    expect(used.size).toBeGreaterThan(3);
    for (const command of used) expect(help, command).toMatch(new RegExp(`^  ${command}\\s`, 'm'));
  });
});
