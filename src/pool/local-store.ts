// The files of one disk directory: one file per chunk id (for the pool, the fragment of that
// chunk the disk holds) under two levels of fan-out, written through a temp file and linked into
// place, made durable in group commits by sync(). The bytes are opaque here.
import { randomUUID } from 'node:crypto';
import type { Dir } from 'node:fs';
import { link, lstat, mkdir, open, opendir, readdir, readFile, rm, statfs, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChunkMemory } from './chunk-memory.js';
import type { ChunkId, ChunkStat, ChunkStore, StoreCapacity } from './contract.js';
import { assertChunkId, ChunkNotFoundError, ChunkStoreClosedError, isChunkId } from './contract.js';
import { forEachLimited } from '../limited.js';

/** How many fsyncs (and stats while scanning) run at once: enough to keep a disk's queue busy,
 * few enough not to starve the libuv thread pool the rest of the daemon shares. */
const IO_CONCURRENCY = 16;

const FAN_OUT_NAME = /^[0-9a-f]{2}$/;

/** A temp file this old belongs to no put in flight (a put writes one chunk of at most 4 MiB). */
const STALE_TEMP_MS = 10 * 60 * 1000;

/**
 * Layout: `<dir>/chunks/<id[0..2]>/<id[2..4]>/<id>`, and `<dir>/tmp/` for files being written
 * (same filesystem, so linking them into place is atomic). Fan-out directories are never removed:
 * there are at most 65536 of them.
 *
 * usedBytes is the sum of the stored chunks' sizes, counted by a scan at open() and kept up to date
 * by put() and delete(), rather than statfs's used space: the directory may share its filesystem
 * with other data, and block and directory overhead already shows in freeBytes.
 *
 * Several processes may open one directory (each serving a volume): puts of one id race safely
 * (link, not rename), and open() removes only temp files too old to belong to a put in flight.
 */
export class LocalChunkStore implements ChunkStore {
  private readonly chunksDir: string;
  private readonly tmpDir: string;
  /** Fan-out directories, by id[0..4], known to exist or being created: a mkdir per put is avoided,
   * and concurrent puts under a new prefix wait for the one mkdir. */
  private readonly fanOutReady = new Map<string, Promise<string>>();
  /** Each id's put in progress: a second put of the id waits for it, so that 'existed' never
   * resolves before the first put has recorded its file for the next sync(). */
  private readonly putsInFlight = new Map<ChunkId, Promise<'stored' | 'existed'>>();
  /** Chunk files written and directories whose entries changed since the last sync(). */
  private readonly dirtyFiles = new Set<string>();
  private readonly dirtyDirs = new Set<string>();
  /** Sync()s run one after another: one that starts while another runs must also wait for the
   * fsyncs of files the other took from the dirty sets. */
  private syncChain: Promise<void> = Promise.resolve();
  private usedBytes = 0;
  private closed = false;
  /** Bytes chunks may still take before the metadata reserve (see reserveFor), as of the last
   * statfs less what was stored since: a statfs per chunk would cost a syscall each. */
  private room = 0;
  private roomCheckedAt = 0;

  private constructor(readonly dir: string) {
    this.chunksDir = path.join(dir, 'chunks');
    this.tmpDir = path.join(dir, 'tmp');
  }

  /** Opens the store in `dir`, creating its layout when missing. */
  static async open(dir: string): Promise<LocalChunkStore> {
    const store = new LocalChunkStore(path.resolve(dir));
    await store.makeDirs(store.chunksDir);
    await store.makeDirs(store.tmpDir);
    // Left by a crash between writing a temp file and linking it, or before removing it: nothing
    // refers to them. Only old ones: another process may have this store open (one volume
    // mounted per process), with puts in flight whose temp files are seconds old.
    const staleBefore = Date.now() - STALE_TEMP_MS;
    for (const name of await readdir(store.tmpDir)) {
      const file = path.join(store.tmpDir, name);
      const info = await lstat(file).catch(() => undefined);
      if (info && info.mtimeMs < staleBefore) await rm(file, { recursive: true, force: true });
    }
    for await (const leaf of store.leafDirs()) {
      store.fanOutReady.set(leaf.prefix, Promise.resolve(leaf.path));
      for (const chunk of await store.statLeaf(leaf)) store.usedBytes += chunk.storedBytes;
    }
    return store;
  }

