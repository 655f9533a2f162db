/**
 * Service actions are requests to `activeflow.service.<action_type>` (docs/architecture.md, design 6). No
 * responder, a timeout, a service error header or an `{error}` body is the action's failure.
 */
import { errors, type NatsConnection } from '@nats-io/transport-node';
import type { Effect, EffectResult } from '../../machines/index.js';
import { decodeJson, encodeJson } from '../../src/store/codec.js';

type ServiceEffect = Extract<Effect, { type: 'service_request' }>;

export async function performService(nc: NatsConnection, effect: ServiceEffect, timeoutMs: number): Promise<EffectResult> {
  try {
    const msg = await nc.request(effect.subject, encodeJson(effect.request), { timeout: timeoutMs });
    const serviceError = msg.headers?.get('Nats-Service-Error');
    if (serviceError) return { kind: 'failure', message: `${effect.subject}: ${serviceError}` };
    const reply = msg.data.length === 0 ? {} : decodeJson(msg.data);
    const error = (reply as { error?: { message?: string } | string }).error;
    if (error !== undefined) return { kind: 'failure', message: `${effect.subject}: ${typeof error === 'string' ? error : (error.message ?? JSON.stringify(error))}` };
    return { kind: 'service', reply };
  } catch (e) {
    if (e instanceof errors.NoRespondersError || (e instanceof errors.RequestError && e.isNoResponders())) return { kind: 'failure', message: `no responders on ${effect.subject}` };
    if (e instanceof errors.TimeoutError) return { kind: 'failure', message: `${effect.subject} did not answer within ${timeoutMs} ms` };
    return { kind: 'failure', message: `${effect.subject}: ${(e as Error).message}` };
  }
}
