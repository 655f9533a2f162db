#!/usr/bin/env node
// The package's command. It runs the compiled JavaScript (dist/, `npm run build`) when that is
// current with the sources, and the sources through tsx otherwise, so a clone works before a
// build and an edit is never run stale. ACTIVEFLOW_RUN=tsx or =dist picks one (the startup bench).
import { buildState, ENTRY } from './build-state.mjs';

const how = process.env.ACTIVEFLOW_RUN ?? (buildState() === 'stale' ? 'tsx' : 'dist');
let main;
if (how === 'dist') {
  ({ main } = await import(ENTRY));
} else {
  const { register } = await import('tsx/esm/api').catch(() => {
    console.error('activeflow: dist/ is missing or older than the sources, and tsx (a development dependency) is not installed: run `npm run build`, or `npm install`');
    process.exit(1);
  });
  register();
  ({ main } = await import('../src/cli/main.ts'));
}
const code = await main(process.argv.slice(2));
process.exitCode = code;
// A command is done when main returns: whatever is still pending (a reconnect timer of a closed
// connection, a lease timer) must not keep the process alive. Output is flushed by then; the
// unref'd timer fires only if something else would have kept the process running.
setTimeout(() => process.exit(code), 1_000).unref();
