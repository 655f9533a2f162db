/**
 * The minimum nats-server version (issue: a current NATS server): judged from the server's INFO,
 * refused in a cluster, warned on a single server; the pinned release is what the tests run.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { natsServerBinary } from '../../src/nats/server-process.js';
import { compareVersions, judgeServerVersion, MINIMUM_SERVER_VERSION, PINNED_SERVER_VERSION } from '../../src/nats/server-version.js';

describe('judgeServerVersion', () => {
  it('accepts the minimum and anything newer, clustered or not', () => {
    for (const version of [MINIMUM_SERVER_VERSION, PINNED_SERVER_VERSION, '2.15.3', '3.0.0', '2.14.10-RC.1']) {
      expect(judgeServerVersion({ version, cluster: 'activeflow' }).kind, version).toBe('ok');
      expect(judgeServerVersion({ version }).kind, version).toBe('ok');
    }
  });

  it("refuses Debian's 2.9.10 in a cluster, naming the bug and the release that fixed it", () => {
    const v = judgeServerVersion({ version: '2.9.10', cluster: 'activeflow', server_name: 'n1' });
    expect(v.kind).toBe('refuse');
    const message = (v as { message: string }).message;
    expect(message).toContain('nats-io/nats-server#4320');
    expect(message).toContain('fixed in 2.9.21');
    expect(message).toContain('#4171'); // 2.9.10 predates that fix too
    expect(message).toContain('(n1)');
    expect(message).toContain(`${MINIMUM_SERVER_VERSION} or later`);
  });

  it('warns, and runs, on a single server below the minimum', () => {
    const v = judgeServerVersion({ version: '2.9.10' });
    expect(v.kind).toBe('warn');
    expect((v as { message: string }).message).toContain('#4320');
  });

  it('names no bug for a release that has the fixes but is below the minimum', () => {
    const v = judgeServerVersion({ version: '2.10.29', cluster: 'c' });
    expect(v.kind).toBe('refuse');
    expect((v as { message: string }).message).not.toContain('#4320');
    expect((v as { message: string }).message).toContain(`tested on ${PINNED_SERVER_VERSION}`);
  });

  it('refuses what it cannot read as a version in a cluster', () => {
    expect(judgeServerVersion({ version: 'garbage', cluster: 'c' }).kind).toBe('refuse');
  });

  it('compares versions numerically, not as text', () => {
    expect(compareVersions('2.14.10', '2.14.9')).toBeGreaterThan(0);
    expect(compareVersions('2.9.21', '2.10.0')).toBeLessThan(0);
    expect(compareVersions('v2.12.0', '2.12.0')).toBe(0);
  });
});

describe('the pinned server', () => {
  it('is a 2.14 or 2.15 release, at or above the minimum', () => {
    expect(PINNED_SERVER_VERSION).toMatch(/^2\.1[45]\.\d+$/);
    expect(compareVersions(PINNED_SERVER_VERSION, MINIMUM_SERVER_VERSION)).toBeGreaterThanOrEqual(0);
  });

  it('is what the tests run (scripts/install-deps.sh provides it)', () => {
    const r = spawnSync(natsServerBinary(), ['--version'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    // NATS_SERVER_BIN points elsewhere on purpose (a run against another binary): say so, do not pass.
    expect(process.env['NATS_SERVER_BIN'] ?? '', 'NATS_SERVER_BIN is set: this run is not on the pinned server').toBe('');
    expect(r.stdout.trim()).toBe(`nats-server: v${PINNED_SERVER_VERSION}`);
  });

  it('is the release docs/operations.md and the README name, with the minimum', () => {
    const ops = readFileSync(new URL('../../docs/operations.md', import.meta.url), 'utf8');
    expect(ops).toContain(`**nats-server ${PINNED_SERVER_VERSION}**`);
    expect(ops).toContain(`**The minimum is ${MINIMUM_SERVER_VERSION}**`);
    expect(readFileSync(new URL('../../README.md', import.meta.url), 'utf8')).toContain(`nats-server ${PINNED_SERVER_VERSION}`);
  });

  it('is the image of deploy/k8s and the release named by the systemd unit', () => {
    expect(readFileSync(new URL('../../deploy/k8s/nats.yaml', import.meta.url), 'utf8')).toContain(`image: nats:${PINNED_SERVER_VERSION}-alpine`);
    expect(readFileSync(new URL('../../deploy/systemd/activeflow-nats.service', import.meta.url), 'utf8')).toContain(`nats-server ${PINNED_SERVER_VERSION}`);
  });
});
