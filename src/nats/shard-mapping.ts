/**
 * Shards and the server's subject mapping (docs/architecture.md, design 2). nats-server's
 * `{{partition(n,1)}}` is FNV-1a (32 bit) of the token, modulo n; `shardOf` computes the same, so
 * the node knows which shard an id lives in and the server routes requests there in one hop.
 */

export const DEFAULT_SHARD_COUNT = 256;

/** The shard of an activeflow id, equal to nats-server's partition of that subject token. */
export function shardOf(id: string, shardCount: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < id.length; i++) {
    h ^= id.charCodeAt(i) & 0xff;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return (h >>> 0) % shardCount;
}

/** The account mapping: `activeflow.v1.<id>.<verb>` to `activeflow.shard.<n>.<id>.<verb>`. */
export function shardMapping(shardCount: number): Record<string, string> {
  return { 'activeflow.v1.*.*': `activeflow.shard.{{partition(${shardCount},1)}}.{{wildcard(1)}}.{{wildcard(2)}}` };
}

/** The mapping as a nats-server configuration block. */
export function shardMappingConfig(shardCount: number): string {
  const lines = Object.entries(shardMapping(shardCount)).map(([from, to]) => `  "${from}": "${to}"`);
  return `mappings = {\n${lines.join('\n')}\n}`;
}
