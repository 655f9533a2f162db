/** Performs the effects the engine asks for, over NATS and HTTP (docs/architecture.md, design 5 and 6). */
import type { NatsConnection } from '@nats-io/transport-node';
import { performHttp, performService, type EffectRunner, type HttpLimits } from '../../actors/index.js';
import { childCreateRequest, type Effect, type EffectResult } from '../../machines/index.js';
import type { ActiveflowClient } from '../api/client.js';
import { SUBJECTS } from '../api/subjects.js';
import type { ActiveflowError } from '../errors.js';
import type { Logger } from '../log.js';
import { encodeJson } from '../store/codec.js';
import type { FlowStore } from '../store/flow-store.js';

export class NatsEffectRunner implements EffectRunner {
  constructor(
    private readonly nc: NatsConnection,
    private readonly client: ActiveflowClient,
    private readonly flows: FlowStore,
    private readonly http: HttpLimits,
    private readonly serviceTimeoutMs: number,
    private readonly log: Logger,
  ) {}

  async perform(effect: Effect): Promise<EffectResult> {
    switch (effect.type) {
      case 'http_request':
        return performHttp(effect, this.http);
      case 'service_request':
        return performService(this.nc, effect, this.serviceTimeoutMs);
      case 'flow_get': {
        try {
          const found = await this.flows.get(effect.flow_id, effect.customer_id);
          return { kind: 'flow', flow: found?.flow ?? null };
        } catch (e) {
          return { kind: 'failure', message: `flow ${effect.flow_id} could not be read: ${(e as Error).message}` };
        }
      }
      case 'start_child':
      case 'reference_action_next':
        return { kind: 'failure', message: `${effect.type} is not awaited` };
    }
  }

  async startChild(effect: Extract<Effect, { type: 'start_child' }>, parent?: Logger): Promise<void> {
    const log = (parent ?? this.log.child({ activeflow_id: effect.reference_activeflow_id })).child({ child_id: effect.activeflow_id });
    try {
      await this.client.createActiveflow(childCreateRequest(effect));
    } catch (e) {
      const code = (e as ActiveflowError).code;
      const quota = (e as ActiveflowError).quota;
      if (code === 'not_found' || (code === 'limit_exceeded' && quota !== 'pending_requests')) {
        // The on_complete flow is gone, or the customer is at a quota (its running activeflows, or
        // the child's variables): this child is not started. Logged, not retried, so the parent's
        // end completes. A full queue (pending_requests) is a moment's wait: retried.
        log.warn({ event: 'on_complete_not_started', reason: (e as Error).message, ...(quota === undefined ? {} : { quota }) });
        return;
      }
      if (code !== 'conflict') throw e; // conflict: a repeated start, the child exists already
    }
    try {
      await this.client.execute(effect.activeflow_id);
    } catch (e) {
      if (!['conflict', 'ended'].includes((e as ActiveflowError).code)) throw e; // already started, or over
    }
    log.info({ event: 'on_complete_started' });
  }

  launch(effect: Effect, activeflowId: string, parent?: Logger): void {
    const log = (parent ?? this.log.child({ activeflow_id: activeflowId })).child({ effect_type: effect.type });
    const run = async (): Promise<void> => {
      switch (effect.type) {
        case 'http_request':
        case 'service_request': {
          const result = await this.perform(effect);
          if (result.kind === 'failure') log.warn({ event: 'effect_failed', reason: result.message });
          return;
        }
        case 'start_child':
          await this.startChild(effect, log);
          return;
        case 'reference_action_next':
          this.nc.publish(
            SUBJECTS.referenceActionNext,
            encodeJson({
              activeflow_id: effect.activeflow_id,
              reference_type: effect.reference_type,
              reference_id: effect.reference_id,
              force: true,
            }),
          );
          return;
        case 'flow_get':
          return;
      }
    };
    run().catch((e: unknown) => log.error({ event: 'effect_failed', err: e }, 'a fire-and-forget effect failed'));
  }
}
