// The meta layer's contract: everything Orbit knows about volumes, inodes, names, extended
// attributes and file contents, behind one asynchronous interface that an embedded SQLite engine
// (the default, on a worker thread: better-sqlite3 is synchronous) and a PostgreSQL engine (for
// many machines on one volume) both implement.
//
// Every method is one atomic, isolated operation of the filesystem (as JuiceFS's pkg/meta
// interface is), not a query language: each engine keeps its own transactions, and callers
// never see a half-done rename or write. Operations are crash-consistent: after a crash the
// store is as it was after some prefix of the completed operations. They are durable only once
// sync() has resolved (what fsync waits for).
//
// Permission checks belong to the kernel (default_permissions); the engine enforces the rules
// of the namespace itself: names, types, emptiness, link counts, loops.

import type { ChunkId } from '../pool/contract.js';

export type Ino = number;

export const enum FileType {
  Regular = 0o100000,
  Directory = 0o040000,
  Symlink = 0o120000,
  Fifo = 0o010000,
  Socket = 0o140000,
  CharDevice = 0o020000,
  BlockDevice = 0o060000,
}

/** Orbit's own extended attributes are named under this prefix: settings (a policy, a pin), some
 * derived rather than stored. */
export const ORBIT_XATTRS = 'user.orbit.';

/** Real (1) or Unreal (0), on a file or directory of an attached volume (orbit pin / unpin). */
export const PIN_XATTR = 'user.orbit.pin';

/** Extended attributes a new file or directory takes from the directory it is made in: Orbit's
 * settings that hold for a tree (a redundancy policy set on a directory covers what is made in
 * it later). Only Orbit's own: a new inode has no others. */
export const INHERITED_XATTRS: readonly string[] = ['user.orbit.policy'];

/** Longest name, in bytes (ENAMETOOLONG beyond). */
export const NAME_MAX = 255;
/** rename() flags, as renameat2(2) numbers them. */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
/** Leaves a whiteout (a 0/0 character device) where the source was: overlayfs asks for it. */
export const RENAME_WHITEOUT = 4;

/** Nanosecond time as [seconds, nanoseconds]: JavaScript numbers cannot hold ns since 1970. */
export interface Time {
  sec: number;
  nsec: number;
}

export interface InodeAttr {
  ino: Ino;
  /** Type and permission bits, as st_mode. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  atime: Time;
  mtime: Time;
  ctime: Time;
  /** Bumped when an inode number is reused, for NFS-style handles. */
  generation: number;
}

export interface DirEntry {
  name: string;
  ino: Ino;
  /** Type bits of the entry's inode (S_IFMT part of mode). */
  type: number;
  /** Where to continue listing after this entry. */
  cookie: number;
  /** The entry's attributes, when asked for (readdirplus). */
  attr?: InodeAttr;
  /** With the attributes: all of the inode's extended attributes (`ls -l` asks for two of every
   * file, nearly always absent; known here, they cost no round trip each). */
  xattrs?: Array<[string, Uint8Array]>;
}

/** A piece of a file: `length` bytes of chunk `chunk` from `chunkOffset`, at `offset` in the file.
 * A file's extents never overlap; bytes covered by none are a hole and read as zeros. */
export interface Extent {
  offset: number;
  length: number;
  chunk: ChunkId;
  chunkOffset: number;
}

/** A chunk an extent may name: its id, plaintext size and size as stored. */
/** A chunk as a set of files holds it. */
export interface ChunkHolding {
  id: ChunkId;
  /** Bytes of those files in it (an extent's length counts each time a file uses it). */
  bytes: number;
  /** Bytes the pool holds of it: 0 when it is only a peer's. */
  storedSize: number;
}

export interface ChunkInfo {
  id: ChunkId;
  size: number;
  storedSize: number;
}

export interface Caller {
  uid: number;
  gid: number;
  /** Already applied by the kernel unless the filesystem asked otherwise; kept for the record. */
  umask: number;
}

export interface NewNode {
  type: FileType;
  /** Permission bits (and set-id / sticky bits). */
  perm: number;
  rdev?: number;
  /** Symlink target. */
  target?: string;
}

