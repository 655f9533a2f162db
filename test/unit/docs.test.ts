import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configMarkdown } from '../../src/config-doc.js';
import { main } from '../../src/cli/main.js';
import { natsServerBinary } from '../../src/nats/server-process.js';
import { tempDir } from '../helpers/temp-dir.js';

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
      const r = spawnSync(natsServerBinary(), ['-t', '-c', new URL(`../../${file}`, import.meta.url).pathname], { encoding: 'utf8' });
      expect([r.status, `${r.stdout}${r.stderr}`], file).toEqual([0, expect.stringMatching(/configuration file .* is valid/)]);
    }
    // and it refuses a broken one, so the check above means something
    const { writeFileSync } = await import('node:fs');
    const bad = `${tempDir('af-conf-')}/bad.conf`;
    writeFileSync(bad, 'listen: 127.0.0.1:-1\nmappings = { "a.*": "b.{{wildcard(9)}}" }\njetstream { bogus_key: 1 }\n');
    expect(spawnSync(natsServerBinary(), ['-t', '-c', bad], { encoding: 'utf8' }).status).not.toBe(0);
  });

  it('deploy/k8s/nats.yaml is generated, and nats-server accepts the configuration inside it', async () => {
    const { k8sNatsManifest, k8sNatsConfig, k8sPasswordsScript } = await import('../../src/nats/deploy-configs.js');
    expect(readFileSync(new URL('../../deploy/k8s/nats.yaml', import.meta.url), 'utf8')).toBe(k8sNatsManifest());
    const { spawnSync } = await import('node:child_process');
    const { writeFileSync } = await import('node:fs');
    const dir = tempDir('af-k8s-');
    const file = `${dir}/nats.conf`;
    // The certificate the manifest mounts at /etc/nats/tls, made here by the development script.
    expect(spawnSync('bash', [new URL('../../scripts/dev-certs.sh', import.meta.url).pathname, dir]).status).toBe(0);
    spawnSync('cp', [`${dir}/server.crt`, `${dir}/tls.crt`]);
    spawnSync('cp', [`${dir}/server.key`, `${dir}/tls.key`]);
    writeFileSync(file, k8sNatsConfig().replaceAll('/etc/nats/tls/', `${dir}/`));
    expect(k8sNatsConfig()).toMatch(/^tls \{[\s\S]*cluster \{[\s\S]* {2}tls \{/m); // clients and routes
    // Passwords nats-server would read as a number, a boolean or a hex number, or that need escaping:
    // the init container's script quotes them into secrets/passwords.conf.
    const env = {
      ...process.env,
      POD_NAME: 'nats-0',
      NATS_SYSTEM_PASSWORD: '12345',
      NATS_NODE_PASSWORD: 'true',
      NATS_GATEWAY_PASSWORD: '0x1f',
      NATS_CALL_SERVICE_PASSWORD: 'a"b\\c$d',
      NATS_OPERATOR_PASSWORD: '1e5',
    };
    spawnSync('mkdir', [`${dir}/secrets`]);
    const rendered = spawnSync('sh', ['-c', k8sPasswordsScript()], { encoding: 'utf8', env: { ...env, OUT: `${dir}/secrets` } });
    expect([rendered.status, rendered.stderr]).toEqual([0, '']);
    const r = spawnSync(natsServerBinary(), ['-t', '-c', file], { encoding: 'utf8', env });
    expect([r.status, `${r.stdout}${r.stderr}`]).toEqual([0, expect.stringMatching(/is valid/)]);
    expect(readFileSync(new URL('../../deploy/k8s/nats.yaml', import.meta.url), 'utf8')).toContain(k8sPasswordsScript().split('\n')[2]!);
    // And each quoted password is exactly the one in the Secret: a server configured from the file lets it in.
    const { NatsServer } = await import('../../src/nats/server-process.js');
    const { connect } = await import('@nats-io/transport-node');
    const vars = Object.entries({ SYSTEM_PASSWORD: '12345', NODE_PASSWORD: 'true', GATEWAY_PASSWORD: '0x1f', CALL_SERVICE_PASSWORD: 'a"b\\c$d', OPERATOR_PASSWORD: '1e5' });
    writeFileSync(
      `${dir}/auth-check.conf`,
      `listen: 127.0.0.1:-1\ninclude "secrets/passwords.conf"\nauthorization { users: [ ${vars.map(([v], i) => `{ user: "u${i}", password: $${v} }`).join(', ')} ] }\n`,
    );
    const server = await NatsServer.start({ configFile: `${dir}/auth-check.conf` });
    try {
      for (const [i, [, pass]] of vars.entries()) await (await connect({ servers: [server.url], user: `u${i}`, pass })).close();
      await expect(connect({ servers: [server.url], user: 'u0', pass: '"12345"' })).rejects.toThrow(/Authorization/);
    } finally {
      await server.stop();
    }
    expect(k8sNatsConfig()).not.toMatch(/no_auth_user|dev-only/); // a deployment requires passwords
  });

  it('the node manifests and units use only options the node knows, and CLI commands that exist', async () => {
    const { NodeConfig } = await import('../../src/config.js');
    const known = new Set(Object.keys(NodeConfig.shape));
    const k8s = readFileSync(new URL('../../deploy/k8s/activeflow.yaml', import.meta.url), 'utf8');
    const configMap = /kind: ConfigMap[\s\S]*?\ndata:\n((?: {2}\w+: .*\n)+)/.exec(k8s)![1]!;
    const names = [...configMap.matchAll(/^ {2}(\w+):/gm), ...k8s.matchAll(/- name: ([A-Z_]+)\n/g)].map((m) => m[1]!);
    expect(names.length).toBeGreaterThan(8);
    for (const name of names) expect(known.has(name), name).toBe(true);
    const envFile = readFileSync(new URL('../../deploy/systemd/node.env.example', import.meta.url), 'utf8');
    const envNames = [...envFile.matchAll(/^([A-Z_]+)=/gm)].map((m) => m[1]!);
    expect(envNames).not.toContain('NODE_ID'); // the unit's instance name; the file would override it
    for (const name of envNames) expect(known.has(name), name).toBe(true);
    const { main } = await import('../../src/cli/main.js');
    const help = async (cmd: string) => {
      let out = '';
      expect(await main([cmd, '--help'], { out: (t) => (out += t), err: (t) => (out += t) })).toBe(0);
      return out;
    };
    const preStop = /command: \[("node", "bin\/activeflow.mjs", "drain".*)\]/.exec(k8s)![1]!;
    const flags = [...preStop.matchAll(/"(--[a-z-]+)"/g)].map((m) => m[1]!);
    expect(flags).toEqual(['--wait', '--until-stop', '--timeout']);
    const drainHelp = await help('drain');
    for (const f of flags) expect(drainHelp).toContain(f);
    const args = /args: \[(.*)\]/.exec(k8s)![1]!;
    expect(args).toBe('"node", "--metrics", "9464"');
    expect(await help('node')).toContain('--metrics <port>');
    const unit = readFileSync(new URL('../../deploy/systemd/activeflow-node@.service', import.meta.url), 'utf8');
    expect(unit).toMatch(/^ExecStart=\/usr\/bin\/node --max-semi-space-size=32 \/opt\/activeflow\/bin\/activeflow.mjs node$/m);
    expect(unit).toMatch(/^KillSignal=SIGTERM$/m);
    expect(await help('node')).toMatch(/SIGTERM/);
  });
});
