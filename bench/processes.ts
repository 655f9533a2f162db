/** Child processes for the benchmarks: started, and resolved once they print their readiness line. */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';

/**
 * The command that runs activeflow as every launcher ships it (npm start, deploy/systemd,
 * deploy/local-cluster, the Dockerfile): Node with a larger young generation. ACTIVEFLOW_NODE_FLAGS
 * replaces those flags (several, space-separated: `--max-semi-space-size=32 --cpu-prof` profiles the node).
 */
export const ACTIVEFLOW = [...(process.env['ACTIVEFLOW_NODE_FLAGS'] ?? '--max-semi-space-size=32').split(/\s+/), new URL('../bin/activeflow.mjs', import.meta.url).pathname].filter((a) => a !== '');

export async function spawnAndWait(args: string[], env: Record<string, string>, ready: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const on = (b: Buffer) => {
      out += b.toString();
      if (out.includes(ready)) resolve();
    };
    child.stdout!.on('data', on);
    child.stderr!.on('data', on);
    child.once('exit', (c) => reject(new Error(`exited ${c}: ${out}`)));
  });
  child.removeAllListeners('exit');
  const logDir = process.env['BENCH_LOG_DIR'];
  for (const s of [child.stdout!, child.stderr!]) {
    s.removeAllListeners('data');
    // BENCH_LOG_DIR: each child's output kept in <dir>/<pid>.log, to see what a node did in a run
    if (logDir !== undefined) s.pipe(createWriteStream(`${logDir}/${child.pid}.log`, { flags: 'a' }));
    else s.resume();
  }
  return child;
}
