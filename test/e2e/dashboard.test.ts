/**
 * The dashboard end to end, in Debian's headless Chromium driven by playwright-core, against a
 * real gateway, real nodes and a real nats-server: the shard map follows a node joining, the
 * running activeflows are listed, and one activeflow's live view (cursor, stacks, variables,
 * executed actions) follows its moves. Screenshots go to test/artifacts/.
 */
import { mkdirSync, readFileSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ActiveflowClient } from '../../src/api/client.js';
import { SUBJECTS } from '../../src/api/subjects.js';
import { AccessKeyCache } from '../../src/gateway/access-keys.js';
import { HttpGateway } from '../../src/gateway/http-gateway.js';
import { silentLogger } from '../../src/log.js';
import { connectNats } from '../../src/nats/connect.js';
import type { NatsServer } from '../../src/nats/server-process.js';
import type { ActiveflowNode } from '../../src/node/activeflow-node.js';
import type { NatsConnection } from '@nats-io/transport-node';
import { CUSTOMER, OTHER_CUSTOMER } from '../helpers/engine.js';
import { startNats, startNode, until } from '../helpers/nats.js';

const ARTIFACTS = new URL('../artifacts/', import.meta.url).pathname;
let server: NatsServer;
const nodes: ActiveflowNode[] = [];
let nc: NatsConnection;
let client: ActiveflowClient;
let keys: AccessKeyCache;
let gateway: HttpGateway;
let browser: Browser;
let page: Page;

beforeAll(async () => {
  mkdirSync(ARTIFACTS, { recursive: true });
  server = await startNats();
  const leased = { leaseTtlMs: 1_000 };
  nodes.push(await startNode(server, { ...leased, nodeId: 'node-a' }), await startNode(server, { ...leased, nodeId: 'node-b' }));
  nc = await connectNats(server.url, 'dashboard-test');
  client = new ActiveflowClient(nc, { requestTimeoutMs: 2_000, retryForMs: 10_000 });
  expect(await until(() => nodes[0]!.servedShards + nodes[1]!.servedShards === 256, 10_000)).toBe(true);
  keys = await AccessKeyCache.start(nc);
  gateway = await HttpGateway.start({ nc, keys, log: silentLogger, port: 0 });
  // The flags this machine's closed network needs (see the library's env notes).
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
}, 60_000);
afterAll(async () => {
  await browser?.close();
  await gateway?.stop();
  keys?.stop();
  await nc?.close();
  for (const n of nodes) await n.stop().catch(() => undefined);
  await server?.stop();
});

const owners = () => page.$$eval('#shards .shard', (cells) => cells.map((c) => (c as unknown as { dataset: Record<string, string> }).dataset['owner'] ?? ''));

