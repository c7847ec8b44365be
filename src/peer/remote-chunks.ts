// The chunk source of a volume attached from a peer (content/chunk-source.ts): a chunk is read
// from the cache of fetched chunks, else from the pool when this store holds it (a Real file's),
// else fetched from the peers (chunk-fetcher.ts). The pool is asked only for chunks it is known to
// hold (a miss costs it a lookup on every disk), or when that is not known yet, or as a last
// resort when no peer can serve the chunk (a chunk a file of this store's own volumes shares).
// The chunk is protected in the cache while it is being read, and a cached copy that fails its
// check is dropped and fetched again. A fetched chunk's plaintext is memory the fetcher lent: it
// goes back when the reader releases it.
import type { ChunkSource, Urgency } from '../content/chunk-source.js';
import type { CodecPool } from '../content/codec-pool.js';
import type { Logger } from '../log.js';
import { ChunkNotFoundError, type ChunkId, type ChunkStore } from '../pool/contract.js';
import type { RemoteCache } from '../pool/remote-cache.js';
import type { ChunkFetcher, FetchSource } from './chunk-fetcher.js';

export class RemoteChunks implements ChunkSource {
  constructor(
    private readonly pool: ChunkStore,
    private readonly codec: CodecPool,
    private readonly cache: RemoteCache,
    private readonly fetcher: ChunkFetcher,
    /** The peers that may hold the volume's chunks, as of now. */
    private readonly sources: () => FetchSource[],
    /** Whether the pool holds a chunk (undefined: not known yet). */
    private readonly poolHolds: (id: ChunkId) => boolean | undefined,
    private readonly log: Logger,
  ) {}

  async plain(id: ChunkId, urgency: Urgency): Promise<Buffer> {
    const release = this.cache.protect(id);
    try {
      const cached = await this.cached(id);
      if (cached) return cached;
      const inPool = this.poolHolds(id) !== false;
      const pooled = inPool ? await this.pooled(id) : undefined;
      if (pooled) return pooled;
      try {
        const { plain, stored } = await this.fetcher.fetchChunk(id, this.sources, urgency);
        // A compressed chunk's plaintext is new memory: the stored bytes are done with.
        if (plain.buffer !== stored.buffer) this.fetcher.memory.giveBack(stored);
        return plain;
      } catch (err) {
        if (inPool || (err as Error).name !== 'ChunkUnavailableError') throw err;
        const last = await this.pooled(id);
        if (last) return last;
        throw err;
      }
    } finally {
      release();
    }
  }

  hurry(id: ChunkId): void {
    this.fetcher.hurry(id);
  }

  release(plain: Buffer): void {
    this.fetcher.memory.giveBack(plain);
  }

  private async cached(id: ChunkId): Promise<Buffer | undefined> {
    if (!this.cache.has(id)) return undefined;
    const stored = await this.cache.get(id);
    if (!stored) return undefined;
    try {
      return await this.codec.decode(id, stored);
    } catch (err) {
      if ((err as Error).name !== 'ChunkCorruptError') throw err;
      this.log.warn({ chunk: id, err: (err as Error).message }, 'a cached chunk fails its check: dropped, fetched again');
      await this.cache.drop(id);
      return undefined;
    }
  }

  private async pooled(id: ChunkId): Promise<Buffer | undefined> {
    let stored: Buffer;
    try {
      stored = await this.pool.get(id);
    } catch (err) {
      if (err instanceof ChunkNotFoundError) return undefined;
      throw err;
    }
    return this.codec.decode(id, stored);
  }
}
