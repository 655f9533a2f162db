/**
 * One write of a customer's running count, as a pure function: what the counter becomes, and which
 * takes it admits. RunningCount (src/quota/running-count.ts) does the reads and the revision-checked
 * writes; the cluster simulation (test/sim/cluster-sim.ts) runs this same function against its
 * simulated KV, with lost answers, crashes and other nodes' writes in between.
 */

/**
 * The counter as stored: the count, and each node's last write (its id and when), so that a node
 * whose answer was lost can tell whether that write landed (see RunningCount.write).
 */
export interface StoredCount {
  running: number;
  last?: Record<string, { id: string; at: number }>;
}

/** A node's last write is kept this long after it: nodes come and go (a pod's name is its id). */
export const LAST_WRITE_KEPT_MS = 10 * 60_000;

/** The id of this node's last write to the counter, if it is still there. */
export function lastWriteOf(stored: StoredCount | null, nodeId: string): string | undefined {
  return stored?.last?.[nodeId]?.id;
}

/**
 * The counter after `gives` slots are given back, then as many of `takes` (each with its quota) as
 * fit, in order, written by `nodeId` as write `id` at `now`; other nodes' last writes stay while
 * recent. The count never goes below zero.
 */
export function countWrite(
  stored: StoredCount | null,
  takes: readonly number[],
  gives: number,
  writer: { nodeId: string; id: string; now: number },
): { value: StoredCount; admitted: boolean[]; count: number } {
  let n = Math.max(0, (stored?.running ?? 0) - gives);
  const admitted = takes.map((limit) => {
    if (n >= limit) return false;
    n++;
    return true;
  });
  const last = Object.fromEntries(Object.entries(stored?.last ?? {}).filter(([node, w]) => node !== writer.nodeId && writer.now - w.at < LAST_WRITE_KEPT_MS));
  last[writer.nodeId] = { id: writer.id, at: writer.now };
  return { value: { running: n, last }, admitted, count: n };
}
