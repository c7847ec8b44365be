// The fuse layer's contract: what a filesystem implements to be mounted by a FuseSession.
//
// It mirrors libfuse's low-level API: inode numbers, not paths. Every request handler gets the
// caller's context and returns its answer, or a promise of it; throwing (or rejecting) with a
// FuseError or a Node system error answers that errno, anything else answers EIO and is logged.
// Handlers may finish in any order: many requests are in flight at once.
//
// Lookup counts: every Entry returned by lookup, mknod, mkdir, symlink, link and create, and every
// entry accepted by DirentWriter.addPlus (other than "." and ".."), adds one to the kernel's
// reference count of that inode; forget() takes references away. An inode may be dropped only
// when it is unlinked everywhere and its count is zero.

import type { DirentWriter } from './dirent.js';

/** Who is asking: the calling process's credentials. */
export interface RequestContext {
  readonly uid: number;
  readonly gid: number;
  readonly pid: number;
  /** The caller's umask, for create/mkdir/mknod (the kernel has not applied it). */
  readonly umask: number;
}

export interface Timespec {
  sec: number;
  nsec: number;
}

export interface Attr {
  ino: number;
  /** File type and permission bits, as in st_mode. */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  size: number;
  /** 512-byte blocks allocated. */
  blocks: number;
  blksize: number;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
}

export interface Entry {
  attr: Attr;
  generation?: number;
  /** Seconds the kernel may cache the name → inode mapping; the session's default if absent. */
  entryTimeout?: number;
  /** Seconds the kernel may cache the attributes; the session's default if absent. */
  attrTimeout?: number;
  /** The inode has no extended attributes (none outside SessionOptions.computedXattrs): the
   * session answers getxattr for it with ENODATA itself, without asking, until a setxattr or
   * removexattr on it, or FuseSession.xattrsChanged. */
  noXattrs?: boolean;
}

export interface AttrReply {
  attr: Attr;
  timeout?: number;
}

/** A read's answer: its bytes, whole or in parts. */
export type ReadReply = Uint8Array | readonly Uint8Array[] | LentReadReply;

/** Parts lying in memory the filesystem will reuse: the session sends them, then calls sent()
 * (whether or not the reply could be sent) and keeps no view of them. */
export interface LentReadReply {
  readonly parts: readonly Uint8Array[];
  sent(): void;
}

export interface OpenReply {
  /** The filesystem's handle, given back with every request on this open file. */
  fh: number;
  /** Bypass the page cache for this open file. */
  directIo?: boolean;
  /** Keep pages cached from earlier opens (the file did not change since). */
  keepCache?: boolean;
  nonSeekable?: boolean;
  /** Directories: let the kernel cache readdir results. */
  cacheReaddir?: boolean;
  /** Do not send flush on close. */
  noFlush?: boolean;
}

export interface CreateReply extends Entry, OpenReply {}

export interface StatfsReply {
  bsize: number;
  frsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  favail?: number;
  fsid?: number;
  namemax: number;
}

/** The fields a setattr changes; absent fields stay as they are. */
export interface SetattrChanges {
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  /** 'now': the filesystem's current time (utimensat UTIME_NOW). */
  atime?: Timespec | 'now';
  mtime?: Timespec | 'now';
  ctime?: Timespec;
  /** The kernel asks to clear set-user-ID / set-group-ID (a write or chown by a non-owner). */
  killSuid?: boolean;
  killSgid?: boolean;
  /** Set when the change comes through an open file (ftruncate, futimens). */
  fh?: number;
}

export interface WriteInfo {
  /** A delayed write from the page cache: the context's uid/gid/pid are not the writer's. */
  writepage: boolean;
  /** The open flags of the file handle. */
  flags: number;
  /** Makes the payload the filesystem's own: it stays valid after the handler settles and is
   * freed when collected, so keeping a large write costs no copy. It pins the whole request
   * buffer (1 MiB), so copy small payloads instead; and V8 counts what waits for collection as
   * outside memory, so a filesystem that keeps most of what is written sets off a full
   * collection every few dozen MiB (Orbit copies writes into reused memory instead). */
  keep(): Buffer;
}

