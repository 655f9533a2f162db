/**
 * An activeflow's run as an `activeflow simulate` scenario (`activeflow export`): the flows as its
 * activeflows used them, its initial variables and limits, the recorded clock (every `now` and
 * entropy, in the order the run read them), the recorded HTTP and service responses as canned
 * ones, and its requests as steps. `activeflow simulate` on it gives the same events and final
 * state, its on_complete children's included; the journal rides along (`journal`) for
 * `activeflow replay --from-dir`. Pure: the journals in, the scenario out.
 */
import { type Action, type EngineState, MAIN, NIL } from '../../machines/index.js';
import { type JournalEntry, replayEntry } from '../store/journal-entry.js';

/** What a run needs that its journals do not say, and what could not be reproduced. */
export class ExportError extends Error {
  override readonly name = 'ExportError';
}

/** The scenario op of each engine verb (docs/simulate.md). */
const OPS: Record<string, string> = {
  next: 'next',
  execute: 'execute',
  continue: 'continue',
  stop: 'stop',
  delete: 'delete',
  forward: 'forward',
  push_actions: 'push_actions',
  add_actions: 'add_actions',
  service_stop: 'service_stop',
  variables_set: 'set_variables',
  variables_delete: 'delete_variable',
};

type Canned = Record<string, unknown>;

interface Builder {
  clock: { now: string; entropy: string }[];
  http: Record<string, Canned[]>;
  services: Record<string, Canned[]>;
  flows: Map<string, Record<string, unknown>>;
  notes: string[];
}

function pushCanned(table: Record<string, Canned[]>, key: string, value: Canned): void {
  const list = table[key] ?? [];
  list.push(value);
  table[key] = list;
}

/** A stack's actions as a scenario's flow or inline actions give them (ids kept, so nothing is generated). */
const asInput = (actions: readonly Action[]) => actions.map(({ id, next_id, type, option }) => ({ id, next_id, type, ...(option === undefined ? {} : { option }) }));

function flowOf(s: EngineState): Record<string, unknown> {
  const af = s.activeflow;
  return { id: af.flow_id, customer_id: af.customer_id, actions: asInput(af.stack_map[MAIN]!.actions), ...(af.on_complete_flow_id === NIL ? {} : { on_complete_flow_id: af.on_complete_flow_id }) };
}

/**
 * Walks one activeflow's journal: each move's clock read, its effect results (as canned
 * responses), the effects it launched (a placeholder answer, as a simulation performs those too;
 * an on_complete child: its own run, in place). `steps` collects the requests (the root's only:
 * a child runs on its own, from its execute).
 */