export interface AttrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Time | 'now';
  mtime?: Time | 'now';
  ctime?: Time;
}

export interface VolumeInfo {
  id: number;
  name: string;
  root: Ino;
  createdAt: Time;
  /** A volume attached from a peer: read-only here, its index kept from the peer's changes. */
  origin?: VolumeOrigin;
}

export interface VolumeOrigin {
  /** The peer's ID. */
  peer: string;
  /** The volume's name on the peer. */
  volume: string;
  /** The peer's change number the index here is complete up to. */
  syncedTo: number;
}

export interface Usage {
  /** Bytes of file contents as applications see them (holes excluded). */
  logicalBytes: number;
  /** Bytes of the distinct chunks referenced, before compression (after dedup). */
  uniqueBytes: number;
  /** Bytes of the distinct chunks referenced, as stored (after dedup and compression). */
  storedBytes: number;
  inodes: number;
}

/** The directories a change of names altered (their times, and their link counts when
 * subdirectories came or went), with their attributes afterwards: a caller that caches
 * attributes replaces its copies instead of asking again. It matters: with default_permissions
 * the kernel asks for a directory's attributes before every create or unlink in it. */
export interface DirsChanged {
  dirs: InodeAttr[];
}

/** A create answered before it is made: the inode's number (from reserveInodes) and time. */
export interface CreateAhead {
  ino: Ino;
  time: Time;
}

/** A new name (create, link): the inode's attributes. */
export interface Made extends DirsChanged {
  attr: InodeAttr;
}

/** What losing a name left behind: the inode, and whether its last name is gone. */
export interface Removal {
  ino: Ino;
  /** No names are left: the inode is gone, unless it was `held` (see unlink). */
  orphaned: boolean;
}

/** An unlink or rmdir. */
export interface Removed extends Removal, DirsChanged {}

/** What a rename moved, and what it displaced. */
export interface Renamed extends DirsChanged {
  /** The inode that now has the new name. */
  moved: Ino;
  /** RENAME_EXCHANGE: the inode that now has the old name. */
  exchanged?: Ino;
  /** A target the rename replaced (a replaced directory is always gone). */
  replaced?: Removal;
}

/** An inode as a peer's index of a shared volume holds it: everything but the bytes. */
export interface IndexedInode {
  attr: InodeAttr;
  /** The number of the change that last touched it. */
  changed: number;
  /** Symlinks: the target. */
  target?: string;
  /** Directories: every entry ('.' and '..' aside). */
  entries?: Array<{ name: string; ino: Ino; type: number }>;
  /** Regular files: the whole content map. */
  extents?: Extent[];
  /** Extended attributes, by name. */
  xattrs?: Array<[string, Buffer]>;
}

/** What changed in a volume after a change number, one page at a time (changesSince). */
export interface VolumeChanges {
  /** Every change up to this number is in this page or the ones before it: ask after it next. */
  upTo: number;
  /** The volume's root directory. */
  root: Ino;
  /** More changes wait after upTo. */
  more: boolean;
  /** Inodes made or changed, in the order of their changes. */
  inodes: IndexedInode[];
  /** Inodes removed. */
  removed: Ino[];
}

export class MetaError extends Error {
  constructor(
    readonly code: 'ENOENT' | 'EEXIST' | 'ENOTDIR' | 'EISDIR' | 'ENOTEMPTY' | 'EINVAL' | 'EPERM' | 'ENAMETOOLONG' | 'ENODATA' | 'EMLINK' | 'ERANGE' | 'ENOSPC',
    message?: string,
  ) {
    // These are answers (ENOENT for every lookup of a new name), not faults: a stack trace would
    // cost more than the answer.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.name = 'MetaError';
  }
}

export interface MetaEngine {
  // ---- volumes ----
  createVolume(name: string, owner: Caller): Promise<VolumeInfo>;
  volumes(): Promise<VolumeInfo[]>;
  /** Fails with ENOTEMPTY unless `force`; contents' chunk references are dropped. */
  removeVolume(name: string, force: boolean): Promise<void>;
  usage(volume?: string): Promise<Usage>;
  /** After a crash, for a volume nobody serves: removes the inodes that open files kept alive
   * after their last name went (see unlink). Returns how many went. */
  recoverVolume(name: string): Promise<number>;