/** What the kernel and libfuse agreed at init. */
export interface ConnectionInfo {
  protoMajor: number;
  protoMinor: number;
  /** FUSE_CAP_* bits the kernel offered and bits in use. */
  capable: number;
  want: number;
  maxWrite: number;
  maxReadahead: number;
  maxBackground: number;
  timeGran: number;
}

export type Result<T> = T | Promise<T>;

/** A filesystem as the fuse layer sees it. Leave out what you do not support: the kernel and
 * libfuse then use their defaults (no round trip), or the caller gets ENOSYS. */
export interface FuseOperations {
  init?(conn: ConnectionInfo): void;
  destroy?(): void;
  lookup?(ctx: RequestContext, parent: number, name: string): Result<Entry>;
  forget?(ino: number, nlookup: number): void;
  getattr?(ctx: RequestContext, ino: number, fh: number | undefined): Result<AttrReply>;
  setattr?(ctx: RequestContext, ino: number, changes: SetattrChanges): Result<AttrReply>;
  readlink?(ctx: RequestContext, ino: number): Result<string>;
  mknod?(ctx: RequestContext, parent: number, name: string, mode: number, rdev: number): Result<Entry>;
  mkdir?(ctx: RequestContext, parent: number, name: string, mode: number): Result<Entry>;
  unlink?(ctx: RequestContext, parent: number, name: string): Result<void>;
  rmdir?(ctx: RequestContext, parent: number, name: string): Result<void>;
  symlink?(ctx: RequestContext, parent: number, name: string, target: string): Result<Entry>;
  /** flags: RENAME_NOREPLACE (1) and RENAME_EXCHANGE (2). */
  rename?(ctx: RequestContext, parent: number, name: string, newParent: number, newName: string, flags: number): Result<void>;
  link?(ctx: RequestContext, ino: number, newParent: number, newName: string): Result<Entry>;
  open?(ctx: RequestContext, ino: number, flags: number): Result<OpenReply>;
  /** Return at most `size` bytes; fewer only at end of file. Several parts are sent without joining. */
  read?(ctx: RequestContext, ino: number, fh: number, offset: number, size: number): Result<ReadReply>;
  /** Returns bytes written. `data` is valid until the handler settles, as in libfuse: copy what
   * you need later, or take it whole with info.keep(). (It is the kernel's request buffer, handed
   * over uncopied; once the handler settles it goes back to the binding and any Buffer still
   * pointing at it reads as empty.) */
  write?(ctx: RequestContext, ino: number, fh: number, offset: number, data: Buffer, info: WriteInfo): Result<number>;
  flush?(ctx: RequestContext, ino: number, fh: number): Result<void>;
  release?(ctx: RequestContext, ino: number, fh: number, flags: number): Result<void>;
  fsync?(ctx: RequestContext, ino: number, fh: number, datasync: boolean): Result<void>;
  opendir?(ctx: RequestContext, ino: number, flags: number): Result<OpenReply>;
  /** Add entries after `offset` (the nextOffset of the last entry the kernel saw) until add() says full. */
  readdir?(ctx: RequestContext, ino: number, fh: number, offset: number, out: DirentWriter): Result<void>;
  /** As readdir, with each entry's attributes (addPlus); accepted entries count as lookups. */
  readdirplus?(ctx: RequestContext, ino: number, fh: number, offset: number, out: DirentWriter): Result<void>;
  releasedir?(ctx: RequestContext, ino: number, fh: number): Result<void>;
  fsyncdir?(ctx: RequestContext, ino: number, fh: number, datasync: boolean): Result<void>;
  statfs?(ctx: RequestContext, ino: number): Result<StatfsReply>;
  /** flags: XATTR_CREATE (1), XATTR_REPLACE (2). */
  setxattr?(ctx: RequestContext, ino: number, name: string, value: Buffer, flags: number): Result<void>;
  /** The whole value; the session answers size probes and ERANGE. Throw ENODATA when absent. */
  getxattr?(ctx: RequestContext, ino: number, name: string): Result<Uint8Array>;
  listxattr?(ctx: RequestContext, ino: number): Result<readonly string[]>;
  removexattr?(ctx: RequestContext, ino: number, name: string): Result<void>;
  access?(ctx: RequestContext, ino: number, mask: number): Result<void>;
  create?(ctx: RequestContext, parent: number, name: string, mode: number, flags: number): Result<CreateReply>;
  fallocate?(ctx: RequestContext, ino: number, fh: number, mode: number, offset: number, length: number): Result<void>;
  /** SEEK_DATA / SEEK_HOLE (and SEEK_SET/CUR/END when the file is nonseekable-aware). */
  lseek?(ctx: RequestContext, ino: number, fh: number, offset: number, whence: number): Result<number>;
  copyFileRange?(
    ctx: RequestContext,
    inoIn: number, fhIn: number, offsetIn: number,
    inoOut: number, fhOut: number, offsetOut: number,
    length: number, flags: number,
  ): Result<number>;
}

