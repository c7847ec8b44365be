// A FUSE session: mounts a FuseOperations implementation through the native binding, turns each
// kernel request into a handler call and each handler result into a reply.
//
// Requests arrive on the JS thread through `dispatch`, their numbers already in the scratch area.
// Everything that reads the scratch area runs synchronously at the top of dispatch, before any
// handler code; replies write the reply half of the area and call the binding at once.
import { constants } from 'node:os';
import type { Logger } from '../log.js';
import { componentLogger } from '../log.js';
import type {
  Attr,
  AttrReply,
  ConnectionInfo,
  CreateReply,
  Entry,
  FuseOperations,
  OpenReply,
  ReadReply,
  RequestContext,
  Result,
  SessionOptions,
  SetattrChanges,
  StatfsReply,
  Timespec,
  WriteInfo,
} from './contract.js';
import { DirentWriter, type EntryDefaults } from './dirent.js';
import { errnoOf, MountError } from './errors.js';
import { prepareMountpoint } from './mountpoint.js';
import { loadBinding, type NativeBinding, type NativeSession } from './native.js';
import {
  AttrField as F,
  NotifyKind,
  Op,
  OP_NAMES,
  OpenBits,
  REPLY_BASE,
  REQ_ARGS,
  SESSION_OPTION_ORDER,
  SetattrBits,
  type NativeOptionName,
} from './ops.js';

const { ERANGE, ENOSYS, EIO, ENOENT } = constants.errno;
const MiB = 1024 * 1024;

/** Which operations an object implements, as the binding's bit mask. */
const HANDLER_OPS: ReadonlyArray<[keyof FuseOperations, Op]> = [
  ['lookup', Op.Lookup], ['forget', Op.Forget], ['getattr', Op.Getattr], ['setattr', Op.Setattr],
  ['readlink', Op.Readlink], ['mknod', Op.Mknod], ['mkdir', Op.Mkdir], ['unlink', Op.Unlink],
  ['rmdir', Op.Rmdir], ['symlink', Op.Symlink], ['rename', Op.Rename], ['link', Op.Link],
  ['open', Op.Open], ['read', Op.Read], ['write', Op.Write], ['flush', Op.Flush],
  ['release', Op.Release], ['fsync', Op.Fsync], ['opendir', Op.Opendir], ['readdir', Op.Readdir],
  ['readdirplus', Op.Readdirplus], ['releasedir', Op.Releasedir], ['fsyncdir', Op.Fsyncdir],
  ['statfs', Op.Statfs], ['setxattr', Op.Setxattr], ['getxattr', Op.Getxattr],
  ['listxattr', Op.Listxattr], ['removexattr', Op.Removexattr], ['access', Op.Access],
  ['create', Op.Create], ['fallocate', Op.Fallocate], ['lseek', Op.Lseek],
  ['copyFileRange', Op.CopyFileRange],
];

type Reply<T> = (id: number, value: T) => void;

// Set by the first session (the binding loads lazily): the binding, and the scratch area's
// request half [op, id, uid, gid, pid, umask, a0, a1, ...] and reply half.
let native: NativeBinding;
let q: Float64Array;
let r: Float64Array;

function bindNative(): void {
  if (native) return;
  const loaded = loadBinding();
  native = loaded.native;
  q = loaded.scratch;
  r = loaded.scratch.subarray(REPLY_BASE);
}

function putAttr(a: Attr): void {
  r[F.Ino] = a.ino;
  r[F.Mode] = a.mode;
  r[F.Nlink] = a.nlink;
  r[F.Uid] = a.uid;
  r[F.Gid] = a.gid;
  r[F.Rdev] = a.rdev;
  r[F.Size] = a.size;
  r[F.Blocks] = a.blocks;
  r[F.Blksize] = a.blksize;
  r[F.AtimeSec] = a.atime.sec;
  r[F.AtimeNsec] = a.atime.nsec;
  r[F.MtimeSec] = a.mtime.sec;
  r[F.MtimeNsec] = a.mtime.nsec;
  r[F.CtimeSec] = a.ctime.sec;
  r[F.CtimeNsec] = a.ctime.nsec;
}

