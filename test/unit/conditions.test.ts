import { describe, expect, it } from 'vitest';
import { civilTime, conditionCallDigitsHolds, conditionCallStatusHolds, conditionDatetimeHolds, conditionVariableHolds, parseFloat64 } from '../../machines/conditions.js';

describe('condition_variable (behaviour 5)', () => {
  const cv = (variable: string, condition: string, value_type: string, value: Record<string, unknown>) => conditionVariableHolds({ variable, condition, value_type, ...value });

  it.each([
    ['b', '==', 'b', true],
    ['b', '!=', 'b', false],
    ['b', '>', 'a', true],
    ['b', '>=', 'b', true],
    ['a', '<', 'b', true],
    ['a', '<=', 'a', true],
    ['ab', '>', 'a', true],
    ['', '<', 'a', true],
    ['B', '<', 'a', true], // byte order: upper case sorts first
    ['\uffff', '<', '😀', true], // UTF-8 byte order (U+FFFF < U+1F600), unlike UTF-16 unit order
  ])('string %j %s %j -> %s', (v, c, s, expected) => {
    expect(cv(v, c, 'string', { value_string: s })).toBe(expected);
  });

  it.each([
    ['10', '>', 9, true],
    ['10', '==', 10, true],
    ['1e1', '==', 10, true],
    ['-2.5', '<', -2, true],
    ['9', '>', 10, false],
    ['abc', '==', 0, false],
    ['', '==', 0, false],
    [' 1', '==', 1, false],
    ['16777217', '>', 16777216, true], // 64-bit floats (behaviour 9.8): float32 would say equal
    ['NaN', '!=', 1, true],
    ['NaN', '==', 1, false],
    ['inf', '>', 1e308, true],
  ])('number %j %s %s -> %s', (v, c, n, expected) => {
    expect(cv(v, c, 'number', { value_number: n })).toBe(expected);
  });

  it.each([
    ['abc', '==', 3, true],
    ['한', '==', 3, true],
    ['😀', '>=', 4, true],
    ['', '<', 1, true],
    ['ab', '>', 2, false],
  ])('length %j %s %s -> %s', (v, c, n, expected) => {
    expect(cv(v, c, 'length', { value_length: n })).toBe(expected);
  });

  it('an unknown condition or value type never matches', () => {
    expect(cv('a', '=~', 'string', { value_string: 'a' })).toBe(false);
    expect(cv('a', '==', 'regex', { value_string: 'a' })).toBe(false);
  });

  it('parses numbers as Go does', () => {
    expect(parseFloat64('1.5')).toBe(1.5);
    expect(parseFloat64('.5')).toBe(0.5);
    expect(parseFloat64('5.')).toBe(5);
    expect(parseFloat64('0x10')).toBeNull();
    expect(parseFloat64('1e400')).toBeNull(); // out of range
    expect(parseFloat64('-Infinity')).toBe(-Infinity);
  });
});

describe('condition_datetime (behaviour 5)', () => {
  // 2026-11-27 is a Friday (5), 10:30 UTC.
  const now = '2026-11-27T10:30:00.000000Z';
  const cd = (o: Record<string, unknown>) => conditionDatetimeHolds(o, now);

  it('reads civil time and the weekday without a clock', () => {
    expect(civilTime(now)).toEqual({ year: 2026, month: 11, day: 27, hour: 10, minute: 30, weekday: 5 });
    expect(civilTime('2000-02-29T00:00:00.000000Z').weekday).toBe(2);
    expect(civilTime('1970-01-01T00:00:00.000000Z').weekday).toBe(4);
  });

  it('weekdays: today must be listed (condition ignored); numbers stay numbers (behaviour 9.2)', () => {
    expect(cd({ weekdays: [5], hour: -1, minute: -1 })).toBe(true);
    expect(cd({ weekdays: [1, 2, 3], condition: '==', hour: -1, minute: -1 })).toBe(false);
  });

  it('each check is `option OP now`', () => {
    expect(cd({ condition: '<=', hour: 9, minute: -1 })).toBe(true); // 9 <= 10
    expect(cd({ condition: '>=', hour: 9, minute: -1 })).toBe(false); // 9 >= 10 is false
    expect(cd({ condition: '==', month: 11, day: 27, hour: 10, minute: 30 })).toBe(true);
    expect(cd({ condition: '==', month: 12, hour: -1, minute: -1 })).toBe(false);
  });

  it('month/day only when > 0; hour/minute when >= 0, so an omitted hour or minute (0) is checked', () => {
    expect(cd({ condition: '==', month: 0, day: 0, hour: 10, minute: 30 })).toBe(true);
    expect(cd({ condition: '==', hour: 10 })).toBe(false); // minute omitted = 0, and 0 != 30
    expect(cd({ condition: '==', hour: -1, minute: -1 })).toBe(true);
  });
});

describe('legacy call conditions', () => {
  it('condition_call_digits: enough digits, or the key', () => {
    expect(conditionCallDigitsHolds({ length: 3 }, { 'voipbin.call.digits': '123' })).toBe(true);
    expect(conditionCallDigitsHolds({ length: 4 }, { 'voipbin.call.digits': '123' })).toBe(false);
    expect(conditionCallDigitsHolds({ key: '#' }, { 'voipbin.call.digits': '12#' })).toBe(true);
    expect(conditionCallDigitsHolds({ key: '#' }, {})).toBe(false);
  });

  it('condition_call_status reads voipbin.call.status', () => {
    expect(conditionCallStatusHolds({ status: 'progressing' }, { 'voipbin.call.status': 'progressing' })).toBe(true);
    expect(conditionCallStatusHolds({ status: 'progressing' }, { 'voipbin.call.status': 'ringing' })).toBe(false);
  });
});
