// An in-memory filesystem over the fuse layer: the binding's test subject and benchmark partner.
// It implements every operation of the contract with POSIX behaviour, keeps file bytes in blocks
// of up to 1 MiB and answers reads with slices of those blocks, uncopied. A write that makes a new
// whole block keeps the kernel's buffer as the block (WriteInfo.keep); others are copied in, so
// their buffers go straight back to the binding.
import { constants as fsConstants } from 'node:fs';
import { constants } from 'node:os';
import type {
  Attr,
  AttrReply,
  CreateReply,
  Entry,
  FuseOperations,
  OpenReply,
  RequestContext,
  SetattrChanges,
  StatfsReply,
  Timespec,
  WriteInfo,
} from '../../src/fuse/contract.js';
import type { DirentWriter } from '../../src/fuse/dirent.js';
import { FuseError } from '../../src/fuse/errors.js';

const S_IFMT = 0o170000;
const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const S_ISGID = 0o2000;
const ROOT = 1;
export const BLOCK = 1024 * 1024;
const ZEROS = Buffer.alloc(BLOCK);
const RENAME_NOREPLACE = 1;
const RENAME_EXCHANGE = 2;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const FALLOC_FL_KEEP_SIZE = 1;
const FALLOC_FL_PUNCH_HOLE = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const NAME_MAX = 255;

interface Node {
  attr: Attr;
  /** Kernel references (lookups not yet forgotten). */
  nlookup: number;
  opens: number;
  children?: Map<string, number>;
  parent?: number;
  target?: string;
  blocks?: Map<number, Buffer>;
  /** Bytes held in blocks (st_blocks is derived from it). */
  stored: number;
  xattrs: Map<string, Buffer>;
}

function now(): Timespec {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
}

function fail(code: keyof typeof constants.errno): never {
  throw new FuseError(code);
}

export class MemFs implements FuseOperations {
  private readonly nodes = new Map<number, Node>();
  private nextIno = ROOT + 1;
  private nextFh = 1;
  private bytesStored = 0;

  constructor() {
    const t = now();
    this.nodes.set(ROOT, {
      attr: { ino: ROOT, mode: S_IFDIR | 0o755, nlink: 2, uid: 0, gid: 0, rdev: 0, size: 0, blocks: 0, blksize: 4096, atime: t, mtime: t, ctime: t },
      nlookup: 1,
      opens: 0,
      stored: 0,
      children: new Map(),
      parent: ROOT,
      xattrs: new Map(),
    });
  }

  // ---- helpers for tests and the benchmark: change things behind the kernel's back ----

  /** Replaces a file's bytes without telling the kernel (tests then notify). */
  replaceContent(ino: number, bytes: Buffer): void {
    const node = this.node(ino);
    this.truncate(node, 0);
    this.writeBytes(node, 0, Buffer.from(bytes));
  }

  /** The inode number at a path relative to the root, for tests. */
  inoOf(relPath: string): number {
    let ino = ROOT;
    for (const part of relPath.split('/').filter(Boolean)) {
      const next = this.node(ino).children?.get(part);
      if (next === undefined) fail('ENOENT');
      ino = next;
    }
    return ino;
  }

  get liveInodes(): number {
    return this.nodes.size;
  }

  // ---- names ----

  lookup(_ctx: RequestContext, parent: number, name: string): Entry {
    const dir = this.dir(parent);
    if (Buffer.byteLength(name) > NAME_MAX) fail('ENAMETOOLONG');
    const ino = name === '.' ? parent : name === '..' ? (dir.parent ?? ROOT) : dir.children?.get(name);
    if (ino === undefined) fail('ENOENT');
    return this.ref(ino);
  }

  forget(ino: number, nlookup: number): void {
    const node = this.nodes.get(ino);
    if (!node) return;
    node.nlookup -= nlookup;
    this.maybeDrop(ino, node);
  }

  getattr(_ctx: RequestContext, ino: number): AttrReply {
    return { attr: this.node(ino).attr };
  }

