// Differential property test: random sequences of POSIX operations on an Orbit mount and on a
// plain directory of the machine's own filesystem give the same answers (the value, or the same
// errno) and leave the same tree: names, types, sizes, bytes, symlink targets, permission bits,
// link counts, hard-link groups and user.* xattrs.
//
// Why: the kernel's own filesystem is an oracle for the combinations nobody wrote a test for. Four
// names over three levels make names collide; up to three files stay open across operations, so
// contents in flight meet renames, unlinks, truncations, fallocate and other handles; writes
// sometimes cross 1 MiB or land megabytes out, so files span chunks and holes, and they are cut
// from one small pool of bytes, so chunks are shared. Attributes and bytes are also read past the
// kernel's caches (statx with AT_STATX_FORCE_SYNC, a dropped page cache), which would otherwise
// answer for Orbit; a remount or gc now and then checks what was kept. Times, inode numbers,
// st_blocks, st_blksize and directory sizes are each filesystem's own, and not compared.
//
// A failure prints fast-check's seed and path: ORBIT_PROPERTY_SEED=… reproduces it, with
// ORBIT_PROPERTY_PATH=… only its counterexample. ORBIT_PROPERTY_RUNS=… runs longer;
// ORBIT_PROPERTY_NO_SHRINK=1 reports the first failure as it came (shrinking over real mounts
// takes minutes).
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, type Stats } from 'node:fs';
import {
  chmod, link, lstat, mkdir, open, readdir, readFile, readlink, rename, rm, rmdir, stat, symlink, truncate, unlink, writeFile, type FileHandle,
} from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { fsck } from '../../src/store/fsck.js';
import { gc } from '../../src/store/gc.js';
import { tempDir } from '../helpers.js';
import { mountFreshStore, type MountedStore } from './orbit-mount.js';

const MiB = 1024 * 1024;
const SEED = Number(process.env.ORBIT_PROPERTY_SEED ?? 20_260_611);
const RUNS = Number(process.env.ORBIT_PROPERTY_RUNS ?? 100);
const MAX_OPS = 40;
const NAMES = ['a', 'b', 'c', 'd'] as const;
/** Fewer names below the top, so that what a path names exists often enough. */
const INNER_NAMES = ['a', 'b'] as const;
const SLOTS = 3;
/** Written bytes are slices of this pool: overlapping slices share content-defined chunks. */
const POOL_BYTES = 3 * MiB;
const MAX_WRITE = MiB + MiB / 2;

type OpenFlag = 'O_RDONLY' | 'O_WRONLY' | 'O_RDWR' | 'O_CREAT' | 'O_EXCL' | 'O_TRUNC' | 'O_APPEND' | 'O_NOFOLLOW';
type RenameFlag = 'RENAME_NOREPLACE' | 'RENAME_EXCHANGE';
type FallocateMode = 'FALLOC_FL_KEEP_SIZE' | 'FALLOC_FL_PUNCH_HOLE' | 'FALLOC_FL_ZERO_RANGE';
const FALLOCATE_MODE_BITS: Record<FallocateMode, number> = { FALLOC_FL_KEEP_SIZE: 1, FALLOC_FL_PUNCH_HOLE: 2, FALLOC_FL_ZERO_RANGE: 0x10 };
/** `length` bytes of the pool from `from`. */
interface Bytes { from: number; length: number }
/** A path; or the n-th (modulo their number) of the paths that exist when the operation runs, or
 * of those that are not directories (random paths would mostly answer ENOENT to a link, a rename
 * or an unlink, and EISDIR to an open); or the path a file open in a slot was opened by (so that
 * open files get renamed over, unlinked, opened twice). */
type Source = string | { existing: number } | { existingFile: number } | { openedIn: number };

