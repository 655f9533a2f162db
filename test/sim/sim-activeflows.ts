/**
 * The activeflows the cluster simulation runs: real ones, created by the real actor from a create
 * request, moved by `next` as a call service moves them. Activeflow `af` belongs to customer
 * `af % CUSTOMERS`, lives in shard `af % SHARDS` (its id is chosen so that the runtime's own shard
 * function agrees), and its flow holds one `talk` per move; a move may first run a `webhook_send`
 * that waits for its answer (an awaited effect: the cycle is stored, the effect performed, its
 * result stored, then the reply). Two activeflows in three end with their last move (a `stop`);
 * the others run on.
 */
import { type ActionInput, type CreateRequest, type EngineState, START } from '../../machines/index.js';
import { shardOf } from '../../src/nats/shard-mapping.js';

export const ACTIVEFLOWS = 10;
export const SHARDS = 8;
export const MOVES = 16;
export const CUSTOMERS = 2;

export const customerOf = (af: number): number => af % CUSTOMERS;
/** Two activeflows in three end with their last move; the rest run on past the run. */
export const ends = (af: number): boolean => af % 3 !== 0;

const uuid = (kind: number, a: number, b: number): string => `${kind.toString(16).padStart(8, '0')}-${a.toString(16).padStart(4, '0')}-4000-8000-${b.toString(16).padStart(12, '0')}`;

export const customerId = (c: number): string => uuid(0xc, 0, c);

/** The activeflow ids, each in shard `af % SHARDS` by the runtime's shard function. */
const IDS: readonly string[] = Array.from({ length: ACTIVEFLOWS }, (_, af) => {
  for (let salt = 0; ; salt++) {
    const id = uuid(0xaf, af, salt);
    if (shardOf(id, SHARDS) === af % SHARDS) return id;
  }
});
const AF_OF = new Map(IDS.map((id, af) => [id, af]));

export const idOf = (af: number): string => IDS[af]!;
export const afOf = (id: string): number => {
  const af = AF_OF.get(id);
  if (af === undefined) throw new Error(`not an activeflow of the simulation: ${id}`);
  return af;
};

/** An activeflow's flow, drawn once per run: which moves wait for a webhook's answer. */
export class SimFlow {
  /** Moves done when the cursor is on each action (a move ends on its talk). */
  private readonly movesAt = new Map<string, number>([[START, 0]]);
  readonly actions: ActionInput[] = [];

  constructor(
    readonly af: number,
    awaits: (move: number) => boolean,
  ) {
    let n = 0;
    const push = (type: string, done: number, option?: Record<string, unknown>) => {
      const id = uuid(0xac, af, ++n);
      this.actions.push({ id, type, ...(option === undefined ? {} : { option }) } as ActionInput);
      this.movesAt.set(id, done);
    };
    for (let move = 1; move <= MOVES + 1; move++) {
      if (move > MOVES && ends(af)) break;
      if (move <= MOVES && awaits(move)) push('webhook_send', move - 1, { uri: `http://hooks.sim/${af}/${move}`, sync: true, data: `${move}` });
      if (move === MOVES && ends(af)) push('stop', move);
      else push('talk', move, { text: `move ${move}` });
    }
  }

  create(): CreateRequest {
    return { id: idOf(this.af), customer_id: customerId(customerOf(this.af)), actions: this.actions, reference_type: 'call', reference_id: uuid(0xca, this.af, 0) } as CreateRequest;
  }

  /** The moves an activeflow has made, by where its cursor is (an ended one made them all). */
  moves(status: 'running' | 'ended', actionId: string): number {
    if (status === 'ended') return MOVES;
    const done = this.movesAt.get(actionId);
    if (done === undefined) throw new Error(`activeflow ${this.af}: its cursor is on ${actionId}, not an action of its flow`);
    return done;
  }

  movesOf(state: EngineState): number {
    return this.moves(state.activeflow.status, state.activeflow.current_action.id);
  }

  /** The action a caller moves from for `move` (the one the move before answered). */
  from(move: number): string {
    if (move === 1) return START;
    for (const [id, done] of this.movesAt) if (done === move - 1 && this.actions.find((a) => a.id === id)?.type === 'talk') return id;
    throw new Error(`activeflow ${this.af} has no talk for move ${move - 1}`);
  }
}
