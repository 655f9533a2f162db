/** A local HTTP endpoint for webhooks, and a call walked to its end (each move sends events). */
import { createServer } from 'node:http';
import type { ActiveflowClient } from '../../src/api/client.js';

export interface WebhookBody {
  type: string;
  data: { id: string; executed_actions: unknown[] };
}

/** Answers each webhook 200 when `accept(path, body)` says so, else 503. */
export async function webhookReceiver(accept: (path: string, body: WebhookBody) => boolean): Promise<{ base: string; close: () => Promise<void> }> {
  const http = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => res.writeHead(accept(req.url!, JSON.parse(body) as WebhookBody) ? 200 : 503).end());
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  return {
    base: `http://127.0.0.1:${(http.address() as { port: number }).port}`,
    close: () => new Promise((r) => http.close(() => r())),
  };
}

/** Creates a call activeflow of `moves` talks with that webhook, and walks it with next to its end; its id. */
export async function walkCall(client: ActiveflowClient, customerId: string, webhookUri: string, moves: number): Promise<string> {
  const af = await client.createActiveflow({
    customer_id: customerId,
    reference_type: 'call',
    webhook_uri: webhookUri,
    actions: Array.from({ length: moves }, (_, i) => ({ type: 'talk', option: { text: `${i}` } })),
  });
  let current = af.current_action.id;
  for (let i = 0; i <= moves; i++) current = (await client.next(af.id, current)).id; // the last one finishes it
  return af.id;
}

/** Tears a webhook test down: the client, every node still connected, the server, the endpoint. */
export async function stopAll(parts: {
  nc?: { close(): Promise<void> };
  nodes: { nc: { isClosed(): boolean }; stop(): Promise<unknown> }[];
  server?: { stop(): Promise<void> };
  closeHttp?: () => Promise<void>;
}): Promise<void> {
  await parts.nc?.close();
  for (const n of parts.nodes) if (!n.nc.isClosed()) await n.stop().catch(() => undefined);
  await parts.server?.stop();
  await parts.closeHttp?.();
}