type Op =
  | { op: 'open'; slot: number; path: Source; flags: OpenFlag[]; mode: number }
  | { op: 'close'; slot: number }
  | { op: 'write'; slot: number; position: number | null; bytes: Bytes }
  | { op: 'read'; slot: number; position: number; length: number }
  | { op: 'ftruncate'; slot: number; size: number }
  | { op: 'fstat'; slot: number }
  | { op: 'fsync'; slot: number }
  | { op: 'truncate'; path: Source; size: number }
  | { op: 'fallocate'; of: { path: string } | { slot: number }; mode: FallocateMode[]; offset: number; length: number }
  | { op: 'mkdir'; path: string; mode: number }
  | { op: 'mkdirp'; path: string }
  | { op: 'writeFile'; path: string; bytes: Bytes }
  | { op: 'rmdir'; path: string }
  | { op: 'unlink'; path: Source }
  | { op: 'rename'; from: Source; to: Source; flags: RenameFlag[] }
  | { op: 'link'; from: Source; to: string }
  | { op: 'symlink'; target: string; path: string }
  | { op: 'readlink'; path: string }
  | { op: 'chmod'; path: Source; mode: number }
  | { op: 'stat'; path: string; follow: boolean }
  | { op: 'statx'; of: { path: string; follow: boolean } | { slot: number } }
  | { op: 'dropCache'; of: { path: string } | { slot: number } }
  | { op: 'readdir'; path: string }
  | { op: 'readFile'; path: string }
  | { op: 'setxattr'; path: Source; name: string; value: string; flags: number; follow: boolean }
  | { op: 'getxattr'; path: string; name: string; follow: boolean }
  | { op: 'removexattr'; path: string; name: string; follow: boolean }
  | { op: 'listxattr'; path: string; follow: boolean }
  | { op: 'remount' }
  | { op: 'gc' };

type Outcome = { ok: unknown } | { err: string };

// ---- the sequences ----

const nameArb = fc.constantFrom(...NAMES);
const innerNameArb = fc.constantFrom(...INNER_NAMES);
const shallowPathArb = fc.oneof(
  { weight: 3, arbitrary: nameArb },
  { weight: 2, arbitrary: fc.tuple(nameArb, innerNameArb).map((p) => p.join('/')) },
);
const pathArb = fc.oneof(
  { weight: 8, arbitrary: shallowPathArb },
  { weight: 1, arbitrary: fc.tuple(nameArb, innerNameArb, innerNameArb).map((p) => p.join('/')) },
);
const sourceArb: fc.Arbitrary<Source> = fc.oneof(
  { weight: 2, arbitrary: pathArb },
  { weight: 3, arbitrary: fc.record({ existing: fc.nat(99) }) },
  { weight: 3, arbitrary: fc.record({ openedIn: fc.integer({ min: 0, max: SLOTS - 1 }) }) },
);
const slotArb = fc.integer({ min: 0, max: SLOTS - 1 });
const modeArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0o644, 0o755, 0o600, 0o777) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0o7777 }) },
);
/** Mostly near the start of a file; sometimes megabytes out, leaving a hole. */
const offsetArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: 0, max: 9000 }) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 3 * MiB }) },
  { weight: 1, arbitrary: fc.integer({ min: 3 * MiB, max: 8 * MiB }) },
);
/** Mostly small; sometimes past the chunker's 1 MiB average, so a write spans chunks. */
const lengthArb = fc.oneof(
  { weight: 10, arbitrary: fc.integer({ min: 0, max: 6000 }) },
  { weight: 1, arbitrary: fc.integer({ min: MiB - 4096, max: MAX_WRITE }) },
);
const bytesArb: fc.Arbitrary<Bytes> = fc.record({ from: fc.integer({ min: 0, max: POOL_BYTES - MAX_WRITE }), length: lengthArb });
/** Each flag with its own odds, out of ten: O_EXCL as often as O_CREAT would fail most opens. */
const flagArb = (flag: OpenFlag, tenths: number): fc.Arbitrary<OpenFlag[]> =>
  fc.oneof({ weight: tenths, arbitrary: fc.constant<OpenFlag[]>([flag]) }, { weight: 10 - tenths, arbitrary: fc.constant<OpenFlag[]>([]) });
const openFlagsArb: fc.Arbitrary<OpenFlag[]> = fc
  .tuple(
    fc.oneof(
      { weight: 2, arbitrary: fc.constant<OpenFlag>('O_RDWR') },
      { weight: 1, arbitrary: fc.constant<OpenFlag>('O_WRONLY') },
      { weight: 1, arbitrary: fc.constant<OpenFlag>('O_RDONLY') },
    ),
    flagArb('O_CREAT', 6), flagArb('O_EXCL', 2), flagArb('O_TRUNC', 3), flagArb('O_APPEND', 2), flagArb('O_NOFOLLOW', 1),
  )
  .map(([access, ...rest]) => [access, ...rest.flat()]);
