// One volume as a POSIX filesystem: the fuse layer's operations, answered from the metadata
// engine (names, attributes, extended attributes) and from the open files' contents (open-file.ts).
// Permission checks are the kernel's (mounted with default_permissions). Metadata errors carry
// errno codes (MetaError.code), which the fuse layer answers as they are.
import { constants } from 'node:fs';
import type {
  Attr,
  AttrReply,
  CreateReply,
  Entry,
  FuseOperations,
  OpenReply,
  ReadReply,
  RequestContext,
  SetattrChanges,
  StatfsReply,
} from '../fuse/contract.js';
import type { DirentWriter } from '../fuse/dirent.js';
import { FuseError } from '../fuse/errors.js';
import type { Logger } from '../log.js';
import { FileType, type InodeAttr, type Ino, type NewNode } from '../meta/contract.js';
import { queuePolicyChange } from '../jobs/policy-change.js';
import { formatPolicy, parsePolicy, PolicyError } from '../pool/policy.js';
import { ChunkMemory } from '../pool/chunk-memory.js';
import { ownPolicy, POLICY_XATTR } from '../store/policies.js';
import type { Store } from '../store/store.js';
import { ChunkCache } from './chunk-cache.js';
import { ORBIT_XATTRS, PIN_XATTR } from '../meta/contract.js';
import { poolChunks, type ChunkSource } from '../content/chunk-source.js';
import { OpenFile, type ContentParts } from './open-file.js';

const FUSE_ROOT = 1;
const S_IFMT = 0o170000;
/** st_blksize: applications size their I/O by it, and large requests suit chunking. */
const BLKSIZE = 1024 * 1024;
/** readdir pages fetched from the metadata engine at a time. */
const READDIR_PAGE = 256;
/** The extended attribute namespaces a volume keeps. Not system.* (ACLs: Orbit does not do them),
 * which is EOPNOTSUPP, as on a Linux filesystem mounted without ACLs. */
export const XATTR_NAMESPACES: readonly string[] = ['user.', 'trusted.', 'security.'];
const kept = (name: string): boolean => XATTR_NAMESPACES.some((ns) => name.startsWith(ns));
/** open(2)'s access mode bits (Node's fs.constants lacks it). */
const O_ACCMODE = 0o3;
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;

export class VolumeFs implements FuseOperations {
  /** Inodes with open handles, and their contents in flight. */
  private readonly openFiles = new Map<Ino, OpenFile>();
  private readonly parts: ContentParts;
  private nextFh = 1;
  /** Open directories (by handle) listed to their end: the cookie after their last entry. */
  private readonly listedToEnd = new Map<number, number>();

  constructor(
    private readonly store: Store,
    private readonly volume: string,
    /** The volume root's inode in the metadata engine; the kernel knows it as 1. */
    private readonly root: Ino,
    private readonly log: Logger,
    /** Where file content comes from: the pool, or for an attached volume also the peers. */
    source: ChunkSource = poolChunks(store.chunks, store.codec),
    /** Set for a volume attached from a peer: read-only, with Real and Unreal files. */
    private readonly attached?: { onRealChanged: () => void },
  ) {
    this.parts = { meta: store.meta, chunks: store.chunks, codec: store.codec, cache: new ChunkCache(source), memory: new ChunkMemory(), log };
  }

  // The kernel's inode 1 is the volume root; the engine's inode 1 (another volume's root, if
  // any) takes the root's number instead: a swap, so every number maps both ways.
  private toMeta(ino: number): Ino {
    return ino === FUSE_ROOT ? this.root : ino === this.root ? FUSE_ROOT : ino;
  }

  /** The kernel's number for an inode of the metadata engine. */
  toFuse(ino: Ino): number {
    return ino === this.root ? FUSE_ROOT : ino === FUSE_ROOT ? this.root : ino;
  }

  private attr(a: InodeAttr): Attr {
    const size = this.openFiles.get(a.ino)?.size ?? a.size;
    return {
      ino: this.toFuse(a.ino), mode: a.mode, nlink: a.nlink, uid: a.uid, gid: a.gid, rdev: a.rdev, size,
      blocks: Math.ceil(size / 512), blksize: BLKSIZE, atime: a.atime, mtime: a.mtime, ctime: a.ctime,
    };
  }

  private entry(a: InodeAttr): Entry {
    return { attr: this.attr(a), generation: a.generation, noXattrs: this.store.meta.hasNoXattrsBut(a.ino, ORBIT_XATTRS) };
  }

  // ---- names ----

  async lookup(_ctx: RequestContext, parent: number, name: string): Promise<Entry> {
    return this.entry(await this.store.meta.lookup(this.toMeta(parent), name));
  }

