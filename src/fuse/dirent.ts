// Packs directory entries in the kernel's wire format (struct fuse_dirent / fuse_direntplus,
// include/uapi/linux/fuse.h), so a whole readdir reply costs one native call.
import type { Attr, Entry } from './contract.js';

const DIRENT_HEADER = 24; // ino, off, namelen, type
const ENTRY_OUT = 40 + 88; // fuse_entry_out: ids and timeouts, then fuse_attr

export interface EntryDefaults {
  entryTimeout: number;
  attrTimeout: number;
}

/** A readdir reply being filled: add entries until one does not fit. */
export class DirentWriter {
  readonly buffer: Buffer;
  /** Inodes of accepted entries that came with noXattrs. */
  readonly noXattrs: number[] = [];
  private used = 0;

  constructor(
    size: number,
    /** Filled by readdirplus: entries must come with attributes (addPlus). */
    readonly plus: boolean,
    private readonly defaults: EntryDefaults,
  ) {
    this.buffer = Buffer.allocUnsafe(size);
  }

  get length(): number {
    return this.used;
  }

  /** A plain entry. `nextOffset` is what the kernel passes back to continue after it. */
  add(name: string, ino: number, mode: number, nextOffset: number): boolean {
    const nameLen = Buffer.byteLength(name);
    const size = align8(DIRENT_HEADER + nameLen);
    if (this.used + size > this.buffer.length) return false;
    this.putDirent(this.used, name, nameLen, ino, mode, nextOffset, size);
    this.used += size;
    return true;
  }

  /** An entry with attributes, for readdirplus. Accepted entries (except "." and "..") count as
   * a lookup of the inode. `entry` null: name only, no lookup. */
  addPlus(name: string, entry: Entry | null, nextOffset: number): boolean {
    const nameLen = Buffer.byteLength(name);
    const size = align8(ENTRY_OUT + DIRENT_HEADER + nameLen);
    if (this.used + size > this.buffer.length) return false;
    const b = this.buffer;
    const o = this.used;
    if (entry) {
      const { attr } = entry;
      putU64(b, o, attr.ino);
      putU64(b, o + 8, entry.generation ?? 0);
      putTimeout(b, o + 16, o + 32, entry.entryTimeout ?? this.defaults.entryTimeout);
      putTimeout(b, o + 24, o + 36, entry.attrTimeout ?? this.defaults.attrTimeout);
      putAttr(b, o + 40, attr);
      if (entry.noXattrs) this.noXattrs.push(attr.ino);
      this.putDirent(o + ENTRY_OUT, name, nameLen, attr.ino, attr.mode, nextOffset, size - ENTRY_OUT);
    } else {
      b.fill(0, o, o + ENTRY_OUT);
      this.putDirent(o + ENTRY_OUT, name, nameLen, 0, 0, nextOffset, size - ENTRY_OUT);
    }
    this.used += size;
    return true;
  }

  private putDirent(o: number, name: string, nameLen: number, ino: number, mode: number, next: number, size: number): void {
    const b = this.buffer;
    putU64(b, o, ino);
    putU64(b, o + 8, next);
    b.writeUInt32LE(nameLen, o + 16);
    b.writeUInt32LE((mode & 0o170000) >>> 12, o + 20); // DT_* from S_IFMT
    b.write(name, o + DIRENT_HEADER, nameLen);
    b.fill(0, o + DIRENT_HEADER + nameLen, o + size);
  }
}

/** Unsigned 64-bit little-endian from a safe integer, without a BigInt per field. Negative
 * numbers (times before 1970) come out as two's complement, as the kernel reads them. */
function putU64(b: Buffer, at: number, n: number): void {
  const hi = Math.floor(n / 0x1_0000_0000);
  b.writeUInt32LE(n - hi * 0x1_0000_0000, at);
  b.writeInt32LE(hi | 0, at + 4);
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

function putTimeout(b: Buffer, secAt: number, nsecAt: number, seconds: number): void {
  const s = seconds > 0 ? seconds : 0;
  const whole = Math.floor(s);
  putU64(b, secAt, whole);
  b.writeUInt32LE(Math.floor((s - whole) * 1e9), nsecAt);
}

// struct fuse_attr: ino, size, blocks, atime, mtime, ctime (u64); atimensec, mtimensec, ctimensec,
// mode, nlink, uid, gid, rdev, blksize, flags (u32).
function putAttr(b: Buffer, o: number, a: Attr): void {
  putU64(b, o, a.ino);
  putU64(b, o + 8, a.size);
  putU64(b, o + 16, a.blocks);
  putU64(b, o + 24, a.atime.sec);
  putU64(b, o + 32, a.mtime.sec);
  putU64(b, o + 40, a.ctime.sec);
  b.writeUInt32LE(a.atime.nsec, o + 48);
  b.writeUInt32LE(a.mtime.nsec, o + 52);
  b.writeUInt32LE(a.ctime.nsec, o + 56);
  b.writeUInt32LE(a.mode, o + 60);
  b.writeUInt32LE(a.nlink, o + 64);
  b.writeUInt32LE(a.uid, o + 68);
  b.writeUInt32LE(a.gid, o + 72);
  b.writeUInt32LE(a.rdev, o + 76);
  b.writeUInt32LE(a.blksize, o + 80);
  b.writeUInt32LE(0, o + 84);
}