function openBits(o: OpenReply): number {
  return (
    (o.directIo ? OpenBits.DirectIo : 0) |
    (o.keepCache ? OpenBits.KeepCache : 0) |
    (o.nonSeekable ? OpenBits.NonSeekable : 0) |
    (o.cacheReaddir ? OpenBits.CacheReaddir : 0) |
    (o.noFlush ? OpenBits.NoFlush : 0)
  );
}

function tri(v: boolean | undefined): number {
  return v === undefined ? -1 : v ? 1 : 0;
}

/** The i-th numeric argument of the request being dispatched. */
function a(i: number): number {
  return q[REQ_ARGS + i] ?? 0;
}

function timespecAt(i: number): Timespec {
  return { sec: a(i), nsec: a(i + 1) };
}

// Sessions still mounted, and mounts under way, for signal and exit handling.
const mounted = new Set<FuseSession>();
const mounting = new Set<Promise<unknown>>();
let signalsInstalled = false;

function onExit(): void {
  // Nothing asynchronous runs any more: detach lazily so no mount is left behind.
  for (const s of mounted) if (s.mountpoint) native.unmountSync(s.mountpoint);
}

async function unmountAllAndDie(signal: NodeJS.Signals): Promise<void> {
  // A mount(2) may be under way on the thread pool: let it land, then take it down too.
  await Promise.allSettled(mounting);
  const sessions = [...mounted].filter((s) => s.handlesSignals);
  await Promise.allSettled(sessions.map((s) => s.unmount().catch(() => s.unmount({ lazy: true }))));
  // Dying of a signal skips the exit hooks that drain asynchronous log buffers: drain them now.
  await Promise.all(sessions.map((s) => new Promise<void>((resolve) => s.log.flush(() => resolve()))));
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  signalsInstalled = false;
  process.kill(process.pid, signal); // die of the signal, as without us
}

function onSignal(signal: NodeJS.Signals): void {
  if ([...mounted].some((s) => s.handlesSignals) || mounting.size > 0) void unmountAllAndDie(signal);
}

let exitInstalled = false;

