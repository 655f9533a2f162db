/** jsonDepth: nesting counted on the text before parsing, brackets inside strings not counted. */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { jsonDepth } from '../../src/store/codec.js';

/** The nesting of a parsed value, for comparison. */
const depthOf = (v: unknown): number => (v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v as object).map(depthOf)) : 0);

describe('jsonDepth', () => {
  it('counts objects and arrays, not brackets inside strings or escaped quotes', () => {
    expect(jsonDepth('1')).toBe(0);
    expect(jsonDepth('{"a":[{"b":[]}]}')).toBe(4);
    expect(jsonDepth('{"a":"[[[{{{"}')).toBe(1);
    expect(jsonDepth('{"a":"\\"[[[","b":["\\\\"]}')).toBe(2);
    expect(jsonDepth(new TextEncoder().encode('{"é":["ü[",{"x":1}]}'))).toBe(3);
  });

  it('stops counting just past the limit', () => {
    expect(jsonDepth('['.repeat(100_000), 32)).toBe(33);
  });

  it('agrees with the parsed value for any JSON (fast-check)', () => {
    fc.assert(
      fc.property(fc.json({ maxDepth: 8 }), (text) => {
        expect(jsonDepth(text)).toBe(depthOf(JSON.parse(text)));
        expect(jsonDepth(new TextEncoder().encode(text))).toBe(depthOf(JSON.parse(text)));
      }),
      { numRuns: 300 },
    );
  });
});