/** Init choices and mount options of a session. Sizes in bytes, timeouts in seconds unless named. */
export interface SessionOptions {
  fsName?: string;
  subtype?: string;
  allowOther?: boolean;
  /** Let the kernel check permissions against mode/uid/gid (multi-user mounts). */
  defaultPermissions?: boolean;
  /** fusermount3 unmounts when this process dies, however it dies. */
  autoUnmount?: boolean;
  /** More -o options, passed as they are (e.g. 'noatime'). */
  mountOptions?: readonly string[];
  /** Largest write request (libfuse and the kernel cap it at 1 MiB). Default 1 MiB. */
  maxWrite?: number;
  /** Largest readahead the kernel may ask for. Default 1 MiB. */
  maxReadahead?: number;
  maxBackground?: number;
  congestionThreshold?: number;
  /** Writes land in the page cache and reach the filesystem in large batches. Default off. */
  writebackCache?: boolean;
  /** Let the kernel issue several reads of one file at once. Default on. */
  asyncRead?: boolean;
  /** 'auto': readdirplus only when the kernel expects stats to follow. Default 'auto'. */
  readdirplus?: 'no' | 'yes' | 'auto';
  atomicOTrunc?: boolean;
  parallelDirops?: boolean;
  cacheSymlinks?: boolean;
  /** Page cache is dropped only on notifyInvalInode, never because mtime changed. */
  explicitInvalData?: boolean;
  posixAcl?: boolean;
  handleKillpriv?: boolean;
  /** Prefixes of the extended attribute names the filesystem keeps (e.g. 'user.'). getxattr,
   * setxattr and removexattr of other names are answered EOPNOTSUPP by the session, as Linux
   * filesystems answer system.posix_acl_access when they keep no ACLs (ls -l then stops asking
   * for every file). Default: every name goes to the filesystem. */
  xattrNamespaces?: readonly string[];
  /** Extended attributes under this prefix are derived by the filesystem, not stored: getxattr
   * of them is always asked, even for inodes that came with noXattrs. */
  computedXattrs?: string;
  /** The filesystem's flush commits only what was written through the handle's file: a flush of
   * a handle that carried no write (write, setattr, fallocate or copy_file_range through it) is
   * answered by the session at once, without calling flush (the close of every file opened to
   * be read, or created and closed empty). Default off: every flush is the filesystem's. */
  flushWrittenOnly?: boolean;
  /** Default entry/attribute cache times for replies that give none. Default 1 s. */
  entryTimeout?: number;
  attrTimeout?: number;
  /** A request unanswered for this long is answered EIO. 0: never. Default 60 000 ms. */
  requestTimeoutMs?: number;
  /** libfuse worker threads reading /dev/fuse. Default 4. */
  maxThreads?: number;
  /** Names must be valid UTF-8 (others get EILSEQ). false: names are latin1 strings, any bytes. Default true. */
  utf8Names?: boolean;
  /** Unmount on SIGINT/SIGTERM and lazily on process exit. Default true. */
  handleSignals?: boolean;
  /** Mount over a directory that is not empty. Default false. */
  nonEmpty?: boolean;
  /** libfuse's request trace on stderr. */
  debug?: boolean;
}
