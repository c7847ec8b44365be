// Copies of the metadata database on the pool's disks: with three active disks or more, losing
// any one of them loses no metadata. <home>/meta.db, the primary, answers every read; two
// mirrors, <disk>/meta/meta.db on two other disks, get every change.
//
// Why they stay identical. A change runs on the primary inside an outer transaction that holds
// the primary's write lock, then runs on each mirror (each commits), then the primary commits.
// Every process of the store takes that lock to change anything, so every copy gets the same
// changes in the same order, whichever process makes them. And an operation gives the same result
// on the same database: stamped() gives all copies one time, inode numbers come from
// AUTOINCREMENT (copied with the rest).
//
// How that is checked. Every change bumps a sequence number kept in the database itself
// (SqliteEngine.seq(): a count and a tag naming the change). Before a change goes to a mirror,
// the mirror's number must be the primary's; otherwise the mirror is re-seeded: a snapshot of the
// primary (VACUUM INTO) replaces it. That catches a process that died between a mirror's commit
// and the primary's, another process that mirrored onto other disks for a while, a disk that came
// back or was replaced. The tag is why the count alone is not enough: a mirror that got a change
// the primary never committed would otherwise look in step once the primary's count caught up
// through other changes. A mirror whose answer differs from the primary's is re-seeded as well.
// Every change bumps the number, mirrored or not: a change that did not (made by a process that
// had no mirrors then) would leave an old mirror looking in step when it is not.
//
// Restoring. Mirrors commit before the primary, so the mirror with the highest count holds
// everything the primary committed: when meta.db is missing, empty or not a database, it is made
// again from that mirror (with a log line), at open or when it disappears while open.
//
// Replacing a database file that other processes have open is where SQLite gets corrupted (their
// -wal and -shm files, found by name, would be shared with the new file). So a file is replaced
// only under the primary's write lock (a restore: under a lock file), the old -wal and -shm are
// removed first (a process still holding the old file keeps its own, by descriptor), and every
// process notices within a second that the file it has open is no longer the one at that path,
// and opens the new one.
//
// Failures on a mirror never fail the operation: a mirror that cannot be written (its disk gone,
// full or failing) is dropped with one log line and the next disk in order takes its place; the
// failed disk is tried again a minute later.
//
// With fewer than three active disks there are no mirrors, and a change costs what it costs the
// engine alone (a clock reading more). With mirrors, it costs the change on each copy plus one
// read of each copy's sequence number (measured: a create, 66 µs alone, 220 µs with two mirrors,
// all on tmpfs). Seeding a mirror copies the whole database while the primary's lock is held.
import Database from 'better-sqlite3';
import { closeSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { MetaError } from '../contract.js';
import { rank, seedOf } from '../../pool/placement.js';
import { POOL_FILE, type PoolConfig } from '../../pool/pool-config.js';
import { isAlive } from '../../processes.js';
import { SqliteEngine, stamped } from './engine.js';

/** A directory on a disk of the pool that holds (or is to hold) a mirror, as `meta.db`. */
export interface MirrorPlace {
  /** The disk's id, for log lines. */
  disk: string;
  /** Made when missing; its parent (the disk) never is: a disk that is gone is not made again. */
  dir: string;
}

/** Where mirrors go, as of now. */
export interface MirrorSites {
  /** Where mirrors are kept, best first; none: the database is not mirrored. */
  current(): MirrorPlace[];
  /** Everywhere a mirror may be found, to restore the primary from. */
  all(): MirrorPlace[];
}

export type MirrorLog = (level: 'info' | 'warn' | 'error', fields: Record<string, unknown>, msg: string) => void;

export interface MirrorOptions {
  sites: MirrorSites;
  log?: MirrorLog;
  /** Mirrors kept (default 2). */
  copies?: number;
  /** How often the sites and the identity of the files open are checked, in ms (default 1000). */
  checkMs?: number;
  /** How long a disk whose mirror failed is left out before it is tried again, in ms. */
  retryMs?: number;
}

/** The engine's operations, by name. */
type Operations = { [K in keyof SqliteEngine as SqliteEngine[K] extends (...a: never[]) => unknown ? K : never]: SqliteEngine[K] };
type Operation = keyof Operations;

/** Operations that change nothing: the primary answers them alone. Anything else is taken for a
 * change and mirrored (an operation added to the engine later is safe by default). */
const READS: ReadonlySet<string> = new Set<Operation>([
  'volumes', 'usage', 'lookup', 'getattr', 'readlink', 'readdir', 'readdirPacked', 'extents', 'unreferencedChunks', 'staleClaims',
  'checkChunks', 'filesUsing', 'xattrOfFilesUsing', 'getxattr', 'listxattr', 'seq', 'changesSince', 'changeCount', 'volumeHoldsChunk', 'isReal', 'realChunks', 'volumeChunks', 'keptByThisStore',
]);

const DB_FILE = 'meta.db';

interface Mirror {
  place: MirrorPlace;
  file: string;
  engine?: SqliteEngine;
  /** The file `engine` has open ("dev:ino"), to notice it deleted or replaced. */
  identity?: string;
}

/** A mirror that answered otherwise than the primary: it is not in step, whatever its number says. */
class Diverged extends Error {
  override name = 'Diverged';
}

export class MirroredEngine {
  private primary!: SqliteEngine;
  private primaryIdentity: string | undefined;
  private mirrors: Mirror[] = [];
  /** sites.current() as of the last check. */
  private places: MirrorPlace[] = [];
  /** Mirror directories that failed, and until when they are left out. */
  private readonly failed = new Map<string, number>();
  private checkedAt = 0;
  private readonly sites: MirrorSites;
  private readonly logLine: MirrorLog;
  private readonly copies: number;
  private readonly checkMs: number;
  private readonly retryMs: number;

  /** Opens (creating when missing, restoring from a mirror when lost) the primary at `file`. */
  constructor(
    readonly file: string,
    options: MirrorOptions,
  ) {
    this.sites = options.sites;
    this.logLine = options.log ?? (() => undefined);
    this.copies = options.copies ?? 2;
    this.checkMs = options.checkMs ?? 1000;
    this.retryMs = options.retryMs ?? 60_000;
    this.openPrimary();
    this.check();
  }

  /** The disks holding mirrors now (or about to, at the next change). */
  get mirrorDisks(): string[] {
    return this.mirrors.map((m) => m.place.disk);
  }

  /** Runs an operation of the engine, by name: the worker's entry (worker.ts). */
  run(method: string, args: unknown[]): unknown {
    if (READS.has(method)) return invoke(this.primary, method, args);
    if (method === 'sync') return this.sync();
    if (method === 'close') return this.close();
    return this.change(method, args);
  }

  /** run(), typed. */
  op<M extends Operation>(method: M, ...args: Parameters<Extract<Operations[M], (...a: never[]) => unknown>>): ReturnType<Extract<Operations[M], (...a: never[]) => unknown>> {
    return this.run(method, args) as ReturnType<Extract<Operations[M], (...a: never[]) => unknown>>;
  }

  /** Every copy, mirrors first: the primary is never ahead of them on disk either. A mirror that
   * fails is dropped (and replaced at the next change). */
  sync(): void {
    for (const m of [...this.mirrors]) {
      if (!m.engine) continue;
      try {
        m.engine.sync();
      } catch (err) {
        this.drop(m, err);
      }
    }
    this.primary.sync();
  }

  close(): void {
    for (const m of this.mirrors) closeMirror(m);
    this.mirrors = [];
    this.primary.close();
  }

  // ---- changes ----

  private change(method: string, args: unknown[]): unknown {
    if (Date.now() - this.checkedAt >= this.checkMs) this.check();
    if (this.mirrors.length === 0) return invoke(this.primary, method, args);
    return stamped(() =>
      this.primary.transaction(() => {
        const before = this.primary.seq();
        // A refusal (a MetaError) ends here, before any mirror: nothing changed anywhere.
        const result = invoke(this.primary, method, args);
        let lost = false;
        for (const m of [...this.mirrors]) if (!this.apply(m, before, method, args, result)) lost = true;
        if (lost) this.replaceLost(before, method, args, result);
        return result;
      }),
    );
  }

  /** Applies the change to one mirror, re-seeding it first when it is not in step; false: the
   * mirror failed and was dropped. */
  private apply(m: Mirror, before: string, method: string, args: unknown[], expected: unknown): boolean {
    for (let attempt = 0; ; attempt++) {
      try {
        this.ready(m, before, attempt > 0);
        const got = invoke(m.engine!, method, args);
        if (!sameAnswer(got, expected)) throw new Diverged(`${method} answered otherwise than on the primary`);
        return true;
      } catch (err) {
        if (attempt === 0 && isDivergence(err)) {
          this.logLine('warn', { disk: m.place.disk, file: m.file, err: (err as Error).message }, 'metadata mirror differs from the primary: re-seeding it');
          continue;
        }
        this.drop(m, err);
        return false;
      }
    }
  }

  /** Opens the mirror and brings it in step with the primary (whose number is `before`); `reseed`:
   * whatever its number says. */
  private ready(m: Mirror, before: string, reseed: boolean): void {
    if (!reseed) {
      if (!m.engine && !this.open(m)) return this.seed(m, before, 'it is missing');
      const seq = m.engine!.seq();
      if (seq === before) return;
      // Another process may have replaced the file we have open (re-seeded it): open it again.
      if (identityOf(m.file) !== m.identity) {
        closeMirror(m);
        if (!this.open(m)) return this.seed(m, before, 'it is missing');
        if (m.engine!.seq() === before) return;
      }
      return this.seed(m, before, `it is not in step (at ${m.engine!.seq()}, the primary at ${before})`);
    }
    this.seed(m, before, 'it differed');
  }

  /** Opens the mirror's file; false when there is none. */
  private open(m: Mirror): boolean {
    makeDir(m.place.dir);
    if (identityOf(m.file) === undefined) return false;
    m.engine = new SqliteEngine(m.file);
    m.identity = identityOf(m.file);
    return true;
  }

  /** Replaces the mirror with a snapshot of the primary as committed: the state before the change
   * in progress (this runs inside its transaction, which no other connection sees). */
  private seed(m: Mirror, before: string, why: string): void {
    const started = Date.now();
    closeMirror(m);
    makeDir(m.place.dir);
    copyDatabase(this.file, m.file, true);
    m.engine = new SqliteEngine(m.file);
    m.identity = identityOf(m.file);
    const seq = m.engine.seq();
    if (seq !== before) throw new Error(`the copy of the primary is at ${seq}, the primary at ${before}`);
    this.logLine('info', { disk: m.place.disk, file: m.file, why, ms: Date.now() - started }, 'metadata mirror seeded from the primary');
  }

  /** A mirror that failed: closed, left out for a while; the next place takes its part. */
  private drop(m: Mirror, err: unknown): void {
    this.logLine('error', { disk: m.place.disk, file: m.file, err: (err as Error).message }, 'metadata mirror dropped: the next disk takes its place');
    closeMirror(m);
    this.failed.set(m.place.dir, Date.now() + this.retryMs);
    this.mirrors = this.mirrors.filter((x) => x !== m);
  }

  /** Mirrors were dropped during a change: the next places get the same change. */
  private replaceLost(before: string, method: string, args: unknown[], result: unknown): void {
    for (const place of this.places) {
      if (this.mirrors.length >= this.copies) return;
      if (this.failed.has(place.dir) || this.mirrors.some((m) => m.place.dir === place.dir)) continue;
      const m: Mirror = { place, file: path.join(place.dir, DB_FILE) };
      this.mirrors.push(m);
      this.apply(m, before, method, args, result);
    }
  }

  // ---- the places and the files ----

  /** At most every checkMs: the mirrors' places (pool.json changes, disks wiped), and whether the
   * files open are still the ones at their paths. */
  private check(): void {
    this.checkedAt = Date.now();
    if (this.mirrors.length > 0 && identityOf(this.file) !== this.primaryIdentity) this.primaryMoved();
    try {
      this.places = this.sites.current();
    } catch (err) {
      this.logLine('error', { err: (err as Error).message }, 'cannot tell where the metadata mirrors go: keeping them where they are');
    }
    for (const [dir, until] of this.failed) if (until <= this.checkedAt) this.failed.delete(dir);
    const chosen = this.places.filter((p) => !this.failed.has(p.dir)).slice(0, this.copies);
    const kept = new Map(this.mirrors.map((m) => [m.place.dir, m]));
    const next = chosen.map((p) => kept.get(p.dir) ?? { place: p, file: path.join(p.dir, DB_FILE) });
    for (const m of this.mirrors) {
      if (next.includes(m)) continue;
      closeMirror(m);
      this.logLine('warn', { disk: m.place.disk, file: m.file }, 'metadata mirror dropped: its disk is gone or no longer active, or the pool has fewer than three active disks');
    }
    this.mirrors = next;
    for (const m of this.mirrors) if (m.engine && identityOf(m.file) !== m.identity) closeMirror(m);
  }

  /** meta.db is not the file open any more: deleted (restored from this process's mirrors, which
   * hold everything it committed), or replaced (by another process's restore): opened again. */
  private primaryMoved(): void {
    this.logLine('error', { file: this.file }, 'the metadata database was deleted or replaced while open');
    const ours = this.mirrors.filter((m) => m.engine && identityOf(m.file) === m.identity).map((m) => m.file);
    if (isMissing(this.file) && !this.restore('it was deleted while open', ours)) {
      // Nothing to make it from: carry on with the deleted file, as without mirrors.
      this.primaryIdentity = identityOf(this.file);
      return;
    }
    this.primary.close();
    this.openPrimary();
  }

  private openPrimary(): void {
    if (isMissing(this.file)) this.restore('it is missing');
    try {
      this.primary = new SqliteEngine(this.file);
    } catch (err) {
      if (!isUnreadable(err) || !this.restore(`it is unreadable (${(err as Error).message})`)) throw err;
      this.primary = new SqliteEngine(this.file);
    }
    this.primaryIdentity = identityOf(this.file);
  }

  /** Makes the primary again from the mirror with the highest count among `from` (default: every
   * disk's), if there is one; false if not. */
  private restore(why: string, from?: string[]): boolean {
    let files = from;
    if (!files) {
      try {
        files = this.sites.all().map((p) => path.join(p.dir, DB_FILE));
      } catch {
        return false;
      }
    }
    const candidates = files.filter((f) => identityOf(f) !== undefined);
    if (candidates.length === 0) return false;
    return withLock(`${this.file}.restoring`, () => {
      // Another process may have done it meanwhile.
      if (!isMissing(this.file) && isReadable(this.file)) return true;
      let best: { file: string; count: number; seq: string } | undefined;
      for (const file of candidates) {
        try {
          const db = new Database(file, { fileMustExist: true });
          try {
            const seq = db.prepare("SELECT value FROM settings WHERE key = 'seq'").pluck().get() as string | undefined;
            const count = seq === undefined ? -1 : parseInt(seq, 10);
            if (seq !== undefined && (!best || count > best.count)) best = { file, count, seq };
          } finally {
            db.close();
          }
        } catch (err) {
          this.logLine('warn', { file, err: (err as Error).message }, 'metadata mirror unreadable: not restoring from it');
        }
      }
      if (!best) return false;
      if (!isMissing(this.file)) {
        // Kept for whoever wants to look at it; its -wal belongs to it, not to the copy.
        const aside = `${this.file}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
        renameSync(this.file, aside);
        try {
          renameSync(`${this.file}-wal`, `${aside}-wal`);
        } catch {
          // none
        }
      }
      copyDatabase(best.file, this.file, false);
      this.logLine('warn', { file: this.file, from: best.file, seq: best.seq, why }, 'metadata database restored from a mirror');
      return true;
    });
  }
}

// ---- where the mirrors go: the pool's disks ----

/** The store's first disk ('home', in the home directory, with meta.db): never a mirror's. */
const HOME_DISK = 'home';
/** A disk's label (pool/disk.ts): a disk without it is gone, wiped, or not mounted. */
const LABEL = 'orbit-disk.json';
/** Mirrors go to the first disks in rendezvous order of this key (placement.ts): every process
 * ranks the disks alike, and adding a disk moves a mirror only when the new disk ranks first. */
const MIRROR_KEY = '6d657461'; // "meta"
/** With fewer active disks, no mirrors. */
export const MIRROR_MIN_DISKS = 3;

/** The mirrors' places on the pool whose configuration is `<home>/pool.json`: the active disks
 * other than the first, whose labels are there, ranked; none when the pool has fewer than three
 * active disks. Restores look on every disk not failed. pool.json is re-read when it changed. */
export function poolMirrorSites(home: string): MirrorSites {
  const configFile = path.join(home, POOL_FILE);
  let config: PoolConfig | undefined;
  let version = '';
  const load = (): PoolConfig | undefined => {
    const st = statSync(configFile, { throwIfNoEntry: false });
    // Every write replaces the file (a new inode): two writes within one tick of the clock that
    // stamps mtime differ by inode (and mostly by size).
    const at = st && `${st.ino}:${st.size}:${st.mtimeMs}`;
    if (at !== undefined && at !== version) {
      config = JSON.parse(readFileSync(configFile, 'utf8')) as PoolConfig;
      version = at;
    }
    return config;
  };
  const places = (c: PoolConfig, take: (state: string) => boolean): MirrorPlace[] => {
    const disks = c.disks.filter((d) => d.id !== HOME_DISK && take(d.state)).map((d) => ({ ...d, seed: seedOf(d.id), weight: 1 }));
    return rank(MIRROR_KEY, disks)
      .filter((d) => labelled(d.path, c.id, d.id))
      .map((d) => ({ disk: d.id, dir: path.join(d.path, 'meta') }));
  };
  return {
    current() {
      const c = load();
      if (!c || c.disks.filter((d) => d.state === 'active').length < MIRROR_MIN_DISKS) return [];
      return places(c, (state) => state === 'active');
    },
    all() {
      const c = load();
      return c ? places(c, (state) => state !== 'failed') : [];
    },
  };
}

function labelled(dir: string, pool: string, disk: string): boolean {
  try {
    const label = JSON.parse(readFileSync(path.join(dir, LABEL), 'utf8')) as { pool?: string; disk?: string };
    return label.pool === pool && label.disk === disk;
  } catch {
    return false;
  }
}

// ---- files ----

function invoke(engine: SqliteEngine, method: string, args: unknown[]): unknown {
  return (engine[method as Operation] as (...a: unknown[]) => unknown).apply(engine, args);
}

/** Makes the directory, not its parent: a mirror's disk that is gone stays gone. Private: the
 * database names every file. */
function makeDir(dir: string): void {
  try {
    mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  }
}

/** Whether two answers are equal: plain data (what the engine answers), compared in a fraction
 * of util.isDeepStrictEqual's time. */
function sameAnswer(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Buffer.isBuffer(a) || Buffer.isBuffer(b)) return Buffer.isBuffer(a) && Buffer.isBuffer(b) && a.equals(b);
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameAnswer(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  if (ka.length !== Object.keys(b).length) return false;
  for (const k of ka) if (!(k in b) || !sameAnswer((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  return true;
}

function closeMirror(m: Mirror): void {
  try {
    m.engine?.close();
  } catch {
    // its disk may be gone; nothing to keep
  }
  m.engine = undefined;
  m.identity = undefined;
}

/** Errors that say the mirror is not what the primary is (rather than its disk failing). */
function isDivergence(err: unknown): boolean {
  if (err instanceof Diverged || err instanceof MetaError) return true;
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB' || code === 'SQLITE_READONLY_DBMOVED';
}

function isUnreadable(err: unknown): boolean {
  const code = (err as { code?: string }).code;
  return code === 'SQLITE_CORRUPT' || code === 'SQLITE_NOTADB';
}

/** No file, or an empty one (which SQLite would take for a new database). */
function isMissing(file: string): boolean {
  const s = statSync(file, { throwIfNoEntry: false });
  return s === undefined || s.size === 0;
}

function isReadable(file: string): boolean {
  try {
    const db = new Database(file, { fileMustExist: true });
    try {
      db.prepare('SELECT count(*) FROM sqlite_schema').get();
      return true;
    } finally {
      db.close();
    }
  } catch {
    return false;
  }
}

/** "dev:ino" of the file at `file` now; undefined when there is none. */
function identityOf(file: string): string | undefined {
  const s = statSync(file, { throwIfNoEntry: false });
  return s ? `${s.dev}:${s.ino}` : undefined;
}

/**
 * Replaces `to` with a snapshot of the database `from` (its last commit). The snapshot is made
 * under another name and synced, `to`'s -wal and -shm are removed (they belong to the old file,
 * and SQLite would apply them to the new one), then it is renamed into place. Run under a lock
 * (the primary's, or the restore's): snapshots left by a copy that died are removed.
 */
function copyDatabase(from: string, to: string, readonly: boolean): void {
  const base = path.basename(to);
  for (const name of readdirSync(path.dirname(to))) {
    if (name.startsWith(`${base}.`) && name.endsWith('.tmp')) rmSync(path.join(path.dirname(to), name), { force: true });
  }
  const temp = `${to}.${process.pid}.${Date.now()}.tmp`;
  try {
    const src = new Database(from, { readonly, fileMustExist: true });
    try {
      src.prepare('VACUUM INTO ?').run(temp);
    } finally {
      src.close();
    }
    fsyncPath(temp, 'r+');
    rmSync(`${to}-wal`, { force: true });
    rmSync(`${to}-shm`, { force: true });
    renameSync(temp, to);
  } catch (err) {
    rmSync(temp, { force: true });
    throw err;
  }
  fsyncPath(path.dirname(to), 'r');
}

function fsyncPath(file: string, flags: string): void {
  const fd = openSync(file, flags);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Runs `fn` holding the lock file `file` (O_EXCL, the holder's pid in it; a dead holder's lock is
 * taken over). Synchronous, as the engine is: it runs on the engine's own thread. */
function withLock<T>(file: string, fn: () => T): T {
  const deadline = Date.now() + 120_000;
  for (;;) {
    try {
      writeFileSync(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      let holder = 0;
      try {
        holder = Number(readFileSync(file, 'utf8'));
      } catch {
        // gone meanwhile
      }
      const stuck = Date.now() > deadline;
      if (stuck && holder > 0 && isAlive(holder)) throw new Error(`${file} is held by process ${holder}`, { cause: err });
      // A dead holder's, or one left empty by a holder that died before writing its pid.
      if ((holder > 0 && !isAlive(holder)) || stuck) {
        rmSync(file, { force: true });
        continue;
      }
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
    }
  }
  try {
    return fn();
  } finally {
    rmSync(file, { force: true });
  }
}
