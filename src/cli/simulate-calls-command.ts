import { simulateCalls } from '../simulator/call-simulator.js';
import type { Command } from './command.js';
import { need, table, withClient } from './connection.js';
import { progressBar } from './progress.js';

const DEFAULT_CUSTOMER = '11111111-1111-4111-8111-111111111111';

export const simulateCallsCommand: Command = {
  name: 'simulate-calls',
  usage: 'activeflow simulate-calls --flow <id> --calls N --concurrency C [--digits 1,2] [--media-ms 20] [--customer <id>]',
  summary: 'Drive calls through a running node like a call service would, and report moves and latency.',
  help: `Creates N call activeflows of a flow and drives each with next, C at a time: media actions
take --media-ms (default 20), digits_receive gets the next digit of --digits, and hangup, FINISH or
the empty action hangs the call up (stop with reason reference_ended). Prints a progress bar, then a
table: calls, moves, errors, next latency p50/p99. The customer's quotas apply (by default 1,000
creations/s and 50,000 running activeflows): a refused call counts as an error, and
\`activeflow quotas set --customer <id> ...\` raises them (docs/quotas.md).

Options:
  --flow <id>         the flow (create one with \`activeflow flows create\`)
  --calls <n>         how many calls (default 100)
  --concurrency <c>   calls at once (default 10)
  --digits <list>     digits typed at each digits_receive, comma-separated
  --media-ms <ms>     simulated duration of a media action (default 20)
  --customer <id>     the flow's customer (default ${DEFAULT_CUSTOMER})
  --json              print the report as JSON
  --servers <urls>    NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    const flowId = need(args, 'flow', io);
    if (flowId === null) return Promise.resolve(2);
    const num = (name: string, def: number) => {
      const n = Number(args.options.get(name) ?? def);
      return Number.isInteger(n) && n >= 0 ? n : NaN;
    };
    const calls = num('calls', 100);
    const concurrency = num('concurrency', 10);
    const mediaMs = num('media-ms', 20);
    if ([calls, concurrency, mediaMs].some(Number.isNaN) || concurrency === 0) {
      io.err('activeflow simulate-calls: --calls, --concurrency (>= 1) and --media-ms take whole numbers');
      return Promise.resolve(2);
    }
    return withClient(args, io, async (client) => {
      const bar = progressBar('calls');
      const report = await simulateCalls(client, {
        flowId,
        customerId: args.options.get('customer') ?? DEFAULT_CUSTOMER,
        calls,
        concurrency,
        digits: (args.options.get('digits') ?? '').split(',').filter((d) => d !== ''),
        mediaMs,
        maxMovesPerCall: 500,
        onProgress: (d, t) => bar.update(d, t),
      });
      bar.finish();
      if (args.flags.has('json')) {
        io.out(JSON.stringify({ ...report, results: undefined }, null, 2));
      } else {
        io.out(
          table([
            ['CALLS', 'MOVES', 'ERRORS', 'NEXT P50', 'NEXT P99', 'DURATION', 'MOVES/S'],
            [
              String(report.calls),
              String(report.moves),
              String(report.errors),
              `${report.p50Ms.toFixed(2)} ms`,
              `${report.p99Ms.toFixed(2)} ms`,
              `${(report.durationMs / 1000).toFixed(1)} s`,
              (report.moves / (report.durationMs / 1000)).toFixed(0),
            ],
          ]),
        );
        const firstError = report.results.find((r) => r.error !== undefined);
        if (firstError) io.err(`first error (activeflow ${firstError.activeflowId}): ${firstError.error}`);
      }
      return report.errors === 0 ? 0 : 1;
    });
  },
};
