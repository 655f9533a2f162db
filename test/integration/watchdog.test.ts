/**
 * The idle watchdog on real nodes: an activeflow unchanged past its flow's max_idle_seconds (or the
 * deployment's ceiling) is ended with end_reason timeout and its on_complete flow runs; one that
 * keeps moving is left alone; after a failover the new owner does it; `list --stuck` finds them.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { NodeMetrics } from '../../src/metrics/node-metrics.js';
import { afterAll, describe, expect, it } from 'vitest';
import { ActiveflowClient } from '../../src/api/client.js';
import { parseDuration } from '../../src/cli/user-commands.js';
import { connectNats } from '../../src/nats/connect.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import { CUSTOMER } from '../helpers/engine.js';
import { startNats, startNode, until } from '../helpers/nats.js';

const run = promisify(execFile);
const BIN = new URL('../../bin/activeflow.mjs', import.meta.url).pathname;
const cleanups: (() => Promise<unknown>)[] = [];
// Three nodes and two servers stop here, each node handing its shards over: about 6 s on a quiet
// machine, past the default 10 s hook timeout once under CI's load (seen once).
afterAll(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
}, 30_000);

async function setup(nodeOverrides: Record<string, unknown>): Promise<{ server: NatsServer; node: ActiveflowNode; client: ActiveflowClient }> {
  const server = await startNats();
  cleanups.push(() => server.stop());
  const node = await startNode(server, { watchdogIntervalMs: 200, ...nodeOverrides });
  cleanups.push(() => node.stop());
  const nc = await connectNats(server.url, 'watchdog-test');
  cleanups.push(() => nc.close());
  return { server, node, client: new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 15_000 }) };
}

const WAIT = [{ type: 'answer' }, { type: 'talk', option: { text: 'hold on' } }];

describe('the idle watchdog', () => {
  it("ends an activeflow idle past its flow's max_idle_seconds (on_complete runs); leaves moving ones and flows without a limit alone", async () => {
    const { client } = await setup({ maxIdleMs: 0 }); // no ceiling: only flows' own limits
    const after = await client.createFlow({ customer_id: CUSTOMER, actions: [{ type: 'variable_set', option: { key: 'after', value: 'yes' } }] });
    const limited = await client.createFlow({ customer_id: CUSTOMER, actions: WAIT, max_idle_seconds: 1, on_complete_flow_id: after.id });
    const unlimited = await client.createFlow({ customer_id: CUSTOMER, actions: WAIT });
    const idle = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: limited.id, reference_type: 'call' });
    const busy = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: limited.id, reference_type: 'call' });
    const free = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: unlimited.id, reference_type: 'call' });
    // busy changes every 300 ms (its variables), for 2.5 s: never idle for a whole second
    for (let i = 0; i < 8; i++) {
      await client.setVariables(busy.id, { tick: String(i) });
      await new Promise((r) => setTimeout(r, 300));
    }
    const ended = await client.get(idle.id);
    expect(ended).toMatchObject({ status: 'ended', end_reason: 'timeout' });
    expect(ended.on_complete_activeflow_id).not.toBe('00000000-0000-0000-0000-000000000000');
    expect(await until(async () => (await client.get(ended.on_complete_activeflow_id)).status === 'ended', 5_000)).toBe(true);
    expect(await client.variables(ended.on_complete_activeflow_id)).toMatchObject({ variables: { after: 'yes' } });
    expect(await client.get(busy.id)).toMatchObject({ status: 'running' });
    expect(await client.get(free.id)).toMatchObject({ status: 'running' });
    const { events } = await client.history(idle.id);
    expect(events.at(-1)).toMatchObject({ type: 'activeflow_ended', data: { end_reason: 'timeout' } });
  }, 30_000);

  it('the deployment ceiling applies to every activeflow; `list --stuck` finds idle ones first', async () => {
    // Long enough that the CLI (a separate process, slow to start on a loaded machine) lists the
    // activeflow before the watchdog ends it.
    const { server, client, node } = await setup({ maxIdleMs: 8_000 });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, actions: WAIT, reference_type: 'call' });
    await new Promise((r) => setTimeout(r, 1_200));
    const { stdout } = await run(process.execPath, [BIN, 'list', '--customer', CUSTOMER, '--stuck', '1s', '--json'], { env: { ...process.env, NATS_URL: server.url } });
    expect((JSON.parse(stdout) as { id: string }[]).map((a) => a.id)).toEqual([af.id]);
    const none = await run(process.execPath, [BIN, 'list', '--customer', CUSTOMER, '--stuck', '1h', '--json'], { env: { ...process.env, NATS_URL: server.url } });
    expect(JSON.parse(none.stdout)).toEqual([]);
    expect(await until(async () => (await client.get(af.id)).status === 'ended', 12_000)).toBe(true);
    expect(await client.get(af.id)).toMatchObject({ end_reason: 'timeout' });
    expect(await NodeMetrics.valueOf(node.metrics.idleTimeouts)).toBe(1);
    await expect(run(process.execPath, [BIN, 'list', '--customer', CUSTOMER, '--stuck', 'soon'], { env: { ...process.env, NATS_URL: server.url } })).rejects.toMatchObject({ code: 2 });
  }, 30_000);

  it('survives a failover: the node that takes the shard over times it out', async () => {
    const server = await startNats();
    cleanups.push(() => server.stop());
    const leased = { leaseTtlMs: 1_000, watchdogIntervalMs: 200, maxIdleMs: 0 };
    const a = await startNode(server, { ...leased, nodeId: 'watch-a', watchdogIntervalMs: 60_000 }); // a sweeps too rarely to matter
    expect(await until(() => a.servedShards === 256, 10_000)).toBe(true);
    const nc = await connectNats(server.url, 'watchdog-failover');
    cleanups.push(() => nc.close());
    const client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 15_000 });
    const flow = await client.createFlow({ customer_id: CUSTOMER, actions: WAIT, max_idle_seconds: 2 });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call' });
    await a.nc.close(); // a dies holding every lease
    const b = await startNode(server, { ...leased, nodeId: 'watch-b' });
    cleanups.push(() => b.stop());
    expect(await until(async () => (await client.get(af.id)).status === 'ended', 10_000)).toBe(true);
    expect(await client.get(af.id)).toMatchObject({ end_reason: 'timeout' });
    expect(await NodeMetrics.valueOf(b.metrics.idleTimeouts)).toBe(1);
  }, 30_000);
});

describe('parseDuration', () => {
  it('reads 90s, 15m, 2h, 1d, 500ms and plain seconds; refuses the rest', () => {
    expect([parseDuration('90s'), parseDuration('15m'), parseDuration('2h'), parseDuration('1d'), parseDuration('500ms'), parseDuration('3')]).toEqual([
      90_000, 900_000, 7_200_000, 86_400_000, 500, 3_000,
    ]);
    expect([parseDuration('soon'), parseDuration('-1s'), parseDuration('')]).toEqual([null, null, null]);
  });
});