describe('the dashboard in headless Chromium', () => {
  it('shows the nodes and a shard map that follows a node joining, then one activeflow live', async () => {
    const { token } = await client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { operator: true, name: 'dashboard' });
    await page.goto(`${gateway.url}/`);
    await page.getByTestId('key').fill(token); // no customer typed: the operator picks one from the table
    await page.getByTestId('connect').click();

    await expect
      .poll(async () => (await page.$$eval('#nodes tbody tr', (rows) => rows.map((r) => (r as unknown as { dataset: Record<string, string> }).dataset['node']))).sort(), { timeout: 10_000 })
      .toEqual(['node-a', 'node-b']);
    await expect.poll(async () => new Set(await owners()), { timeout: 10_000 }).toEqual(new Set(['node-a', 'node-b']));
    expect(await owners()).toHaveLength(256);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-two-nodes.png`, fullPage: true });

    // A third node joins: the map shows it taking about a third of the shards, without a reload;
    // REST callers meanwhile never see the moves (the gateway retries through them).
    const probes = await Promise.all(Array.from({ length: 20 }, () => client.createActiveflow({ customer_id: CUSTOMER, actions: [{ type: 'block' }], reference_type: 'api', execute: true })));
    const statuses: number[] = [];
    let polling = true;
    const poller = (async () => {
      for (let i = 0; polling; i++) {
        const r = await fetch(`${gateway.url}/v1.0/activeflows/${probes[i % probes.length]!.id}`, { headers: { authorization: `Bearer ${token}` } });
        statuses.push(r.status);
        await r.arrayBuffer();
      }
    })();
    nodes.push(await startNode(server, { leaseTtlMs: 1_000, nodeId: 'node-c' }));
    await expect.poll(async () => (await owners()).filter((o) => o === 'node-c').length, { timeout: 15_000 }).toBeGreaterThan(60);
    await expect.poll(() => page.getByTestId('moving').textContent(), { timeout: 15_000 }).toMatch(/every shard is where it should be/);
    polling = false;
    await poller;
    expect(statuses.length).toBeGreaterThan(5); // asked all through the move (more on a quiet machine)
    expect(statuses.filter((st) => st !== 200)).toEqual([]);
    for (const p of probes) await client.stop(p.id);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-three-nodes.png`, fullPage: true });

    // A call in progress: listed, then followed live as it moves and its variables change.
    const flow = await client.createFlow({
      customer_id: CUSTOMER,
      actions: [{ type: 'answer' }, { type: 'talk', option: { text: 'hello' } }, { type: 'digits_receive', option: { duration: 5000, length: 1 } }],
    });
    const af = await client.createActiveflow({ customer_id: CUSTOMER, flow_id: flow.id, reference_type: 'call', variables: { caller: 'alice' } });
    const others = await Promise.all([0, 1].map(() => client.createActiveflow({ customer_id: OTHER_CUSTOMER, actions: [{ type: 'block' }], reference_type: 'api', execute: true })));
    // Running activeflows per customer, across the cluster, busiest first; a click lists one's own.
    const perCustomer = () => page.$$eval('#customers tbody tr', (rows) => rows.map((r) => [...r.children].map((c) => c.textContent).join(' ')));
    await expect.poll(perCustomer, { timeout: 10_000 }).toEqual([`${OTHER_CUSTOMER} 2`, `${CUSTOMER} 1`]);
    expect(await page.getByTestId('customers-note').textContent()).toBe('3 running, 2 customers');
    // The operator typed no customer: no error, but a pointer to the table.
    await expect.poll(() => page.getByTestId('status').textContent(), { timeout: 5_000 }).toBe('connected (operator key)');
    expect(await page.getByTestId('flow-count').textContent()).toMatch(/choose a customer/);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-operator.png`, fullPage: false });
    await page.locator(`#customers tbody tr[data-customer="${CUSTOMER}"]`).click();
    const row = page.locator(`#activeflows tbody tr[data-id="${af.id}"]`);
    await row.waitFor({ timeout: 10_000 });
    await page.evaluate('window.scrollTo(0, 0)');
    await row.click();
    await expect.poll(() => page.getByTestId('live-id').textContent()).toBe(af.id);
    await expect.poll(() => page.getByTestId('live-variables').textContent()).toContain('alice');
    // The view opened below the tables is brought into sight.
    const inSight = () => page.evaluate('(() => { const top = document.getElementById("live").getBoundingClientRect().top; return top >= 0 && top < 50; })()');
    await expect.poll(inSight, { timeout: 5_000 }).toBe(true);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-selected.png`, fullPage: false });
    // The picture of the flow: a box per action, the cursor's highlighted, full ids on hover.
    const picture = page.getByTestId('flow-picture');
    const boxes = () =>
      picture.locator('g.action').evaluateAll((gs) =>
        gs.map((g) => ({
          id: g.getAttribute('data-action-id'),
          current: g.classList.contains('current'),
          executed: g.classList.contains('executed'),
          title: g.querySelector('title')?.textContent ?? '',
        })),
      );
    await expect.poll(async () => (await boxes()).length, { timeout: 5_000 }).toBe(3);
    expect((await boxes()).map((b) => b.id)).toEqual(flow.actions.map((a) => a.id));
    expect((await boxes()).every((b) => b.title.includes(b.id!))).toBe(true);
    expect((await boxes()).filter((b) => b.current).map((b) => b.id)).toEqual([]); // not started: the cursor is before the first action

    let current = (await client.get(af.id)).current_action.id;
    for (const expected of flow.actions.slice(0, 2)) {
      const action = await client.next(af.id, current);
      expect(action.id).toBe(expected.id);
      current = action.id;
      await expect.poll(() => page.getByTestId('live-action').textContent(), { timeout: 5_000 }).toContain(expected.id);
      // The picture follows: the cursor's box, and every action run so far marked.
      await expect.poll(async () => (await boxes()).filter((b) => b.current).map((b) => b.id), { timeout: 5_000 }).toEqual([expected.id]);
      if (expected === flow.actions[0]) await picture.screenshot({ path: `${ARTIFACTS}dashboard-flow-picture-1.png` });
    }
    expect((await boxes()).filter((b) => b.executed).map((b) => b.id)).toEqual([flow.actions[0]!.id]);
    await picture.screenshot({ path: `${ARTIFACTS}dashboard-flow-picture-2.png` });
    await client.setVariables(af.id, { mood: 'curious' });
    await expect.poll(() => page.getByTestId('live-variables').textContent(), { timeout: 5_000 }).toContain('curious');
    expect(Number(await page.getByTestId('live-events').textContent())).toBe(3); // created and 2 moves (variables are not events)
    expect(await page.locator('#live-stacks li.current').getAttribute('title')).toBe(flow.actions[1]!.id); // the whole id on hover
    expect(await page.locator('#live-executed li').count()).toBe(2); // start, answer
    await page.screenshot({ path: `${ARTIFACTS}dashboard-live-activeflow.png`, fullPage: true });
    // Time travel: the timeline lists the journal's entries; choosing one shows the activeflow as it
    // was then, with what that move changed highlighted.
    const steps = () => page.locator('#live-timeline li').evaluateAll((lis) => lis.map((li) => li.textContent));
    await expect.poll(steps, { timeout: 5_000 }).toEqual(['1 created', '2 next', '3 next', '4 variables_set']);
    await page.locator('#live-timeline li[data-n="2"]').click();
    await expect.poll(() => page.getByTestId('travel-note').textContent()).toMatch(/^as it was after entry 2 \(next, /);
    expect(await page.getByTestId('live-action').textContent()).toContain(flow.actions[0]!.id);
    expect(await page.locator('#live-action').getAttribute('class')).toBe('changed'); // that move moved the cursor
    expect(await page.getByTestId('live-variables').textContent()).not.toContain('curious'); // set later
    expect(await page.locator('#live-executed li').count()).toBe(1); // start
    expect(await page.locator('#live-executed li.changed').count()).toBe(1);
    expect(await picture.locator('g.action.current').getAttribute('data-action-id')).toBe(flow.actions[0]!.id); // the picture as it was too
    await page.screenshot({ path: `${ARTIFACTS}dashboard-time-travel-1.png`, fullPage: true });
    await page.locator('#live-timeline li[data-n="4"]').click();
    await expect.poll(() => page.locator('#live-variables tr[data-key="mood"]').getAttribute('class')).toBe('changed');
    expect(await page.locator('#live-variables tr[data-key="caller"]').getAttribute('class')).not.toBe('changed');
    expect(await page.locator('#live-action').getAttribute('class')).not.toBe('changed'); // variables_set moves no cursor
    expect(await page.getByTestId('live-action').textContent()).toContain(flow.actions[1]!.id);
    await page.screenshot({ path: `${ARTIFACTS}dashboard-time-travel-2.png`, fullPage: true });
    // Back to live: it follows the activeflow again.
    await page.getByTestId('travel-live').click();
    await expect.poll(() => page.getByTestId('travel-note').textContent()).toBe('live');
    expect(await page.locator('#live-timeline li.selected').count()).toBe(0);
    // A flow with jumps (the IVR example): its branch, default and goto arcs, labelled.
    const ivr = JSON.parse(readFileSync(new URL('../../examples/ivr-menu.json', import.meta.url), 'utf8')) as { actions: unknown[] };
    const menu = await client.createActiveflow({ customer_id: CUSTOMER, actions: ivr.actions as never, reference_type: 'call' });
    await page.evaluate('window.scrollTo(0, 0)');
    await page.locator(`#activeflows tbody tr[data-id="${menu.id}"]`).click({ timeout: 10_000 });
    await expect.poll(async () => (await boxes()).length, { timeout: 5_000 }).toBe(9);
    const jumps = await picture.locator('path.jump').evaluateAll((ps) => ps.map((p) => p.getAttribute('data-label')));
    expect(jumps.sort()).toEqual(['1', '2', 'default', 'goto']);
    await picture.screenshot({ path: `${ARTIFACTS}dashboard-flow-picture-ivr.png` });
    await client.stop(menu.id);
    for (const o of others) await client.stop(o.id);
    await expect.poll(perCustomer, { timeout: 10_000 }).toEqual([`${CUSTOMER} 1`]);
  }, 90_000);

  it('/docs renders the OpenAPI document: every endpoint, with its body and answers', async () => {
    const p = await browser.newPage();
    await p.goto(`${gateway.url}/docs`);
    await p.locator('section.endpoint').first().waitFor({ timeout: 10_000 });
    const endpoints = await p.$$eval('section.endpoint', (s) => s.map((e) => (e as unknown as { dataset: Record<string, string> }).dataset['endpoint']));
    const spec = (await (await fetch(`${gateway.url}/openapi.json`)).json()) as { paths: Record<string, Record<string, unknown>> };
    expect(endpoints).toEqual(Object.entries(spec.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`)));
    const create = p.locator('section.endpoint[data-endpoint="POST /v1.0/activeflows"]');
    expect(await create.textContent()).toMatch(/flow_id[\s\S]*actions[\s\S]*webhook_uri[\s\S]*200[\s\S]*401/);
    await p.screenshot({ path: `${ARTIFACTS}docs.png`, fullPage: false });
    await p.close();
  }, 30_000);

  it("with a customer's key: its own activeflows, and no cluster view", async () => {
    const { token } = await client.call<{ token: string }>(SUBJECTS.adminAccessKeys('create'), { customer_id: CUSTOMER });
    const p = await browser.newPage();
    await p.goto(`${gateway.url}/?accesskey=${encodeURIComponent(token)}`);
    await expect.poll(() => p.locator('#cluster-note').textContent(), { timeout: 10_000 }).toMatch(/operator/);
    await expect.poll(() => p.getByTestId('status').textContent(), { timeout: 10_000 }).toBe('connected');
    expect(await p.$$eval('#shards .shard', (c) => c.length)).toBe(0);
    await expect.poll(() => p.locator('#customers-section').isHidden(), { timeout: 10_000 }).toBe(true); // other customers' counts are not its business
    await p.close();
  }, 30_000);
});
