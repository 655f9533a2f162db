/**
 * An activeflow's state read by whoever does not host it (src/store/current-state.ts): its
 * checkpoint and the journal entries after it, equal to what its owner answers, where the
 * checkpoint alone is behind.
 */
import { describe, expect, it } from 'vitest';
import { currentState } from '../../src/store/current-state.js';
import { HistoryChunks } from '../../src/store/history-chunks.js';
import { Journal } from '../../src/store/journal.js';
import { SnapshotStore } from '../../src/store/snapshot-store.js';
import { StackLists } from '../../src/store/stack-lists.js';
import { CUSTOMER } from '../helpers/engine.js';
import { openStoresFor, SHARDS, useNode } from '../helpers/nats.js';

const env = useNode();

async function reader() {
  const { nc, storage } = await openStoresFor(env.server);
  const store = new SnapshotStore(storage.running, storage.ended, SHARDS, { kv: storage.history, history: new HistoryChunks(storage.history), stacks: new StackLists(storage.history) });
  return { nc, store, read: (id: string) => currentState(store, new Journal(storage.js, storage.jsm), id) };
}

describe('the current state of an activeflow, read from its store', () => {
  it('is its checkpoint and the entries after it: what its owner answers, running and ended', async () => {
    const { nc, store, read } = await reader();
    try {
      // 40 executed actions: its history is stored in chunks too (32 a chunk)
      const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: Array.from({ length: 50 }, (_, i) => ({ type: 'talk', option: { text: `t${i}` } })) });
      let current = af.current_action.id;
      for (let m = 0; m < 40; m++) current = (await env.client.next(af.id, current)).id;
      await env.client.setVariables(af.id, { color: 'blue' });
      const owner = await env.client.get(af.id);
      const state = await read(af.id);
      expect(state!.activeflow).toEqual(owner);
      expect(state!.variables).toEqual((await env.client.variables(af.id)).variables);
      // the checkpoint alone is behind (taken every CHECKPOINT_EVERY entries): this test tells them apart
      const checkpoint = await store.load(af.id);
      expect(checkpoint!.state.activeflow.execute_count).toBeLessThan(owner.execute_count);
      expect(checkpoint!.state.variables['color']).toBeUndefined();

      const stopped = await env.client.stop(af.id);
      expect((await read(af.id))!.activeflow).toEqual(stopped);
      expect(await read('00000000-0000-4000-8000-00000000abcd')).toBeNull();
    } finally {
      await nc.close();
    }
  });

  it('an activeflow created with nothing moved since is its first checkpoint', async () => {
    const { nc, read } = await reader();
    try {
      const af = await env.client.createActiveflow({ customer_id: CUSTOMER, reference_type: 'call', actions: [{ type: 'talk' }] });
      expect((await read(af.id))!.activeflow).toEqual(await env.client.get(af.id));
    } finally {
      await nc.close();
    }
  });
});