/** Relative targets only, none leading out of the two containers (whose own modes differ). */
const targetArb = fc.constantFrom('a', 'b', 'c/d', '../a', 'a/../b', '.', 'nowhere', 'd/');
const xattrNameArb = fc.constantFrom('user.x', 'user.y', 'user.z');
const xattrValueArb = fc.uint8Array({ maxLength: 12 }).map((v) => Buffer.from(v).toString('hex'));

/** A few directories and files to start from, some of them open, so that most operations find
 * what they name. */
const populateArb: fc.Arbitrary<Op[]> = fc
  .tuple(
    fc.array(
      fc.oneof(
        { weight: 1, arbitrary: fc.record({ op: fc.constant('mkdirp' as const), path: shallowPathArb }) },
        { weight: 3, arbitrary: fc.record({ op: fc.constant('writeFile' as const), path: shallowPathArb, bytes: bytesArb }) },
      ),
      { maxLength: 12 },
    ),
    fc.array(
      fc.record({ op: fc.constant('open' as const), slot: slotArb, path: fc.record({ existingFile: fc.nat(99) }), flags: openFlagsArb, mode: modeArb }),
      { maxLength: SLOTS },
    ),
  )
  .map(([made, opened]) => [...made, ...opened]);

const ordinaryOpArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 16,
    arbitrary: fc.record({
      op: fc.constant('open' as const), slot: slotArb, flags: openFlagsArb, mode: modeArb,
      path: fc.oneof(
        { weight: 3, arbitrary: pathArb },
        { weight: 3, arbitrary: fc.record({ existingFile: fc.nat(99) }) },
        { weight: 1, arbitrary: fc.record({ existing: fc.nat(99) }) },
        { weight: 1, arbitrary: fc.record({ openedIn: slotArb }) },
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('close' as const), slot: slotArb }) },
  {
    weight: 7,
    arbitrary: fc.record({
      op: fc.constant('write' as const), slot: slotArb,
      position: fc.oneof({ weight: 5, arbitrary: offsetArb }, { weight: 1, arbitrary: fc.constant(null) }), bytes: bytesArb,
    }),
  },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('read' as const), slot: slotArb, position: offsetArb, length: lengthArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('ftruncate' as const), slot: slotArb, size: offsetArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('fstat' as const), slot: slotArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fsync' as const), slot: slotArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('truncate' as const), path: sourceArb, size: offsetArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('fallocate' as const),
      // Through an open file too: its writes may not have reached the metadata yet.
      of: fc.oneof(fc.record({ path: pathArb }), fc.record({ slot: slotArb })),
      mode: fc.constantFrom<FallocateMode[]>(
        [], ['FALLOC_FL_KEEP_SIZE'], ['FALLOC_FL_PUNCH_HOLE', 'FALLOC_FL_KEEP_SIZE'], ['FALLOC_FL_ZERO_RANGE'], ['FALLOC_FL_ZERO_RANGE', 'FALLOC_FL_KEEP_SIZE'],
      ),
      offset: offsetArb,
      length: fc.integer({ min: 1, max: 2 * MiB }),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('mkdir' as const), path: pathArb, mode: modeArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('rmdir' as const), path: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('mkdirp' as const), path: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('writeFile' as const), path: pathArb, bytes: bytesArb }) },
  { weight: 4, arbitrary: fc.record({ op: fc.constant('unlink' as const), path: sourceArb }) },
  {
    weight: 5,
    arbitrary: fc.record({
      op: fc.constant('rename' as const), from: sourceArb, to: sourceArb,
      flags: fc.oneof(
        { weight: 4, arbitrary: fc.constant<RenameFlag[]>([]) },
        { weight: 1, arbitrary: fc.constant<RenameFlag[]>(['RENAME_NOREPLACE']) },
        { weight: 1, arbitrary: fc.constant<RenameFlag[]>(['RENAME_EXCHANGE']) },
      ),
    }),
  },
  { weight: 3, arbitrary: fc.record({ op: fc.constant('link' as const), from: sourceArb, to: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('symlink' as const), target: targetArb, path: pathArb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('readlink' as const), path: pathArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('chmod' as const), path: sourceArb, mode: modeArb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('stat' as const), path: pathArb, follow: fc.boolean() }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('statx' as const),
      of: fc.oneof(fc.record({ path: pathArb, follow: fc.boolean() }), fc.record({ slot: slotArb })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('dropCache' as const), of: fc.oneof(fc.record({ path: pathArb }), fc.record({ slot: slotArb })) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('readdir' as const), path: fc.oneof(pathArb, fc.constant('.')) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('readFile' as const), path: pathArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('setxattr' as const), path: sourceArb, name: xattrNameArb, value: xattrValueArb,
      flags: fc.constantFrom(0, 0, 1, 2), // 1: XATTR_CREATE, 2: XATTR_REPLACE
      follow: fc.oneof({ weight: 5, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('getxattr' as const), path: pathArb, name: xattrNameArb, follow: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('removexattr' as const), path: pathArb, name: xattrNameArb, follow: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('listxattr' as const), path: pathArb, follow: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant<Op>({ op: 'gc' }) },
);
/** A remount costs a second or more on a small machine (the store reopens): about one sequence
 * in ten has one. */
const opArb: fc.Arbitrary<Op> = fc.oneof(
  { weight: 250, arbitrary: ordinaryOpArb },
  { weight: 1, arbitrary: fc.constant<Op>({ op: 'remount' }) },
);

// ---- the two sides ----

/** Node has no xattr, renameat2, fallocate, statx or fadvise calls; one Python process makes them
 * for the whole file (a process per call would cost more than the operations it makes). It reaches
 * the test's open files through pidfd_getfd: the same open file, not a new open. */
const SYSCALLS_PY = String.raw`
import ctypes, errno, hashlib, json, os, stat, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
libc.statx.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_char_p]
AT_FDCWD, AT_SYMLINK_NOFOLLOW, AT_EMPTY_PATH, AT_STATX_FORCE_SYNC, STATX_BASIC_STATS = -100, 0x100, 0x1000, 0x2000, 0x7ff
SYS_pidfd_getfd = 438
test_process = os.pidfd_open(int(sys.argv[1]))

def check(ret):
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return ret

def borrow(fd):
    return check(libc.syscall(SYS_pidfd_getfd, test_process, fd, 0))

def statx(dirfd, path, flags):
    # The server's attributes, not the kernel's cached copy.
    buf = ctypes.create_string_buffer(256)
    check(libc.statx(dirfd, os.fsencode(path), flags | AT_STATX_FORCE_SYNC, STATX_BASIC_STATS, buf))
    (nlink,) = struct.unpack_from('I', buf, 16)
    (mode,) = struct.unpack_from('H', buf, 28)
    ino, size = struct.unpack_from('QQ', buf, 32)
    kind = 'file' if stat.S_ISREG(mode) else 'dir' if stat.S_ISDIR(mode) else 'symlink' if stat.S_ISLNK(mode) else 'other'
    view = {'type': kind, 'perm': mode & 0o7777, 'nlink': nlink}
    if kind != 'dir':
        view['size'] = size
    return view, ino

def drop_cache(fd):
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)

def uncached_sha256(p):
    fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        drop_cache(fd)
        h = hashlib.sha256()
        while True:
            b = os.read(fd, 1 << 20)
            if not b:
                return h.hexdigest()
            h.update(b)
    finally:
        os.close(fd)

def user_xattrs(p, follow):
    return {n: os.getxattr(p, n, follow_symlinks=follow).hex() for n in sorted(os.listxattr(p, follow_symlinks=follow)) if n.startswith('user.')}

def tree(root):
    out, first_path_of_inode = [], {}
    def visit(rel):
        p = os.path.join(root, rel)
        entry, ino = statx(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW)
        entry['path'] = rel
        entry['xattrs'] = user_xattrs(p, False)
        if entry['type'] != 'dir':
            if ino in first_path_of_inode:
                entry['linkOf'] = first_path_of_inode[ino]
            else:
                first_path_of_inode[ino] = rel
        if entry['type'] == 'symlink':
            entry['target'] = os.readlink(p)
        if entry['type'] == 'file':
            entry['sha256'] = uncached_sha256(p)
        out.append(entry)
        if entry['type'] == 'dir':
            for n in sorted(os.listdir(p)):
                visit(n if rel == '.' else rel + '/' + n)
    visit('.')
    return out

def run(r):
    op = r['op']
    follow = r.get('follow', True)
    if op == 'setxattr':
        os.setxattr(r['path'], r['name'], bytes.fromhex(r['value']), r['flags'], follow_symlinks=follow)
    elif op == 'getxattr':
        return os.getxattr(r['path'], r['name'], follow_symlinks=follow).hex()
    elif op == 'removexattr':
        os.removexattr(r['path'], r['name'], follow_symlinks=follow)
    elif op == 'listxattr':
        return sorted(n for n in os.listxattr(r['path'], follow_symlinks=follow) if n.startswith('user.'))
    elif op == 'fallocate':
        fd = borrow(r['fd']) if 'fd' in r else os.open(r['path'], os.O_WRONLY)
        try:
            check(libc.fallocate(fd, r['mode'], r['offset'], r['length']))
        finally:
            os.close(fd)
    elif op == 'renameat2':
        check(libc.renameat2(AT_FDCWD, os.fsencode(r['from']), AT_FDCWD, os.fsencode(r['to']), r['flags']))
    elif op == 'statx':
        return statx(AT_FDCWD, r['path'], 0 if follow else AT_SYMLINK_NOFOLLOW)[0]
    elif op == 'fstatx':
        fd = borrow(r['fd'])
        try:
            return statx(fd, '', AT_EMPTY_PATH)[0]
        finally:
            os.close(fd)
    elif op == 'dropCache':
        fd = borrow(r['fd']) if 'fd' in r else os.open(r['path'], os.O_RDONLY)
        try:
            drop_cache(fd)
        finally:
            os.close(fd)
    elif op == 'tree':
        return tree(r['path'])
    else:
        raise ValueError(op)

for line in sys.stdin:
    try:
        res = {'ok': run(json.loads(line))}
    except OSError as e:
        res = {'err': errno.errorcode.get(e.errno, str(e.errno))}
    sys.stdout.write(json.dumps(res) + '\n')
    sys.stdout.flush()
`;

class Syscalls {
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly waiting: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];

  constructor() {
    this.child = spawn('python3', ['-u', '-c', SYSCALLS_PY, String(process.pid)]);
    this.child.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    createInterface({ input: this.child.stdout }).on('line', (line) => this.waiting.shift()?.resolve(line));
    // A call left waiting on a dead helper would hang the test instead of failing it.
    this.child.on('exit', (code) => {
      for (const w of this.waiting.splice(0)) w.reject(new Error(`the syscall helper exited (${code}); its stderr is above`));
    });
  }

  /** Asynchronous: the call may land on the mount this process serves. */
  call(request: Record<string, unknown>): Promise<Outcome> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve: (line) => resolve(JSON.parse(line) as Outcome), reject });
      this.child.stdin.write(JSON.stringify(request) + '\n');
    });
  }

  close(): void {
    this.child.stdin.end();
  }
}

