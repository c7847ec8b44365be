// The meta layer as the serving process uses it: the engine, plus what only this process knows.
//
// Open files. An inode unlinked while open lives until its last close; which inodes are open is
// known here, so the engine is told only which inode to keep (`held`) and when to let it go
// (removeOrphan). Opening and closing cost no round trip to the engine.
//
// A cache of attributes, names and extended attributes, so that repeated stat, lookup and
// getxattr calls (ls -l asks for two extended attributes per file; the kernel asks for
// security.capability before writes) are answered without a round trip to the engine's thread.
// Why it stays right: every change to a volume's namespace goes through this process (a volume is
// served by one mount at a time, and gc and fsck touch only chunks), and it goes through this
// object. Answers are stored and invalidated as they arrive, and the engine answers in the order
// it was asked (one thread, one queue), so an answer never lands after one that overtook it: the
// cache always agrees with the database as of the last answer received. An engine that answers
// out of order (a connection pool) needs versioned entries instead. One exception: Orbit's own
// settings (INHERITED_XATTRS, such as a file's policy) are also set by the store's job runner,
// which may be another process; they are always asked of the engine.
import { FileType, INHERITED_XATTRS, MetaError, NAME_MAX, RENAME_WHITEOUT, type Caller, type DirEntry, type DirsChanged, type InodeAttr, type Ino, type Made, type MetaEngine, type Removal, type Removed, type Renamed, type VolumeChanges } from './contract.js';

/** Entries kept per map before the least recently used go. */
const CACHE_ENTRIES = 200_000;

/** A Map that forgets its least recently used entries past a bound. */
class Lru<K, V> {
  private readonly map = new Map<K, V>();

  constructor(
    private readonly limit: number,
    private readonly onEvict?: (key: K) => void,
  ) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }

  set(key: K, value: V): void {
    this.map.delete(key);
    this.map.set(key, value);
    if (this.map.size > this.limit) {
      const oldest = this.map.keys().next().value as K;
      this.map.delete(oldest);
      this.onEvict?.(oldest);
    }
  }

  delete(key: K): void {
    this.map.delete(key);
  }

  clear(): void {
    this.map.clear();
  }
}

const nameKey = (parent: Ino, name: string): string => `${parent}/${name}`;

export class MetaClient implements MetaEngine {
  /** Attributes by inode. Entries are never mutated: a change replaces or drops them. */
  private readonly attrs = new Lru<Ino, InodeAttr>(CACHE_ENTRIES);
  /** Directory entries: "parent/name" → inode. */
  private readonly names = new Lru<string, Ino>(CACHE_ENTRIES, (key) => this.complete.delete(Number(key.slice(0, key.indexOf('/')))));
  /** Directories all of whose entries are in `names` (made by this process, so far): a name not
   * there is not in the directory, which answers the lookup before every create at once. */
  private readonly complete = new Set<Ino>();
  /** Extended attributes by inode, then name; null: known to be absent. */
  private readonly xattrs = new Lru<Ino, Map<string, Buffer | null>>(CACHE_ENTRIES);
  /** Inodes whose every extended attribute is in `xattrs` (listed with readdirplus): a name not
   * there is absent. */
  private readonly xattrsComplete = new Lru<Ino, true>(CACHE_ENTRIES);
  /** Open handles per inode. */
  private readonly opens = new Map<Ino, number>();
  /** Open inodes whose last name went: removed at their last close. */
  private readonly orphans = new Set<Ino>();

  constructor(private readonly engine: MetaEngine) {}

  // ---- volumes ----

  createVolume: MetaEngine['createVolume'] = (...a) => this.engine.createVolume(...a);
  attachVolume: MetaEngine['attachVolume'] = (...a) => this.engine.attachVolume(...a);
  changeCount: MetaEngine['changeCount'] = () => this.engine.changeCount();

