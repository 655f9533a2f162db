/**
 * Real HTTP for `fetch` and `webhook_send`: a timeout, a cap on the response size, http(s) only,
 * and only to the addresses the egress policy allows. Every failure is a result (`failure`), never
 * a throw: the engine decides what it means.
 */
import type { Effect, EffectResult } from '../../machines/index.js';
import { tooDeep } from '../../src/store/codec.js';
import { EgressRefused, type EgressPolicy } from './egress-policy.js';

export interface HttpLimits {
  timeoutMs: number;
  maxResponseBytes: number;
  /** Where the node may call on a customer's behalf. */
  egress: EgressPolicy;
}

type HttpEffect = Extract<Effect, { type: 'http_request' }>;

export async function performHttp(effect: HttpEffect, limits: HttpLimits): Promise<EffectResult> {
  let url: URL;
  try {
    url = new URL(effect.url);
  } catch {
    return { kind: 'failure', message: `"${effect.url}" is not a URL` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { kind: 'failure', message: `only http and https URLs are allowed, not ${url.protocol}` };
  const hasBody = effect.method !== 'GET' && effect.method !== 'HEAD';
  try {
    const response = await limits.egress.fetch(url, {
      method: effect.method,
      headers: effect.headers,
      ...(hasBody ? { body: effect.body } : {}),
      signal: AbortSignal.timeout(limits.timeoutMs),
    });
    const text = await readCapped(response, limits.maxResponseBytes);
    if (text === null) return { kind: 'failure', message: `the response is larger than ${limits.maxResponseBytes} bytes` };
    let body: unknown = text;
    try {
      // Too deep to walk safely: kept as text, so fetch reports it as an invalid action array.
      if (tooDeep(text) === null) body = text === '' ? null : JSON.parse(text);
    } catch {
      // not JSON: the engine gets the text, and fetch reports it as an invalid action array
    }
    return { kind: 'http', status: response.status, body };
  } catch (e) {
    const err = e as Error;
    if (err instanceof EgressRefused) return { kind: 'failure', message: err.message };
    if (err.name === 'TimeoutError' || err.name === 'AbortError') return { kind: 'failure', message: `no answer within ${limits.timeoutMs} ms from ${url.host}` };
    const cause = (err as { cause?: { code?: string; message?: string; errors?: { code?: string }[] } }).cause;
    const reason = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? err.message;
    return { kind: 'failure', message: `${url.host}: ${reason}` };
  }
}

async function readCapped(response: Response, maxBytes: number): Promise<string | null> {
  if (response.body === null) return '';
  const reader = response.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return new TextDecoder().decode(Buffer.concat(chunks));
}