interface Side {
  kind: 'plain' | 'orbit';
  /** Holds only the tree under test, `root`; removed wholesale between runs. */
  container: string;
  root: string;
  handles: Array<FileHandle | undefined>;
  /** The path each slot's last file was opened by. */
  openedAs: Array<string | undefined>;
}

function pseudoRandomPool(bytes: number): Buffer {
  const words = new Uint32Array(bytes / 4);
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer);
}

function resolved(source: Source): string {
  assert.ok(typeof source === 'string', 'a source is resolved before the operation runs');
  return source;
}

/** Everything under `root` (not itself), sorted; symlinks not followed. */
async function entriesUnder(root: string, rel = ''): Promise<Array<{ path: string; isDirectory: boolean }>> {
  const out = [];
  for (const e of (await readdir(path.join(root, rel), { withFileTypes: true })).sort((x, y) => (x.name < y.name ? -1 : 1))) {
    const child = rel ? `${rel}/${e.name}` : e.name;
    out.push({ path: child, isDirectory: e.isDirectory() });
    if (e.isDirectory()) out.push(...(await entriesUnder(root, child)));
  }
  return out;
}

function openFlags(flags: readonly OpenFlag[]): number {
  return flags.reduce((n, f) => n | constants[f], 0);
}

function typeOf(s: Stats): string {
  return s.isFile() ? 'file' : s.isDirectory() ? 'dir' : s.isSymbolicLink() ? 'symlink' : 'other';
}