  async getattr(_ctx: RequestContext, ino: number): Promise<AttrReply> {
    return { attr: this.attr(await this.store.meta.getattr(this.toMeta(ino))) };
  }

  async setattr(_ctx: RequestContext, ino: number, c: SetattrChanges): Promise<AttrReply> {
    this.refuseWrites();
    const id = this.toMeta(ino);
    const file = this.openFiles.get(id);
    if (c.size !== undefined) {
      if (file) await file.truncate(c.size);
      else await this.store.meta.setattr(id, { size: c.size });
    }
    // A commit stamps mtime: buffered data goes first, so that times set explicitly stay set
    // (tar, cp -p and rsync set them on the open file).
    if (file && (c.mtime !== undefined || c.atime !== undefined)) await file.commit();
    const rest = { mode: c.mode, uid: c.uid, gid: c.gid, atime: c.atime, mtime: c.mtime, ctime: c.ctime };
    // Set-id bits go when the kernel says so (a write or chown by a non-owner).
    if ((c.killSuid || c.killSgid) && rest.mode === undefined) {
      const mode = (await this.store.meta.getattr(id)).mode;
      rest.mode = mode & ~((c.killSuid ? 0o4000 : 0) | (c.killSgid ? 0o2000 : 0));
    }
    const changed = Object.values(rest).some((v) => v !== undefined);
    const attr = changed || c.size === undefined ? await this.store.meta.setattr(id, rest) : await this.store.meta.getattr(id);
    return { attr: this.attr(attr) };
  }

  async readlink(_ctx: RequestContext, ino: number): Promise<string> {
    return this.store.meta.readlink(this.toMeta(ino));
  }

  async mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Promise<Entry> {
    this.refuseWrites();
    return this.make(ctx, parent, name, { type: (mode & S_IFMT) as FileType, perm: mode & 0o7777, rdev });
  }

  async mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Promise<Entry> {
    this.refuseWrites();
    return this.make(ctx, parent, name, { type: FileType.Directory, perm: mode & 0o7777 });
  }

  async symlink(ctx: RequestContext, parent: number, name: string, target: string): Promise<Entry> {
    this.refuseWrites();
    return this.make(ctx, parent, name, { type: FileType.Symlink, perm: 0o777, target });
  }

  async link(_ctx: RequestContext, ino: number, newParent: number, newName: string): Promise<Entry> {
    this.refuseWrites();
    return this.entry((await this.store.meta.link(this.toMeta(ino), this.toMeta(newParent), newName)).attr);
  }

  async unlink(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    this.refuseWrites();
    await this.store.meta.unlink(this.toMeta(parent), name);
  }

  async rmdir(_ctx: RequestContext, parent: number, name: string): Promise<void> {
    this.refuseWrites();
    await this.store.meta.rmdir(this.toMeta(parent), name);
  }

  async rename(ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): Promise<void> {
    this.refuseWrites();
    await this.store.meta.rename(this.toMeta(parent), name, this.toMeta(newParent), newName, flags, { uid: ctx.uid, gid: ctx.gid, umask: ctx.umask });
  }

  // ---- files ----