  // ---- names ----
  lookup(parent: Ino, name: string): Promise<InodeAttr>;
  getattr(ino: Ino): Promise<InodeAttr>;
  setattr(ino: Ino, changes: AttrChanges): Promise<InodeAttr>;
  /** Makes a name and its inode (newInodeAttr's rule). With `ahead`, the inode gets the number
   * and time given: a number reserveInodes() set aside, with which a client answered the create
   * before the engine made it (client.ts). */
  create(parent: Ino, name: string, node: NewNode, caller: Caller, ahead?: CreateAhead): Promise<Made>;
  /** Sets aside `count` inode numbers that no create is given unless asked for by number (ahead),
   * returning the first; numbers are never reused, so one set aside and never used is skipped. */
  reserveInodes(count: number): Promise<Ino>;
  link(ino: Ino, parent: Ino, name: string): Promise<Made>;
  /** An inode whose last name goes is removed with its contents, unless it is `held`: open in
   * the caller's process, which calls removeOrphan() after the last close. Open files are the
   * serving process's business (as in JuiceFS's client), so the engine keeps no count of them. */
  unlink(parent: Ino, name: string, held?: Ino): Promise<Removed>;
  /** A `held` directory is kept, with no links (see unlink). */
  rmdir(parent: Ino, name: string, held?: Ino): Promise<Removed>;
  /** flags: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2), RENAME_WHITEOUT (4: a 0/0 character
   * device owned by `caller` takes the source's place). A replaced target is removed as by
   * unlink, `held` included. */
  rename(parent: Ino, name: string, newParent: Ino, newName: string, flags: number, caller?: Caller, held?: Ino): Promise<Renamed>;
  readlink(ino: Ino): Promise<string>;
  /** Entries after `cookie` (0: from the start, "." and ".." included), at most `limit`;
   * with `withAttrs`, each with its attributes (one query, not one per entry). */
  readdir(ino: Ino, cookie: number, limit: number, withAttrs?: boolean): Promise<DirEntry[]>;

  // ---- inodes open without a name ----
  /** Removes an inode left without names (kept while it was held open); true if it went. */
  removeOrphan(ino: Ino): Promise<boolean>;

  // ---- contents ----
  /** Extents overlapping [offset, offset + length), in file order. */
  extents(ino: Ino, offset: number, length: number): Promise<Extent[]>;
  /** Replaces what lies in [offset, offset + length) with `extents` (all inside that range) and
   * sets the size to at least `newSize` and the times. Every chunk named must have been pinned
   * under `pinToken` and stored first; `chunks` lists them; their pins go. */
  writeExtents(ino: Ino, offset: number, length: number, extents: Extent[], chunks: ChunkInfo[], newSize: number, mtime: Time, pinToken: number): Promise<InodeAttr>;
  /** Chunks no extent references any more (gc's candidates). */
  unreferencedChunks(limit: number): Promise<ChunkInfo[]>;
  /** Before a commit stores chunks in the pool: records them, pinned against gc under the
   * commit's `token` until writeExtents with that token names them (or until `untilMs`).
   * Returns the ids gc is deleting right now: wait until they are gone, then pin them again. */
  pinChunks(chunks: ChunkInfo[], token: number, untilMs: number): Promise<ChunkId[]>;
  /** Drops every pin of a commit that failed: its chunks become collectable at once. */
  unpinChunks(token: number): Promise<void>;
  /** gc: claims up to `limit` unreferenced, unpinned chunks for deletion (no commit can use them
   * from now on). Delete their pool copies, then forgetChunks(). */
  claimUnreferenced(limit: number, nowMs: number): Promise<ChunkInfo[]>;
  /** Chunks claimed by a gc before `claimedBeforeMs` and not forgotten: left by a gc that died.
   * Nothing refers to a claimed chunk, so anyone may finish deleting it. */
  staleClaims(claimedBeforeMs: number): Promise<ChunkId[]>;
  /** Drops claimed chunks whose pool copies are gone. */
  forgetChunks(ids: ChunkId[]): Promise<void>;
  /** gc of the pool's orphans (chunks found on disks that the metadata does not know: left by a
   * disk that came back after its chunks were collected): claims, as claimUnreferenced does, those
   * of `ids` the metadata has no record of, so that no commit can start using them; returns them.
   * Delete their pool copies, then forgetChunks(). */
  claimOrphans(ids: ChunkId[], nowMs: number): Promise<ChunkId[]>;

