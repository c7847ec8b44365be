// Real and Unreal files of attached volumes. A Real file (orbit pin, or the user.orbit.pin
// attribute, on it or on a directory above it) is kept complete in the pool: its chunks are
// fetched in the background (the fetch scheduler's 'fill', behind every read), stored in the pool
// and never evicted; it stays readable with every peer offline. An Unreal file's chunks live in
// the bounded cache: when a file is unpinned, the chunks only it kept move from the pool to the
// cache (evictable from then on), unless a file of this store's own volumes or a Real file holds
// them too.
//
// The daemon runs a round at start, when marks or an index change, and every ROUND_MS (a round
// that found nothing to do costs a few queries). Rounds never overlap; one asked for during a round
// runs after it. Progress per volume is what `orbit status` shows.
import type { CodecPool } from '../content/codec-pool.js';
import { forEachLimited } from '../limited.js';
import type { Logger } from '../log.js';
import type { ChunkHolding } from '../meta/contract.js';
import { ChunkNotFoundError, type ChunkId } from '../pool/contract.js';
import type { RemoteCache } from '../pool/remote-cache.js';
import type { Store } from '../store/store.js';
import type { ChunkFetcher, FetchSource } from './chunk-fetcher.js';

const ROUND_MS = 15_000;
/** Chunks fetched and stored at once by a round. */
const FILLS_IN_FLIGHT = 4;

/** What `orbit status` shows of an attached volume. */
export interface Realness {
  volume: string;
  /** Bytes of its files whose chunks are in the pool, in the cache, and only on peers. */
  realBytes: number;
  cachedBytes: number;
  remoteBytes: number;
  /** Of its Real files: bytes in all, and bytes stored here already. */
  pinnedBytes: number;
  pinnedRealBytes: number;
  /** Chunks of Real files that could not be fetched in the last round. */
  failed: number;
}

export class RealFiles {
  private round: Promise<void> | undefined;
  private again = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly failed = new Map<string, number>();
  /** Chunks of attached volumes that the pool holds, as of the last round and what it did since
   * (undefined before the first round ends). */
  private storedHere: Set<ChunkId> | undefined;
  private stopped = false;

  constructor(
    private readonly store: Store,
    private readonly codec: CodecPool,
    private readonly cache: RemoteCache,
    private readonly fetcher: ChunkFetcher,
    private readonly sourcesFor: (origin: { peer: string; volume: string }) => FetchSource[],
    private readonly log: Logger,
  ) {}

  start(): void {
    this.kick();
    this.timer = setInterval(() => this.kick(), ROUND_MS);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    await this.round;
  }

  /** Asks for a round (marks or an index changed); resolves when one that began after this ends. */
  kick(): Promise<void> {
    if (this.round) {
      this.again = true;
      return this.round;
    }
    this.round = (async () => {
      try {
        do {
          this.again = false;
          await this.reconcile();
        } while (this.again && !this.stopped);
      } catch (err) {
        this.log.warn({ err }, 'keeping Real files complete failed; trying again later');
      } finally {
        this.round = undefined;
      }
    })();
    return this.round;
  }

  /** Whether the pool holds a chunk of an attached volume: true, false, or undefined when not
   * known yet (before the first round). Spares a read the pool's lookups for a chunk it lacks. */
  holds(id: ChunkId): boolean | undefined {
    return this.storedHere?.has(id);
  }

  /** Each attached volume: bytes Real, cached and only remote, and how far its Real files are. */
  async realness(): Promise<Realness[]> {
    return realnessOf(this.store, (id) => this.cache.has(id), this.failed);
  }

  private async reconcile(): Promise<void> {
    const attached = (await this.store.meta.volumes()).filter((v) => v.origin);
    const real = new Set<ChunkId>();
    for (const v of attached) {
      const chunks = await this.store.meta.realChunks(v.name);
      for (const c of chunks) real.add(c.id);
      await this.fill(v.name, v.origin!, chunks.filter((c) => c.storedSize === 0));
    }
    const stored = new Set<ChunkId>();
    for (const v of attached) await this.release(v.name, real, stored);
    this.storedHere = stored;
  }

