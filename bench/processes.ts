/** Child processes for the benchmarks: started, and resolved once they print their readiness line. */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, readFileSync } from 'node:fs';

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

/** CPU time (user + system) a process has used, in microseconds (/proc/<pid>/stat, clock ticks of 10 ms). */
export function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10_000;
}

/** `--pin`: each process, every thread of it (`taskset -a`), on the CPU given. */
export function pin(cpus: readonly (readonly [pid: number, cpu: number])[]): void {
  for (const [pid, cpu] of cpus) execFileSync('taskset', ['-a', '-cp', String(cpu), String(pid)], { stdio: 'ignore' });
}