function walk(id: string, journals: ReadonlyMap<string, readonly JournalEntry[]>, b: Builder, steps: Record<string, unknown>[] | null): EngineState {
  const journal = journals.get(id);
  if (journal === undefined) throw new ExportError(`the journal of activeflow ${id} is missing`);
  const first = journal.find((e) => e.kind !== 'fence');
  if (first?.kind !== 'created') {
    throw new ExportError(
      `activeflow ${id}: its journal does not start at its creation (${first === undefined ? 'it is empty' : `a ${first.kind} entry`}: past the stream's retention, or stored before the journal), so its run cannot be reproduced from the start`,
    );
  }
  let state = first.state;
  b.clock.push({ now: state.activeflow.tm_create, entropy: `${id}:created` }); // ids are all given, so the creation's entropy is never read for one
  if (state.activeflow.flow_id !== NIL) b.flows.set(state.activeflow.flow_id, flowOf(state));
  let verbs = 0;
  for (const entry of journal.slice(journal.indexOf(first) + 1)) {
    if (entry.kind === 'fence') continue;
    if (entry.kind !== 'move') throw new ExportError(`activeflow ${id}: entry ${entry.n} starts its journal again (${entry.kind}); the run cannot be followed across it`);
    const input = entry.input;
    if (input.type === 'effect_result') {
      const effect = state.outbox.effects.find((e) => e.effect_id === input.effect_id);
      if (effect === undefined) throw new ExportError(`activeflow ${id}, entry ${entry.n}: the result of an effect the state before it did not ask for`);
      const r = input.result;
      if (effect.type === 'http_request')
        pushCanned(b.http, `${effect.method} ${effect.url}`, r.kind === 'http' ? { status: r.status, body: r.body } : { error: r.kind === 'failure' ? r.message : `unexpected ${r.kind} result` });
      else if (effect.type === 'service_request')
        pushCanned(b.services, effect.action_type, r.kind === 'service' ? (r.reply as Canned) : { error: r.kind === 'failure' ? r.message : `unexpected ${r.kind} result` });
      else if (effect.type === 'flow_get' && r.kind === 'flow' && r.flow !== null) b.flows.set(effect.flow_id, r.flow as Record<string, unknown>);
    } else if (steps !== null) {
      const { type, now: _n, entropy: _e, request_id: _r, client_request_id, ...fields } = input as typeof input & { client_request_id?: string };
      steps.push({ op: OPS[type]!, ...fields, ...(client_request_id === undefined ? {} : { request_id: client_request_id }) });
    } else if (verbs++ > 0 || input.type !== 'execute') {
      b.notes.push(`activeflow ${id} (an on_complete child) was asked ${input.type} at entry ${entry.n}: a simulation runs a child with its execute only, so what came after is not in the scenario`);
    }
    b.clock.push({ now: input.now, entropy: input.entropy });
    state = replayEntry(state, entry);
    // The effects it launched, in order, as the simulation launches them after the transition.
    for (const effect of state.outbox.effects) {
      if (effect.await) continue;
      if (effect.type === 'http_request') pushCanned(b.http, `${effect.method} ${effect.url}`, { status: 200 });
      else if (effect.type === 'service_request') pushCanned(b.services, effect.action_type, {});
      else if (effect.type === 'start_child') {
        if (!journals.has(effect.activeflow_id))
          b.notes.push(`the on_complete child ${effect.activeflow_id} of ${id} has no journal (not created, or gone): the simulation starts it, and it is not compared`);
        else walk(effect.activeflow_id, journals, b, null);
      }
    }
  }
  return state;
}

/** The on_complete child a journal names (its end started it), if any: what an export fetches next. */
export function childrenOf(journal: readonly JournalEntry[]): string[] {
  let state: EngineState | null = null;
  for (const e of journal) if (e.kind !== 'fence' && (state !== null || e.kind !== 'move')) state = replayEntry(state, e);
  const child = state?.activeflow.on_complete_activeflow_id;
  return child === undefined || child === NIL ? [] : [child];
}

/** The scenario of `rootId`'s run, from its journal and those of its on_complete children. */
export function exportScenario(rootId: string, journals: ReadonlyMap<string, readonly JournalEntry[]>): { scenario: Record<string, unknown>; notes: string[] } {
  const b: Builder = { clock: [], http: {}, services: {}, flows: new Map(), notes: [] };
  const steps: Record<string, unknown>[] = [];
  const start = journals.get(rootId)?.find((e) => e.kind === 'created');
  walk(rootId, journals, b, steps);
  const s0 = (start as Extract<JournalEntry, { kind: 'created' }>).state;
  const af = s0.activeflow;
  const variables = Object.fromEntries(Object.entries(s0.variables).filter(([k]) => !k.startsWith('voipbin.')));
  if (af.reference_activeflow_id !== NIL) b.notes.push(`activeflow ${rootId} is an on_complete child: its parent's variables are given as its own`);
  const scenario: Record<string, unknown> = {
    id: af.id,
    customer_id: af.customer_id,
    reference_type: af.reference_type,
    ...(af.reference_id === NIL ? {} : { reference_id: af.reference_id }),
    ...(af.flow_id === NIL ? { actions: asInput(af.stack_map[MAIN]!.actions) } : { flow: flowOf(s0) }),
    flows: [...b.flows.values()].filter((f) => f['id'] !== af.flow_id),
    variables,
    ...(af.webhook_uri === '' ? {} : { webhook_uri: af.webhook_uri }),
    ...(af.webhook_method === '' ? {} : { webhook_method: af.webhook_method }),
    now: af.tm_create,
    clock: b.clock,
    http: b.http,
    services: b.services,
    steps,
    limits: s0.limits,
  };
  return { scenario, notes: b.notes };
}
