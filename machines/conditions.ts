/**
 * The comparisons of the condition_* actions (docs/behaviour.md section 5), with the
 * deliberate differences: numbers compare as 64-bit floats, weekday arrays keep their types.
 */
import type { Option, Variables } from './schema.js';
import { utf8Length } from './variables.js';

type Condition = '==' | '!=' | '>' | '>=' | '<' | '<=';

function holds(order: number, condition: unknown): boolean {
  switch (condition as Condition) {
    case '==':
      return order === 0;
    case '!=':
      return order !== 0;
    case '>':
      return order > 0;
    case '>=':
      return order >= 0;
    case '<':
      return order < 0;
    case '<=':
      return order <= 0;
    default:
      return false; // unknown condition: no match
  }
}

function compareNumbers(a: number, b: number, condition: unknown): boolean {
  // NaN is unordered: only `!=` holds, as in Go.
  if (Number.isNaN(a) || Number.isNaN(b)) return condition === '!=';
  return holds(a < b ? -1 : a > b ? 1 : 0, condition);
}

/** Byte-wise UTF-8 order equals code point order (JS's own `<` compares UTF-16 units). */
function compareCodePoints(a: string, b: string): number {
  const ia = a[Symbol.iterator]();
  const ib = b[Symbol.iterator]();
  for (;;) {
    const x = ia.next();
    const y = ib.next();
    if (x.done || y.done) return x.done && y.done ? 0 : x.done ? -1 : 1;
    const cx = x.value.codePointAt(0)!;
    const cy = y.value.codePointAt(0)!;
    if (cx !== cy) return cx < cy ? -1 : 1;
  }
}

const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
const SPECIAL = /^[+-]?(inf|infinity|nan)$/i;

/** Go's strconv.ParseFloat for decimal text; null where Go reports an error. */
export function parseFloat64(text: string): number | null {
  if (SPECIAL.test(text)) {
    if (/nan/i.test(text)) return Number.NaN;
    return text.startsWith('-') ? -Infinity : Infinity;
  }
  if (!DECIMAL.test(text)) return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : null; // out of range is an error in Go
}

const num = (v: unknown, fallback: number): number => (typeof v === 'number' ? v : fallback);
const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** condition_variable: `variable` is the option's own substituted text, compared with the value. */
export function conditionVariableHolds(option: Option): boolean {
  const value = text(option['variable']);
  const condition = option['condition'];
  switch (option['value_type']) {
    case 'string':
      return holds(compareCodePoints(value, text(option['value_string'])), condition);
    case 'number': {
      const parsed = parseFloat64(value);
      return parsed !== null && compareNumbers(parsed, num(option['value_number'], 0), condition);
    }
    case 'length':
      return compareNumbers(utf8Length(value), num(option['value_length'], 0), condition);
    default:
      return false;
  }
}

export interface CivilTime {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  /** Sunday = 0. */
  weekday: number;
}

/** Reads a `YYYY-MM-DDTHH:MM:SS...Z` timestamp without a clock or a Date object. */
export function civilTime(timestamp: string): CivilTime {
  const year = Number(timestamp.slice(0, 4));
  const month = Number(timestamp.slice(5, 7));
  const day = Number(timestamp.slice(8, 10));
  const hour = Number(timestamp.slice(11, 13));
  const minute = Number(timestamp.slice(14, 16));
  // Howard Hinnant's days_from_civil; 1970-01-01 was a Thursday (4).
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400;
  const doy = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1;
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy;
  const days = era * 146097 + doe - 719468;
  const weekday = (((days + 4) % 7) + 7) % 7;
  return { year, month, day, hour, minute, weekday };
}

/**
 * condition_datetime: each check is `option OP now`. Month and day are checked when > 0, hour and
 * minute when >= 0, so an omitted hour or minute (0) is checked, as in VoIPBIN: use -1 as wildcard.
 */
export function conditionDatetimeHolds(option: Option, now: string): boolean {
  const t = civilTime(now);
  const condition = option['condition'];
  const weekdays = Array.isArray(option['weekdays']) ? option['weekdays'] : [];
  if (weekdays.length > 0 && !weekdays.some((w) => w === t.weekday)) return false;
  const month = num(option['month'], 0);
  if (month > 0 && !compareNumbers(month, t.month, condition)) return false;
  const day = num(option['day'], 0);
  if (day > 0 && !compareNumbers(day, t.day, condition)) return false;
  const hour = num(option['hour'], 0);
  if (hour >= 0 && !compareNumbers(hour, t.hour, condition)) return false;
  const minute = num(option['minute'], 0);
  if (minute >= 0 && !compareNumbers(minute, t.minute, condition)) return false;
  return true;
}

/** condition_call_digits (legacy): enough digits, or the key among them. */
export function conditionCallDigitsHolds(option: Option, variables: Variables): boolean {
  const digits = variables['voipbin.call.digits'] ?? '';
  const length = num(option['length'], 0);
  if (length !== 0 && utf8Length(digits) >= length) return true;
  const key = text(option['key']);
  return key !== '' && digits.includes(key);
}

/** condition_call_status (legacy): the call service keeps `voipbin.call.status` current. */
export function conditionCallStatusHolds(option: Option, variables: Variables): boolean {
  return (variables['voipbin.call.status'] ?? '') === text(option['status']);
}