  /** For fsck: every chunk the metadata knows, with its recorded reference count, and the chunks
   * whose recorded count differs from the extents that name them. */
  checkChunks(): Promise<{ chunks: Array<ChunkInfo & { refs: number }>; refMismatches: Array<{ id: ChunkId; recorded: number; actual: number }> }>;
  /** Sets every recorded reference count to the number of extents naming the chunk. */
  repairRefcounts(): Promise<number>;
  /** Up to `limit` files whose contents use the chunk, as "volume:/path". */
  filesUsing(id: ChunkId, limit: number): Promise<string[]>;
  /** The distinct values of extended attribute `name` over the files whose contents use the
   * chunk; null stands for the files without it (what a shared chunk's files ask of it). */
  xattrOfFilesUsing(id: ChunkId, name: string): Promise<Array<Buffer | null>>;

  // ---- extended attributes ----
  /** The inodes of `volume` changed after change number `after` (0: all of them) and those
   * removed since, at most about `limit` inodes a page; one change is never split over pages. */
  changesSince(volume: string, after: number, limit: number): Promise<VolumeChanges>;
  /** How many changes the store's metadata has had: it grows with every change (a cheap way to
   * notice that something changed). */
  changeCount(): Promise<number>;
  /** Makes a volume attached from a peer's volume: empty until its changes are applied. */
  attachVolume(name: string, owner: Caller, origin: { peer: string; volume: string }): Promise<VolumeInfo>;
  /** Applies a page of the peer's changes (changesSince on the peer) to an attached volume, in one
   * transaction, and records that the index is complete up to the page's upTo.
   * Returns this store's inodes it changed or removed (whose kernel caches are stale now). */
  applyChanges(volume: string, changes: VolumeChanges): Promise<Ino[]>;
  /** Whether a file of `volume` has content in chunk `id` (a peer may ask only for those). */
  volumeHoldsChunk(volume: string, id: ChunkId): Promise<boolean>;
  /** Records how many bytes the pool holds of chunks (0: not held here, only a peer's), as a
   * chunk of an attached volume is stored or let go. */
  setStoredSize(chunks: Array<{ id: ChunkId; storedSize: number }>): Promise<void>;
  /** Marks an inode of an attached volume Real (orbit pin), Unreal (orbit unpin), or unmarked
   * (undefined: as its directory is). */
  setReal(ino: Ino, real: boolean | undefined): Promise<void>;
  /** Whether an inode is Real (by its own mark, or its nearest marked directory's), and whether
   * the mark is its own. */
  isReal(ino: Ino): Promise<{ real: boolean; marked: boolean }>;
  /** The chunks of a volume's Real files, with their bytes in those files and whether stored here. */
  realChunks(volume: string): Promise<ChunkHolding[]>;
  /** The chunks of every file of a volume, the same way. */
  volumeChunks(volume: string): Promise<ChunkHolding[]>;
  /** Whether a file of one of this store's own volumes (not attached) has content in the chunk,
   * or a commit in flight is storing it (it pinned it): the pool must keep it either way. */
  keptByThisStore(id: ChunkId): Promise<boolean>;
  getxattr(ino: Ino, name: string): Promise<Buffer>;
  listxattr(ino: Ino): Promise<string[]>;
  /** flags: XATTR_CREATE (1), XATTR_REPLACE (2). */
  setxattr(ino: Ino, name: string, value: Uint8Array, flags: number): Promise<void>;
  removexattr(ino: Ino, name: string): Promise<void>;

  // ---- durability ----
  /** Every operation completed so far survives power loss once this resolves. */
  sync(): Promise<void>;
  close(): Promise<void>;
}
