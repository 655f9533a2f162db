/**
 * `activeflow start`, what `npm start` runs: a nats-server from a configuration file and one node;
 * it serves, and Ctrl-C (SIGINT) stops both and exits 0. Run on a free port in a temp folder.
 */
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ActiveflowClient } from '../../src/api/client.js';
import { connectNats } from '../../src/nats/connect.js';
import { shardMappingConfig } from '../../src/nats/shard-mapping.js';
import { CUSTOMER } from '../helpers/engine.js';
import { exited } from '../helpers/nats.js';
import { tempDir } from '../helpers/temp-dir.js';

const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;

describe('activeflow start', () => {
  it('starts nats-server and a node, serves, and stops both on Ctrl-C', async () => {
    const dir = tempDir('af-start-');
    const conf = join(dir, 'nats-server.conf');
    // The shipped file with its fixed port swapped for a free one.
    const shipped = readFileSync(new URL('../../nats-server.conf', import.meta.url), 'utf8');
    writeFileSync(conf, shipped.replace('listen: 127.0.0.1:4222', 'listen: 127.0.0.1:-1').replace(/^http: .*$/m, ''));
    expect(shipped).toContain(shardMappingConfig(256).split('\n')[1]!.trim());
    const child = spawn(process.execPath, [BIN, 'start', '--config', conf], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`start did not come up:\n${err}`)), 20_000);
      child.stderr!.on('data', (b: Buffer) => {
        err += b.toString();
        const m = /nats-server on (nats:\/\/127\.0\.0\.1:\d+)/.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      child.stdout!.resume();
    });
    expect(err).toMatch(/data in \.\/data\/nats/);
    const nc = await connectNats(url, 'start-test');
    const client = new ActiveflowClient(nc);
    const af = await client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'api', actions: [], execute: true });
    expect(af.status).toBe('ended');
    await nc.close();
    const serverPids = (await import('node:child_process')).execSync(`pgrep -f "^[^ ]*nats-server -c ${conf}" || true`, { encoding: 'utf8' }).trim();
    expect(serverPids).not.toBe('');
    child.kill('SIGINT');
    expect(await exited(child)).toBe(0);
    const after = (await import('node:child_process')).execSync(`pgrep -f "^[^ ]*nats-server -c ${conf}" || true`, { encoding: 'utf8' }).trim();
    expect(after).toBe('');
  }, 60_000);
});