/** Every mount is detached at exit; sessions that handle signals also unmount on SIGINT/SIGTERM. */
function installProcessHandlers(signals: boolean): void {
  if (!exitInstalled) {
    exitInstalled = true;
    process.on('exit', onExit);
  }
  if (signals && !signalsInstalled) {
    signalsInstalled = true;
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
}

/** A write's payload and its WriteInfo: lent to the handler unless it keeps it. */
class LentPayload implements WriteInfo {
  private kept = false;

  constructor(
    readonly data: Buffer,
    readonly writepage: boolean,
    readonly flags: number,
  ) {}

  keep(): Buffer {
    this.kept = true;
    return this.data;
  }

  giveBack(): void {
    if (!this.kept) native.releasePayload(this.data);
  }
}

export class FuseSession {
  readonly log: Logger;
  readonly handlesSignals: boolean;
  /** What the kernel agreed to at init; set once mounted. */
  connection: ConnectionInfo | undefined;
  /** Absolute path while mounted. */
  mountpoint: string | undefined;
  /** Settles when the kernel connection ends (unmount, fusermount -u, abort). */
  readonly closed: Promise<void>;

  private readonly fs: FuseOperations;
  private readonly options: SessionOptions;
  private readonly defaults: EntryDefaults;
  private readonly handle: NativeSession;
  private readonly utf8: boolean;
  private resolveClosed!: () => void;
  private resolveInit: ((c: ConnectionInfo) => void) | undefined;

  constructor(fs: FuseOperations, options: SessionOptions = {}, log: Logger = componentLogger('fuse')) {
    bindNative();
    this.fs = fs;
    this.options = options;
    this.log = log;
    this.utf8 = options.utf8Names ?? true;
    this.handlesSignals = options.handleSignals ?? true;
    this.defaults = { entryTimeout: options.entryTimeout ?? 1, attrTimeout: options.attrTimeout ?? 1 };
    this.closed = new Promise((resolve) => (this.resolveClosed = resolve));

    let mask = 0;
    for (const [method, op] of HANDLER_OPS) if (typeof fs[method] === 'function') mask += 2 ** op;
    const values: Record<NativeOptionName, number> = {
      opsMask: mask,
      timeoutMs: options.requestTimeoutMs ?? 60_000,
      maxWrite: options.maxWrite ?? MiB,
      maxReadahead: options.maxReadahead ?? MiB,
      maxBackground: options.maxBackground ?? 0,
      congestionThreshold: options.congestionThreshold ?? 0,
      maxThreads: options.maxThreads ?? 4,
      timeGran: 0,
      utf8Names: this.utf8 ? 1 : 0,
      debug: options.debug ? 1 : 0,
      writebackCache: tri(options.writebackCache ?? false),
      asyncRead: tri(options.asyncRead),
      readdirplus: options.readdirplus === undefined ? -1 : options.readdirplus === 'no' ? 0 : 1,
      readdirplusAuto: options.readdirplus === undefined ? -1 : options.readdirplus === 'auto' ? 1 : 0,
      atomicOTrunc: tri(options.atomicOTrunc),
      parallelDirops: tri(options.parallelDirops),
      cacheSymlinks: tri(options.cacheSymlinks),
      explicitInvalData: tri(options.explicitInvalData),
      posixAcl: tri(options.posixAcl),
      handleKillpriv: tri(options.handleKillpriv),
      flushWrittenOnly: options.flushWrittenOnly ? 1 : 0,
    };
    this.handle = native.createSession(this.dispatch, SESSION_OPTION_ORDER.map((k) => values[k]), options.computedXattrs, options.xattrNamespaces);
  }

  /** Mounts at `mountpoint`; resolves once the kernel has completed init and requests flow. */
  async mount(mountpoint: string): Promise<void> {
    const target = await prepareMountpoint(mountpoint, this.options.nonEmpty ?? false, this.log);
    const initDone = new Promise<ConnectionInfo>((resolve) => (this.resolveInit = resolve));
    // Handlers first: once mount(2) is done a signal must find them in place.
    installProcessHandlers(this.handlesSignals);
    const attempt = native.mount(this.handle, target, this.mountOptionString());
    mounting.add(attempt);
    try {
      await attempt;
    } catch (err) {
      throw new MountError((err as Error).message);
    } finally {
      mounting.delete(attempt);
    }
    this.mountpoint = target;
    mounted.add(this);
    // The kernel sends INIT right after mount(2); if the connection dies first, so does the wait.
    await Promise.race([initDone, this.closed.then(() => Promise.reject(new MountError(`mount at ${target} ended during init`)))]);
    this.log.info({ mountpoint: target, maxWrite: this.connection?.maxWrite }, 'mounted');
  }

  /** Unmounts and waits until the session has ended. `lazy`: detach now, even with files open
   * (the session then serves those files until they are closed and does not wait for that). */
  async unmount(opts: { lazy?: boolean } = {}): Promise<void> {
    const target = this.mountpoint;
    if (!target) return;
    try {
      await native.unmount(target, opts.lazy ?? false);
    } catch (err) {
      const busy = (err as { errno?: number }).errno === constants.errno.EBUSY;
      throw new MountError(busy ? `${target} is busy (files are open); unmount lazily or close them` : (err as Error).message);
    }
    if (!opts.lazy) await this.closed;
  }

  /** Drop the kernel's cached attributes of `ino` and its pages in [offset, offset+length)
   * (length 0: to the end). Resolves when done; an inode the kernel does not hold is not an error. */
  async notifyInvalInode(ino: number, offset = 0, length = 0): Promise<void> {
    this.notifyResult(await native.notify(this.handle, NotifyKind.InvalInode, ino, offset, length), 'inval_inode');
  }

  /** Drop the kernel's cached lookup of `name` in directory `parent`. */
  async notifyInvalEntry(parent: number, name: string): Promise<void> {
    this.notifyResult(await native.notify(this.handle, NotifyKind.InvalEntry, parent, 0, name), 'inval_entry');
  }

  /** Tell the kernel that `name` in `parent`, naming `child`, was deleted (by someone else). */
  async notifyDelete(parent: number, child: number, name: string): Promise<void> {
    this.notifyResult(await native.notify(this.handle, NotifyKind.Delete, parent, child, name), 'delete');
  }

  private notifyResult(result: number, what: string): void {
    if (result === 0 || result === -ENOENT) return;
    throw Object.assign(new Error(`notify ${what} failed: errno ${-result}`), { errno: -result });
  }

  private mountOptionString(): string {
    const o = this.options;
    const opts = [`fsname=${o.fsName ?? 'orbit'}`, `subtype=${o.subtype ?? 'orbit'}`];
    if (o.allowOther) opts.push('allow_other');
    if (o.defaultPermissions) opts.push('default_permissions');
    if (o.autoUnmount) opts.push('auto_unmount');
    opts.push(...(o.mountOptions ?? []));
    for (const opt of opts) if (/[,\s]/.test(opt.replace(/^fsname=|^subtype=/, ''))) throw new MountError(`bad mount option: ${opt}`);
    return opts.join(',');
  }

  // ---- request dispatch ----

  private readonly dispatch = (s1?: string, s2?: string, data?: Buffer): void => {
    const op = q[0] ?? -1;
    const id = q[1] ?? -1;
    if (id < 0) {
      try {
        this.event(op);
      } catch (err) {
        this.log.error({ err, op: OP_NAMES[op] ?? op }, 'filesystem failed handling an event');
      }
      return;
    }
    const ctx: RequestContext = { uid: q[2] ?? 0, gid: q[3] ?? 0, pid: q[4] ?? 0, umask: q[5] ?? 0 };
    try {
      this.request(op, id, ctx, s1, s2, data);
    } catch (err) {
      this.fail(id, op, err);
    }
  };

  private event(op: number): void {
    switch (op) {
      case Op.Forget:
        this.fs.forget?.(a(0), a(1));
        return;
      case Op.Init: {
        this.connection = {
          protoMajor: a(0), protoMinor: a(1), capable: a(2), want: a(3),
          maxWrite: a(4), maxReadahead: a(5), maxBackground: a(6), timeGran: a(7),
        };
        this.resolveInit?.(this.connection);
        this.fs.init?.(this.connection);
        return;
      }
      case Op.Destroy:
        this.fs.destroy?.();
        return;
      case Op.Timeout:
        this.log.error({ op: OP_NAMES[a(0)], ino: a(1), timeoutMs: this.options.requestTimeoutMs ?? 60_000 },
          'request not answered in time; answered EIO');
        return;
      case Op.Closed:
        mounted.delete(this);
        this.log.info({ mountpoint: this.mountpoint }, 'unmounted');
        this.mountpoint = undefined;
        this.resolveClosed();
        return;
    }
  }

  private request(op: number, id: number, ctx: RequestContext, s1?: string, s2?: string, data?: Buffer): void {
    const fs = this.fs;
    const name = s1 ?? '';
    switch (op) {
      case Op.Lookup:
        return this.settle(id, op, fs.lookup?.(ctx, a(0), name), this.marking(this.replyEntry));
      case Op.Getattr:
        return this.settle(id, op, fs.getattr?.(ctx, a(0), a(1) < 0 ? undefined : a(1)), this.replyAttr);
      case Op.Setattr:
        return this.settle(id, op, fs.setattr?.(ctx, a(0), this.setattrChanges()), this.replyAttr);
      case Op.Readlink:
        return this.settle(id, op, fs.readlink?.(ctx, a(0)), this.replyReadlink);
      case Op.Mknod:
        return this.settle(id, op, fs.mknod?.(ctx, a(0), name, a(1), a(2)), this.marking(this.replyEntry));
      case Op.Mkdir:
        return this.settle(id, op, fs.mkdir?.(ctx, a(0), name, a(1)), this.marking(this.replyEntry));
      case Op.Unlink:
        return this.settle(id, op, fs.unlink?.(ctx, a(0), name), this.replyOk);
      case Op.Rmdir:
        return this.settle(id, op, fs.rmdir?.(ctx, a(0), name), this.replyOk);
      case Op.Symlink:
        return this.settle(id, op, fs.symlink?.(ctx, a(0), name, s2 ?? ''), this.marking(this.replyEntry));
      case Op.Rename:
        return this.settle(id, op, fs.rename?.(ctx, a(0), name, a(1), s2 ?? '', a(2)), this.replyOk);
      case Op.Link:
        return this.settle(id, op, fs.link?.(ctx, a(0), a(1), name), this.marking(this.replyEntry));
      case Op.Open:
        return this.settle(id, op, fs.open?.(ctx, a(0), a(1)), this.replyOpen);
      case Op.Read:
        return this.settle(id, op, fs.read?.(ctx, a(0), a(3), a(2), a(1)), this.replyData);
      case Op.Write:
        return this.write(id, ctx, a(0), a(2), a(1), new LentPayload(data!, a(3) !== 0, a(4)));
      case Op.Flush:
        return this.settle(id, op, fs.flush?.(ctx, a(0), a(1)), this.replyOk);
      case Op.Release:
        return this.settle(id, op, fs.release?.(ctx, a(0), a(1), a(2)), this.replyOk);
      case Op.Fsync:
        return this.settle(id, op, fs.fsync?.(ctx, a(0), a(2), a(1) !== 0), this.replyOk);
      case Op.Opendir:
        return this.settle(id, op, fs.opendir?.(ctx, a(0), a(1)), this.replyOpen);
      case Op.Readdir:
      case Op.Readdirplus: {
        const plus = op === Op.Readdirplus;
        const out = new DirentWriter(a(1), plus, this.defaults);
        const done = plus ? fs.readdirplus?.(ctx, a(0), a(3), a(2), out) : fs.readdir?.(ctx, a(0), a(3), a(2), out);
        const epoch = this.xattrEpoch;
        return this.settle(id, op, done, () => {
          if (out.noXattrs.length > 0 && epoch === this.xattrEpoch) native.markNoXattrs(this.handle, Float64Array.from(out.noXattrs));
          native.replyBuf(id, out.buffer, out.length);
        });
      }
      case Op.Releasedir:
        return this.settle(id, op, fs.releasedir?.(ctx, a(0), a(1)), this.replyOk);
      case Op.Fsyncdir:
        return this.settle(id, op, fs.fsyncdir?.(ctx, a(0), a(2), a(1) !== 0), this.replyOk);
      case Op.Statfs:
        return this.settle(id, op, fs.statfs?.(ctx, a(0)), this.replyStatfs);
      case Op.Setxattr:
        return this.settle(id, op, this.changingXattrs(a(0), fs.setxattr?.(ctx, a(0), name, data ?? Buffer.alloc(0), a(1))), this.replyOk);
      case Op.Getxattr: {
        const size = a(1);
        return this.settle(id, op, fs.getxattr?.(ctx, a(0), name), (rid, value: Uint8Array) => this.replySized(rid, value, size));
      }
      case Op.Listxattr: {
        const size = a(1);
        return this.settle(id, op, fs.listxattr?.(ctx, a(0)), (rid, names: readonly string[]) =>
          this.replySized(rid, names.length ? Buffer.from(names.join('\0') + '\0', this.utf8 ? 'utf8' : 'latin1') : Buffer.alloc(0), size));
      }
      case Op.Removexattr:
        return this.settle(id, op, this.changingXattrs(a(0), fs.removexattr?.(ctx, a(0), name)), this.replyOk);
      case Op.Access:
        return this.settle(id, op, fs.access?.(ctx, a(0), a(1)), this.replyOk);
      case Op.Create:
        return this.settle(id, op, fs.create?.(ctx, a(0), name, a(1), a(2)), this.marking(this.replyCreate));
      case Op.Fallocate:
        return this.settle(id, op, fs.fallocate?.(ctx, a(0), a(4), a(1), a(2), a(3)), this.replyOk);
      case Op.Lseek:
        return this.settle(id, op, fs.lseek?.(ctx, a(0), a(3), a(1), a(2)), (rid, off: number) => native.replyLseek(rid, off));
      case Op.CopyFileRange:
        return this.settle(id, op, fs.copyFileRange?.(ctx, a(0), a(2), a(1), a(3), a(5), a(4), a(6), a(7)), this.replyWrite);
      default:
        native.replyErr(id, ENOSYS);
    }
  }

  /** A write's payload is lent for the handler's duration: replied to, then handed back. */
  private write(id: number, ctx: RequestContext, ino: number, fh: number, offset: number, lent: LentPayload): void {
    let result: Result<number>;
    try {
      result = this.fs.write!(ctx, ino, fh, offset, lent.data, lent);
    } catch (err) {
      this.fail(id, Op.Write, err);
      lent.giveBack();
      return;
    }
    if (result instanceof Promise) {
      result.then(
        (n) => {
          this.deliver(id, Op.Write, n, this.replyWrite);
          lent.giveBack();
        },
        (err: unknown) => {
          this.fail(id, Op.Write, err);
          lent.giveBack();
        },
      );
    } else {
      this.deliver(id, Op.Write, result, this.replyWrite);
      lent.giveBack();
    }
  }

  private setattrChanges(): SetattrChanges {
    const valid = a(1);
    const c: SetattrChanges = {};
    if (valid & SetattrBits.Mode) c.mode = a(2);
    if (valid & SetattrBits.Uid) c.uid = a(3);
    if (valid & SetattrBits.Gid) c.gid = a(4);
    if (valid & SetattrBits.Size) c.size = a(5);
    if (valid & SetattrBits.AtimeNow) c.atime = 'now';
    else if (valid & SetattrBits.Atime) c.atime = timespecAt(6);
    if (valid & SetattrBits.MtimeNow) c.mtime = 'now';
    else if (valid & SetattrBits.Mtime) c.mtime = timespecAt(8);
    if (valid & SetattrBits.Ctime) c.ctime = timespecAt(10);
    if (valid & SetattrBits.KillSuid) c.killSuid = true;
    if (valid & SetattrBits.KillSgid) c.killSgid = true;
    if (a(12) >= 0) c.fh = a(12);
    return c;
  }

  /** Sends a handler's result, now or when its promise settles. (The binding registers only the
   * operations the filesystem implements, so every request here has its handler.) */
  private settle<T>(id: number, op: number, result: T | Promise<T> | undefined, reply: Reply<T>): void {
    if (result instanceof Promise) {
      result.then(
        (value: T) => this.deliver(id, op, value, reply),
        (err: unknown) => this.fail(id, op, err),
      );
    } else {
      this.deliver(id, op, result as T, reply);
    }
  }

  private deliver<T>(id: number, op: number, value: T, reply: Reply<T>): void {
    try {
      reply(id, value);
    } catch (err) {
      this.log.error({ err, op: OP_NAMES[op] }, 'handler returned an unusable result; answered EIO');
      native.replyErr(id, EIO);
    }
  }

  private fail(id: number, op: number, err: unknown): void {
    let errno = errnoOf(err);
    if (errno === undefined) {
      errno = EIO;
      this.log.error({ err, op: OP_NAMES[op] }, 'handler failed; answered EIO');
    }
    native.replyErr(id, errno);
  }

  // ---- inodes without extended attributes ----
  // The binding answers getxattr itself for inodes marked as having none (Entry.noXattrs). A mark
  // must never outlive a change: a change that completes while an entry is on its way (its
  // noXattrs read before the change) bumps the epoch, and the entry's reply then marks nothing;
  // an entry replied before the change completes is unmarked by the change itself.

  /** Bumped whenever extended attributes may have changed. */
  private xattrEpoch = 0;

  /** Tells the session that an inode's extended attributes may have changed other than by a
   * setxattr or removexattr through it (a peer's changes, say). */
  xattrsChanged(ino: number): void {
    this.xattrEpoch++;
    native.unmarkNoXattrs(this.handle, ino);
  }

  private changingXattrs(ino: number, change: Result<void> | undefined): Result<void> | undefined {
    if (!(change instanceof Promise)) {
      this.xattrsChanged(ino);
      return change;
    }
    return change.finally(() => this.xattrsChanged(ino));
  }

  private markNoXattrs(ino: number, epoch: number): void {
    if (epoch !== this.xattrEpoch) return;
    this.oneIno[0] = ino;
    native.markNoXattrs(this.handle, this.oneIno);
  }

  private readonly oneIno = new Float64Array(1);

  /** `reply`, marking the entry's inode when it came with noXattrs. */
  private marking<T extends Entry>(reply: Reply<T>): Reply<T> {
    const epoch = this.xattrEpoch;
    return (id, e) => {
      if (e.noXattrs) this.markNoXattrs(e.attr.ino, epoch);
      reply(id, e);
    };
  }

  // ---- replies ----

  private readonly replyOk: Reply<void> = (id) => {
    native.replyErr(id, 0);
  };

  private readonly replyEntry: Reply<Entry> = (id, e) => {
    putAttr(e.attr);
    r[F.Generation] = e.generation ?? 0;
    r[F.EntryTimeout] = e.entryTimeout ?? this.defaults.entryTimeout;
    r[F.AttrTimeout] = e.attrTimeout ?? this.defaults.attrTimeout;
    native.replyEntry(id);
  };

  private readonly replyCreate: Reply<CreateReply> = (id, c) => {
    putAttr(c.attr);
    r[F.Generation] = c.generation ?? 0;
    r[F.EntryTimeout] = c.entryTimeout ?? this.defaults.entryTimeout;
    r[F.AttrTimeout] = c.attrTimeout ?? this.defaults.attrTimeout;
    native.replyCreate(id, c.fh, openBits(c));
  };

  private readonly replyAttr: Reply<AttrReply> = (id, a) => {
    putAttr(a.attr);
    r[F.AttrTimeout] = a.timeout ?? this.defaults.attrTimeout;
    native.replyAttr(id);
  };

  private readonly replyOpen: Reply<OpenReply> = (id, o) => {
    native.replyOpen(id, o.fh, openBits(o));
  };

  private readonly replyWrite: Reply<number> = (id, n) => {
    native.replyWrite(id, n);
  };

  private readonly replyReadlink: Reply<string> = (id, target) => {
    native.replyReadlink(id, target, this.utf8);
  };

  private readonly replyData: Reply<ReadReply> = (id, data) => {
    if (data instanceof Uint8Array) {
      native.replyBuf(id, data);
    } else if ('sent' in data) {
      // The reply copies the bytes to the kernel before it returns: then they may be reused.
      try {
        native.replyIov(id, data.parts);
      } finally {
        data.sent();
      }
    } else {
      native.replyIov(id, data);
    }
  };

  private readonly replyStatfs: Reply<StatfsReply> = (id, s) => {
    r[0] = s.bsize;
    r[1] = s.frsize;
    r[2] = s.blocks;
    r[3] = s.bfree;
    r[4] = s.bavail;
    r[5] = s.files;
    r[6] = s.ffree;
    r[7] = s.favail ?? s.ffree;
    r[8] = s.fsid ?? 0;
    r[9] = s.namemax;
    native.replyStatfs(id);
  };

  /** getxattr/listxattr: size 0 asks for the length; a buffer too small is ERANGE. */
  private replySized(id: number, value: Uint8Array, size: number): void {
    if (size === 0) native.replyXattr(id, value.length);
    else if (value.length > size) native.replyErr(id, ERANGE);
    else native.replyBuf(id, value);
  }
}
