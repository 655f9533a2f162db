import { readFileSync } from 'node:fs';
import { runScenario, ScenarioError } from '../simulate/run-scenario.js';
import type { Command } from './command.js';

export const simulateCommand: Command = {
  name: 'simulate',
  usage: 'activeflow simulate <scenario.json> [--compact]',
  summary: 'Run one activeflow locally from a scenario file (no NATS) and print the outcome as JSON.',
  help: `Runs one activeflow in this process, with canned HTTP responses, service replies and flows
from the scenario, and prints one JSON object: {results, activeflow, variables, events,
children, effects}. Use it to dry-run a flow before you store it.

Scenario fields (see docs/simulate.md):
  reference_type   call (default), conversation, api, campaign, transcribe, recording, ai or ""
  actions | flow   the main stack: an action list, or a flow {id, actions, on_complete_flow_id}
  flows            flows for fetch_flow and on_complete
  variables        initial variables;  now: the clock (ISO 8601), default the real time
  http             {"GET https://x.test/a": {"status": 200, "body": [...]}} for fetch / webhook_send
  services         {"queue_join": {"service_id": "...", "push_actions": [...]}, "message_send": {"error": "down"}}
  steps            [{"op": "next"}, {"op": "set_variables", ...}, ...]; without steps a call is
                   driven with next until it finishes, other reference types run execute once
  clock            a recorded clock, [{"now", "entropy"}, ...]: what \`activeflow export\` writes
                   to reproduce a real run exactly

Options:
  --compact        print the JSON on one line

Exit status: 0 when the scenario ran (even if some steps were rejected), 2 when it is invalid.`,
  run(args, io) {
    const file = args.positionals[0];
    if (file === undefined) {
      io.err(`activeflow simulate: which scenario? usage: ${this.usage}`);
      return 2;
    }
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      io.err(`activeflow simulate: cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
      return 2;
    }
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch (e) {
      io.err(`activeflow simulate: ${file} is not valid JSON: ${(e as Error).message}`);
      return 2;
    }
    try {
      const output = runScenario(value);
      io.out(args.flags.has('compact') ? JSON.stringify(output) : JSON.stringify(output, null, 2));
      return 0;
    } catch (e) {
      if (e instanceof ScenarioError) {
        io.err(`activeflow simulate: ${file}: ${e.message}`);
        return 2;
      }
      throw e;
    }
  },
};
