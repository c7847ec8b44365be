// A map kept in order of use, oldest first, for the least-recently-used caches (metadata, chunks).
//
// The usual JavaScript idiom, a Map re-inserted on every use (delete, then set), is quadratic in
// disguise: V8's ordered hash tables leave a deleted entry in its bucket's chain until the next
// rehash, so a key used over and over (the directory every create in it touches) walks a chain
// that grows with each use. Measured in a map of 10,000 entries: 11 µs per use, against 0.01 µs
// here, where a use moves a list node and leaves the Map alone.

interface Node<K, V> {
  key: K;
  value: V;
  older: Node<K, V> | undefined;
  newer: Node<K, V> | undefined;
}

export class LruMap<K, V> implements Iterable<[K, V]> {
  private readonly nodes = new Map<K, Node<K, V>>();
  private oldest: Node<K, V> | undefined;
  private newest: Node<K, V> | undefined;

  get size(): number {
    return this.nodes.size;
  }

  has(key: K): boolean {
    return this.nodes.has(key);
  }

  /** The value, without counting as a use. */
  get(key: K): V | undefined {
    return this.nodes.get(key)?.value;
  }

  /** Sets the value and makes the key the most recently used. */
  set(key: K, value: V): this {
    const node = this.nodes.get(key);
    if (node) {
      node.value = value;
      this.moveToNewest(node);
      return this;
    }
    const added: Node<K, V> = { key, value, older: this.newest, newer: undefined };
    if (this.newest) this.newest.newer = added;
    else this.oldest = added;
    this.newest = added;
    this.nodes.set(key, added);
    return this;
  }

  /** Makes the key the most recently used; false when it is not here. */
  touch(key: K): boolean {
    const node = this.nodes.get(key);
    if (!node) return false;
    this.moveToNewest(node);
    return true;
  }

  delete(key: K): boolean {
    const node = this.nodes.get(key);
    if (!node) return false;
    this.unlink(node);
    this.nodes.delete(key);
    return true;
  }

  clear(): void {
    this.nodes.clear();
    this.oldest = this.newest = undefined;
  }

  /** The least recently used entry. */
  first(): [K, V] | undefined {
    return this.oldest ? [this.oldest.key, this.oldest.value] : undefined;
  }

  /** Entries, least recently used first. Deleting the entry just visited is safe. */
  *[Symbol.iterator](): IterableIterator<[K, V]> {
    for (let node = this.oldest; node; ) {
      const next = node.newer;
      yield [node.key, node.value];
      node = next;
    }
  }

  *keys(): IterableIterator<K> {
    for (const [key] of this) yield key;
  }

  private moveToNewest(node: Node<K, V>): void {
    if (node === this.newest) return;
    this.unlink(node);
    node.older = this.newest;
    node.newer = undefined;
    this.newest!.newer = node;
    this.newest = node;
  }

  private unlink(node: Node<K, V>): void {
    if (node.older) node.older.newer = node.newer;
    else this.oldest = node.newer;
    if (node.newer) node.newer.older = node.older;
    else this.newest = node.older;
  }
}