  /** `bytes` may come in parts (a header and a payload): they are written one after another. */
  async put(id: ChunkId, bytes: Uint8Array | readonly Uint8Array[]): Promise<'stored' | 'existed'> {
    this.assertOpen();
    assertChunkId(id);
    for (;;) {
      const pending = this.putsInFlight.get(id);
      if (pending === undefined) break;
      // When it failed, this put tries itself (unless yet another one started meanwhile).
      if (await pending.then(() => true, () => false)) return 'existed';
    }
    const attempt = this.store(id, bytes);
    this.putsInFlight.set(id, attempt);
    try {
      return await attempt;
    } finally {
      if (this.putsInFlight.get(id) === attempt) this.putsInFlight.delete(id);
    }
  }

  async get(id: ChunkId, memory?: ChunkMemory): Promise<Buffer> {
    this.assertOpen();
    assertChunkId(id);
    try {
      return await (memory ? this.readInto(memory, this.chunkPath(id)) : readFile(this.chunkPath(id)));
    } catch (err) {
      if (isMissing(err)) throw new ChunkNotFoundError(id);
      throw err;
    }
  }

  /** A chunk file read whole into memory lent from `memory` (one read, where readFile reads in
   * 512 KiB steps); the memory goes back when the read fails. */
  private async readInto(memory: ChunkMemory, file: string): Promise<Buffer> {
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      const bytes = memory.lend(size);
      let filled = 0;
      try {
        // Chunk files never change once named: a short read is the end of the file.
        while (filled < size) {
          const { bytesRead } = await handle.read(bytes, filled, size - filled, filled);
          if (bytesRead === 0) break;
          filled += bytesRead;
        }
      } catch (err) {
        memory.giveBack(bytes);
        throw err;
      }
      return filled < size ? bytes.subarray(0, filled) : bytes;
    } finally {
      await handle.close();
    }
  }

  /** The first `length` bytes stored under id (fewer when it is shorter). */
  async head(id: ChunkId, length: number): Promise<Buffer> {
    this.assertOpen();
    assertChunkId(id);
    let handle;
    try {
      handle = await open(this.chunkPath(id), 'r');
    } catch (err) {
      if (isMissing(err)) throw new ChunkNotFoundError(id);
      throw err;
    }
    try {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await handle.read(buf, 0, length, 0);
      return buf.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  }

  async has(id: ChunkId): Promise<boolean> {
    return (await this.stat(id)) !== undefined;
  }

  async delete(id: ChunkId): Promise<boolean> {
    this.assertOpen();
    assertChunkId(id);
    const file = this.chunkPath(id);
    const storedBytes = await sizeOf(file);
    if (storedBytes === undefined) return false;
    try {
      await unlink(file);
    } catch (err) {
      // A concurrent delete won: it accounts for the bytes.
      if (isMissing(err)) return false;
      throw err;
    }
    this.usedBytes -= storedBytes;
    this.dirtyFiles.delete(file);
    this.dirtyDirs.add(path.dirname(file));
    return true;
  }

  /** Bytes of the chunks stored (as capacity() counts them), without a statfs. */
  get storedBytes(): number {
    return this.usedBytes;
  }

  async stat(id: ChunkId): Promise<ChunkStat | undefined> {
    this.assertOpen();
    assertChunkId(id);
    const storedBytes = await sizeOf(this.chunkPath(id));
    return storedBytes === undefined ? undefined : { id, storedBytes };
  }

  async *iterate(): AsyncGenerator<ChunkStat> {
    this.assertOpen();
    for await (const leaf of this.leafDirs()) yield* await this.statLeaf(leaf);
  }

  /** The 4-hex-digit prefixes under which chunks may be (fan-out directories that exist). */
  async *prefixes(): AsyncGenerator<string> {
    this.assertOpen();
    for await (const leaf of this.leafDirs()) yield leaf.prefix;
  }

  /** The chunks whose ids start with `prefix` (4 hex digits). */
  async chunksUnder(prefix: string): Promise<ChunkStat[]> {
    this.assertOpen();
    return this.statLeaf({ prefix, path: path.join(this.chunksDir, prefix.slice(0, 2), prefix.slice(2, 4)) });
  }

  async capacity(): Promise<StoreCapacity> {
    this.assertOpen();
    const fs = await statfs(this.dir);
    // bavail, not bfree: the blocks a filesystem reserves for root are not the store's to plan
    // with; nor is the metadata's reserve.
    return { totalBytes: fs.blocks * fs.bsize, freeBytes: Math.max(0, roomFor(fs)), usedBytes: this.usedBytes };
  }

  async sync(): Promise<void> {
    this.assertOpen();
    const done = this.syncChain.then(
      () => this.flush(),
      () => this.flush(),
    );
    this.syncChain = done;
    await done;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.sync();
    this.closed = true;
  }

  private assertOpen(): void {
    if (this.closed) throw new ChunkStoreClosedError(this.dir);
  }

  private chunkPath(id: ChunkId): string {
    return path.join(this.chunksDir, id.slice(0, 2), id.slice(2, 4), id);
  }

  private async store(id: ChunkId, bytes: Uint8Array | readonly Uint8Array[]): Promise<'stored' | 'existed'> {
    if ((await sizeOf(this.chunkPath(id))) !== undefined) return 'existed';
    const length = bytes instanceof Uint8Array ? bytes.byteLength : bytes.reduce((n, b) => n + b.byteLength, 0);
    await this.makeRoom(length);
    const leaf = await this.fanOutDir(id);
    const file = path.join(leaf, id);
    const temp = path.join(this.tmpDir, `${id}.${randomUUID()}`);
    let linked: boolean;
    try {
      await writeFile(temp, bytes, { flag: 'wx' });
      linked = await linkUnlessExists(temp, file);
    } finally {
      await discard(temp);
    }
    if (!linked) return 'existed';
    this.usedBytes += length;
    this.dirtyFiles.add(file);
    this.dirtyDirs.add(leaf);
    return 'stored';
  }

  /** Chunks are what fill a disk: they stop short of a reserve, which keeps the metadata (and with
   * it unlink, rename and gc, the way out) working on a full disk. Fails with ENOSPC. */
  private async makeRoom(bytes: number): Promise<void> {
    if (this.room < ROOM_RECHECK || Date.now() - this.roomCheckedAt > 1000) {
      this.room = roomFor(await statfs(this.dir));
      this.roomCheckedAt = Date.now();
    }
    if (this.room < bytes) {
      throw Object.assign(new Error(`ENOSPC: no space left on device for chunks in ${this.dir} (the rest is kept for metadata)`), { code: 'ENOSPC', errno: -28 });
    }
    this.room -= bytes;
  }

  /** The fan-out directory of id, created (with its parent) when missing. */
  private fanOutDir(id: ChunkId): Promise<string> {
    const prefix = id.slice(0, 4);
    const known = this.fanOutReady.get(prefix);
    if (known !== undefined) return known;
    const leaf = path.join(this.chunksDir, prefix.slice(0, 2), prefix.slice(2, 4));
    const ready = this.makeDirs(leaf).then(() => leaf);
    this.fanOutReady.set(prefix, ready);
    // A failed mkdir (ENOSPC, EIO) must not stick: the next put under this prefix tries again.
    ready.catch(() => {
      if (this.fanOutReady.get(prefix) === ready) this.fanOutReady.delete(prefix);
    });
    return ready;
  }

  /** mkdir -p that records, for the next sync(), every directory it creates and the one that
   * gained the first of them. */
  private async makeDirs(target: string): Promise<void> {
    const first = await mkdir(target, { recursive: true });
    if (first === undefined) return;
    const above = path.dirname(first);
    this.dirtyDirs.add(above);
    for (let d = target; d !== above; d = path.dirname(d)) this.dirtyDirs.add(d);
  }

  /** Every `chunks/xx/yy` directory; names that do not fit the layout are skipped. */
  private async *leafDirs(): AsyncGenerator<{ prefix: string; path: string }> {
    for await (const top of subdirs(this.chunksDir)) {
      for await (const second of subdirs(path.join(this.chunksDir, top))) {
        yield { prefix: top + second, path: path.join(this.chunksDir, top, second) };
      }
    }
  }

  /** The chunks in one fan-out directory (skipping any removed meanwhile). */
  private async statLeaf(leaf: { prefix: string; path: string }): Promise<ChunkStat[]> {
    const ids: ChunkId[] = [];
    const dir = await openDirIfPresent(leaf.path);
    if (dir === undefined) return [];
    for await (const entry of dir) {
      if (entry.isFile() && isChunkId(entry.name) && entry.name.startsWith(leaf.prefix)) ids.push(entry.name);
    }
    const found: ChunkStat[] = [];
    await forEachLimited(ids, IO_CONCURRENCY, async (id) => {
      const storedBytes = await sizeOf(path.join(leaf.path, id));
      if (storedBytes !== undefined) found.push({ id, storedBytes });
    });
    return found;
  }

  private async flush(): Promise<void> {
    const files = [...this.dirtyFiles];
    const dirs = [...this.dirtyDirs];
    this.dirtyFiles.clear();
    this.dirtyDirs.clear();
    try {
      // Files before directories: this sync never makes a name durable before the data it names.
      await forEachLimited(files, IO_CONCURRENCY, fsyncPath);
      await forEachLimited(dirs, IO_CONCURRENCY, fsyncPath);
    } catch (err) {
      // Back into the sets, so that the next sync() does them again (a second fsync is harmless).
      for (const file of files) this.dirtyFiles.add(file);
      for (const dir of dirs) this.dirtyDirs.add(dir);
      throw err;
    }
  }
}