/** What both sides must agree on in a stat. Not st_blocks, st_blksize or a directory's size
 * (each filesystem's own allocation), nor times and inode numbers. */
function statView(s: Stats): Record<string, unknown> {
  return { type: typeOf(s), perm: s.mode & 0o7777, nlink: s.nlink, ...(s.isDirectory() ? {} : { size: s.size }) };
}

async function attempt(f: () => Promise<unknown>): Promise<Outcome> {
  try {
    return { ok: await f() };
  } catch (err) {
    const code = (err as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return { err: code };
    throw err;
  }
}

function sameOutcome(a: unknown, b: unknown): boolean {
  if (Buffer.isBuffer(a) && Buffer.isBuffer(b)) return a.equals(b);
  if (Array.isArray(a) && Array.isArray(b)) return a.length === b.length && a.every((x, i) => sameOutcome(x, b[i]));
  if (a && b && typeof a === 'object' && typeof b === 'object') {
    const ka = Object.keys(a).sort();
    const kb = Object.keys(b).sort();
    return sameOutcome(ka, kb) && ka.every((k) => sameOutcome((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
  }
  return Object.is(a, b);
}

/** Bytes shown as their length, digest and where they first differ from the other side's. */
function summarize(value: unknown, other: unknown): unknown {
  if (Buffer.isBuffer(value)) {
    let firstDiff = -1;
    if (Buffer.isBuffer(other)) {
      const n = Math.max(value.length, other.length);
      for (let i = 0; i < n && firstDiff < 0; i++) if (value[i] !== other[i]) firstDiff = i;
    }
    return { length: value.length, sha256: createHash('sha256').update(value).digest('hex').slice(0, 16), firstDiff };
  }
  if (Array.isArray(value)) return value.map((v, i) => summarize(v, Array.isArray(other) ? other[i] : undefined));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, summarize(v, other && typeof other === 'object' ? (other as Record<string, unknown>)[k] : undefined)]));
  }
  return value;
}


