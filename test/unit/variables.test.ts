import { describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, Limits } from '../../machines/index.js';
import { builtinVariables, completeCountOf, sanitizeInitialVariables, setVariables, substitute, substituteOption, utf8Length } from '../../machines/variables.js';

describe('substitution (behaviour 6)', () => {
  const vars = { a: 'A', 'voipbin.call.digits': '12', ' a ': 'spaced', '': 'empty-key', x: '${a}', '${a': 'weird' };
  it.each([
    ['${a}', 'A'],
    ['x${a}y${a}z', 'xAyAz'],
    ['${voipbin.call.digits}', '12'],
    ['${unknown}', ''],
    ['${ a }', 'spaced'], // no trimming
    ['${}', 'empty-key'], // the empty key is looked up
    ['$a', '$a'],
    ['${a', '${a'],
    ['{{a}}', '{{a}}'],
    ['${a}}', 'A}'],
    ['${${a}}', 'weird}'], // the shortest match: name "${a"
    ['${x}', '${a}'], // one pass, no recursion
    ['${a\nb}', '${a\nb}'], // never across a newline
    ['${a}\n${a}', 'A\nA'],
  ])('%j -> %j', (input, expected) => {
    expect(substitute(input, vars)).toBe(expected);
  });

  it('does not read inherited object properties as variables', () => {
    expect(substitute('${constructor}${toString}', {})).toBe('');
  });

  it('substitutes options recursively; keys never; scalars keep their JSON types, in arrays too', () => {
    const option = {
      text: 'hi ${a}',
      '${a}': 'key stays',
      n: 5,
      b: true,
      z: null,
      nested: { deep: ['${a}', 1, 1.5, false, null, { t: '${a}' }, ['${a}', 2]] },
      weekdays: [1, 2, 3],
    };
    expect(substituteOption(option, vars)).toEqual({
      text: 'hi A',
      '${a}': 'key stays',
      n: 5,
      b: true,
      z: null,
      nested: { deep: ['A', 1, 1.5, false, null, { t: 'A' }, ['A', 2]] },
      weekdays: [1, 2, 3],
    });
  });

  it('counts UTF-8 bytes', () => {
    expect(utf8Length('abc')).toBe(3);
    expect(utf8Length('é')).toBe(2);
    expect(utf8Length('한')).toBe(3);
    expect(utf8Length('😀')).toBe(4);
  });
});

describe('initial variables (behaviour 3)', () => {
  it('trims keys and drops empty and voipbin. keys, case-insensitively', () => {
    const r = sanitizeInitialVariables({ ' k ': 'v', '': 'x', '   ': 'y', 'voipbin.call.id': 'forged', 'VoIPBIN.activeflow.id': 'forged', voipbinx: 'ok' }, DEFAULT_LIMITS);
    expect(r).toEqual({ ok: true, variables: { k: 'v', voipbinx: 'ok' } });
  });

  it('rejects more than 100 keys', () => {
    const many = Object.fromEntries(Array.from({ length: 101 }, (_, i) => [`k${i}`, 'v']));
    const r = sanitizeInitialVariables(many, DEFAULT_LIMITS);
    expect(r.ok).toBe(false);
    expect(!r.ok && r.message).toMatch(/101 keys.*100/);
    const hundred = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, 'v']));
    expect(sanitizeInitialVariables(hundred, DEFAULT_LIMITS).ok).toBe(true);
  });

  it('rejects a value over 32 KiB and more than 64 KiB in all', () => {
    expect(sanitizeInitialVariables({ k: 'x'.repeat(32 * 1024) }, DEFAULT_LIMITS).ok).toBe(true);
    const big = sanitizeInitialVariables({ k: 'x'.repeat(32 * 1024 + 1) }, DEFAULT_LIMITS);
    expect(!big.ok && big.message).toMatch(/variables\.k: value is 32769 bytes/);
    const multi = sanitizeInitialVariables({ a: 'x'.repeat(30000), b: 'x'.repeat(30000), c: 'x'.repeat(6000) }, DEFAULT_LIMITS);
    expect(!multi.ok && multi.message).toMatch(/66003 bytes.*65536/);
  });

  it('writes the built-ins with NIL for missing ids', () => {
    expect(builtinVariables({ id: 'i', reference_type: '', reference_id: '', reference_activeflow_id: '', flow_id: '' }, 0)).toEqual({
      'voipbin.activeflow.id': 'i',
      'voipbin.activeflow.reference_type': '',
      'voipbin.activeflow.reference_id': '00000000-0000-0000-0000-000000000000',
      'voipbin.activeflow.reference_activeflow_id': '00000000-0000-0000-0000-000000000000',
      'voipbin.activeflow.flow_id': '00000000-0000-0000-0000-000000000000',
      'voipbin.activeflow.complete_count': '0',
    });
  });

  it('reads complete_count as Go %d does', () => {
    expect(completeCountOf({ 'voipbin.activeflow.complete_count': '3' })).toBe(3);
    expect(completeCountOf({ 'voipbin.activeflow.complete_count': '2.1' })).toBe(2);
    expect(completeCountOf({})).toBe(0);
  });
});

describe('setting variables (behaviour 6)', () => {
  it('substitutes each value against the variables as they are being updated, in order', () => {
    const r = setVariables({ a: '1' }, { b: '${a}+', c: '${b}${b}', a: 'new', d: '${a}' }, DEFAULT_LIMITS);
    expect(r).toEqual({ ok: true, variables: { a: 'new', b: '1+', c: '1+1+', d: 'new' } });
  });

  it('refuses a value or a total over the limits and changes nothing', () => {
    const limits = Limits.parse({ max_variable_value_bytes: 4, max_variables_bytes: 10 });
    expect(setVariables({}, { k: '12345' }, limits).ok).toBe(false);
    expect(setVariables({ a: '1234' }, { b: '1234' }, limits).ok).toBe(true); // 10 bytes
    expect(setVariables({ a: '1234' }, { bb: '1234' }, limits).ok).toBe(false); // 11 bytes
  });
});
