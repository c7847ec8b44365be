// The embedded metadata engine as Orbit uses it: the MetaEngine contract, answered by the SQLite
// engine on a worker thread. better-sqlite3 blocks on disk I/O (and on fsync in sync()), which
// must never happen on the event loop serving FUSE requests.
import type { Worker } from 'node:worker_threads';
import { componentLogger, type Logger } from '../../log.js';
import { startWorker } from '../../threads.js';
import { MetaError, type MetaEngine, type VolumeChanges } from '../contract.js';
import type { SqliteEngine } from './engine.js';
import { unpackListing, type PackedListing } from './listing.js';

/** The engine's methods (and its readdir with attributes as it crosses threads: listing.ts). */
type Method = (keyof MetaEngine & keyof SqliteEngine) | 'readdirPacked';

export interface EngineRequest {
  seq: number;
  method: Method;
  args: unknown[];
}

export type EngineResponse =
  | { seq: number; ok: true; value: unknown }
  | { seq: number; ok: false; name: string; message: string; code?: string };

/** A line the engine's thread asks the host to log. */
export interface EngineLog {
  log: 'info' | 'warn' | 'error';
  fields: Record<string, unknown>;
  msg: string;
}

export interface SqliteMetaOptions {
  /** Mirror the database on the disks of the pool configured in `<mirrorPool>/pool.json`
   * (mirror.ts), and restore it from a mirror when it is lost. */
  mirrorPool?: string;
}

export interface WorkerOptions extends SqliteMetaOptions {
  path: string;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
}

export class SqliteMeta implements MetaEngine {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private seq = 0;
  private failure: Error | undefined;
  private log: Logger | undefined;

  private constructor(readonly path: string, options: SqliteMetaOptions) {
    this.worker = startWorker(new URL('./worker.ts', import.meta.url), { path, ...options } satisfies WorkerOptions);
    this.worker.unref(); // only requests in flight keep the process alive
    this.worker.on('message', (res: EngineResponse | EngineLog) => {
      if ('log' in res) {
        this.log ??= componentLogger('meta');
        this.log[res.log](res.fields, res.msg);
        return;
      }
      const p = this.pending.get(res.seq);
      if (!p) return;
      this.pending.delete(res.seq);
      if (this.pending.size === 0) this.worker.unref();
      if (res.ok) p.resolve(res.value);
      else p.reject(res.name === 'MetaError' ? new MetaError(res.code as MetaError['code'], res.message) : Object.assign(new Error(res.message), { name: res.name, code: res.code }));
    });
    this.worker.on('error', (err: unknown) => this.fail(err instanceof Error ? err : new Error(String((err as { message?: unknown }).message ?? err))));
    this.worker.on('exit', (code) => this.fail(new Error(`metadata engine thread exited (code ${code})`)));
  }

  /** Opens (creating when missing) the database at `path`; fails as the engine would. */
  static async open(path: string, options: SqliteMetaOptions = {}): Promise<SqliteMeta> {
    const meta = new SqliteMeta(path, options);
    await meta.volumes(); // surfaces an unreadable or foreign database now, not on first use
    return meta;
  }

