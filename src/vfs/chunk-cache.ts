// Decoded chunks by id: loaded from the pool and decoded on the codec workers once, kept in a
// bounded least-recently-used cache, with concurrent loads of one chunk sharing one promise.
import type { CodecPool } from '../content/codec-pool.js';
import type { ChunkId, ChunkStore } from '../pool/contract.js';

export class ChunkCache {
  private readonly cached = new Map<ChunkId, Buffer>(); // Map order is recency: oldest first
  private readonly loading = new Map<ChunkId, Promise<Buffer>>();
  private bytes = 0;

  constructor(
    private readonly chunks: ChunkStore,
    private readonly codec: CodecPool,
    private readonly maxBytes = 128 * 1024 * 1024,
  ) {}

  /** The chunk's verified plaintext; rejects with ChunkCorruptError when it fails its checks. */
  get(id: ChunkId): Promise<Buffer> {
    const hit = this.cached.get(id);
    if (hit) {
      this.cached.delete(id);
      this.cached.set(id, hit);
      return Promise.resolve(hit);
    }
    let pending = this.loading.get(id);
    if (!pending) {
      pending = this.load(id);
      this.loading.set(id, pending);
      const done = (): void => void this.loading.delete(id);
      pending.then(done, done);
    }
    return pending;
  }

  /** Starts loading a chunk that will probably be read soon; failures surface when it is read. */
  prefetch(id: ChunkId): void {
    if (!this.cached.has(id) && !this.loading.has(id)) this.get(id).catch(() => undefined);
  }

  private keep(id: ChunkId, plain: Buffer): void {
    if (this.cached.has(id)) return;
    this.cached.set(id, plain);
    this.bytes += plain.length;
    this.evict();
  }

  private async load(id: ChunkId): Promise<Buffer> {
    const plain = await this.codec.decode(id, await this.chunks.get(id));
    this.keep(id, plain);
    return plain;
  }

  private evict(): void {
    for (const [id, buf] of this.cached) {
      if (this.bytes <= this.maxBytes) break;
      this.cached.delete(id);
      this.bytes -= buf.length;
    }
  }
}