function assertSame(what: string, plain: unknown, orbit: unknown): void {
  if (sameOutcome(plain, orbit)) return;
  assert.fail(`${what}: orbit differs from the plain directory\n  plain: ${JSON.stringify(summarize(plain, orbit))}\n  orbit: ${JSON.stringify(summarize(orbit, plain))}`);
}

describe('orbit against a plain directory, operation by operation', () => {
  let m: MountedStore;
  let plainTmp: { dir: string; remove: () => Promise<void> };
  let sys: Syscalls;
  let plain: Side;
  let orbit: Side;
  const pool = pseudoRandomPool(POOL_BYTES);

  before(async () => {
    m = await mountFreshStore();
    plainTmp = await tempDir('differential');
    sys = new Syscalls();
    plain = { kind: 'plain', container: plainTmp.dir, root: path.join(plainTmp.dir, 't'), handles: [], openedAs: [] };
    orbit = { kind: 'orbit', container: m.dir, root: path.join(m.dir, 't'), handles: [], openedAs: [] };
  });
  after(async () => {
    sys?.close();
    for (const side of [plain, orbit]) if (side) await closeAll(side).catch(() => undefined);
    await m?.close();
    await plainTmp?.remove();
  });

  async function closeSlot(side: Side, slot: number): Promise<Outcome | undefined> {
    const fh = side.handles[slot];
    if (!fh) return undefined;
    side.handles[slot] = undefined;
    return attempt(() => fh.close());
  }

  async function closeAll(side: Side): Promise<Array<Outcome | undefined>> {
    const closed = [];
    for (let slot = 0; slot < SLOTS; slot++) closed.push(await closeSlot(side, slot));
    return closed;
  }

  async function fstatAll(side: Side): Promise<unknown[]> {
    return Promise.all(side.handles.map((fh) => fh && attempt(async () => statView(await fh.stat()))));
  }

  async function reset(side: Side): Promise<void> {
    await closeAll(side);
    for (const name of await readdir(side.container)) await rm(path.join(side.container, name), { recursive: true, force: true });
    await mkdir(side.root);
  }

  /** Picks existing paths from the plain side's tree, and open files among the slots (an
   * operation on an empty slot is one the sequence wasted): both sides then get the same. */
  async function resolve(op: Op): Promise<Op> {
    const live = plain.handles.flatMap((fh, slot) => (fh ? [slot] : []));
    const liveSlot = (slot: number): number => live.find((s) => s >= slot) ?? live[0] ?? slot;
    if (op.op !== 'open' && 'slot' in op) op = { ...op, slot: liveSlot(op.slot) };
    if ('of' in op && 'slot' in op.of) op = { ...op, of: { slot: liveSlot(op.of.slot) } };
    const picks = Object.entries(op).filter((e): e is [string, Exclude<Source, string>] =>
      typeof e[1] === 'object' && e[1] !== null && ('existing' in e[1] || 'existingFile' in e[1] || 'openedIn' in e[1]));
    if (picks.length === 0) return op;
    const entries = await entriesUnder(plain.root);
    const paths = entries.map((e) => e.path);
    const files = entries.filter((e) => !e.isDirectory).map((e) => e.path);
    const pick = (s: Exclude<Source, string>): string =>
      ('existing' in s ? paths[s.existing % paths.length] : 'existingFile' in s ? files[s.existingFile % files.length] : plain.openedAs[s.openedIn]) ?? 'a';
    return { ...op, ...Object.fromEntries(picks.map(([field, source]) => [field, pick(source)])) };
  }

  async function apply(side: Side, op: Op): Promise<unknown> {
    const p = (rel: string): string => path.join(side.root, rel);
    const withHandle = async (slot: number, f: (fh: FileHandle) => Promise<unknown>): Promise<unknown> => {
      const fh = side.handles[slot];
      return fh ? attempt(() => f(fh)) : 'no handle';
    };
    switch (op.op) {
      case 'open': {
        const closed = await closeSlot(side, op.slot);
        const opened = await attempt(async () => {
          side.handles[op.slot] = await open(p(resolved(op.path)), openFlags(op.flags), op.mode);
          side.openedAs[op.slot] = resolved(op.path);
        });
        return { closed, opened };
      }
      case 'close':
        return closeSlot(side, op.slot);
      case 'write':
        return withHandle(op.slot, async (fh) => {
          const data = pool.subarray(op.bytes.from, op.bytes.from + op.bytes.length);
          return (await fh.write(data, 0, data.length, op.position)).bytesWritten;
        });
      case 'read':
        return withHandle(op.slot, async (fh) => {
          const buf = Buffer.alloc(op.length);
          const { bytesRead } = await fh.read(buf, 0, op.length, op.position);
          return buf.subarray(0, bytesRead);
        });
      case 'ftruncate':
        return withHandle(op.slot, (fh) => fh.truncate(op.size));
      case 'fstat':
        return withHandle(op.slot, async (fh) => statView(await fh.stat()));
      case 'fsync':
        return withHandle(op.slot, (fh) => fh.sync());
      case 'truncate':
        return attempt(() => truncate(p(resolved(op.path)), op.size));
      case 'fallocate': {
        const mode = op.mode.reduce((n, f) => n | FALLOCATE_MODE_BITS[f], 0);
        const args = { op: 'fallocate', mode, offset: op.offset, length: op.length };
        if ('path' in op.of) return sys.call({ ...args, path: p(op.of.path) });
        const fh = side.handles[op.of.slot];
        return fh ? sys.call({ ...args, fd: fh.fd }) : 'no handle';
      }
      case 'mkdir':
        return attempt(() => mkdir(p(op.path), op.mode));
      case 'mkdirp':
        // Not its answer (the first directory made, as an absolute path: each side's own).
        return attempt(async () => void (await mkdir(p(op.path), { recursive: true })));
      case 'writeFile':
        return attempt(() => writeFile(p(op.path), pool.subarray(op.bytes.from, op.bytes.from + op.bytes.length)));
      case 'rmdir':
        return attempt(() => rmdir(p(op.path)));
      case 'unlink':
        return attempt(() => unlink(p(resolved(op.path))));
      case 'rename':
        if (op.flags.length === 0) return attempt(() => rename(p(resolved(op.from)), p(resolved(op.to))));
        return sys.call({ op: 'renameat2', from: p(resolved(op.from)), to: p(resolved(op.to)), flags: op.flags[0] === 'RENAME_NOREPLACE' ? 1 : 2 });
      case 'link':
        return attempt(() => link(p(resolved(op.from)), p(op.to)));
      case 'symlink':
        return attempt(() => symlink(op.target, p(op.path)));
      case 'readlink':
        return attempt(() => readlink(p(op.path)));
      case 'chmod':
        return attempt(() => chmod(p(resolved(op.path)), op.mode));
      case 'stat':
        return attempt(async () => statView(await (op.follow ? stat : lstat)(p(op.path))));
      case 'statx':
      case 'dropCache': {
        // What the filesystem itself holds: attributes fetched past the kernel's cache, or the
        // page cache dropped so that the next read asks the filesystem.
        const pyOp = op.op === 'statx' && 'slot' in op.of ? 'fstatx' : op.op;
        if ('path' in op.of) return sys.call({ op: pyOp, ...op.of, path: p(op.of.path) });
        const fh = side.handles[op.of.slot];
        return fh ? sys.call({ op: pyOp, fd: fh.fd }) : 'no handle';
      }
      case 'readdir':
        return attempt(async () => (await readdir(p(op.path))).sort());
      case 'readFile':
        return attempt(() => readFile(p(op.path)));
      case 'setxattr':
        return sys.call({ ...op, path: p(resolved(op.path)) });
      case 'getxattr':
      case 'removexattr':
      case 'listxattr':
        return sys.call({ ...op, path: p(op.path) });
      case 'remount': {
        // A restart closes every file first; the plain side only closes them too.
        const closed = await closeAll(side);
        if (side.kind === 'orbit') await m.remount();
        return closed;
      }
      case 'gc':
        if (side.kind === 'orbit') await gc(m.store);
        return null;
    }
  }

  /** The tree as both sides must agree on it, from the filesystem itself rather than the
   * kernel's caches: attributes fetched afresh, contents read past a dropped page cache. */
  async function snapshot(side: Side): Promise<unknown> {
    const tree = await sys.call({ op: 'tree', path: side.root });
    assert.ok('ok' in tree, `walking ${side.root}: ${JSON.stringify(tree)}`);
    return tree.ok;
  }

  /** Where two files the trees disagree on first differ. */
  async function contentDifferences(want: unknown, got: unknown): Promise<string> {
    const digests = (tree: unknown): Map<string, string> =>
      new Map((tree as Array<{ path: string; sha256?: string }>).filter((e) => e.sha256).map((e) => [e.path, e.sha256!]));
    const orbitDigests = digests(got);
    const lines = [];
    for (const [rel, digest] of digests(want)) {
      if (orbitDigests.get(rel) === undefined || orbitDigests.get(rel) === digest) continue;
      const [a, b] = await Promise.all([readFile(path.join(plain.root, rel)), readFile(path.join(orbit.root, rel))]);
      lines.push(`  ${rel}: plain ${JSON.stringify(summarize(a, b))}, orbit ${JSON.stringify(summarize(b, a))}`);
    }
    return lines.join('\n');
  }

  it('gives the same answers and leaves the same tree', async () => {
    const started = Date.now();
    let runs = 0;
    await fc.assert(
      fc.asyncProperty(populateArb, fc.array(opArb, { minLength: 1, maxLength: MAX_OPS, size: 'max' }), async (populate, ops) => {
        runs++;
        await reset(plain);
        await reset(orbit);
        for (const [i, unresolved] of [...populate, ...ops].entries()) {
          const op = await resolve(unresolved);
          const want = await apply(plain, op);
          const got = await apply(orbit, op);
          assertSame(`op ${i} ${JSON.stringify(op)}`, want, got);
          // Every open file, as its handle sees it (unlinked ones too), after every operation.
          const [wantOpen, gotOpen] = [await fstatAll(plain), await fstatAll(orbit)];
          assertSame(`the open files after op ${i} ${JSON.stringify(op)}`, wantOpen, gotOpen);
        }
        assertSame('closing every file at the end', await closeAll(plain), await closeAll(orbit));
        const want = await snapshot(plain);
        const got = await snapshot(orbit);
        if (!sameOutcome(want, got)) assertSame(`the tree at the end\n${await contentDifferences(want, got)}\n`, want, got);
      }),
      {
        seed: SEED,
        numRuns: RUNS,
        includeErrorInReport: true,
        endOnFailure: process.env.ORBIT_PROPERTY_NO_SHRINK === '1',
        ...(process.env.ORBIT_PROPERTY_PATH ? { path: process.env.ORBIT_PROPERTY_PATH } : {}),
      },
    );
    console.log(`differential: ${runs} sequences in ${((Date.now() - started) / 1000).toFixed(1)} s (seed ${SEED})`);
    // Whatever the sequences did, the store is left consistent.
    await gc(m.store);
    assert.deepEqual((await fsck(m.store)).problems, []);
  });
});