  setattr(_ctx: RequestContext, ino: number, c: SetattrChanges): AttrReply {
    const node = this.node(ino);
    const a = node.attr;
    const t = now();
    if (c.mode !== undefined) a.mode = (a.mode & S_IFMT) | (c.mode & 0o7777);
    if (c.uid !== undefined) a.uid = c.uid;
    if (c.gid !== undefined) a.gid = c.gid;
    if (c.size !== undefined) {
      if ((a.mode & S_IFMT) === S_IFDIR) fail('EISDIR');
      this.truncate(node, c.size);
      a.mtime = t;
    }
    if (c.atime !== undefined) a.atime = c.atime === 'now' ? t : c.atime;
    if (c.mtime !== undefined) a.mtime = c.mtime === 'now' ? t : c.mtime;
    a.ctime = c.ctime ?? t;
    return { attr: a };
  }

  readlink(_ctx: RequestContext, ino: number): string {
    const node = this.node(ino);
    if (node.target === undefined) fail('EINVAL');
    return node.target;
  }

  mknod(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Entry {
    return this.make(ctx, parent, name, mode, rdev);
  }

  mkdir(ctx: RequestContext, parent: number, name: string, mode: number): Entry {
    return this.make(ctx, parent, name, S_IFDIR | (mode & 0o7777), 0);
  }

  symlink(ctx: RequestContext, parent: number, name: string, target: string): Entry {
    const entry = this.make(ctx, parent, name, S_IFLNK | 0o777, 0);
    const node = this.node(entry.attr.ino);
    node.target = target;
    node.attr.size = Buffer.byteLength(target);
    return entry;
  }

  link(_ctx: RequestContext, ino: number, newParent: number, newName: string): Entry {
    const node = this.node(ino);
    if ((node.attr.mode & S_IFMT) === S_IFDIR) fail('EPERM');
    const dir = this.dir(newParent);
    this.checkNew(dir, newName);
    dir.children!.set(newName, ino);
    node.attr.nlink++;
    node.attr.ctime = dir.attr.mtime = dir.attr.ctime = now();
    return this.ref(ino);
  }

  unlink(_ctx: RequestContext, parent: number, name: string): void {
    const dir = this.dir(parent);
    const ino = dir.children?.get(name);
    if (ino === undefined) fail('ENOENT');
    const node = this.node(ino);
    if ((node.attr.mode & S_IFMT) === S_IFDIR) fail('EISDIR');
    dir.children!.delete(name);
    node.attr.nlink--;
    node.attr.ctime = dir.attr.mtime = dir.attr.ctime = now();
    this.maybeDrop(ino, node);
  }

  rmdir(_ctx: RequestContext, parent: number, name: string): void {
    const dir = this.dir(parent);
    const ino = dir.children?.get(name);
    if (ino === undefined) fail('ENOENT');
    const node = this.dir(ino);
    if (node.children!.size > 0) fail('ENOTEMPTY');
    dir.children!.delete(name);
    dir.attr.nlink--;
    node.attr.nlink = 0;
    node.attr.ctime = dir.attr.mtime = dir.attr.ctime = now();
    this.maybeDrop(ino, node);
  }

  rename(_ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): void {
    const from = this.dir(parent);
    const to = this.dir(newParent);
    if (Buffer.byteLength(newName) > NAME_MAX) fail('ENAMETOOLONG');
    const ino = from.children?.get(name);
    if (ino === undefined) fail('ENOENT');
    const node = this.node(ino);
    const existing = to.children?.get(newName);
    const t = now();
    if (flags & RENAME_EXCHANGE) {
      if (existing === undefined) fail('ENOENT');
      const other = this.node(existing);
      from.children!.set(name, existing);
      to.children!.set(newName, ino);
      this.reparent(node, ino, from, to, parent, newParent);
      this.reparent(other, existing, to, from, newParent, parent);
      node.attr.ctime = other.attr.ctime = from.attr.mtime = from.attr.ctime = to.attr.mtime = to.attr.ctime = t;
      return;
    }
    if (existing === ino) return;
    if (existing !== undefined) {
      if (flags & RENAME_NOREPLACE) fail('EEXIST');
      const victim = this.node(existing);
      const victimIsDir = (victim.attr.mode & S_IFMT) === S_IFDIR;
      const nodeIsDir = (node.attr.mode & S_IFMT) === S_IFDIR;
      if (victimIsDir && !nodeIsDir) fail('EISDIR');
      if (!victimIsDir && nodeIsDir) fail('ENOTDIR');
      if (victimIsDir && victim.children!.size > 0) fail('ENOTEMPTY');
      if (this.isAncestor(ino, newParent)) fail('EINVAL');
      to.children!.delete(newName);
      if (victimIsDir) {
        victim.attr.nlink = 0;
        to.attr.nlink--;
      } else {
        victim.attr.nlink--;
      }
      victim.attr.ctime = t;
      this.maybeDrop(existing, victim);
    } else if (this.isAncestor(ino, newParent)) {
      fail('EINVAL');
    }
    from.children!.delete(name);
    to.children!.set(newName, ino);
    this.reparent(node, ino, from, to, parent, newParent);
    node.attr.ctime = from.attr.mtime = from.attr.ctime = to.attr.mtime = to.attr.ctime = t;
  }

  // ---- files ----

  create(ctx: RequestContext, parent: number, name: string, mode: number, _flags: number): CreateReply {
    const entry = this.make(ctx, parent, name, S_IFREG | (mode & 0o7777), 0);
    this.node(entry.attr.ino).opens++;
    return { ...entry, fh: this.nextFh++ };
  }

  open(_ctx: RequestContext, ino: number, flags: number): OpenReply {
    const node = this.node(ino);
    if (flags & fsConstants.O_TRUNC) this.truncate(node, 0); // only with atomic_o_trunc
    node.opens++;
    return { fh: this.nextFh++, keepCache: true };
  }

  read(_ctx: RequestContext, ino: number, _fh: number, offset: number, size: number): Uint8Array | Uint8Array[] {
    const node = this.node(ino);
    node.attr.atime = now();
    return this.readBytes(node, offset, size);
  }

  write(_ctx: RequestContext, ino: number, _fh: number, offset: number, data: Buffer, info: WriteInfo): number {
    const node = this.node(ino);
    // A write of exactly one new, aligned block: the payload becomes the block, uncopied.
    const index = offset / BLOCK;
    if (data.length === BLOCK && Number.isInteger(index) && !node.blocks?.has(index) && node.blocks) {
      node.blocks.set(index, info.keep());
      this.account(node, BLOCK);
      node.attr.size = Math.max(node.attr.size, offset + BLOCK);
    } else {
      this.writeBytes(node, offset, data);
    }
    node.attr.mtime = node.attr.ctime = now();
    return data.length;
  }

  flush(): void {}

  release(_ctx: RequestContext, ino: number): void {
    const node = this.nodes.get(ino);
    if (!node) return;
    node.opens--;
    this.maybeDrop(ino, node);
  }

  fsync(): void {}

  fallocate(_ctx: RequestContext, ino: number, _fh: number, mode: number, offset: number, length: number): void {
    const node = this.node(ino);
    if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE)) fail('EOPNOTSUPP');
    if (mode & FALLOC_FL_PUNCH_HOLE) {
      if (!(mode & FALLOC_FL_KEEP_SIZE)) fail('EOPNOTSUPP');
      const end = Math.min(offset + length, node.attr.size);
      for (let pos = offset; pos < end; ) {
        const n = Math.min(BLOCK - (pos % BLOCK), end - pos);
        this.writeBytes(node, pos, ZEROS.subarray(0, n), true);
        pos += n;
      }
    } else if (!(mode & FALLOC_FL_KEEP_SIZE) && offset + length > node.attr.size) {
      node.attr.size = offset + length;
    }
    node.attr.ctime = now();
  }

  lseek(_ctx: RequestContext, ino: number, _fh: number, offset: number, whence: number): number {
    const node = this.node(ino);
    const size = node.attr.size;
    if (offset >= size) fail('ENXIO');
    const present = (pos: number): boolean => node.blocks?.has(Math.floor(pos / BLOCK)) ?? false;
    if (whence === SEEK_DATA) {
      for (let pos = offset; pos < size; pos = (Math.floor(pos / BLOCK) + 1) * BLOCK) if (present(pos)) return pos;
      fail('ENXIO');
    }
    if (whence === SEEK_HOLE) {
      for (let pos = offset; pos < size; pos = (Math.floor(pos / BLOCK) + 1) * BLOCK) if (!present(pos)) return pos;
      return size;
    }
    fail('EINVAL');
  }

  copyFileRange(
    _ctx: RequestContext, inoIn: number, _fhIn: number, offIn: number,
    inoOut: number, _fhOut: number, offOut: number, length: number,
  ): number {
    const src = this.node(inoIn);
    const dst = this.node(inoOut);
    const n = Math.max(0, Math.min(length, src.attr.size - offIn));
    const parts = this.readBytes(src, offIn, n);
    let pos = offOut;
    for (const part of Array.isArray(parts) ? parts : [parts]) {
      this.writeBytes(dst, pos, Buffer.from(part)); // a copy: the source may change later
      pos += part.length;
    }
    dst.attr.mtime = dst.attr.ctime = now();
    return n;
  }

  // ---- directories ----

  opendir(_ctx: RequestContext, ino: number): OpenReply {
    this.dir(ino);
    return { fh: this.nextFh++ };
  }

  readdir(_ctx: RequestContext, ino: number, _fh: number, offset: number, out: DirentWriter): void {
    this.list(ino, offset, out);
  }

  readdirplus(_ctx: RequestContext, ino: number, _fh: number, offset: number, out: DirentWriter): void {
    this.list(ino, offset, out);
  }

  releasedir(): void {}

  fsyncdir(): void {}

  // Offsets: 1 after ".", 2 after "..", then 3 + index into the children in insertion order.
  // (A Map keeps insertion order, so an offset stays meaningful while entries are added.)
  private list(ino: number, offset: number, out: DirentWriter): void {
    const dir = this.dir(ino);
    const add = (name: string, child: number, next: number): boolean => {
      if (!out.plus) return out.add(name, child, this.node(child).attr.mode, next);
      const dots = name === '.' || name === '..';
      if (!out.addPlus(name, { attr: this.node(child).attr }, next)) return false;
      if (!dots) this.node(child).nlookup++;
      return true;
    };
    if (offset < 1 && !add('.', ino, 1)) return;
    if (offset < 2 && !add('..', dir.parent ?? ROOT, 2)) return;
    let i = 0;
    for (const [name, child] of dir.children!) {
      if (i + 3 > offset && !add(name, child, i + 3)) return;
      i++;
    }
  }

  // ---- xattrs ----

  setxattr(_ctx: RequestContext, ino: number, name: string, value: Buffer, flags: number): void {
    const node = this.node(ino);
    if (!/^(user|trusted|security)\./.test(name)) fail('EOPNOTSUPP');
    const exists = node.xattrs.has(name);
    if (flags & XATTR_CREATE && exists) fail('EEXIST');
    if (flags & XATTR_REPLACE && !exists) fail('ENODATA');
    node.xattrs.set(name, value);
    node.attr.ctime = now();
  }

  getxattr(_ctx: RequestContext, ino: number, name: string): Uint8Array {
    const value = this.node(ino).xattrs.get(name);
    if (!value) fail('ENODATA');
    return value;
  }

  listxattr(_ctx: RequestContext, ino: number): string[] {
    return [...this.node(ino).xattrs.keys()];
  }

  removexattr(_ctx: RequestContext, ino: number, name: string): void {
    const node = this.node(ino);
    if (!node.xattrs.delete(name)) fail('ENODATA');
    node.attr.ctime = now();
  }

  access(_ctx: RequestContext, ino: number): void {
    this.node(ino);
  }

  statfs(): StatfsReply {
    const total = 64 * 1024 ** 3;
    const used = Math.ceil(this.bytesStored / 4096);
    return { bsize: 4096, frsize: 4096, blocks: total / 4096, bfree: total / 4096 - used, bavail: total / 4096 - used, files: 1e7, ffree: 1e7 - this.nodes.size, namemax: NAME_MAX };
  }

  // ---- internals ----

  private node(ino: number): Node {
    const node = this.nodes.get(ino);
    if (!node) fail('ENOENT');
    return node;
  }

  private dir(ino: number): Node {
    const node = this.node(ino);
    if (!node.children) fail('ENOTDIR');
    return node;
  }

  private ref(ino: number): Entry {
    const node = this.node(ino);
    node.nlookup++;
    return { attr: node.attr };
  }

  private checkNew(dir: Node, name: string): void {
    if (Buffer.byteLength(name) > NAME_MAX) fail('ENAMETOOLONG');
    if (dir.children!.has(name)) fail('EEXIST');
    if (dir.attr.nlink === 0) fail('ENOENT'); // removed directory
  }

  private make(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Entry {
    const dir = this.dir(parent);
    this.checkNew(dir, name);
    const isDir = (mode & S_IFMT) === S_IFDIR;
    // BSD group semantics under a set-group-ID directory; new directories inherit the bit.
    const inherit = (dir.attr.mode & S_ISGID) !== 0;
    const t = now();
    const ino = this.nextIno++;
    const node: Node = {
      attr: {
        ino, mode: inherit && isDir ? mode | S_ISGID : mode, nlink: isDir ? 2 : 1,
        uid: ctx.uid, gid: inherit ? dir.attr.gid : ctx.gid, rdev, size: 0, blocks: 0, blksize: 4096,
        atime: t, mtime: t, ctime: t,
      },
      nlookup: 0,
      opens: 0,
      stored: 0,
      xattrs: new Map(),
    };
    if (isDir) {
      node.children = new Map();
      node.parent = parent;
      dir.attr.nlink++;
    }
    if ((mode & S_IFMT) === S_IFREG) node.blocks = new Map();
    this.nodes.set(ino, node);
    dir.children!.set(name, ino);
    dir.attr.mtime = dir.attr.ctime = t;
    return this.ref(ino);
  }

  private reparent(node: Node, _ino: number, from: Node, to: Node, _oldParent: number, newParent: number): void {
    if (!node.children || from === to) return;
    node.parent = newParent;
    from.attr.nlink--;
    to.attr.nlink++;
  }

  private isAncestor(ino: number, of: number): boolean {
    for (let cur = of; ; ) {
      if (cur === ino) return true;
      if (cur === ROOT) return false;
      cur = this.node(cur).parent ?? ROOT;
    }
  }

  private maybeDrop(ino: number, node: Node): void {
    if (node.attr.nlink > 0 || node.nlookup > 0 || node.opens > 0 || ino === ROOT) return;
    if (node.blocks) this.truncate(node, 0);
    this.nodes.delete(ino);
  }

  private readBytes(node: Node, offset: number, size: number): Uint8Array | Uint8Array[] {
    const end = Math.min(offset + size, node.attr.size);
    const parts: Uint8Array[] = [];
    for (let pos = offset; pos < end; ) {
      const index = Math.floor(pos / BLOCK);
      const within = pos - index * BLOCK;
      const n = Math.min(BLOCK - within, end - pos);
      const block = node.blocks?.get(index);
      const have = block ? Math.max(0, Math.min(n, block.length - within)) : 0;
      if (have > 0) parts.push(block!.subarray(within, within + have));
      if (have < n) parts.push(ZEROS.subarray(0, n - have));
      pos += n;
    }
    return parts.length === 1 ? parts[0]! : parts;
  }

  private writeBytes(node: Node, offset: number, data: Buffer, punch = false): void {
    if (!node.blocks) fail('EINVAL');
    for (let src = 0; src < data.length; ) {
      const pos = offset + src;
      const index = Math.floor(pos / BLOCK);
      const within = pos - index * BLOCK;
      const n = Math.min(BLOCK - within, data.length - src);
      const piece = data.subarray(src, src + n);
      const block = node.blocks.get(index);
      if (punch && within === 0 && n === BLOCK) {
        if (block) this.account(node, -block.length);
        node.blocks.delete(index);
      } else {
        let target = block;
        if (!target || target.length < within + n) {
          // Grow by doubling (appends stay linear). Bytes never written must read as zeros, so
          // only a block the write fills from its start can skip zero-filling.
          const size = Math.min(BLOCK, Math.max(within + n, 2 * (block?.length ?? 0)));
          target = !block && within === 0 && n === size ? Buffer.allocUnsafe(size) : Buffer.alloc(size);
          if (block) block.copy(target);
          this.account(node, target.length - (block?.length ?? 0));
          node.blocks.set(index, target);
        }
        piece.copy(target, within);
      }
      src += n;
    }
    if (!punch) node.attr.size = Math.max(node.attr.size, offset + data.length);
  }

  private truncate(node: Node, size: number): void {
    if (!node.blocks) {
      if (node.children) fail('EISDIR');
      fail('EINVAL');
    }
    const keep = Math.ceil(size / BLOCK);
    for (const [index, block] of node.blocks) {
      if (index >= keep) {
        this.account(node, -block.length);
        node.blocks.delete(index);
      } else if (index === keep - 1 && block.length > size - index * BLOCK) {
        const trimmed = Buffer.from(block.subarray(0, size - index * BLOCK));
        this.account(node, trimmed.length - block.length);
        node.blocks.set(index, trimmed);
      }
    }
    node.attr.size = size;
  }

  private account(node: Node, delta: number): void {
    node.stored += delta;
    node.attr.blocks = Math.ceil(node.stored / 512);
    this.bytesStored += delta;
  }
}
