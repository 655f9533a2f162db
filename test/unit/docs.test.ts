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

describe('deploy/ stays true', () => {
  it('deploy/cluster/*.conf are generated from src/nats/cluster-config.ts (run `npm run docs` after a change)', async () => {
    const { deployClusterConfigs } = await import('../../src/nats/deploy-configs.js');
    for (const [file, text] of Object.entries(deployClusterConfigs())) {
      expect(readFileSync(new URL(`../../deploy/cluster/${file}`, import.meta.url), 'utf8'), file).toBe(text);
    }
  });

  it('nats-server accepts every configuration we ship', async () => {
    const { spawnSync } = await import('node:child_process');
    for (const file of ['nats-server.conf', 'deploy/cluster/nats-1.conf', 'deploy/cluster/nats-2.conf', 'deploy/cluster/nats-3.conf']) {
      const r = spawnSync('nats-server', ['-t', '-c', new URL(`../../${file}`, import.meta.url).pathname], { encoding: 'utf8' });
      expect([r.status, `${r.stdout}${r.stderr}`], file).toEqual([0, expect.stringMatching(/configuration file .* is valid/)]);
    }
    // and it refuses a broken one, so the check above means something
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const bad = `${mkdtempSync('/tmp/af-conf-')}/bad.conf`;
    writeFileSync(bad, 'listen: 127.0.0.1:-1\nmappings = { "a.*": "b.{{wildcard(9)}}" }\njetstream { bogus_key: 1 }\n');
    expect(spawnSync('nats-server', ['-t', '-c', bad], { encoding: 'utf8' }).status).not.toBe(0);
  });
});
