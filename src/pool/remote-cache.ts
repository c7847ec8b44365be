// The cache of Unreal files' chunks: encoded chunks fetched from peers on demand, kept on local
// disk under a bound, the least recently used going first when a new one needs room.
//
// It is a cache, not a store: anything in it can be fetched again, so nothing is fsynced, and a
// chunk is only ever as good as the caller's decode says (which checks its BLAKE3 name; a corrupt
// file is dropped by the caller). What must hold is the bound: the bytes it keeps on disk, chunks
// and files being written together, never exceed maxBytes, however many puts run at once.
// Chunks that must not go (those of files being read, of pinned files not yet moved to the pool)
// are protected; a put that cannot fit beside them is refused rather than pushing past the bound.
//
// Recency lives in memory (an LruMap, as in vfs/chunk-cache.ts) so that a get costs no
// syscall beyond its read; the files' mtimes carry it across restarts, written back in batches.
import { randomUUID } from 'node:crypto';
import { lstat, mkdir, readFile, rename, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import type { ChunkId } from './contract.js';
import { assertChunkId, ChunkStoreClosedError, isChunkId } from './contract.js';
import { forEachLimited } from '../limited.js';
import { LruMap } from '../lru.js';
import { openDirIfPresent } from './local-store.js';

/** How often touched chunks' mtimes are written back: a crash loses at most this much recency. */
const FLUSH_INTERVAL_MS = 30_000;

/** How many stats (at open), utimes and removals run at once: enough to keep a disk busy, few
 * enough not to starve the libuv thread pool the FUSE session shares. */
const IO_CONCURRENCY = 16;

const FAN_OUT_NAME = /^[0-9a-f]{2}$/;

export interface RemoteCacheOptions {
  /** The cache's directory (e.g. <home>/cache); created when missing. */
  dir: string;
  /** The bound on the bytes of the files kept (chunks and chunks being written). */
  maxBytes: number;
  log?: Logger;
  /** How often recency is written back to the files' mtimes (default 30 s). */
  flushIntervalMs?: number;
}

export interface RemoteCacheStats {
  /** Gets that returned bytes. */
  hits: number;
  /** Gets that found nothing (absent, or its file vanished or could not be read). */
  misses: number;
  /** Chunks deleted to make room (drop() is not counted). */
  evictions: number;
  /** Puts that wrote a chunk (not those of a chunk already there or being written). */
  puts: number;
  /** Puts that resolved false: no room beside the protected chunks. */
  refusedPuts: number;
}

/** A cached chunk. One object per file: a get that fails forgets the chunk only if the index
 * still holds the same object (not one a later put made after an eviction). */
interface Entry {
  readonly bytes: number;
}

/**
 * Layout: `<dir>/chunks/<id[0..2]>/<id[2..4]>/<id>`, and `<dir>/tmp/` for files being written (same
 * filesystem, so the rename into place is atomic). Nothing else under chunks/ and tmp/ is kept.
 *
 * One process owns the directory: the accounting is in memory, and open() clears tmp/ whole.
 *
 * The bytes (all of them sizes of files on disk):
 * - lruBytes: cached chunks that may be evicted (in `lru`, oldest use first);
 * - heldBytes: cached chunks that are protected (in `held`: out of the eviction order, so that
 *   making room never walks past them);
 * - freeingBytes: chunks being deleted (out of the index, still on disk until unlink returns);
 * - writingBytes: reserved by puts writing (their temp file is at most that), of which
 *   heldWritingBytes are of protected ids.
 * A put starts writing only when lru + held + freeing + writing + its size <= maxBytes, checked
 * and reserved in one synchronous step; so the bound holds at every instant, not only once puts
 * settle. (Only lowering the bound can leave more than it allows, until evictions finish; or
 * until protections are released, when protected chunks alone exceed it.)
 */
export class RemoteCache {
  private readonly chunksDir: string;
  private readonly tmpDir: string;
  private limit: number;
  /** Unprotected cached chunks in use order, least recent first: the eviction order. */
  private readonly lru = new LruMap<ChunkId, Entry>();
  /** Protected cached chunks: never evicted; they rejoin `lru`, as just used, when released. */
  private readonly held = new Map<ChunkId, Entry>();
  /** Protection counts, by id, cached or not (yet). */
  private readonly holds = new Map<ChunkId, number>();
  /** Chunks used (gets, puts, releases) since recency was last written back, in use order: the
   * tail of the eviction order. */
  private touched = new LruMap<ChunkId, Entry>();
  /** Puts of each id, from their call to their end: a second put of the id shares the first. */
  private readonly putsInFlight = new Map<ChunkId, Promise<boolean>>();
  /** Bytes reserved by each put writing its file. */
  private readonly writing = new Map<ChunkId, number>();
  /** Deletions of each id under way: a put of that id waits for it, or the unlink could remove
   * the new file. */
  private readonly removals = new Map<ChunkId, Promise<void>>();
  /** Fan-out directories, by id[0..4], known to exist or being created. */
  private readonly fanOutReady = new Map<string, Promise<string>>();
  /** Unlinks running, and those waiting for one of the IO_CONCURRENCY slots. */
  private ioRunning = 0;
  private readonly ioWaiting = new Set<() => void>();
  /** Puts waiting for bytes to be freed (an eviction or a write to end). */
  private roomWaiters: Array<() => void> = [];
  private lruBytes = 0;
  private heldBytes = 0;
  private freeingBytes = 0;
  private writingBytes = 0;
  private heldWritingBytes = 0;
  private readonly counters: RemoteCacheStats = { hits: 0, misses: 0, evictions: 0, puts: 0, refusedPuts: 0 };
  /** The latest mtime given or found, in ms: stamps written back are all later, so that chunks
   * used since the last write-back sort after every other. */
  private lastStampMs = 0;
  private flushChain: Promise<void> = Promise.resolve();
  private readonly timer: NodeJS.Timeout;
  private closed = false;

  private constructor(
    readonly dir: string,
    maxBytes: number,
    private readonly log: Logger | undefined,
    flushIntervalMs: number,
  ) {
    this.chunksDir = path.join(dir, 'chunks');
    this.tmpDir = path.join(dir, 'tmp');
    this.limit = maxBytes;
    this.timer = setInterval(() => void this.flushRecency(), flushIntervalMs);
    this.timer.unref(); // the mount keeps the process alive, not the cache
  }

  /** Opens the cache in `dir`: removes what crashed writes left, rebuilds the use order from the
   * files' mtimes, and evicts down to maxBytes (the bound may have been lowered since). */
  static async open(opts: RemoteCacheOptions): Promise<RemoteCache> {
    assertBound(opts.maxBytes);
    const cache = new RemoteCache(path.resolve(opts.dir), opts.maxBytes, opts.log, opts.flushIntervalMs ?? FLUSH_INTERVAL_MS);
    try {
      await cache.load();
      await cache.trim();
    } catch (err) {
      clearInterval(cache.timer);
      throw err;
    }
    return cache;
  }

  /** The bytes stored under id, or undefined when it is not cached; a use of the chunk. A file
   * that vanished or cannot be read is forgotten (logged) and reads as absent. */
  async get(id: ChunkId): Promise<Buffer | undefined> {
    this.assertOpen();
    assertChunkId(id);
    const entry = this.lru.get(id) ?? this.held.get(id);
    if (entry === undefined) {
      this.counters.misses++;
      return undefined;
    }
    this.markUsed(id, entry);
    try {
      const bytes = await readFile(this.chunkPath(id));
      this.counters.hits++;
      return bytes;
    } catch (err) {
      this.counters.misses++;
      // Evicted or dropped while being read: that removal does the accounting.
      if (this.entryOf(id) !== entry) return undefined;
      if (isMissing(err)) {
        this.log?.warn({ chunk: id }, 'cached chunk vanished from the cache directory: forgotten');
        this.unindex(id, entry);
        this.signalRoom();
      } else {
        // Still on disk, maybe: deleted so that the accounting stays what is there.
        this.log?.warn({ chunk: id, err }, 'cached chunk cannot be read: removed from the cache');
        this.remove(id, entry, 'forget').catch((removeErr: unknown) => this.log?.warn({ chunk: id, err: removeErr }, 'unreadable cached chunk cannot be deleted'));
      }
      return undefined;
    }
  }

  /**
   * Stores bytes under id, evicting the least recently used unprotected chunks to make room.
   * Resolves true once stored (or when already cached: then it only counts as a use); false,
   * storing nothing, when the chunk cannot fit beside the protected chunks (or alone exceeds the
   * bound). Concurrent puts of one id share one write. Rejects with the error of a write (ENOSPC,
   * EIO) or of an eviction, leaving nothing counted that is not on disk.
   */
  put(id: ChunkId, bytes: Uint8Array): Promise<boolean> {
    try {
      this.assertOpen();
      assertChunkId(id);
    } catch (err) {
      return Promise.reject(err);
    }
    const entry = this.entryOf(id);
    if (entry !== undefined) {
      this.markUsed(id, entry);
      return Promise.resolve(true);
    }
    const pending = this.putsInFlight.get(id);
    if (pending !== undefined) return pending;
    const attempt = this.store(id, bytes);
    this.putsInFlight.set(id, attempt);
    const done = (): void => void this.putsInFlight.delete(id);
    attempt.then(done, done);
    return attempt;
  }

  /** Whether id is cached (from memory: no I/O). */
  has(id: ChunkId): boolean {
    return this.lru.has(id) || this.held.has(id);
  }

  /**
   * Keeps id from being evicted until the returned function is called (once per protect: holds
   * are counted). An id not cached yet is protected from the moment a put stores it. Releasing the
   * last hold counts as a use of the chunk.
   */
  protect(id: ChunkId): () => void {
    assertChunkId(id);
    const count = this.holds.get(id) ?? 0;
    this.holds.set(id, count + 1);
    if (count === 0) {
      const entry = this.lru.get(id);
      if (entry !== undefined) {
        this.lru.delete(id);
        this.lruBytes -= entry.bytes;
        this.held.set(id, entry);
        this.heldBytes += entry.bytes;
      }
      this.heldWritingBytes += this.writing.get(id) ?? 0;
    }
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.release(id);
    };
  }

  /** Deletes id's file (a chunk found corrupt), protected or not; puts and deletions of it under
   * way finish first. Rejects when the file cannot be deleted (the chunk then stays cached). */
  async drop(id: ChunkId): Promise<void> {
    this.assertOpen();
    assertChunkId(id);
    await this.putsInFlight.get(id)?.catch(() => undefined);
    await this.removals.get(id)?.catch(() => undefined);
    const entry = this.entryOf(id);
    if (entry !== undefined) await this.remove(id, entry, 'drop');
  }

  /** Changes the bound, evicting down to it at once (resolves when those files are deleted).
   * Protected chunks stay: while they alone exceed a lowered bound, the cache is over it until
   * they are released, and every put is refused. */
  async setMaxBytes(maxBytes: number): Promise<void> {
    this.assertOpen();
    assertBound(maxBytes);
    this.limit = maxBytes;
    await this.trim();
  }

  /** Bytes of the cached chunks' files, including those being deleted (not puts being written). */
  get usedBytes(): number {
    return this.lruBytes + this.heldBytes + this.freeingBytes;
  }

  /** Bytes reserved by puts writing their files: usedBytes + reservedBytes <= maxBytes. */
  get reservedBytes(): number {
    return this.writingBytes;
  }

  get maxBytes(): number {
    return this.limit;
  }

  /** Chunks cached. */
  get count(): number {
    return this.lru.size + this.held.size;
  }

  stats(): RemoteCacheStats {
    return { ...this.counters };
  }

  /** Writes the use order of the chunks used since the last time back to their files' mtimes
   * (the timer calls it; so does close()). Never rejects: a failure costs recency only. */
  flushRecency(): Promise<void> {
    const run = this.flushChain.then(() => this.writeRecency());
    this.flushChain = run.catch(() => undefined);
    return run;
  }

  /** Lets puts and deletions under way finish, writes recency back and stops the timer; every
   * later call but close(), has() and protect() rejects with a ChunkStoreClosedError. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    // A put waiting for room may start evictions after this began: wait until none is left.
    while (this.putsInFlight.size > 0 || this.removals.size > 0) {
      await Promise.allSettled([...this.putsInFlight.values(), ...this.removals.values()]);
    }
    await this.flushRecency();
  }

  // ---- putting ----

  private async store(id: ChunkId, bytes: Uint8Array): Promise<boolean> {
    // The file of an earlier copy is being deleted: its unlink must not take the new file.
    const removal = this.removals.get(id);
    if (removal !== undefined) {
      await removal.catch(() => undefined);
      // Its deletion failed, so it stayed.
      const entry = this.entryOf(id);
      if (entry !== undefined) {
        this.markUsed(id, entry);
        return true;
      }
    }
    const size = bytes.byteLength;
    if (!(await this.reserve(id, size))) {
      this.counters.refusedPuts++;
      return false;
    }
    try {
      await this.write(id, bytes);
    } catch (err) {
      this.unreserve(id, size);
      throw err;
    }
    // In one step: the bytes reserved become the bytes of a cached chunk.
    this.unreserve(id, size);
    this.index(id, { bytes: size });
    this.counters.puts++;
    // Past the bound only when it was lowered while this put was writing.
    if (this.overBound()) this.trimInBackground();
    return true;
  }

  /** Reserves `size` bytes for id's write, evicting to make room; false when the chunk cannot
   * fit beside the protected chunks. */
  private async reserve(id: ChunkId, size: number): Promise<boolean> {
    for (;;) {
      // What stays whatever is evicted: protected chunks, and protected puts writing.
      if (this.heldBytes + this.heldWritingBytes + size > this.limit) return false;
      if (this.usedBytes + this.writingBytes + size <= this.limit) {
        this.writingBytes += size;
        this.writing.set(id, size);
        if (this.holds.has(id)) this.heldWritingBytes += size;
        return true;
      }
      // Bytes being freed already count as free here, so concurrent puts do not evict for the
      // same room twice; whoever finds the room first takes it, the others try again.
      const victims = this.evict(this.staying() + size - this.limit);
      if (victims.length > 0) {
        await settleAll(victims);
      } else {
        // Nothing left to evict, yet it may fit: bytes are being freed, or unprotected puts are
        // writing chunks that become evictable when they end. Either wakes this.
        await new Promise<void>((resolve) => this.roomWaiters.push(resolve));
      }
    }
  }

  /** Gives back a reservation: its write ended. Wakes the puts waiting for room (a failed write
   * freed some; a chunk written is one more to evict): they run after this turn, when a chunk
   * written is already indexed. */
  private unreserve(id: ChunkId, size: number): void {
    this.writing.delete(id);
    this.writingBytes -= size;
    if (this.holds.has(id)) this.heldWritingBytes -= size;
    this.signalRoom();
  }

  /** Writes the file through a temp file renamed into place: never a partial file under an id. */
  private async write(id: ChunkId, bytes: Uint8Array): Promise<void> {
    const temp = path.join(this.tmpDir, `${id}.${randomUUID()}`);
    try {
      await writeFile(temp, bytes, { flag: 'wx' });
      try {
        await rename(temp, path.join(await this.fanOutDir(id), id));
      } catch (err) {
        if (!isMissing(err)) throw err;
        // The fan-out directory was removed behind the cache's back: make it again, once.
        this.fanOutReady.delete(id.slice(0, 4));
        await rename(temp, path.join(await this.fanOutDir(id), id));
      }
    } catch (err) {
      // A temp file this fails to remove is removed by the next open().
      await rm(temp, { force: true }).catch((rmErr: unknown) => this.log?.warn({ file: temp, err: rmErr }, 'cache cannot remove a temp file (the next open will)'));
      throw err;
    }
  }

  /** The fan-out directory of id, created (with its parent) when missing. */
  private fanOutDir(id: ChunkId): Promise<string> {
    const prefix = id.slice(0, 4);
    const known = this.fanOutReady.get(prefix);
    if (known !== undefined) return known;
    const leaf = path.join(this.chunksDir, prefix.slice(0, 2), prefix.slice(2, 4));
    const ready = mkdir(leaf, { recursive: true }).then(() => leaf);
    this.fanOutReady.set(prefix, ready);
    // A failed mkdir (ENOSPC, EIO) must not stick: the next put under this prefix tries again.
    ready.catch(() => {
      if (this.fanOutReady.get(prefix) === ready) this.fanOutReady.delete(prefix);
    });
    return ready;
  }

  // ---- evicting ----

  /** Starts deleting least recently used unprotected chunks until `needed` bytes are on their way
   * out (or none is left); returns the deletions. */
  private evict(needed: number): Array<Promise<void>> {
    const victims: Array<Promise<void>> = [];
    let freed = 0;
    for (const [id, entry] of this.lru) {
      if (freed >= needed) break;
      freed += entry.bytes;
      victims.push(this.remove(id, entry, 'evict'));
    }
    return victims;
  }

  /** Evicts down to the bound; rejects with the first deletion that failed. */
  private async trim(): Promise<void> {
    const excess = this.staying() - this.limit;
    if (excess > 0) await settleAll(this.evict(excess));
  }

  /** The bytes there will be once the deletions under way end: cached chunks and puts writing. */
  private staying(): number {
    return this.lruBytes + this.heldBytes + this.writingBytes;
  }

  private overBound(): boolean {
    return this.staying() > this.limit;
  }

  private trimInBackground(): void {
    if (this.closed) return;
    this.trim().catch((err: unknown) => this.log?.warn({ err }, 'cache cannot evict down to its bound'));
  }

  /**
   * Deletes a cached chunk's file. It leaves the index at once (a get no longer finds it, no
   * other eviction picks it) but its bytes count as freeing until unlink returns: until then the
   * file is on disk. A file already gone (ENOENT) is as good as deleted; one that cannot be
   * deleted goes back into the index (still on disk, still counted) as just used, so that the
   * next evictions try others first, and the error is the caller's.
   */
  private remove(id: ChunkId, entry: Entry, why: 'evict' | 'drop' | 'forget'): Promise<void> {
    this.unindex(id, entry);
    this.freeingBytes += entry.bytes;
    const removal = this.inIoSlot(() => unlink(this.chunkPath(id))).then(
      () => {
        this.freeingBytes -= entry.bytes;
        if (why === 'evict') this.counters.evictions++;
      },
      (err: unknown) => {
        this.freeingBytes -= entry.bytes;
        if (isMissing(err)) return;
        this.index(id, entry);
        throw err;
      },
    );
    this.removals.set(id, removal);
    const done = (): void => {
      if (this.removals.get(id) === removal) this.removals.delete(id);
      this.signalRoom();
    };
    removal.then(done, done);
    return removal;
  }

  /** Runs fn when fewer than IO_CONCURRENCY others run: evicting down to a much lowered bound
   * must not queue thousands of unlinks ahead of the reads the FUSE session waits for. */
  private async inIoSlot<T>(fn: () => Promise<T>): Promise<T> {
    if (this.ioRunning < IO_CONCURRENCY) this.ioRunning++;
    else await new Promise<void>((resolve) => this.ioWaiting.add(resolve));
    try {
      return await fn();
    } finally {
      // The slot passes to the next in line (a Set is a queue here: it iterates in insertion
      // order, and deleting its first element costs no shift).
      const next = this.ioWaiting.values().next();
      if (next.done) this.ioRunning--;
      else {
        this.ioWaiting.delete(next.value);
        next.value();
      }
    }
  }

  private signalRoom(): void {
    const waiters = this.roomWaiters;
    this.roomWaiters = [];
    for (const wake of waiters) wake();
  }

  // ---- the index ----

  private entryOf(id: ChunkId): Entry | undefined {
    return this.lru.get(id) ?? this.held.get(id);
  }

  /** Adds a chunk as just used: protected or in the eviction order. */
  private index(id: ChunkId, entry: Entry): void {
    if (this.holds.has(id)) {
      this.held.set(id, entry);
      this.heldBytes += entry.bytes;
    } else {
      this.lru.set(id, entry);
      this.lruBytes += entry.bytes;
    }
    this.touched.set(id, entry);
  }

  private unindex(id: ChunkId, entry: Entry): void {
    if (this.lru.delete(id)) this.lruBytes -= entry.bytes;
    else if (this.held.delete(id)) this.heldBytes -= entry.bytes;
    this.touched.delete(id);
  }

  /** Moves a chunk to the end of the use order (a protected one only in `touched`, the order of
   * its file's mtime: it rejoins the eviction order as used when released). */
  private markUsed(id: ChunkId, entry: Entry): void {
    this.lru.touch(id);
    this.touched.set(id, entry);
  }

  private release(id: ChunkId): void {
    const count = this.holds.get(id) ?? 0;
    if (count > 1) {
      this.holds.set(id, count - 1);
      return;
    }
    this.holds.delete(id);
    const entry = this.held.get(id);
    if (entry !== undefined) {
      this.held.delete(id);
      this.heldBytes -= entry.bytes;
      this.index(id, entry);
    }
    this.heldWritingBytes -= this.writing.get(id) ?? 0;
    // Over the bound only when it was lowered below what protected chunks held.
    if (this.overBound()) this.trimInBackground();
  }

  // ---- recency on disk ----

  /** Gives the chunks used since the last write-back increasing mtimes, in use order, all later
   * than any mtime given or found before: after a restart, sorting by mtime gives the order back. */
  private async writeRecency(): Promise<void> {
    if (this.touched.size === 0) return;
    const ids = [...this.touched.keys()];
    this.touched = new LruMap();
    // One millisecond apart, ending now (unless that would not be after the last ones).
    const startMs = Math.max(Date.now() - ids.length, this.lastStampMs + 1);
    this.lastStampMs = startMs + ids.length - 1;
    let failure: unknown;
    await forEachLimited(ids.entries(), IO_CONCURRENCY, async ([i, id]) => {
      const seconds = (startMs + i) / 1000;
      // Evicted since: nothing to keep.
      await utimes(this.chunkPath(id), seconds, seconds).catch((err: unknown) => {
        if (!isMissing(err)) failure ??= err;
      });
    });
    if (failure !== undefined) this.log?.warn({ err: failure }, 'cache cannot write recency back to its files: a restart will see an older use order');
  }

  // ---- opening ----

  /** Clears tmp/, then indexes chunks/ in the order of the files' mtimes, removing what does not
   * fit the layout. */
  private async load(): Promise<void> {
    await mkdir(this.chunksDir, { recursive: true });
    await mkdir(this.tmpDir, { recursive: true });
    // Left by a crash mid-write: partial, and named by no chunk. The cache is this process's
    // alone, so none belongs to a put in flight.
    const temps = await namesIn(this.tmpDir);
    await forEachLimited(temps.values(), IO_CONCURRENCY, (name) => rm(path.join(this.tmpDir, name), { recursive: true, force: true }));
    if (temps.length > 0) this.log?.info({ dir: this.tmpDir, files: temps.length }, 'cache removed temp files left by a crash');

    // Anything else under chunks/ is removed, not skipped: it would take room the bound does not
    // see, and nothing would ever read or evict it.
    const strays: string[] = [];
    const files: Array<{ id: ChunkId; file: string }> = [];
    for (const top of await entriesIn(this.chunksDir)) {
      const topPath = path.join(this.chunksDir, top.name);
      if (!top.isDirectory() || !FAN_OUT_NAME.test(top.name)) {
        strays.push(topPath);
        continue;
      }
      for (const second of await entriesIn(topPath)) {
        const leaf = path.join(topPath, second.name);
        if (!second.isDirectory() || !FAN_OUT_NAME.test(second.name)) {
          strays.push(leaf);
          continue;
        }
        const prefix = top.name + second.name;
        this.fanOutReady.set(prefix, Promise.resolve(leaf));
        for (const entry of await entriesIn(leaf)) {
          const file = path.join(leaf, entry.name);
          if (entry.isFile() && isChunkId(entry.name) && entry.name.startsWith(prefix)) files.push({ id: entry.name, file });
          else strays.push(file);
        }
      }
    }
    await forEachLimited(strays.values(), IO_CONCURRENCY, (stray) => rm(stray, { recursive: true, force: true }));
    if (strays.length > 0) this.log?.warn({ dir: this.chunksDir, removed: strays.length, examples: strays.slice(0, 5) }, 'cache removed files that are not cached chunks');

    const found: Array<{ id: ChunkId; bytes: number; mtimeMs: number }> = [];
    await forEachLimited(files.values(), IO_CONCURRENCY, async ({ id, file }) => {
      const info = await lstat(file).catch((err: unknown) => {
        if (isMissing(err)) return undefined;
        throw err;
      });
      if (info !== undefined) found.push({ id, bytes: info.size, mtimeMs: info.mtimeMs });
    });
    found.sort((a, b) => a.mtimeMs - b.mtimeMs || (a.id < b.id ? -1 : 1));
    for (const { id, bytes, mtimeMs } of found) {
      this.lru.set(id, { bytes });
      this.lruBytes += bytes;
      this.lastStampMs = Math.max(this.lastStampMs, Math.floor(mtimeMs));
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new ChunkStoreClosedError(this.dir);
  }

  private chunkPath(id: ChunkId): string {
    return cachedChunkFile(this.chunksDir, id);
  }
}

function assertBound(maxBytes: number): void {
  if (!Number.isSafeInteger(maxBytes) || maxBytes < 0) throw new RangeError(`cache bound must be a whole number of bytes, not ${maxBytes}`);
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** Waits for every promise; then rejects with the first failure, if any. */
async function settleAll(promises: ReadonlyArray<Promise<void>>): Promise<void> {
  const results = await Promise.allSettled(promises);
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed !== undefined) throw failed.reason;
}

/** A directory's entries (none when it is gone), read asynchronously. */
async function entriesIn(dir: string): Promise<Array<{ name: string; isFile(): boolean; isDirectory(): boolean }>> {
  const handle = await openDirIfPresent(dir);
  const entries = [];
  if (handle !== undefined) for await (const entry of handle) entries.push(entry);
  return entries;
}

async function namesIn(dir: string): Promise<string[]> {
  return (await entriesIn(dir)).map((e) => e.name);
}

/** Where a cache whose chunks directory is `chunksDir` keeps chunk `id` (`orbit status` looks
 * there without opening the cache, which one process owns). */
export function cachedChunkFile(chunksDir: string, id: ChunkId): string {
  return path.join(chunksDir, id.slice(0, 2), id.slice(2, 4), id);
}
