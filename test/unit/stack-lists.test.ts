/**
 * Interning of action lists (src/store/stack-lists.ts): activeflows loaded with equal lists share
 * one frozen copy, across customers, so the copy must be equal to what each one stored.
 */
import type { KV } from '@nats-io/kv';
import { describe, expect, it } from 'vitest';
import type { Action } from '../../machines/index.js';
import { contentHash } from '../../src/store/content-hash.js';
import { MIN_ACTIONS, StackLists } from '../../src/store/stack-lists.js';

const list = (text: string, n = MIN_ACTIONS): Action[] =>
  Array.from({ length: n }, (_, i) => ({
    id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`,
    next_id: '00000000-0000-0000-0000-000000000000',
    type: 'talk',
    option: { text: `${text} ${i}` },
    tm_execute: null,
  }));

describe('StackLists.intern', () => {
  const lists = new StackLists(null as unknown as KV); // interning reads nothing

  it('gives equal lists one shared, frozen copy and keeps different ones apart', () => {
    const a = lists.intern(list('hello'));
    const b = lists.intern(list('hello'));
    expect(b).toBe(a);
    expect(Object.isFrozen(a[0]!.option)).toBe(true);
    const c = lists.intern(list('hellp')); // one character apart
    expect(c).not.toBe(a);
    expect(c[0]!.option?.['text']).toBe('hellp 0');
  });

  it('leaves short lists as they are', () => {
    const short = list('x', MIN_ACTIONS - 1);
    expect(lists.intern(short)).toBe(short);
    expect(Object.isFrozen(short)).toBe(false);
  });

  it('hashes contents to 128 bits: texts one character apart differ, the same text is the same', () => {
    expect(contentHash('abc')).toMatch(/^[0-9a-f]{32}$/);
    expect(contentHash('abc')).toBe(contentHash('abc'));
    expect(contentHash('abc')).not.toBe(contentHash('abd'));
  });
});