  async create(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Promise<CreateReply> {
    this.refuseWrites();
    const entry = await this.make(ctx, parent, name, { type: FileType.Regular, perm: mode & 0o7777 });
    const opened = await this.openFile(this.toMeta(entry.attr.ino), flags, true);
    return { ...entry, ...opened };
  }

  async open(_ctx: RequestContext, ino: number, flags: number): Promise<OpenReply> {
    if ((flags & O_ACCMODE) !== constants.O_RDONLY || flags & constants.O_TRUNC) this.refuseWrites();
    return this.openFile(this.toMeta(ino), flags);
  }

  async read(_ctx: RequestContext, ino: number, _fh: number, offset: number, size: number): Promise<ReadReply> {
    const id = this.toMeta(ino);
    const file = this.openFiles.get(id) ?? new OpenFile(id, (await this.store.meta.getattr(id)).size, this.parts);
    try {
      return await file.read(offset, size);
    } catch (err) {
      // Content the metadata names is damaged or missing: the reader gets EIO (not the chunk
      // store's ENOENT), and the log says which file.
      const name = (err as { name?: string }).name;
      if (name === 'ChunkCorruptError' || name === 'ChunkNotFoundError' || name === 'ChunkUnreadableError' || name === 'ChunkUnavailableError') {
        this.log.error({ ino: id, offset, err: (err as Error).message }, 'file content unreadable: read answered EIO');
        throw new FuseError('EIO');
      }
      throw err;
    }
  }

  async write(_ctx: RequestContext, ino: number, _fh: number, offset: number, data: Buffer): Promise<number> {
    this.refuseWrites();
    const file = this.openFiles.get(this.toMeta(ino));
    if (!file) throw new FuseError('EBADF');
    await file.write(offset, data);
    return data.length;
  }

  /** close(2): contents reach the metadata (visible to every reader), not yet the disk. */
  async flush(_ctx: RequestContext, ino: number): Promise<void> {
    await this.openFiles.get(this.toMeta(ino))?.commit();
  }

  async fsync(_ctx: RequestContext, ino: number): Promise<void> {
    await this.openFiles.get(this.toMeta(ino))?.commit();
    await this.store.sync();
  }

  async release(_ctx: RequestContext, ino: number): Promise<void> {
    const id = this.toMeta(ino);
    const file = this.openFiles.get(id);
    try {
      await file?.commit();
    } finally {
      if (file && --file.handles === 0) this.openFiles.delete(id);
      await this.store.meta.release(id);
    }
  }

  async fallocate(_ctx: RequestContext, ino: number, _fh: number, mode: number, offset: number, length: number): Promise<void> {
    this.refuseWrites();
    // The kernel passes only these three (and checks their combinations) on to FUSE.
    if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) throw new FuseError('EOPNOTSUPP');
    const file = this.openFiles.get(this.toMeta(ino));
    if (!file) throw new FuseError('EBADF');
    const keepSize = (mode & FALLOC_FL_KEEP_SIZE) !== 0;
    // Space is not reserved ahead (chunks are written when content exists), so allocating is
    // only a size change, and zeroing is a hole: both read as zeros.
    if (mode & (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) await file.punchHole(offset, length, keepSize);
    else if (!keepSize && offset + length > file.size) await file.truncate(offset + length);
  }

  // ---- directories ----

  /** An open directory is held like an open file: removed while open, it keeps its attributes
   * (with no links) until the last close, as fstat on it expects. */
  async opendir(_ctx: RequestContext, ino: number): Promise<OpenReply> {
    this.store.meta.open(this.toMeta(ino));
    return { fh: this.nextFh++ };
  }

  async releasedir(_ctx: RequestContext, ino: number, fh: number): Promise<void> {
    this.listedToEnd.delete(fh);
    await this.store.meta.release(this.toMeta(ino));
  }

  async readdir(_ctx: RequestContext, ino: number, fh: number, offset: number, out: DirentWriter): Promise<void> {
    await this.list(ino, fh, offset, out);
  }

  async readdirplus(_ctx: RequestContext, ino: number, fh: number, offset: number, out: DirentWriter): Promise<void> {
    await this.list(ino, fh, offset, out);
  }

  async fsyncdir(): Promise<void> {
    await this.store.sync();
  }

  /** Every listing ends with a request for what comes after the last entry. An open directory
   * listed to its end answers that at once (POSIX leaves entries added since opendir or
   * rewinddir unspecified); rewinddir starts again at 0. */
  private async list(ino: number, fh: number, cookie: number, out: DirentWriter): Promise<void> {
    if (this.listedToEnd.get(fh) === cookie) return;
    const dir = this.toMeta(ino);
    for (;;) {
      const page = await this.store.meta.readdir(dir, cookie, READDIR_PAGE, out.plus);
      for (const e of page) {
        const fits = out.plus && e.attr
          ? out.addPlus(e.name, this.entry(e.attr), e.cookie)
          : out.add(e.name, this.toFuse(e.ino), e.type, e.cookie);
        if (!fits) return;
        cookie = e.cookie;
      }
      if (page.length < READDIR_PAGE) {
        this.listedToEnd.set(fh, cookie);
        return;
      }
    }
  }

  // ---- extended attributes ----

  async getxattr(_ctx: RequestContext, ino: number, name: string): Promise<Uint8Array> {
    if (!kept(name)) throw new FuseError('EOPNOTSUPP');
    if (name === PIN_XATTR && this.attached) return Buffer.from((await this.store.meta.isReal(this.toMeta(ino))).real ? '1' : '0');
    return this.store.meta.getxattr(this.toMeta(ino), name);
  }

  async listxattr(_ctx: RequestContext, ino: number): Promise<string[]> {
    const names = await this.store.meta.listxattr(this.toMeta(ino));
    // The pin is listed where it was set (it reads on every file of an attached volume).
    if (this.attached && (await this.store.meta.isReal(this.toMeta(ino))).marked) names.push(PIN_XATTR);
    return names;
  }

  async setxattr(_ctx: RequestContext, ino: number, name: string, value: Buffer, flags: number): Promise<void> {
    if (!kept(name)) throw new FuseError('EOPNOTSUPP');
    if (name === PIN_XATTR) return this.setReal(ino, value.toString('utf8'));
    this.refuseWrites();
    if (name === POLICY_XATTR) return this.setPolicy(this.toMeta(ino), value.toString('utf8'), flags);
    await this.store.meta.setxattr(this.toMeta(ino), name, Buffer.from(value), flags);
  }

  async removexattr(_ctx: RequestContext, ino: number, name: string): Promise<void> {
    if (!kept(name)) throw new FuseError('EOPNOTSUPP');
    if (name === PIN_XATTR) return this.setReal(ino, undefined);
    this.refuseWrites();
    if (name === POLICY_XATTR) return this.setPolicy(this.toMeta(ino), undefined, 0);
    await this.store.meta.removexattr(this.toMeta(ino), name);
  }

  /** user.orbit.pin on a file or directory of an attached volume: "1" makes it Real (kept
   * complete here), "0" Unreal (fetched on demand, evictable); removing it, as its directory is. */
  private async setReal(ino: number, text: string | undefined): Promise<void> {
    if (!this.attached) throw new FuseError('EINVAL', 'user.orbit.pin is for volumes attached from a peer: this volume is all local');
    const value = text?.replace(/\0+$/, '').trim();
    if (value !== undefined && value !== '1' && value !== '0') throw new FuseError('EINVAL', 'user.orbit.pin takes 1 (Real) or 0 (Unreal)');
    await this.store.meta.setReal(this.toMeta(ino), value === undefined ? undefined : value === '1');
    this.attached.onRealChanged();
  }

  /** A volume attached from a peer is the peer's to change (until sync): EROFS. */
  private refuseWrites(): void {
    if (this.attached) throw new FuseError('EROFS');
  }

  /** user.orbit.policy: only a policy Orbit can keep is taken (EINVAL otherwise); a file's
   * chunks are re-encoded under it in the background (the new value holds for new writes at
   * once). On a directory it is what files made in it later get. */
  private async setPolicy(ino: Ino, text: string | undefined, flags: number): Promise<void> {
    let policy: string | undefined;
    if (text !== undefined) {
      try {
        policy = formatPolicy(parsePolicy(text.replace(/\0+$/, '')));
      } catch (err) {
        if (err instanceof PolicyError) throw new FuseError('EINVAL', err.message);
        throw err;
      }
    }
    const was = await ownPolicy(this.store.meta, ino);
    if (policy === undefined) await this.store.meta.removexattr(ino, POLICY_XATTR);
    else await this.store.meta.setxattr(ino, POLICY_XATTR, Buffer.from(policy), flags);
    const attr = await this.store.meta.getattr(ino);
    if ((attr.mode & S_IFMT) !== FileType.Regular) return;
    const target = { volume: this.volume, ino, path: `${this.volume}:<inode ${ino}>` };
    await queuePolicyChange(this.store, target, policy ?? 'default', false, was ? formatPolicy(was) : 'default');
  }

  async statfs(): Promise<StatfsReply> {
    const cap = await this.store.chunks.capacity();
    const usage = await this.store.meta.usage();
    const bsize = 4096;
    return {
      bsize, frsize: bsize,
      blocks: Math.floor(cap.totalBytes / bsize), bfree: Math.floor(cap.freeBytes / bsize), bavail: Math.floor(cap.freeBytes / bsize),
      files: usage.inodes + 1_000_000_000, ffree: 1_000_000_000, namemax: 255,
    };
  }

  // ---- internals ----

  private async make(ctx: RequestContext, parent: number, name: string, node: NewNode): Promise<Entry> {
    return this.entry((await this.store.meta.create(this.toMeta(parent), name, node, { uid: ctx.uid, gid: ctx.gid, umask: ctx.umask })).attr);
  }

  /** `created`: a new, empty file. */
  private async openFile(id: Ino, flags: number, created = false): Promise<OpenReply> {
    // Held before anything waits, so that an unlink meanwhile keeps the inode.
    this.store.meta.open(id);
    let file = this.openFiles.get(id);
    if (!file) {
      const size = created ? 0 : (await this.store.meta.getattr(id)).size;
      file = this.openFiles.get(id); // a concurrent open may have got there first
      if (!file) this.openFiles.set(id, (file = new OpenFile(id, size, this.parts)));
    }
    file.handles++;
    // Even with O_RDONLY, as Linux does (the kernel has checked write permission).
    if (flags & constants.O_TRUNC) await file.truncate(0);
    // A handle opened to be read never writes (the kernel refuses write, ftruncate and fallocate
    // through it, and a shared writable mapping): its close needs no flush request at all.
    return { fh: this.nextFh++, keepCache: !file.isDirty, noFlush: (flags & O_ACCMODE) === constants.O_RDONLY };
  }

}