/** Below this much room, every chunk checks the disk again. */
const ROOM_RECHECK = 64 * 1024 * 1024;

/** Space chunks leave free for the metadata: 2% of the disk, at least 4 MiB, at most 256 MiB. */
function reserveFor(totalBytes: number): number {
  return Math.min(256 * 1024 * 1024, Math.max(4 * 1024 * 1024, Math.floor(totalBytes * 0.02)));
}

/** Bytes chunks may still take on a filesystem (negative: past the reserve already). */
function roomFor(fs: { bavail: number; bsize: number; blocks: number }): number {
  return fs.bavail * fs.bsize - reserveFor(fs.blocks * fs.bsize);
}

function isMissing(err: unknown): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT';
}

/** The size of a chunk file; undefined when there is none. */
async function sizeOf(file: string): Promise<number | undefined> {
  try {
    return (await lstat(file)).size;
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

/** Hard-links temp as file; false when file already exists. link(), unlike rename(), never
 * replaces: a chunk already in place, maybe durable, is not swapped for a copy not yet on disk. */
async function linkUnlessExists(temp: string, file: string): Promise<boolean> {
  try {
    await link(temp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/** Removes a temp file, ignoring failure: the error that brought us here matters more, and open()
 * removes whatever is left in tmp/. */
async function discard(temp: string): Promise<void> {
  await rm(temp, { force: true }).catch(() => undefined);
}

async function fsyncPath(target: string): Promise<void> {
  let handle;
  try {
    handle = await open(target, 'r');
  } catch (err) {
    // Deleted since: the delete recorded its directory, which this sync also fsyncs.
    if (isMissing(err)) return;
    throw err;
  }
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The directory open for listing; undefined when it does not exist. */
export async function openDirIfPresent(dir: string): Promise<Dir | undefined> {
  try {
    return await opendir(dir);
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw err;
  }
}

async function* subdirs(dir: string): AsyncGenerator<string> {
  const handle = await openDirIfPresent(dir);
  if (handle === undefined) return;
  for await (const entry of handle) {
    if (entry.isDirectory() && FAN_OUT_NAME.test(entry.name)) yield entry.name;
  }
}