  /** Stores the chunks of Real files that are not here yet. */
  private async fill(volume: string, origin: { peer: string; volume: string }, missing: ChunkHolding[]): Promise<void> {
    if (missing.length === 0) {
      this.failed.delete(volume);
      return;
    }
    let failed = 0;
    let stored = 0;
    let unreachable = false;
    await forEachLimited(missing, FILLS_IN_FLIGHT, async (c) => {
      // Once no peer could serve one chunk, the rest wait for the next round (not a timeout each).
      if (this.stopped || unreachable) {
        failed++;
        return;
      }
      try {
        const cached = await this.fromCache(c.id);
        const bytes = cached ?? (await this.fetcher.fetchChunk(c.id, () => this.sourcesFor(origin), 'fill')).stored;
        try {
          await this.store.chunks.put(c.id, bytes);
        } finally {
          if (!cached) this.fetcher.memory.giveBack(bytes);
        }
        await this.store.meta.setStoredSize([{ id: c.id, storedSize: bytes.length }]);
        this.storedHere?.add(c.id);
        // In the pool now: the cache's copy only takes room.
        await this.cache.drop(c.id);
        stored++;
      } catch (err) {
        failed++;
        if ((err as Error).name === 'ChunkUnavailableError') unreachable = true;
        if (failed === 1) this.log.warn({ volume, chunk: c.id, err: (err as Error).message }, 'a chunk of a Real file cannot be fetched now; tried again later');
      }
    });
    await this.store.chunks.sync();
    this.failed.set(volume, failed);
    if (stored > 0) this.log.info({ volume, stored, failed }, 'stored chunks of Real files');
  }

  /** A cached chunk's stored bytes, checked; undefined when absent or corrupt (dropped). */
  private async fromCache(id: ChunkId): Promise<Buffer | undefined> {
    const stored = await this.cache.get(id);
    if (!stored) return undefined;
    try {
      await this.codec.decode(id, Buffer.from(stored));
      return stored;
    } catch (err) {
      if ((err as Error).name !== 'ChunkCorruptError') throw err;
      await this.cache.drop(id);
      return undefined;
    }
  }

  /** Moves chunks stored here that no Real file and no file of this store's volumes holds from
   * the pool to the cache: Unreal again, evictable. Adds those that stay to `stored`. */
  private async release(volume: string, real: ReadonlySet<ChunkId>, stored: Set<ChunkId>): Promise<void> {
    let moved = 0;
    for (const c of await this.store.meta.volumeChunks(volume)) {
      if (this.stopped) return;
      if (c.storedSize === 0) continue;
      if (real.has(c.id) || (await this.store.meta.keptByThisStore(c.id))) {
        stored.add(c.id);
        continue;
      }
      let bytes: Buffer;
      try {
        bytes = await this.store.chunks.get(c.id);
      } catch (err) {
        if (!(err instanceof ChunkNotFoundError)) throw err;
        await this.store.meta.setStoredSize([{ id: c.id, storedSize: 0 }]);
        continue;
      }
      // Into the cache if it has room (else it is simply a peer's again), then out of the pool.
      await this.cache.put(c.id, bytes).catch(() => false);
      this.storedHere?.delete(c.id);
      await this.store.meta.setStoredSize([{ id: c.id, storedSize: 0 }]);
      await this.store.chunks.delete(c.id);
      // A local write of the same content may have found it in the pool meanwhile (it pins it
      // first, and names it in a file after): then it goes back.
      if (await this.store.meta.keptByThisStore(c.id)) {
        await this.store.chunks.put(c.id, bytes);
        await this.store.meta.setStoredSize([{ id: c.id, storedSize: bytes.length }]);
        this.storedHere?.add(c.id);
        stored.add(c.id);
        continue;
      }
      moved++;
    }
    if (moved > 0) this.log.info({ volume, chunks: moved }, 'chunks of files made Unreal moved to the cache');
  }
}

/** Each attached volume's Realness; `cached` says whether the cache holds a chunk. */
export async function realnessOf(store: Store, cached: (id: ChunkId) => boolean | Promise<boolean>, failed: ReadonlyMap<string, number> = new Map()): Promise<Realness[]> {
  const out: Realness[] = [];
  for (const v of await store.meta.volumes()) {
    if (!v.origin) continue;
    const r: Realness = { volume: v.name, realBytes: 0, cachedBytes: 0, remoteBytes: 0, pinnedBytes: 0, pinnedRealBytes: 0, failed: failed.get(v.name) ?? 0 };
    for (const c of await store.meta.volumeChunks(v.name)) {
      if (c.storedSize > 0) r.realBytes += c.bytes;
      else if (await cached(c.id)) r.cachedBytes += c.bytes;
      else r.remoteBytes += c.bytes;
    }
    for (const c of await store.meta.realChunks(v.name)) {
      r.pinnedBytes += c.bytes;
      if (c.storedSize > 0) r.pinnedRealBytes += c.bytes;
    }
    out.push(r);
  }
  return out;
}
