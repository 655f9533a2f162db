/**
 * `activeflow call --flow <id>`: try a flow by hand, as the call service would drive it. A call
 * activeflow is created from the flow, and each action `next` answers is printed as the call
 * service receives it; the user performs it (Enter), types the digits a caller would press, or hangs
 * up. Without a terminal (input piped or closed) the call is walked to its end, with `--digits`
 * typed at each digits_receive in turn.
 */
import { createInterface } from 'node:readline';
import { FINISH, NIL, type Action } from '../../machines/index.js';
import type { Command } from './command.js';
import { need, withClient } from './connection.js';

/** What the call service sees: the action's type and its option, already substituted. */
function describe(step: number, action: Action): string {
  if (action.id === FINISH) return `${String(step).padStart(3)}  (finish: the flow ended; the call hangs up)`;
  if (action.id === NIL) return `${String(step).padStart(3)}  (empty action: the flow waits at a block until continued)`;
  return `${String(step).padStart(3)}  ${(action.type ?? '').padEnd(16)} ${JSON.stringify(action.option ?? {})}  [${action.id}]`;
}

export const callCommand: Command = {
  name: 'call',
  usage: 'activeflow call --flow <flow id> [--digits <d,d,...>]',
  summary: 'Try a flow by hand: a call activeflow, stepped with next as the call service would.',
  help: `Creates a call activeflow from the flow (for the flow's customer) and asks it what to do, as
the call service does. Each action is printed with its substituted option. Then:
  Enter          perform it and ask for the next action
  <digits>Enter  the caller pressed these keys (sets voipbin.call.digits), then ask for the next
  h Enter        hang up (stop, reason reference_ended)
Without a terminal (piped or closed input) the call is walked to its end, typing --digits at each
digits_receive in turn (the last one repeats). Exit status 0 when the call ended.

Options:
  --flow <id>       the flow to run
  --digits <list>   digits for digits_receive when not interactive, comma-separated (e.g. 9,2)
  --interactive     read the answers from standard input even when it is not a terminal
  --servers <urls>  NATS servers (default NATS_URL, else nats://127.0.0.1:4222)`,
  run(args, io) {
    const flowId = need(args, 'flow', io);
    if (flowId === null) return 2;
    const scripted = (args.options.get('digits') ?? '')
      .split(',')
      .map((d) => d.trim())
      .filter((d) => d !== '');
    const interactive = process.stdin.isTTY === true || args.flags.has('interactive');
    return withClient(args, io, async (client) => {
      const flow = await client.getFlow(flowId);
      const af = await client.createActiveflow({ customer_id: flow.customer_id, flow_id: flow.id, reference_type: 'call' });
      io.out(`call activeflow ${af.id} of flow ${flow.id}${flow.name ? ` (${flow.name})` : ''}, customer ${flow.customer_id}`);
      const lines = interactive ? createInterface({ input: process.stdin, output: process.stdout, terminal: false })[Symbol.asyncIterator]() : null;
      let current = af.current_action.id;
      let digitTurn = 0;
      try {
        for (let step = 1; step <= 1_000; step++) {
          const action = await client.next(af.id, current);
          io.out(describe(step, action));
          if (action.id === FINISH) return 0;
          if (action.id === NIL) {
            io.out('the flow is blocked; continue it with the API (activeflow.v1.<id>.continue), or hang up');
            if (!interactive) break;
          }
          let digits: string | undefined;
          if (lines !== null) {
            process.stdout.write('  Enter: done, digits: keys pressed, h: hang up > ');
            const answer = await lines.next();
            const text = answer.done === true ? 'h' : String(answer.value).trim();
            if (process.stdin.isTTY !== true) process.stdout.write(`${text}\n`); // a terminal echoes what was typed
            if (text === 'h') break;
            if (/^[0-9*#]+$/.test(text)) digits = text;
            else if (text !== '') io.out(`  "${text}" is not digits; taken as done`);
          } else if (action.type === 'digits_receive' && scripted.length > 0) {
            digits = scripted[Math.min(digitTurn++, scripted.length - 1)]!;
            io.out(`  (caller presses ${digits})`);
          }
          if (digits !== undefined) await client.setVariables(af.id, { 'voipbin.call.digits': digits });
          if (action.id !== NIL) current = action.id;
        }
        const stopped = await client.stop(af.id, { reason: 'reference_ended' });
        io.out(`hung up: the activeflow ended (${stopped.end_reason})`);
        return 0;
      } finally {
        await lines?.return?.();
      }
    });
  },
};
