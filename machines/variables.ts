/**
 * Variables and `${name}` substitution (docs/behaviour.md section 6).
 */
import { NIL } from './constants.js';
import type { Limits } from './limits.js';
import type { Option, Variables } from './schema.js';

/** `${name}`: the shortest name up to the first `}`, never across a newline (Go's `\${(.*?)}`). */
const TEMPLATE = /\$\{([^}\n]*)\}/g;

/** Every `${name}` becomes the value of the exact key `name`; unknown names become `""`. One pass. */
export function substitute(text: string, variables: Variables): string {
  if (!text.includes('${')) return text;
  return text.replace(TEMPLATE, (_m, name: string) => (Object.hasOwn(variables, name) ? variables[name]! : ''));
}

function substituteValue(value: unknown, variables: Variables): unknown {
  if (typeof value === 'string') return substitute(value, variables);
  if (Array.isArray(value)) return value.map((v) => substituteValue(v, variables));
  if (value !== null && typeof value === 'object') return substituteOption(value as Option, variables);
  // Numbers, booleans and null keep their JSON type, in arrays too (behaviour section 9.2).
  return value;
}

/** Substitutes every string inside an option, recursively; keys are never substituted. */
export function substituteOption(option: Option, variables: Variables): Option {
  const out: Option = {};
  for (const key of Object.keys(option)) out[key] = substituteValue(option[key], variables);
  return out;
}

/** Byte length in UTF-8, counted without an encoder so the core stays free of platform APIs. */
export function utf8Length(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x80) bytes += 1;
    else if (c < 0x800) bytes += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < text.length) {
      const d = text.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        bytes += 4;
        i++;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

export function variablesBytes(variables: Variables): number {
  let total = 0;
  for (const key of Object.keys(variables)) total += utf8Length(key) + utf8Length(variables[key]!);
  return total;
}

/**
 * A refusal names the per-customer quota it hit (src/quota), so callers get `limit_exceeded` with
 * it; a malformed key is not a quota.
 */
export type VariablesResult = { ok: true; variables: Variables } | { ok: false; message: string; quota?: VariableQuota };
export type VariableQuota = 'variable_keys' | 'variable_value_bytes' | 'injected_variables_bytes' | 'variables_bytes';

const isReservedKey = (key: string): boolean => key.toLowerCase().startsWith('voipbin.');

/**
 * The caller's variables at creation: keys trimmed; empty keys and `voipbin.` keys dropped (the
 * built-ins cannot be forged); too many keys or too many bytes is an error, never a silent drop.
 */
export function sanitizeInitialVariables(input: Variables, limits: Limits): VariablesResult {
  const out: Variables = {};
  for (const rawKey of Object.keys(input)) {
    const key = rawKey.trim();
    if (key === '' || isReservedKey(key)) continue;
    out[key] = input[rawKey]!;
  }
  const keys = Object.keys(out);
  if (keys.length > limits.max_variable_keys) {
    return { ok: false, quota: 'variable_keys', message: `variables: ${keys.length} keys given, at most ${limits.max_variable_keys} are allowed (quota variable_keys)` };
  }
  for (const key of keys) {
    const size = utf8Length(out[key]!);
    if (size > limits.max_variable_value_bytes) {
      return { ok: false, quota: 'variable_value_bytes', message: `variables.${key}: value is ${size} bytes, at most ${limits.max_variable_value_bytes} are allowed (quota variable_value_bytes)` };
    }
  }
  const total = variablesBytes(out);
  if (total > limits.max_injected_variables_bytes) {
    return {
      ok: false,
      quota: 'injected_variables_bytes',
      message: `variables: ${total} bytes of keys and values, at most ${limits.max_injected_variables_bytes} are allowed (quota injected_variables_bytes)`,
    };
  }
  return { ok: true, variables: out };
}

export interface BuiltinSource {
  id: string;
  reference_type: string;
  reference_id: string;
  reference_activeflow_id: string;
  flow_id: string;
}

/** The built-ins, always written last so that no caller can forge them. */
export function builtinVariables(af: BuiltinSource, completeCount: number): Variables {
  return {
    'voipbin.activeflow.id': af.id,
    'voipbin.activeflow.reference_type': af.reference_type,
    'voipbin.activeflow.reference_id': af.reference_id || NIL,
    'voipbin.activeflow.reference_activeflow_id': af.reference_activeflow_id || NIL,
    'voipbin.activeflow.flow_id': af.flow_id || NIL,
    'voipbin.activeflow.complete_count': String(completeCount),
  };
}

/** The parent's `complete_count`, read as Go's `%d` scan does (`"2.1"` is 2); 0 when unreadable. */
export function completeCountOf(variables: Variables): number {
  const raw = variables['voipbin.activeflow.complete_count'] ?? '';
  const m = /^\s*([+-]?\d+)/.exec(raw);
  return m ? Number.parseInt(m[1]!, 10) : 0;
}

/**
 * Sets variables in order; each value is substituted against the variables as they are being
 * updated, so a later pair sees an earlier pair's new value (JSON object order is deterministic).
 */
export function setVariables(variables: Variables, updates: Variables, limits: Limits): VariablesResult {
  const out: Variables = { ...variables };
  for (const rawKey of Object.keys(updates)) {
    const key = rawKey.trim();
    if (key === '') return { ok: false, message: 'variables: a key is empty' };
    const value = substitute(updates[rawKey]!, out);
    const size = utf8Length(value);
    if (size > limits.max_variable_value_bytes) {
      return { ok: false, quota: 'variable_value_bytes', message: `variables.${key}: value is ${size} bytes, at most ${limits.max_variable_value_bytes} are allowed (quota variable_value_bytes)` };
    }
    out[key] = value;
  }
  const total = variablesBytes(out);
  if (total > limits.max_variables_bytes) {
    return { ok: false, quota: 'variables_bytes', message: `variables: would hold ${total} bytes of keys and values, at most ${limits.max_variables_bytes} are allowed (quota variables_bytes)` };
  }
  return { ok: true, variables: out };
}
