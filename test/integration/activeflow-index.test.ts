/**
 * af_index entries only move forward (src/store/activeflow-index.ts): running, ended, deleted. A
 * write that lands late, a former owner's or one that sat in a slow link, must not undo a later
 * one: an ended activeflow shown running again would be counted by the running-count reconcile for
 * good. The cluster simulation found it (mutation `index-overwrite`); here on a real server.
 */
import type { NatsConnection } from '@nats-io/transport-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Activeflow } from '../../machines/index.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import { ActiveflowIndex } from '../../src/store/activeflow-index.js';
import type { Storage } from '../../src/store/buckets.js';
import { aid, CUSTOMER, NOW } from '../helpers/engine.js';
import { openStoresFor, startNats } from '../helpers/nats.js';

let server: NatsServer;
let nc: NatsConnection;
let storage: Storage;
let index: ActiveflowIndex;
beforeAll(async () => {
  server = await startNats();
  ({ nc, storage } = await openStoresFor(server));
  index = new ActiveflowIndex(storage.index);
});
afterAll(async () => {
  await nc?.close();
  await server?.stop();
});

const af = (n: number, status: 'running' | 'ended', deleted = false) =>
  ({ id: aid(n), customer_id: CUSTOMER, status, reference_type: 'call', reference_id: aid(900 + n), tm_create: NOW, tm_delete: deleted ? NOW : null }) as unknown as Activeflow;
const stored = async (n: number) => JSON.parse(new TextDecoder().decode((await storage.index.get(`${CUSTOMER}.${aid(n)}`))!.value)) as { status: string; deleted: boolean };

describe('the activeflow index', () => {
  it('a running entry written after the end leaves it ended', async () => {
    await index.record(af(1, 'running'));
    await index.record(af(1, 'ended'));
    await index.record(af(1, 'running')); // late: a former owner's creation, or a load's repair
    expect(await stored(1)).toMatchObject({ status: 'ended', deleted: false });
    expect(await index.runningCount(CUSTOMER)).toBe(0);
  });

  it('an end written after the delete leaves it deleted; a first write of an end creates the entry', async () => {
    await index.record(af(2, 'ended'));
    await index.record(af(2, 'ended', true));
    await index.record(af(2, 'ended')); // late: a retried last step of the end
    expect(await stored(2)).toMatchObject({ status: 'ended', deleted: true });
  });

  it('a running entry is written once; writes that change nothing write nothing', async () => {
    await index.record(af(3, 'running'));
    const first = (await storage.index.get(`${CUSTOMER}.${aid(3)}`))!.revision;
    await index.record(af(3, 'running'));
    await index.record(af(3, 'ended'));
    const ended = (await storage.index.get(`${CUSTOMER}.${aid(3)}`))!.revision;
    await index.record(af(3, 'ended'));
    expect((await storage.index.get(`${CUSTOMER}.${aid(3)}`))!.revision).toBe(ended);
    expect(ended).toBeGreaterThan(first);
    expect(await index.runningCount(CUSTOMER)).toBe(0);
  });
});
