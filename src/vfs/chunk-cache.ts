// Decoded chunks by id: loaded from the volume's chunk source once, kept in a bounded
// least-recently-used cache, with concurrent loads of one chunk sharing one promise.
//
// Readers hold what they use: a chunk's memory goes back to its source for reuse once it has left
// the cache and the last reader holding it has released it (until then a reply still being built
// from it, or being sent, would read another chunk's bytes).
import type { ChunkSource } from '../content/chunk-source.js';
import { LruMap } from '../lru.js';
import type { ChunkId } from '../pool/contract.js';

/** A chunk's plaintext, valid until release() (called once). */
export interface HeldChunk {
  readonly bytes: Buffer;
  release(): void;
}

class Entry implements HeldChunk {
  holds = 0;
  /** Out of the cache: its memory goes back at the last release. */
  evicted = false;

  constructor(
    readonly bytes: Buffer,
    private readonly source: ChunkSource,
  ) {}

  release(): void {
    if (this.holds <= 0) throw new Error('chunk released more often than held');
    if (--this.holds === 0 && this.evicted) this.source.release?.(this.bytes);
  }
}

interface Load {
  done: Promise<Entry>;
  /** Readers waiting for it: each holds the chunk once it is there. */
  readers: number;
}

export class ChunkCache {
  private readonly cached = new LruMap<ChunkId, Entry>(); // oldest use first
  private readonly loading = new Map<ChunkId, Load>();
  private bytes = 0;

  constructor(
    private readonly source: ChunkSource,
    private readonly maxBytes = 128 * 1024 * 1024,
  ) {}

  /** The chunk's verified plaintext, held until its release(); rejects with ChunkCorruptError
   * when it fails its checks. */
  hold(id: ChunkId): Promise<HeldChunk> {
    const hit = this.cached.get(id);
    if (hit) {
      this.cached.touch(id);
      hit.holds++;
      return Promise.resolve(hit);
    }
    let load = this.loading.get(id);
    // It may be a prefetch still queued behind others: a reader waits for it now.
    if (load) this.source.hurry?.(id);
    else load = this.load(id, 'read');
    // Counted now, held as it lands (before anything else can evict it).
    load.readers++;
    return load.done;
  }

  /** Starts loading a chunk that will probably be read soon; failures surface when it is read. */
  prefetch(id: ChunkId): void {
    if (!this.cached.has(id) && !this.loading.has(id)) this.load(id, 'prefetch').done.catch(() => undefined);
  }

  private load(id: ChunkId, urgency: 'read' | 'prefetch'): Load {
    const load: Load = {
      readers: 0,
      done: this.source.plain(id, urgency).then(
        (plain) => {
          this.loading.delete(id);
          const entry = new Entry(plain, this.source);
          entry.holds = load.readers;
          this.keep(id, entry);
          return entry;
        },
        (err: unknown) => {
          this.loading.delete(id);
          throw err;
        },
      ),
    };
    this.loading.set(id, load);
    return load;
  }

  /** (Never a chunk already cached: only chunks neither cached nor loading are loaded.) */
  private keep(id: ChunkId, entry: Entry): void {
    this.cached.set(id, entry);
    this.bytes += entry.bytes.length;
    for (const [oldest, e] of this.cached) {
      if (this.bytes <= this.maxBytes) break;
      this.drop(oldest, e);
    }
  }

  private drop(id: ChunkId, entry: Entry): void {
    this.cached.delete(id);
    this.bytes -= entry.bytes.length;
    entry.evicted = true;
    if (entry.holds === 0) this.source.release?.(entry.bytes);
  }
}
