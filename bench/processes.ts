/** Child processes for the benchmarks: started, and resolved once they print their readiness line. */
import { spawn, type ChildProcess } from 'node:child_process';

/**
 * The command that runs activeflow as every launcher ships it (npm start, deploy/systemd,
 * deploy/local-cluster, the Dockerfile): Node with a larger young generation.
 */
export const ACTIVEFLOW = [process.env['ACTIVEFLOW_NODE_FLAGS'] ?? '--max-semi-space-size=32', new URL('../bin/activeflow.mjs', import.meta.url).pathname].filter((a) => a !== '');

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
  for (const s of [child.stdout!, child.stderr!]) {
    s.removeAllListeners('data');
    s.resume();
  }
  return child;
}
