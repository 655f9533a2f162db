#!/usr/bin/env node
// The package's command. TypeScript runs through tsx, so a clone works without a build step.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
const code = await main(process.argv.slice(2));
process.exitCode = code;
// A command is done when main returns: whatever is still pending (a reconnect timer of a closed
// connection, a lease timer) must not keep the process alive. Output is flushed by then; the
// unref'd timer fires only if something else would have kept the process running.
setTimeout(() => process.exit(code), 1_000).unref();
