/**
 * A Map and a Set that copy their base on the first change, for a pure fold that returns a new
 * view per event (src/cluster/ownership-core.ts). The fold used to copy all eight maps of its view
 * on every event, the 256-entry ones among them, whether the event changed them or not; with a
 * node's 256 lease renewals a second, each an event, that was about half of the 25 ms of core work
 * they cost (`npm run bench:renewals`). The base is never changed: a view handed out stays as it was.
 */
export class CowMap<K, V> implements Iterable<[K, V]> {
  private current: Map<K, V> | null = null;

  constructor(private readonly base: ReadonlyMap<K, V>) {}

  private get read(): ReadonlyMap<K, V> {
    return this.current ?? this.base;
  }

  private write(): Map<K, V> {
    this.current ??= new Map(this.base);
    return this.current;
  }

  get size(): number {
    return this.read.size;
  }
  get(key: K): V | undefined {
    return this.read.get(key);
  }
  has(key: K): boolean {
    return this.read.has(key);
  }
  set(key: K, value: V): this {
    if (this.read.get(key) !== value || !this.read.has(key)) this.write().set(key, value);
    return this;
  }
  delete(key: K): boolean {
    return this.read.has(key) ? this.write().delete(key) : false;
  }
  clear(): void {
    if (this.read.size > 0) this.write().clear();
  }
  keys(): IterableIterator<K> {
    return this.read.keys() as IterableIterator<K>;
  }
  values(): IterableIterator<V> {
    return this.read.values() as IterableIterator<V>;
  }
  entries(): IterableIterator<[K, V]> {
    return this.read.entries() as IterableIterator<[K, V]>;
  }
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** The map after the changes: the base itself when nothing changed. */
  result(): ReadonlyMap<K, V> {
    return this.read;
  }
}

export class CowSet<T> implements Iterable<T> {
  private current: Set<T> | null = null;

  constructor(private readonly base: ReadonlySet<T>) {}

  private get read(): ReadonlySet<T> {
    return this.current ?? this.base;
  }

  private write(): Set<T> {
    this.current ??= new Set(this.base);
    return this.current;
  }

  get size(): number {
    return this.read.size;
  }
  has(value: T): boolean {
    return this.read.has(value);
  }
  add(value: T): this {
    if (!this.read.has(value)) this.write().add(value);
    return this;
  }
  delete(value: T): boolean {
    return this.read.has(value) ? this.write().delete(value) : false;
  }
  clear(): void {
    if (this.read.size > 0) this.write().clear();
  }
  values(): IterableIterator<T> {
    return this.read.values() as IterableIterator<T>;
  }
  [Symbol.iterator](): IterableIterator<T> {
    return this.values();
  }

  /** The set after the changes: the base itself when nothing changed. */
  result(): ReadonlySet<T> {
    return this.read;
  }
}