  /** A peer's changes change what this process has cached of the volume: all of it is forgotten. */
  async applyChanges(volume: string, changes: VolumeChanges): Promise<Ino[]> {
    const touched = await this.engine.applyChanges(volume, changes);
    this.forgetAll();
    return touched;
  }
  volumeHoldsChunk: MetaEngine['volumeHoldsChunk'] = (...a) => this.engine.volumeHoldsChunk(...a);
  setStoredSize: MetaEngine['setStoredSize'] = (...a) => this.engine.setStoredSize(...a);
  setReal: MetaEngine['setReal'] = (...a) => this.engine.setReal(...a);
  isReal: MetaEngine['isReal'] = (...a) => this.engine.isReal(...a);
  realChunks: MetaEngine['realChunks'] = (...a) => this.engine.realChunks(...a);
  volumeChunks: MetaEngine['volumeChunks'] = (...a) => this.engine.volumeChunks(...a);
  keptByThisStore: MetaEngine['keptByThisStore'] = (...a) => this.engine.keptByThisStore(...a);
  volumes: MetaEngine['volumes'] = () => this.engine.volumes();
  usage: MetaEngine['usage'] = (...a) => this.engine.usage(...a);

  async removeVolume(name: string, force: boolean): Promise<void> {
    await this.engine.removeVolume(name, force);
    this.forgetAll();
  }

  async recoverVolume(name: string): Promise<number> {
    const n = await this.engine.recoverVolume(name);
    this.forgetAll();
    return n;
  }

  // ---- names ----

  async lookup(parent: Ino, name: string): Promise<InodeAttr> {
    const special = name === '.' || name === '..';
    if (!special) {
      const ino = this.names.get(nameKey(parent, name));
      const attr = ino === undefined ? undefined : this.attrs.get(ino);
      if (attr) return attr;
      if (ino === undefined && this.complete.has(parent)) {
        if (Buffer.byteLength(name) > NAME_MAX) throw new MetaError('ENAMETOOLONG');
        throw new MetaError('ENOENT');
      }
    }
    const attr = await this.engine.lookup(parent, name);
    if (!special) this.names.set(nameKey(parent, name), attr.ino);
    this.attrs.set(attr.ino, attr);
    return attr;
  }

  async getattr(ino: Ino): Promise<InodeAttr> {
    const cached = this.attrs.get(ino);
    if (cached) return cached;
    return this.keep(await this.engine.getattr(ino));
  }

  async setattr(...a: Parameters<MetaEngine['setattr']>): Promise<InodeAttr> {
    return this.keep(await this.engine.setattr(...a));
  }

  async create(...a: Parameters<MetaEngine['create']>): Promise<Made> {
    const [parent, name, node] = a;
    const made = await this.engine.create(...a);
    this.names.set(nameKey(parent, name), made.attr.ino);
    // A new inode has no extended attributes but the inherited ones (asked of the engine anyway).
    this.xattrs.set(made.attr.ino, new Map());
    this.xattrsComplete.set(made.attr.ino, true);
    if (node.type === FileType.Directory) this.complete.add(made.attr.ino);
    this.keep(made.attr);
    return this.keepDirs(made);
  }

  async link(ino: Ino, parent: Ino, name: string): Promise<Made> {
    const made = await this.engine.link(ino, parent, name);
    this.names.set(nameKey(parent, name), made.attr.ino);
    this.keep(made.attr);
    return this.keepDirs(made);
  }

  async unlink(parent: Ino, name: string): Promise<Removed> {
    const removed = await this.engine.unlink(parent, name, await this.heldAt(parent, name));
    this.names.delete(nameKey(parent, name));
    this.dropRemoved(removed);
    return this.keepDirs(removed);
  }

  async rmdir(parent: Ino, name: string): Promise<Removed> {
    const removed = await this.engine.rmdir(parent, name, await this.heldAt(parent, name));
    this.names.delete(nameKey(parent, name));
    this.dropRemoved(removed);
    this.complete.delete(removed.ino);
    return this.keepDirs(removed);
  }

