/**
 * A fix for the NATS client's request path (@nats-io/nats-core 3.4.0, pinned in package.json).
 *
 * Every answered request is settled by `RequestOne.cancel()`, which rejects the request's promise,
 * already resolved by then, with a new `RequestError("cancelled")`: an Error, with its stack
 * captured, built to be thrown away. A node makes two or three requests per move (its journal write
 * is a JetStream request, the reply another request's answer), and with --cpu-prof those Errors
 * were 5.6% of its CPU under load (measured when a move made two JetStream writes). Here `cancel` rejects with one shared Error instead; an unanswered request still ends
 * with its own TimeoutError or the error that ended it, which `resolver` passes in.
 *
 * The patch relies on the pinned version's internals (`timer`, `mux`, `deferred`): an upgrade must
 * run test/integration/request-settle.test.ts, which checks that answers, timeouts, no-responders
 * and closed connections still behave.
 */
import { RequestError, RequestOne } from '@nats-io/nats-core/internal';

interface Internals {
  timer?: { cancel(): void };
  mux: { cancel(r: unknown): void };
  deferred: { reject(e: unknown): void };
}

const CANCELLED = new RequestError('cancelled');
let applied = false;

export function applyRequestSettleFix(): boolean {
  if (applied) return true;
  const proto = RequestOne.prototype as unknown as { cancel(err?: Error): void };
  if (typeof proto.cancel !== 'function') return false;
  proto.cancel = function cancel(this: Internals, err?: Error): void {
    this.timer?.cancel();
    this.mux.cancel(this);
    this.deferred.reject(err ?? CANCELLED);
  };
  applied = true;
  return true;
}
