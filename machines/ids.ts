/**
 * New ids inside the pure core. The machine may not call a random generator, so every event
 * carries `entropy` (random bits chosen by the host) and ids are derived from it: the same
 * snapshot and event always produce the same ids, and a replay is exact.
 */

function fnv1a(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** murmur3's finaliser: every input bit affects every output bit. */
function fmix32(x: number): number {
  let h = x >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

const hex8 = (n: number): string => (n >>> 0).toString(16).padStart(8, '0');

export interface IdSource {
  /** The next id, a version-4-shaped UUID. */
  next(): string;
}

/** @example idSource('5f0c…').next() // '8a1d…-…-4…' */
export function idSource(entropy: string): IdSource {
  const lanes = [0x1b873593, 0xcc9e2d51, 0x85ebca6b, 0xe6546b64].map((seed) => fnv1a(entropy, seed));
  let counter = 0;
  return {
    next(): string {
      counter++;
      const w = lanes.map((lane, i) => {
        let h = fmix32(lane ^ Math.imul(counter, 0x9e3779b9));
        h = fmix32(h ^ lanes[(i + 1) % 4]! ^ counter);
        return h;
      });
      const a = hex8(w[0]!);
      const b = hex8(w[1]!);
      const c = hex8(w[2]!);
      const d = hex8(w[3]!);
      const variant = ((parseInt(c[0]!, 16) & 0x3) | 0x8).toString(16);
      return `${a}-${b.slice(0, 4)}-4${b.slice(5, 8)}-${variant}${c.slice(1, 4)}-${c.slice(4, 8)}${d}`;
    },
  };
}
