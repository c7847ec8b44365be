// Decoded chunks by id: loaded from the volume's chunk source once, kept in a bounded
// least-recently-used cache, with concurrent loads of one chunk sharing one promise.
import type { ChunkSource } from '../content/chunk-source.js';
import type { ChunkId } from '../pool/contract.js';

export class ChunkCache {
  private readonly cached = new Map<ChunkId, Buffer>(); // Map order is recency: oldest first
  private readonly loading = new Map<ChunkId, Promise<Buffer>>();
  private bytes = 0;

  constructor(
    private readonly source: ChunkSource,
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
    const pending = this.loading.get(id);
    if (pending) {
      // It may be a prefetch still queued behind others: a reader waits for it now.
      this.source.hurry?.(id);
      return pending;
    }
    return this.load(id, 'read');
  }

  /** Starts loading a chunk that will probably be read soon; failures surface when it is read. */
  prefetch(id: ChunkId): void {
    if (!this.cached.has(id) && !this.loading.has(id)) this.load(id, 'prefetch').catch(() => undefined);
  }

  private load(id: ChunkId, urgency: 'read' | 'prefetch'): Promise<Buffer> {
    const pending = this.source.plain(id, urgency).then((plain) => {
      this.keep(id, plain);
      return plain;
    });
    this.loading.set(id, pending);
    const done = (): void => void this.loading.delete(id);
    pending.then(done, done);
    return pending;
  }

  private keep(id: ChunkId, plain: Buffer): void {
    if (this.cached.has(id)) return;
    this.cached.set(id, plain);
    this.bytes += plain.length;
    this.evict();
  }

  private evict(): void {
    for (const [id, buf] of this.cached) {
      if (this.bytes <= this.maxBytes) break;
      this.cached.delete(id);
      this.bytes -= buf.length;
    }
  }
}
