// One disk of the pool: a directory (normally a mount point) holding fragments, one file per
// chunk (local-store.ts does the files), with a label that says which pool and disk it is.
//
// The label is how a disk that went away is told from an empty one: a directory that was wiped,
// or a mount point whose filesystem is not mounted, has no label (or another pool's), and the
// pool treats that disk as failed instead of filling the wrong filesystem.
import { mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ChunkMemory } from './chunk-memory.js';
import type { ChunkId, ChunkStat } from './contract.js';
import { LocalChunkStore } from './local-store.js';
import { replaceFile } from '../durable-file.js';

export type DiskState = 'active' | 'draining' | 'failed';

/** A disk as the pool's configuration (pool.json) records it. */
export interface DiskConfig {
  id: string;
  path: string;
  /** Bytes the pool may use on it; absent: what its filesystem has. */
  capacity?: number;
  /** active: takes new fragments; draining: being emptied by remove-disk (still read);
   * failed: gone or given up on (never touched). */
  state: DiskState;
  added: string;
}

const LABEL = 'orbit-disk.json';

interface DiskLabel {
  pool: string;
  disk: string;
  created: string;
}

export interface DiskSpace {
  totalBytes: number;
  usedBytes: number;
  /** Bytes fragments may still take. */
  freeBytes: number;
}

/** A disk that is not there: no label, another pool's label, or an unreadable directory. */
export class DiskUnavailableError extends Error {
  constructor(
    readonly dir: string,
    reason: string,
  ) {
    super(`disk ${dir} is unavailable: ${reason}`);
    this.name = 'DiskUnavailableError';
  }
}

export class Disk {
  private constructor(
    readonly config: DiskConfig,
    private readonly files: LocalChunkStore,
  ) {}

  get id(): string {
    return this.config.id;
  }

  get path(): string {
    return this.config.path;
  }

  /** Labels `dir` as disk `diskId` of pool `poolId`. A directory labelled for another pool or
   * disk is refused: it holds someone else's fragments. */
  static async label(dir: string, poolId: string, diskId: string): Promise<void> {
    const existing = await readLabel(dir);
    if (existing && (existing.pool !== poolId || existing.disk !== diskId)) {
      throw new DiskUnavailableError(dir, `it already belongs to ${existing.pool === poolId ? `disk ${existing.disk} of this pool` : `another pool (${existing.pool})`}`);
    }
    if (existing) return;
    await mkdir(dir, { recursive: true });
    const label: DiskLabel = { pool: poolId, disk: diskId, created: new Date().toISOString() };
    await writeFile(path.join(dir, LABEL), JSON.stringify(label) + '\n', { flag: 'wx' });
  }

  /** Opens a labelled disk; rejects with DiskUnavailableError when it is not the disk expected. */
  static async open(config: DiskConfig, poolId: string): Promise<Disk> {
    await checkLabel(config, poolId);
    return new Disk(config, await LocalChunkStore.open(config.path));
  }

  /** Whether the disk is still the one labelled (a wiped or unmounted one is not). */
  async present(poolId: string): Promise<boolean> {
    return checkLabel(this.config, poolId).then(() => true, () => false);
  }

  async space(): Promise<DiskSpace> {
    const fs = await this.files.capacity();
    const cap = this.config.capacity;
    if (cap === undefined) return { totalBytes: fs.totalBytes, usedBytes: fs.usedBytes, freeBytes: fs.freeBytes };
    return { totalBytes: cap, usedBytes: fs.usedBytes, freeBytes: Math.max(0, Math.min(fs.freeBytes, cap - fs.usedBytes)) };
  }

  /** Writes a fragment; ENOSPC past the disk's capacity. */
  async put(id: ChunkId, parts: readonly Uint8Array[]): Promise<'stored' | 'existed'> {
    const cap = this.config.capacity;
    if (cap !== undefined) {
      const bytes = parts.reduce((n, p) => n + p.byteLength, 0);
      if (this.files.storedBytes + bytes > cap) {
        throw Object.assign(new Error(`ENOSPC: disk ${this.path} is at its capacity of ${cap} bytes`), { code: 'ENOSPC', errno: -28 });
      }
    }
    return this.files.put(id, parts);
  }

  get(id: ChunkId, memory?: ChunkMemory): Promise<Buffer> {
    return this.files.get(id, memory);
  }

  /** Bytes of the fragments on it (counted by this process: no statfs). */
  get storedBytes(): number {
    return this.files.storedBytes;
  }

  /** A fragment's first bytes (its header). */
  head(id: ChunkId, length: number): Promise<Buffer> {
    return this.files.head(id, length);
  }

  has(id: ChunkId): Promise<boolean> {
    return this.files.has(id);
  }

  stat(id: ChunkId): Promise<ChunkStat | undefined> {
    return this.files.stat(id);
  }

  delete(id: ChunkId): Promise<boolean> {
    return this.files.delete(id);
  }

  prefixes(): AsyncGenerator<string> {
    return this.files.prefixes();
  }

  chunksUnder(prefix: string): Promise<ChunkStat[]> {
    return this.files.chunksUnder(prefix);
  }

  sync(): Promise<void> {
    return this.files.sync();
  }

  // ---- a staged copy ----
  // A whole copy of a chunk kept beside the fragments while a change of policy overwrites them
  // on disks that hold one already (with as many fragments as disks, no disk is free): it keeps
  // the chunk readable, and a crash recoverable, while neither policy's fragments can. Written
  // durably at once: it exists to outlive a crash.

  private stagedPath(id: ChunkId): string {
    return path.join(this.config.path, 'staging', id);
  }

  async putStaged(id: ChunkId, parts: readonly Uint8Array[]): Promise<void> {
    await mkdir(path.dirname(this.stagedPath(id)), { recursive: true });
    await replaceFile(this.stagedPath(id), Buffer.concat(parts));
  }

  async getStaged(id: ChunkId): Promise<Buffer | undefined> {
    return readFile(this.stagedPath(id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
  }

  async deleteStaged(id: ChunkId): Promise<void> {
    await rm(this.stagedPath(id), { force: true });
  }

  close(): Promise<void> {
    return this.files.close();
  }
}

async function readLabel(dir: string): Promise<DiskLabel | undefined> {
  try {
    return JSON.parse(await readFile(path.join(dir, LABEL), 'utf8')) as DiskLabel;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new DiskUnavailableError(dir, `its label is unreadable: ${(err as Error).message}`);
  }
}

async function checkLabel(config: DiskConfig, poolId: string): Promise<void> {
  const info = await stat(config.path).catch(() => undefined);
  if (!info?.isDirectory()) throw new DiskUnavailableError(config.path, 'the directory is gone');
  const label = await readLabel(config.path);
  if (!label) throw new DiskUnavailableError(config.path, 'it has no Orbit disk label (wiped, or its filesystem is not mounted)');
  if (label.pool !== poolId || label.disk !== config.id) throw new DiskUnavailableError(config.path, `its label names disk ${label.disk} of pool ${label.pool}`);
}
