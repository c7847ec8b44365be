// Every operation of the binding, driven through a real kernel mount by ordinary syscalls and
// programs (node:fs, coreutils, util-linux, attr, python for the syscalls Node lacks).
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import {
  access, appendFile, chmod, chown, link, lstat, mkdir, open, readdir, readFile, readlink, rename,
  rm, rmdir, stat, statfs, symlink, truncate, unlink, utimes, writeFile,
} from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ok, py, run, waitFor } from '../helpers.js';
import { mountMemFs, type Handlers, type MountedMemFs } from './memfs-mount.js';

const OPERATIONS = [
  'lookup', 'forget', 'getattr', 'setattr', 'readlink', 'mknod', 'mkdir', 'unlink', 'rmdir', 'symlink',
  'rename', 'link', 'open', 'read', 'write', 'flush', 'release', 'fsync', 'opendir', 'readdir',
  'readdirplus', 'releasedir', 'fsyncdir', 'statfs', 'setxattr', 'getxattr', 'listxattr',
  'removexattr', 'access', 'create', 'fallocate', 'lseek', 'copyFileRange',
] as const;

/** Counts the calls of every handler. */
function countCalls(handlers: Handlers, counts: Map<string, number>): void {
  const table = handlers as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const op of OPERATIONS) {
    const original = table[op]!.bind(handlers);
    table[op] = (...args: unknown[]) => {
      counts.set(op, (counts.get(op) ?? 0) + 1);
      return original(...args);
    };
  }
}

