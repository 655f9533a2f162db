import type { z } from 'zod';
import { GatewayConfig, NodeConfig } from './config.js';

/** docs/configuration.md, generated from the option schema. */
export function configMarkdown(): string {
  const rowsOf = (shape: Record<string, z.ZodType>) =>
    Object.entries(shape).map(([key, schema]) => {
      const def = (schema as z.ZodType & { _zod: { def: { defaultValue?: unknown } } })._zod.def.defaultValue;
      return `| \`${key}\` | ${def === undefined ? '-' : `\`${JSON.stringify(def)}\``} | ${(schema.description ?? '').replace(/\|/g, '\\|')} |`;
    });
  const rows = rowsOf(NodeConfig.shape);
  return [
    '# Configuration',
    '',
    '<!-- generated from src/config.ts by `npm run docs`; do not edit by hand -->',
    '',
    'A node (`activeflow node`, and the node `activeflow start` runs) reads these environment variables.',
    '`activeflow node --help` prints the same text.',
    '',
    '| variable | default | meaning |',
    '|---|---|---|',
    ...rows,
    '',
    '## The REST gateway',
    '',
    '`activeflow gateway` reads these (`activeflow gateway --help` prints the same text). A node started',
    "with `--http <port>` serves the same gateway in its own process, with the node's settings above.",
    '',
    '| variable | default | meaning |',
    '|---|---|---|',
    ...rowsOf(GatewayConfig.shape),
    '',
    "The engine's limits (moves per activeflow, per cycle, on_complete depth, stacks, variable sizes) are",
    'described in docs/engine.md; their defaults are those of docs/behaviour.md.',
    '',
  ].join('\n');
}