  async rename(parent: Ino, name: string, newParent: Ino, newName: string, flags: number, caller?: Caller): Promise<Renamed> {
    const done = await this.engine.rename(parent, name, newParent, newName, flags, caller, await this.heldAt(newParent, newName));
    // A whiteout, if asked for, now has the old name: it is looked up afresh.
    this.names.delete(nameKey(parent, name));
    if (flags & RENAME_WHITEOUT) this.complete.delete(parent);
    this.names.set(nameKey(newParent, newName), done.moved);
    if (done.exchanged !== undefined) this.names.set(nameKey(parent, name), done.exchanged);
    for (const ino of [done.moved, done.exchanged]) if (ino !== undefined) this.attrs.delete(ino); // ctime
    if (done.replaced) this.dropRemoved(done.replaced);
    return this.keepDirs(done);
  }

  readlink: MetaEngine['readlink'] = (...a) => this.engine.readlink(...a);

  async readdir(ino: Ino, cookie: number, limit: number, withAttrs?: boolean): Promise<DirEntry[]> {
    const entries = await this.engine.readdir(ino, cookie, limit, withAttrs);
    for (const e of entries) {
      if (!e.attr || e.name === '.' || e.name === '..') continue;
      this.names.set(nameKey(ino, e.name), e.ino);
      this.attrs.set(e.ino, e.attr);
      if (e.xattrs) {
        this.xattrs.set(e.ino, new Map(e.xattrs.map(([n, v]) => [n, Buffer.from(v.buffer, v.byteOffset, v.length)])));
        this.xattrsComplete.set(e.ino, true);
      }
    }
    return entries;
  }

  // ---- open files ----

  /** A handle opens the inode (which the caller has just looked up). */
  open(ino: Ino): void {
    this.opens.set(ino, (this.opens.get(ino) ?? 0) + 1);
  }

  /** A handle closes; an inode left without names goes with its last handle. */
  async release(ino: Ino): Promise<void> {
    const left = (this.opens.get(ino) ?? 1) - 1;
    if (left > 0) {
      this.opens.set(ino, left);
      return;
    }
    this.opens.delete(ino);
    if (!this.orphans.delete(ino)) return;
    await this.engine.removeOrphan(ino);
    this.forget(ino);
  }

  async removeOrphan(ino: Ino): Promise<boolean> {
    const gone = await this.engine.removeOrphan(ino);
    if (gone) this.forget(ino);
    return gone;
  }

  // ---- contents ----

  extents: MetaEngine['extents'] = (...a) => this.engine.extents(...a);

  async writeExtents(...a: Parameters<MetaEngine['writeExtents']>): Promise<InodeAttr> {
    return this.keep(await this.engine.writeExtents(...a));
  }

  unreferencedChunks: MetaEngine['unreferencedChunks'] = (...a) => this.engine.unreferencedChunks(...a);
  pinChunks: MetaEngine['pinChunks'] = (...a) => this.engine.pinChunks(...a);
  unpinChunks: MetaEngine['unpinChunks'] = (...a) => this.engine.unpinChunks(...a);
  claimUnreferenced: MetaEngine['claimUnreferenced'] = (...a) => this.engine.claimUnreferenced(...a);
  claimOrphans: MetaEngine['claimOrphans'] = (...a) => this.engine.claimOrphans(...a);
  staleClaims: MetaEngine['staleClaims'] = (...a) => this.engine.staleClaims(...a);
  forgetChunks: MetaEngine['forgetChunks'] = (...a) => this.engine.forgetChunks(...a);
  checkChunks: MetaEngine['checkChunks'] = () => this.engine.checkChunks();
  repairRefcounts: MetaEngine['repairRefcounts'] = () => this.engine.repairRefcounts();
  filesUsing: MetaEngine['filesUsing'] = (...a) => this.engine.filesUsing(...a);
  xattrOfFilesUsing: MetaEngine['xattrOfFilesUsing'] = (...a) => this.engine.xattrOfFilesUsing(...a);
  changesSince: MetaEngine['changesSince'] = (...a) => this.engine.changesSince(...a);