  private call<T>(method: Method, args: unknown[]): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(seq, { resolve: resolve as (v: unknown) => void, reject });
      this.worker.postMessage({ seq, method, args } satisfies EngineRequest);
    });
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  createVolume: MetaEngine['createVolume'] = (...a) => this.call('createVolume', a);
  attachVolume: MetaEngine['attachVolume'] = (...a) => this.call('attachVolume', a);
  changeCount: MetaEngine['changeCount'] = () => this.call('changeCount', []);
  applyChanges: MetaEngine['applyChanges'] = (...a) => this.call('applyChanges', a);
  volumeHoldsChunk: MetaEngine['volumeHoldsChunk'] = (...a) => this.call('volumeHoldsChunk', a);
  setStoredSize: MetaEngine['setStoredSize'] = (...a) => this.call('setStoredSize', a);
  setReal: MetaEngine['setReal'] = (...a) => this.call('setReal', a);
  isReal: MetaEngine['isReal'] = (...a) => this.call('isReal', a);
  realChunks: MetaEngine['realChunks'] = (...a) => this.call('realChunks', a);
  volumeChunks: MetaEngine['volumeChunks'] = (...a) => this.call('volumeChunks', a);
  keptByThisStore: MetaEngine['keptByThisStore'] = (...a) => this.call('keptByThisStore', a);
  volumes: MetaEngine['volumes'] = (...a) => this.call('volumes', a);
  removeVolume: MetaEngine['removeVolume'] = (...a) => this.call('removeVolume', a);
  usage: MetaEngine['usage'] = (...a) => this.call('usage', a);
  recoverVolume: MetaEngine['recoverVolume'] = (...a) => this.call('recoverVolume', a);
  lookup: MetaEngine['lookup'] = (...a) => this.call('lookup', a);
  getattr: MetaEngine['getattr'] = (...a) => this.call('getattr', a);
  setattr: MetaEngine['setattr'] = (...a) => this.call('setattr', a);
  create: MetaEngine['create'] = (...a) => this.call('create', a);
  reserveInodes: MetaEngine['reserveInodes'] = (...a) => this.call('reserveInodes', a);
  link: MetaEngine['link'] = (...a) => this.call('link', a);
  unlink: MetaEngine['unlink'] = (...a) => this.call('unlink', a);
  rmdir: MetaEngine['rmdir'] = (...a) => this.call('rmdir', a);
  rename: MetaEngine['rename'] = (...a) => this.call('rename', a);
  readlink: MetaEngine['readlink'] = (...a) => this.call('readlink', a);
  readdir: MetaEngine['readdir'] = async (ino, cookie, limit, withAttrs) =>
    withAttrs ? unpackListing(await this.call<PackedListing>('readdirPacked', [ino, cookie, limit])) : this.call('readdir', [ino, cookie, limit]);
  removeOrphan: MetaEngine['removeOrphan'] = (...a) => this.call('removeOrphan', a);
  extents: MetaEngine['extents'] = (...a) => this.call('extents', a);
  writeExtents: MetaEngine['writeExtents'] = (...a) => this.call('writeExtents', a);
  unreferencedChunks: MetaEngine['unreferencedChunks'] = (...a) => this.call('unreferencedChunks', a);
  pinChunks: MetaEngine['pinChunks'] = (...a) => this.call('pinChunks', a);
  unpinChunks: MetaEngine['unpinChunks'] = (...a) => this.call('unpinChunks', a);
  claimUnreferenced: MetaEngine['claimUnreferenced'] = (...a) => this.call('claimUnreferenced', a);
  claimOrphans: MetaEngine['claimOrphans'] = (...a) => this.call('claimOrphans', a);
  staleClaims: MetaEngine['staleClaims'] = (...a) => this.call('staleClaims', a);
  forgetChunks: MetaEngine['forgetChunks'] = (...a) => this.call('forgetChunks', a);
  checkChunks: MetaEngine['checkChunks'] = (...a) => this.call('checkChunks', a);
  repairRefcounts: MetaEngine['repairRefcounts'] = (...a) => this.call('repairRefcounts', a);
  filesUsing: MetaEngine['filesUsing'] = (...a) => this.call('filesUsing', a);
  xattrOfFilesUsing: MetaEngine['xattrOfFilesUsing'] = (...a) =>
    this.call<Array<Uint8Array | null>>('xattrOfFilesUsing', a).then((vs) => vs.map((v) => (v === null ? null : Buffer.from(v.buffer, v.byteOffset, v.length))));
  // Buffers cross the thread as Uint8Arrays: made Buffers again.
  changesSince: MetaEngine['changesSince'] = (...a) =>
    this.call<VolumeChanges>('changesSince', a).then((c) => {
      for (const i of c.inodes) if (i.xattrs) i.xattrs = i.xattrs.map(([n, v]) => [n, Buffer.from(v.buffer, v.byteOffset, v.length)]);
      return c;
    });
  getxattr: MetaEngine['getxattr'] = (...a) => this.call<Uint8Array>('getxattr', a).then((v) => Buffer.from(v.buffer, v.byteOffset, v.length));
  listxattr: MetaEngine['listxattr'] = (...a) => this.call('listxattr', a);
  setxattr: MetaEngine['setxattr'] = (...a) => this.call('setxattr', a);
  removexattr: MetaEngine['removexattr'] = (...a) => this.call('removexattr', a);
  sync: MetaEngine['sync'] = (...a) => this.call('sync', a);

  async close(): Promise<void> {
    if (this.failure) return;
    await this.call('close', []);
    this.failure = new Error('metadata engine is closed');
  }
}
