/**
 * `activeflow start` (what `npm start` runs): a local nats-server from nats-server.conf, with its
 * data under ./data/nats, and one node against it. Ctrl-C stops both.
 */
import { mkdirSync } from 'node:fs';
import { resolve } from 'node:path';
import { readNodeConfig } from '../config.js';
import { NatsServer } from '../nats/server-process.js';
import { startNode } from './node-command.js';
import { stopOnSignals } from './signals.js';
import type { Command } from './command.js';

export const startCommand: Command = {
  name: 'start',
  usage: 'activeflow start [--config nats-server.conf]',
  summary: 'Start a local nats-server (nats-server.conf, data in ./data/nats) and one node: the development default.',
  help: `Starts nats-server with nats-server.conf (JetStream data under ./data/nats, which you can
inspect or delete), waits for it, starts one node against it, and prints how to reach it.
Ctrl-C stops the node, then the server.

Options:
  --config <file>   the nats-server configuration (default nats-server.conf)`,
  async run(args, io) {
    const configFile = resolve(args.options.get('config') ?? 'nats-server.conf');
    mkdirSync(resolve('data/nats'), { recursive: true });
    let server: NatsServer;
    try {
      server = await NatsServer.start({ configFile, storeDir: resolve('data/nats') });
    } catch (e) {
      io.err(`activeflow start: ${(e as Error).message}`);
      return 1;
    }
    // A development machine: the examples call webhooks and fetch URLs on loopback.
    const config = readNodeConfig({ EGRESS_ALLOW: '127.0.0.0/8,::1', ...process.env, NATS_URL: server.url });
    let node: Awaited<ReturnType<typeof startNode>>;
    try {
      node = await startNode(config, io);
    } catch {
      await server.stop();
      return 1;
    }
    await node.servingAll(5_000); // the banner last: after the shards are taken and logged
    io.err(
      [
        '',
        `activeflow is running: nats-server on ${server.url} (data in ./data/nats), node ${node.options.nodeId}.`,
        'Try, in another terminal:',
        `  NATS_URL=${server.url} npx activeflow flows create --customer 11111111-1111-4111-8111-111111111111 --file examples/ivr-menu.json`,
        `  NATS_URL=${server.url} npx activeflow simulate-calls --flow <flow id> --calls 100 --concurrency 20`,
        'Press Ctrl-C to stop.',
        '',
      ].join('\n'),
    );
    return stopOnSignals(async () => {
      await node.stop();
      await server.stop();
    }, config.STOP_TIMEOUT_MS + 10_000);
  },
};
