// The wire between the native binding (native/orbit_fuse.c) and the TypeScript session: operation
// codes, the layout of the shared Float64 scratch area and the order of session options. Each list
// here has a twin in the C file; change both together.

/** Operation codes, in the order of the C enum. Events share the numbering. */
export const enum Op {
  Init = 0,
  Destroy,
  Lookup,
  Forget,
  Getattr,
  Setattr,
  Readlink,
  Mknod,
  Mkdir,
  Unlink,
  Rmdir,
  Symlink,
  Rename,
  Link,
  Open,
  Read,
  Write,
  Flush,
  Release,
  Fsync,
  Opendir,
  Readdir,
  Readdirplus,
  Releasedir,
  Fsyncdir,
  Statfs,
  Setxattr,
  Getxattr,
  Listxattr,
  Removexattr,
  Access,
  Create,
  Fallocate,
  Lseek,
  CopyFileRange,
  /** A request the filesystem did not answer in time was answered EIO. */
  Timeout = 100,
  /** The kernel connection ended; the session is over. */
  Closed = 101,
}

export const OP_NAMES: Readonly<Record<number, string>> = {
  [Op.Init]: 'init', [Op.Destroy]: 'destroy', [Op.Lookup]: 'lookup', [Op.Forget]: 'forget',
  [Op.Getattr]: 'getattr', [Op.Setattr]: 'setattr', [Op.Readlink]: 'readlink', [Op.Mknod]: 'mknod',
  [Op.Mkdir]: 'mkdir', [Op.Unlink]: 'unlink', [Op.Rmdir]: 'rmdir', [Op.Symlink]: 'symlink',
  [Op.Rename]: 'rename', [Op.Link]: 'link', [Op.Open]: 'open', [Op.Read]: 'read', [Op.Write]: 'write',
  [Op.Flush]: 'flush', [Op.Release]: 'release', [Op.Fsync]: 'fsync', [Op.Opendir]: 'opendir',
  [Op.Readdir]: 'readdir', [Op.Readdirplus]: 'readdirplus', [Op.Releasedir]: 'releasedir',
  [Op.Fsyncdir]: 'fsyncdir', [Op.Statfs]: 'statfs', [Op.Setxattr]: 'setxattr',
  [Op.Getxattr]: 'getxattr', [Op.Listxattr]: 'listxattr', [Op.Removexattr]: 'removexattr',
  [Op.Access]: 'access', [Op.Create]: 'create', [Op.Fallocate]: 'fallocate', [Op.Lseek]: 'lseek',
  [Op.CopyFileRange]: 'copyFileRange',
};

/** Scratch layout, in doubles. A request: [op, id, uid, gid, pid, umask, args...]. */
export const REQ_ARGS = 6;
/** Replies start here: entry = [ino, generation, entryTimeout, attrTimeout, attr...]. */
export const REPLY_BASE = 32;
export const SCRATCH_DOUBLES = 64;

/** Attribute fields inside the reply area (indices relative to REPLY_BASE). */
export const enum AttrField {
  Ino = 0,
  Generation = 1,
  EntryTimeout = 2,
  AttrTimeout = 3,
  Mode = 4,
  Nlink = 5,
  Uid = 6,
  Gid = 7,
  Rdev = 8,
  Size = 9,
  Blocks = 10,
  Blksize = 11,
  AtimeSec = 12,
  AtimeNsec = 13,
  MtimeSec = 14,
  MtimeNsec = 15,
  CtimeSec = 16,
  CtimeNsec = 17,
}

/** Bits of an open reply (C: OPEN_*). */
export const enum OpenBits {
  DirectIo = 1,
  KeepCache = 2,
  NonSeekable = 4,
  CacheReaddir = 8,
  NoFlush = 16,
}

/** Kinds of kernel notification (C: notify_kind_t). */
export const enum NotifyKind {
  InvalInode = 0,
  InvalEntry = 1,
  Delete = 2,
}

/** FUSE_SET_ATTR_* bits of a setattr request. */
export const enum SetattrBits {
  Mode = 1 << 0,
  Uid = 1 << 1,
  Gid = 1 << 2,
  Size = 1 << 3,
  Atime = 1 << 4,
  Mtime = 1 << 5,
  AtimeNow = 1 << 7,
  MtimeNow = 1 << 8,
  Ctime = 1 << 10,
  KillSuid = 1 << 11,
  KillSgid = 1 << 12,
}

/** Order of the numeric option vector given to createSession (C: O_*). */
export const SESSION_OPTION_ORDER = [
  'opsMask', 'timeoutMs', 'maxWrite', 'maxReadahead', 'maxBackground', 'congestionThreshold',
  'maxThreads', 'timeGran', 'utf8Names', 'debug', 'writebackCache', 'asyncRead', 'readdirplus',
  'readdirplusAuto', 'atomicOTrunc', 'parallelDirops', 'cacheSymlinks', 'explicitInvalData',
  'posixAcl', 'handleKillpriv', 'flushWrittenOnly',
] as const;
export type NativeOptionName = (typeof SESSION_OPTION_ORDER)[number];
