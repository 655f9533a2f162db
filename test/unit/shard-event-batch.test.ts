/**
 * Shard events a batch at a time (src/cluster/shard-event-batch.ts): every shard's entry is
 * logged, in lines short enough for container runtimes, which split lines over 16 KB.
 */
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { PER_LINE, ShardEventBatch } from '../../src/cluster/shard-event-batch.js';

describe('ShardEventBatch', () => {
  it('logs all 256 shards of a stop, each once, in lines under 16 KB', () => {
    const lines: string[] = [];
    const log = pino({ level: 'info', base: { pid: 1, node_id: 'node-with-a-long-name-0001' } }, { write: (l: string) => void lines.push(l) });
    const batch = new ShardEventBatch(log);
    for (let shard = 0; shard < 256; shard++) batch.add('shards_released', { shard, to: 'node-with-a-long-name-0002', settle_ms: 12_345, release_ms: 12_345 });
    batch.flush();
    expect(lines.length).toBe(256 / PER_LINE);
    for (const l of lines) expect(Buffer.byteLength(l)).toBeLessThan(16 * 1024);
    const shards = lines.flatMap((l) => (JSON.parse(l) as { shards: { shard: number }[] }).shards.map((s) => s.shard));
    expect(shards).toEqual(Array.from({ length: 256 }, (_, i) => i));
    expect(lines.map((l) => (JSON.parse(l) as { count: number }).count)).toEqual([64, 64, 64, 64]);
  });
});