describe('fuse operations through a real mount', () => {
  let m: MountedMemFs;
  let calls: Map<string, { uid: number; gid: number; pid: number }>;
  const counts = new Map<string, number>();
  const p = (...parts: string[]): string => path.join(m.dir, ...parts);

  before(async () => {
    calls = new Map();
    m = await mountMemFs({}, (fs) => {
      countCalls(fs, counts);
      // Record the caller of each create, to check the context handlers see.
      const create = fs.create.bind(fs);
      fs.create = (ctx, parent, name, mode, flags) => {
        calls.set(name, { uid: ctx.uid, gid: ctx.gid, pid: ctx.pid });
        return create(ctx, parent, name, mode, flags);
      };
    });
  });
  after(() => m.close());

  it('is mounted as a FUSE filesystem of its subtype', async () => {
    const mounts = await readFile('/proc/self/mounts', 'utf8');
    assert.match(mounts, new RegExp(`memfs-test ${m.dir} fuse.memfs `));
    assert.ok(m.session.connection && m.session.connection.maxWrite >= 128 * 1024);
  });

  it('creates, writes, reads, appends and truncates files', async () => {
    await writeFile(p('a.txt'), 'hello world');
    assert.equal(await readFile(p('a.txt'), 'utf8'), 'hello world');
    await appendFile(p('a.txt'), '!!');
    assert.equal(await readFile(p('a.txt'), 'utf8'), 'hello world!!');
    await truncate(p('a.txt'), 5);
    assert.equal(await readFile(p('a.txt'), 'utf8'), 'hello');
    await ok('truncate', ['-s', '10', p('a.txt')]);
    assert.deepEqual(await readFile(p('a.txt')), Buffer.concat([Buffer.from('hello'), Buffer.alloc(5)]));
    const fh = await open(p('a.txt'), 'r+');
    await fh.write('J', 0);
    await fh.truncate(3);
    await fh.close();
    assert.equal(await readFile(p('a.txt'), 'utf8'), 'Jel');
  });

  it('honours O_EXCL, O_TRUNC and O_APPEND', async () => {
    await writeFile(p('excl'), 'x');
    await assert.rejects(open(p('excl'), constants.O_CREAT | constants.O_EXCL | constants.O_WRONLY), { code: 'EEXIST' });
    await writeFile(p('excl'), 'abcdef');
    const t = await open(p('excl'), constants.O_WRONLY | constants.O_TRUNC);
    await t.close();
    assert.equal((await stat(p('excl'))).size, 0);
    const a = await open(p('excl'), constants.O_WRONLY | constants.O_APPEND);
    await a.write('1', 0);
    await a.write('2', 0);
    await a.close();
    assert.equal(await readFile(p('excl'), 'utf8'), '12');
  });

  it('moves large random data intact, with cp and at offsets beyond 4 GiB', async () => {
    const data = randomBytes(9 * 1024 * 1024 + 123);
    await writeFile(p('big.bin'), data);
    assert.ok((await readFile(p('big.bin'))).equals(data));
    await ok('cp', [p('big.bin'), p('big.copy')]);
    assert.equal((await run('cmp', [p('big.bin'), p('big.copy')])).code, 0);
    const fh = await open(p('sparse'), 'w+');
    const at = 5 * 1024 ** 3 + 7;
    await fh.write(Buffer.from('tail'), 0, 4, at);
    const back = Buffer.alloc(4);
    await fh.read(back, 0, 4, at);
    await fh.close();
    assert.equal(back.toString(), 'tail');
    assert.equal((await stat(p('sparse'))).size, at + 4);
  });

  it('reports the caller uid, gid and pid to handlers', async () => {
    await mkdir(p('shared'), { mode: 0o777 });
    await chmod(p('shared'), 0o777);
    const res = await run('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'sh', '-c', `echo $$; : > ${p('shared', 'theirs')}`]);
    assert.equal(res.code, 0, res.stderr);
    const caller = calls.get('theirs');
    assert.deepEqual({ uid: caller?.uid, gid: caller?.gid, pid: caller?.pid }, { uid: 1000, gid: 1000, pid: Number(res.stdout.trim()) });
    const st = await stat(p('shared', 'theirs'));
    assert.deepEqual([st.uid, st.gid], [1000, 1000]);
    // default_permissions: the kernel refuses what mode bits forbid.
    await writeFile(p('shared', 'private'), 'x', { mode: 0o600 });
    await chmod(p('shared', 'private'), 0o600);
    const denied = await run('setpriv', ['--reuid=1000', '--regid=1000', '--clear-groups', 'cat', p('shared', 'private')]);
    assert.notEqual(denied.code, 0);
    assert.match(denied.stderr, /Permission denied/);
  });

  it('changes mode, owner and times (utimensat with UTIME_NOW and UTIME_OMIT)', async () => {
    await writeFile(p('attrs'), 'x');
    await chmod(p('attrs'), 0o640);
    await chown(p('attrs'), 1234, 5678);
    let st = await stat(p('attrs'));
    assert.equal(st.mode & 0o7777, 0o640);
    assert.deepEqual([st.uid, st.gid], [1234, 5678]);
    await utimes(p('attrs'), 1_000_000, 2_000_000);
    st = await stat(p('attrs'));
    assert.deepEqual([st.atimeMs, st.mtimeMs], [1_000_000_000, 2_000_000_000]);
    // touch -a: atime to now, mtime omitted.
    await ok('touch', ['-a', p('attrs')]);
    st = await stat(p('attrs'));
    assert.ok(Math.abs(st.atimeMs - Date.now()) < 60_000);
    assert.equal(st.mtimeMs, 2_000_000_000);
    // Nanoseconds survive.
    await ok('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789Z', p('attrs')]);
    assert.equal((await ok('stat', ['-c', '%y', p('attrs')])).trim().slice(0, 29), '2001-02-03 04:05:06.123456789');
  });

  it('renames, replaces, and honours RENAME_NOREPLACE and RENAME_EXCHANGE', async () => {
    await writeFile(p('r1'), 'one');
    await writeFile(p('r2'), 'two');
    await ok('mv', [p('r1'), p('r3')]);
    assert.equal(await readFile(p('r3'), 'utf8'), 'one');
    await rename(p('r3'), p('r2'));
    assert.equal(await readFile(p('r2'), 'utf8'), 'one');
    await assert.rejects(stat(p('r3')), { code: 'ENOENT' });
    await writeFile(p('x1'), 'x1');
    await writeFile(p('x2'), 'x2');
    const renameat2 = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), int(sys.argv[3]))
sys.exit(0 if r == 0 else ctypes.get_errno())`;
    const noreplace = await py(renameat2, p('x1'), p('x2'), '1');
    assert.equal(noreplace.code, 17); // EEXIST
    const exchange = await py(renameat2, p('x1'), p('x2'), '2');
    assert.equal(exchange.code, 0, exchange.stderr);
    assert.equal(await readFile(p('x1'), 'utf8'), 'x2');
    assert.equal(await readFile(p('x2'), 'utf8'), 'x1');
    // Directories move with their contents.
    await mkdir(p('d1'));
    await writeFile(p('d1', 'inner'), 'in');
    await mkdir(p('d2'));
    await rename(p('d1'), p('d2', 'moved'));
    assert.equal(await readFile(p('d2', 'moved', 'inner'), 'utf8'), 'in');
  });

  it('makes and removes directories, refusing to remove a non-empty one', async () => {
    await mkdir(p('dir', 'sub'), { recursive: true });
    await writeFile(p('dir', 'sub', 'f'), '');
    await assert.rejects(rmdir(p('dir', 'sub')), { code: 'ENOTEMPTY' });
    await unlink(p('dir', 'sub', 'f'));
    await rmdir(p('dir', 'sub'));
    assert.deepEqual(await readdir(p('dir')), []);
    assert.equal((await stat(p('dir'))).nlink, 2);
  });

  it('lists a large directory completely (readdir and readdirplus)', async () => {
    await mkdir(p('many'));
    const names = Array.from({ length: 2000 }, (_, i) => `entry-${i}-${'x'.repeat(i % 50)}`);
    for (const n of names) await writeFile(p('many', n), n);
    assert.deepEqual((await readdir(p('many'))).sort(), [...names].sort());
    const long = await ok('ls', ['-la', p('many')]);
    assert.equal(long.trim().split('\n').length, names.length + 3); // total, ., ..
    const withTypes = await readdir(p('many'), { withFileTypes: true });
    assert.ok(withTypes.every((d) => d.isFile()));
  });

  it('makes hard links and symlinks', async () => {
    await writeFile(p('target'), 'T');
    await ok('ln', [p('target'), p('hard')]);
    await link(p('target'), p('hard2'));
    assert.equal((await stat(p('target'))).nlink, 3);
    await ok('ln', ['-s', 'target', p('soft')]);
    await symlink('/nowhere/at/all', p('dangling'));
    assert.equal(await readlink(p('soft')), 'target');
    assert.equal(await readFile(p('soft'), 'utf8'), 'T');
    assert.ok((await lstat(p('dangling'))).isSymbolicLink());
    await unlink(p('target'));
    assert.equal(await readFile(p('hard'), 'utf8'), 'T');
    assert.equal((await stat(p('hard'))).nlink, 2);
  });

  it('makes FIFOs and sockets with mknod', async () => {
    await ok('mkfifo', [p('fifo')]);
    assert.ok((await stat(p('fifo'))).isFIFO());
    const sock = await py('import socket, sys\ns = socket.socket(socket.AF_UNIX)\ns.bind(sys.argv[1])', p('sock'));
    assert.equal(sock.code, 0, sock.stderr);
    assert.ok((await lstat(p('sock'))).isSocket());
  });

  it('keeps extended attributes (set, get, list, remove, sizes)', async () => {
    await writeFile(p('x'), '');
    await ok('setfattr', ['-n', 'user.color', '-v', 'blue', p('x')]);
    await ok('setfattr', ['-n', 'user.big', '-v', '0x' + 'ab'.repeat(3000), p('x')]);
    assert.match(await ok('getfattr', ['-n', 'user.color', '--only-values', p('x')]), /^blue$/);
    const dump = await ok('getfattr', ['-d', '-e', 'hex', p('x')]);
    assert.match(dump, /user\.big=0x(ab){3000}/);
    assert.match(dump, /user\.color=0x626c7565/);
    const missing = await run('getfattr', ['-n', 'user.none', p('x')]);
    assert.match(missing.stderr, /No such attribute/);
    await ok('setfattr', ['-x', 'user.color', p('x')]);
    assert.doesNotMatch(await ok('getfattr', ['-d', p('x')]), /color/);
    const create = await py('import os, sys\ntry:\n  os.setxattr(sys.argv[1], "user.big", b"1", os.XATTR_CREATE)\nexcept OSError as e:\n  sys.exit(e.errno)', p('x'));
    assert.equal(create.code, 17); // EEXIST
  });

  it('preallocates, punches holes, and seeks data and holes', async () => {
    await ok('fallocate', ['-l', '3M', p('falloc')]);
    assert.equal((await stat(p('falloc'))).size, 3 * 1024 * 1024);
    await writeFile(p('holey'), Buffer.alloc(3 * 1024 * 1024, 7));
    await ok('fallocate', ['-p', '-o', '1M', '-l', '1M', p('holey')]);
    const back = await readFile(p('holey'));
    assert.equal(back.length, 3 * 1024 * 1024);
    assert.ok(back.subarray(1 << 20, 2 << 20).every((b) => b === 0));
    assert.ok(back.subarray(2 << 20).every((b) => b === 7));
    const seek = await py('import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nprint(os.lseek(fd, 0, os.SEEK_HOLE), os.lseek(fd, 1 << 20, os.SEEK_DATA))', p('holey'));
    assert.equal(seek.stdout.trim(), `${1 << 20} ${2 << 20}`);
  });

  it('copies ranges in the filesystem (copy_file_range)', async () => {
    const data = randomBytes(300_000);
    await writeFile(p('cfr-src'), data);
    const res = await py(
      'import os, sys\ni = os.open(sys.argv[1], os.O_RDONLY)\no = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT, 0o644)\nprint(os.copy_file_range(i, o, 200000, 1000, 10))',
      p('cfr-src'), p('cfr-dst'));
    assert.equal(res.stdout.trim(), '200000', res.stderr);
    const out = await readFile(p('cfr-dst'));
    assert.ok(out.subarray(10).equals(data.subarray(1000, 201_000)));
  });

  it('syncs files and directories, and answers statfs and access', async () => {
    await writeFile(p('s'), 'sync me');
    const res = await py('import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nos.fsync(fd); os.fdatasync(fd)\nd = os.open(sys.argv[2], os.O_RDONLY)\nos.fsync(d)', p('s'), m.dir);
    assert.equal(res.code, 0, res.stderr);
    const fsStat = await statfs(m.dir);
    assert.equal(fsStat.bsize, 4096);
    assert.ok(fsStat.blocks > 0 && fsStat.bfree <= fsStat.blocks);
    await access(p('s'), constants.R_OK | constants.W_OK);
    await assert.rejects(access(p('s'), constants.X_OK), { code: 'EACCES' });
  });

  it('keeps an unlinked file readable while it is open, and shares writable mmap', async () => {
    await writeFile(p('open-unlinked'), 'still here');
    const fh = await open(p('open-unlinked'), 'r');
    await unlink(p('open-unlinked'));
    const buf = Buffer.alloc(10);
    await fh.read(buf, 0, 10, 0);
    await fh.close();
    assert.equal(buf.toString(), 'still here');
    await writeFile(p('mapped'), Buffer.alloc(8192));
    const mm = await py('import mmap, os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nm = mmap.mmap(fd, 8192, mmap.MAP_SHARED)\nm[100:105] = b"mmap!"\nm.flush(); m.close(); os.close(fd)', p('mapped'));
    assert.equal(mm.code, 0, mm.stderr);
    assert.equal((await readFile(p('mapped'))).subarray(100, 105).toString(), 'mmap!');
  });

  it('refuses names longer than 255 bytes and non-UTF-8 names', async () => {
    await writeFile(p('n'.repeat(255)), '');
    await assert.rejects(writeFile(p('n'.repeat(256)), ''), { code: 'ENAMETOOLONG' });
    const bad = await py('import os, sys\ntry:\n  os.close(os.open(os.fsencode(sys.argv[1]) + b"/bad\\xff", os.O_CREAT | os.O_WRONLY))\nexcept OSError as e:\n  sys.exit(e.errno)', m.dir);
    assert.equal(bad.code, 84); // EILSEQ
  });

  it('delivers forgets: inodes the kernel dropped are released', async () => {
    await mkdir(p('gone'));
    for (let i = 0; i < 200; i++) await writeFile(p('gone', `f${i}`), 'x');
    await rm(p('gone'), { recursive: true });
    await writeFile('/proc/sys/vm/drop_caches', '2');
    const before = m.fs.liveInodes;
    await mkdir(p('gone2'));
    for (let i = 0; i < 200; i++) await writeFile(p('gone2', `f${i}`), 'x');
    assert.ok(m.fs.liveInodes >= before + 200);
    await rm(p('gone2'), { recursive: true });
    await writeFile('/proc/sys/vm/drop_caches', '2');
    // The kernel sends its forgets as it drops the inodes: the last may trail the write a little.
    await waitFor(() => m.fs.liveInodes <= before, `live inodes to fall to ${before}`, 5000).catch((err: Error) => {
      throw new Error(`${err.message}: ${m.fs.liveInodes} live`);
    });
  });

  it('calls access when the kernel does not check permissions itself', async () => {
    const own = new Map<string, number>();
    const plain = await mountMemFs({ defaultPermissions: false }, (fs) => countCalls(fs, own));
    try {
      await writeFile(path.join(plain.dir, 'f'), '');
      await access(path.join(plain.dir, 'f'), constants.W_OK);
      assert.ok((own.get('access') ?? 0) > 0);
      counts.set('access', own.get('access') ?? 0);
    } finally {
      await plain.close();
    }
  });

  it('has exercised every operation', () => {
    const missing = OPERATIONS.filter((op) => !counts.get(op));
    assert.deepEqual(missing, []);
  });
});
