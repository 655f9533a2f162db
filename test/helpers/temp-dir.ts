/**
 * Temporary folders for a test file, removed after its last test: a full run used to leave about
 * 60 MB in /tmp (the stores of `activeflow start`, certificates, configs).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';

const made: string[] = [];

// Registered when a test file first imports this module (each file has its own module graph).
afterAll(() => {
  for (const dir of made.splice(0)) {
    try {
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // a process the test started may still be writing there; /tmp is cleared in time anyway
    }
  }
});

/** A new empty folder under the system's temporary folder, removed after the file's tests. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