  // ---- extended attributes ----

  async getxattr(ino: Ino, name: string): Promise<Buffer> {
    if (INHERITED_XATTRS.includes(name)) return this.engine.getxattr(ino, name);
    const known = this.xattrs.get(ino)?.get(name);
    if (known === null || (known === undefined && this.xattrsComplete.get(ino))) throw new MetaError('ENODATA');
    if (known) return known;
    let value: Buffer | null;
    try {
      value = await this.engine.getxattr(ino, name);
    } catch (err) {
      if (!(err instanceof MetaError && err.code === 'ENODATA')) throw err;
      value = null;
    }
    let names = this.xattrs.get(ino);
    if (!names) this.xattrs.set(ino, (names = new Map()));
    names.set(name, value);
    if (value === null) throw new MetaError('ENODATA');
    return value;
  }

  listxattr: MetaEngine['listxattr'] = (...a) => this.engine.listxattr(...a);

  /** Whether the inode is known here to have no extended attributes but ones named under
   * `prefix`. (false: it has others, or this process does not know.) */
  hasNoXattrsBut(ino: Ino, prefix: string): boolean {
    if (!this.xattrsComplete.get(ino)) return false;
    const names = this.xattrs.get(ino);
    if (!names) return false;
    for (const [name, value] of names) if (value !== null && !name.startsWith(prefix)) return false;
    return true;
  }

  async setxattr(ino: Ino, name: string, value: Uint8Array, flags: number): Promise<void> {
    await this.engine.setxattr(ino, name, value, flags);
    this.xattrs.get(ino)?.delete(name);
    this.xattrsComplete.delete(ino);
    this.attrs.delete(ino); // ctime
  }

  async removexattr(ino: Ino, name: string): Promise<void> {
    await this.engine.removexattr(ino, name);
    this.xattrs.get(ino)?.delete(name);
    this.xattrsComplete.delete(ino);
    this.attrs.delete(ino);
  }

  // ---- durability ----

  sync: MetaEngine['sync'] = () => this.engine.sync();

  async close(): Promise<void> {
    this.forgetAll();
    await this.engine.close();
  }

  // ---- internals ----

  /** The inode at parent/name if this process has it open: the engine must keep it. */
  private async heldAt(parent: Ino, name: string): Promise<Ino | undefined> {
    if (this.opens.size === 0) return undefined;
    let ino = this.names.get(nameKey(parent, name));
    if (ino === undefined) ino = (await this.lookup(parent, name).catch(() => undefined))?.ino;
    return ino !== undefined && this.opens.has(ino) ? ino : undefined;
  }

  private keep(attr: InodeAttr): InodeAttr {
    this.attrs.set(attr.ino, attr);
    return attr;
  }

  /** The directories' attributes after a change of names, as the engine reported them. */
  private keepDirs<T extends DirsChanged>(changed: T): T {
    for (const dir of changed.dirs) this.attrs.set(dir.ino, dir);
    return changed;
  }

  /** A name went: the inode's link count changed, and the inode itself may be gone (unless it is
   * open here: then it goes at its last close). */
  private dropRemoved(removed: Removal): void {
    if (removed.orphaned && this.opens.has(removed.ino)) this.orphans.add(removed.ino);
    if (removed.orphaned) this.forget(removed.ino);
    else this.attrs.delete(removed.ino);
  }

  private forget(ino: Ino): void {
    this.attrs.delete(ino);
    this.xattrs.delete(ino);
    this.xattrsComplete.delete(ino);
  }

  private forgetAll(): void {
    this.complete.clear();
    this.attrs.clear();
    this.names.clear();
    this.xattrs.clear();
    this.xattrsComplete.clear();
  }
}
