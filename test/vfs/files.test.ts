// Orbit's volume through a real mount: POSIX behaviour of files and directories, persistence
// across a restart, deduplication, and damaged content reported as EIO.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { appendFile, link, mkdir, open, readdir, readFile, readlink, rename, rm, stat, symlink, truncate, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { fsck } from '../../src/store/fsck.js';
import { gc } from '../../src/store/gc.js';
import { ok, py, run } from '../helpers.js';
import { mountFreshStore, type MountedStore } from './orbit-mount.js';

const MiB = 1024 * 1024;

async function chunkCount(m: MountedStore): Promise<number> {
  let n = 0;
  for await (const _ of m.store.chunks.iterate()) n++;
  return n;
}

describe('orbit volume through a real mount', () => {
  let m: MountedStore;
  const p = (...parts: string[]): string => path.join(m.dir, ...parts);

  before(async () => {
    m = await mountFreshStore();
  });
  after(() => m.close());

  it('writes, reads, appends, truncates and renames files in directories', async () => {
    await mkdir(p('docs', 'deep'), { recursive: true });
    await writeFile(p('docs', 'a.txt'), 'hello');
    await appendFile(p('docs', 'a.txt'), ' world');
    assert.equal(await readFile(p('docs', 'a.txt'), 'utf8'), 'hello world');
    await truncate(p('docs', 'a.txt'), 5);
    assert.equal(await readFile(p('docs', 'a.txt'), 'utf8'), 'hello');
    await truncate(p('docs', 'a.txt'), 8);
    assert.deepEqual(await readFile(p('docs', 'a.txt')), Buffer.from('hello\0\0\0'));
    await rename(p('docs', 'a.txt'), p('docs', 'deep', 'b.txt'));
    assert.deepEqual(await readdir(p('docs')), ['deep']);
    await link(p('docs', 'deep', 'b.txt'), p('hard'));
    await symlink('docs/deep/b.txt', p('soft'));
    assert.equal((await stat(p('hard'))).nlink, 2);
    assert.equal(await readlink(p('soft')), 'docs/deep/b.txt');
    assert.equal(await readFile(p('soft'), 'utf8'), 'hello\0\0\0');
    await ok('setfattr', ['-n', 'user.tag', '-v', 'x', p('hard')]);
    assert.match(await ok('getfattr', ['-d', p('hard')]), /user\.tag="x"/);
  });

  it('keeps large random files intact, including overwrites in the middle and sparse regions', async () => {
    const data = randomBytes(24 * MiB + 12345);
    await writeFile(p('big'), data);
    assert.ok((await readFile(p('big'))).equals(data));
    const fh = await open(p('big'), 'r+');
    const patch = randomBytes(70_000);
    await fh.write(patch, 0, patch.length, 10 * MiB + 7);
    await fh.write(Buffer.from('far away'), 0, 8, 5 * 1024 * MiB);
    await fh.close();
    patch.copy(data, 10 * MiB + 7);
    const back = await readFile(p('big')).catch(() => undefined);
    assert.equal(back, undefined, 'a 5 GiB file should not fit in a Buffer read');
    const head = Buffer.alloc(data.length);
    const r = await open(p('big'), 'r');
    await r.read(head, 0, data.length, 0);
    const tail = Buffer.alloc(8);
    await r.read(tail, 0, 8, 5 * 1024 * MiB);
    await r.close();
    assert.ok(head.equals(data));
    assert.equal(tail.toString(), 'far away');
    assert.equal((await stat(p('big'))).size, 5 * 1024 * MiB + 8);
  });

  it('keeps holes as holes: a write before a hole stores no zeros', async () => {
    const fh = await open(p('sparse'), 'w');
    await fh.write(Buffer.from('start'), 0, 5, 0);
    await fh.write(Buffer.from('end'), 0, 3, 512 * MiB);
    await fh.close();
    const before = await m.store.chunks.capacity();
    const again = await open(p('sparse'), 'r+');
    await again.write(Buffer.from('START'), 0, 5, 0);
    await again.close();
    const after = await m.store.chunks.capacity();
    assert.ok(after.usedBytes - before.usedBytes < MiB, `a 5-byte overwrite stored ${after.usedBytes - before.usedBytes} bytes`);
    // The file's extents cover its data only, not the 512 MiB hole (zeros would dedup to one
    // chunk, so it is the extents that tell).
    const extents = await m.store.meta.extents((await stat(p('sparse'))).ino, 0, 600 * MiB);
    const covered = extents.reduce((n, e) => n + e.length, 0);
    assert.equal(covered, 8, `extents cover ${covered} bytes`);
    const r = await open(p('sparse'), 'r');
    const mid = Buffer.alloc(4);
    await r.read(mid, 0, 4, 256 * MiB);
    const tail = Buffer.alloc(3);
    await r.read(tail, 0, 3, 512 * MiB);
    await r.close();
    assert.deepEqual([mid, tail.toString()], [Buffer.alloc(4), 'end']);
  });

  it('allocates, punches holes and zeroes ranges with fallocate, keeping the size when asked', async () => {
    const data = randomBytes(3 * MiB);
    await writeFile(p('falloc'), data);
    const expect = Buffer.from(data);
    // Punch a hole across chunk boundaries: those bytes read as zeros and are no longer stored.
    await ok('fallocate', ['--punch-hole', '--offset', String(MiB - 100), '--length', String(MiB + 200), p('falloc')]);
    expect.fill(0, MiB - 100, 2 * MiB + 100);
    assert.ok((await readFile(p('falloc'))).equals(expect));
    const extents = await m.store.meta.extents((await stat(p('falloc'))).ino, 0, 4 * MiB);
    assert.equal(extents.reduce((n, e) => n + e.length, 0), 3 * MiB - (MiB + 200));
    // Zero a range that runs past the end: the file grows, unless told to keep its size.
    await ok('fallocate', ['--zero-range', '--keep-size', '--offset', String(3 * MiB - 10), '--length', '100', p('falloc')]);
    expect.fill(0, 3 * MiB - 10);
    assert.equal((await stat(p('falloc'))).size, 3 * MiB);
    await ok('fallocate', ['--zero-range', '--offset', String(3 * MiB - 10), '--length', '100', p('falloc')]);
    assert.ok((await readFile(p('falloc'))).equals(Buffer.concat([expect, Buffer.alloc(90)])));
    // Preallocation past the end with --keep-size changes nothing visible; without it, the size.
    await ok('fallocate', ['--keep-size', '--offset', '0', '--length', String(8 * MiB), p('falloc')]);
    assert.equal((await stat(p('falloc'))).size, 3 * MiB + 90);
    await ok('fallocate', ['--offset', '0', '--length', String(4 * MiB), p('falloc')]);
    assert.equal((await stat(p('falloc'))).size, 4 * MiB);
    // Modes the kernel does not pass to FUSE filesystems are refused, as everywhere on FUSE.
    const collapse = await run('fallocate', ['--collapse-range', '--offset', '0', '--length', '4096', p('falloc')]);
    assert.notEqual(collapse.code, 0);
    await m.remount();
    assert.ok((await readFile(p('falloc'))).subarray(0, 3 * MiB + 90).equals(Buffer.concat([expect, Buffer.alloc(90)])));
  });

  it('leaves a whiteout (a 0/0 character device) where RENAME_WHITEOUT moved a file from', async () => {
    await writeFile(p('wh-src'), 'moved');
    const renameat2 = 'import ctypes, sys\nlibc = ctypes.CDLL(None, use_errno=True)\n' +
      'r = libc.renameat2(-100, sys.argv[1].encode(), -100, sys.argv[2].encode(), 4)\nsys.exit(0 if r == 0 else ctypes.get_errno())';
    const res = await py(renameat2, p('wh-src'), p('wh-dst'));
    assert.equal(res.code, 0, res.stderr);
    assert.equal(await readFile(p('wh-dst'), 'utf8'), 'moved');
    const whiteout = await stat(p('wh-src'));
    assert.ok(whiteout.isCharacterDevice());
    assert.equal(whiteout.rdev, 0);
    await unlink(p('wh-src'));
  });

  it('survives a restart: unmount, close, reopen, mount', async () => {
    const data = randomBytes(3 * MiB);
    await writeFile(p('persist'), data);
    await m.remount();
    assert.ok((await readFile(p('persist'))).equals(data));
    assert.equal(await readFile(p('docs', 'deep', 'b.txt'), 'utf8'), 'hello\0\0\0');
    const report = await fsck(m.store);
    assert.deepEqual(report.problems, []);
    assert.ok(report.chunksVerified > 0);
  });

  it('stores the same content once, whatever names and volumes hold it', async () => {
    const data = randomBytes(32 * MiB);
    await writeFile(p('one'), data);
    const before = await m.store.chunks.capacity();
    await writeFile(p('two'), data);
    await ok('cp', [p('one'), p('three')]);
    const afterCopies = await m.store.chunks.capacity();
    assert.ok(afterCopies.usedBytes - before.usedBytes < 0.05 * data.length, `copies added ${afterCopies.usedBytes - before.usedBytes} bytes`);
    // Insert one byte near the start and save the whole file again: only the chunks around the
    // insertion are new.
    const chunksBefore = await chunkCount(m);
    await writeFile(p('one'), Buffer.concat([data.subarray(0, 1000), Buffer.from('!'), data.subarray(1000)]));
    const added = (await chunkCount(m)) - chunksBefore;
    assert.ok(added <= 3, `${added} new chunks for a one-byte insertion`);
  });

  it('re-chunks only around a small overwrite in a large file', async () => {
    const data = randomBytes(40 * MiB);
    await writeFile(p('large'), data);
    const chunksBefore = await chunkCount(m);
    const fh = await open(p('large'), 'r+');
    await fh.write(Buffer.from('tiny change'), 0, 11, 20 * MiB);
    await fh.close();
    const added = (await chunkCount(m)) - chunksBefore;
    assert.ok(added >= 1 && added <= 3, `${added} new chunks for an 11-byte overwrite`);
    Buffer.from('tiny change').copy(data, 20 * MiB);
    const hash = createHash('sha256').update(await readFile(p('large'))).digest('hex');
    assert.equal(hash, createHash('sha256').update(data).digest('hex'));
  });

  it('stores only the chunks a file ends with, though it was committed while being written', async () => {
    // Far more than the dirty bytes a file holds before it commits in the background: each such
    // commit leaves the bytes after its last cut to the next, rather than storing a last chunk
    // that the next commit would replace.
    const data = randomBytes(72 * MiB);
    const chunksBefore = await chunkCount(m);
    const fh = await open(p('streamed'), 'w');
    for (let at = 0; at < data.length; at += MiB) await fh.write(data, at, MiB, at);
    await fh.close();
    const extents = await m.store.meta.extents((await stat(p('streamed'))).ino, 0, data.length);
    assert.ok(extents.length > 8, `${extents.length} extents`);
    assert.equal((await chunkCount(m)) - chunksBefore, new Set(extents.map((e) => e.chunk)).size);
    assert.ok((await readFile(p('streamed'))).equals(data));
  });

  it('keeps an unlinked file readable while it is open', async () => {
    await writeFile(p('ghost'), 'boo');
    const fh = await open(p('ghost'), 'r');
    await unlink(p('ghost'));
    const b = Buffer.alloc(3);
    await fh.read(b, 0, 3, 0);
    await fh.close();
    assert.equal(b.toString(), 'boo');
    await assert.rejects(stat(p('ghost')), { code: 'ENOENT' });
  });

  it('answers EIO for a damaged chunk and logs it, and reads other files fine', async () => {
    const data = randomBytes(2 * MiB);
    await writeFile(p('victim'), data);
    await m.remount(); // no cached plaintext
    // Damage every chunk of this file: flip a byte in each chunk the file's extents name.
    const ino = (await stat(p('victim'))).ino;
    const extents = await m.store.meta.extents(ino, 0, data.length); // (not the root: same number in both)
    assert.ok(extents.length > 0);
    for (const e of extents) {
      const file = path.join(m.home, 'pool', 'chunks', e.chunk.slice(0, 2), e.chunk.slice(2, 4), e.chunk);
      const bytes = await readFile(file);
      bytes[bytes.length - 10]! ^= 0x55;
      await writeFile(file, bytes);
    }
    const res = await run('cat', [p('victim')]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /Input\/output error/);
    const report = await fsck(m.store);
    const corrupt = report.problems.filter((x) => x.kind === 'corrupt-chunk');
    assert.equal(corrupt.length, extents.length);
    assert.ok(corrupt.every((x) => x.kind === 'corrupt-chunk' && x.files.includes('default:/victim')));
    assert.equal(await readFile(p('persist')).then((b) => b.length), 3 * MiB);
    await rm(p('victim'));
  });

  it('collects the chunks of deleted files, and leaves the rest whole', async () => {
    const keep = randomBytes(5 * MiB);
    const drop = randomBytes(6 * MiB);
    await writeFile(p('keep'), keep);
    await writeFile(p('drop'), drop);
    await rm(p('drop'));
    const before = await m.store.chunks.capacity();
    const report = await gc(m.store);
    const after = await m.store.chunks.capacity();
    assert.ok(report.chunks > 0 && before.usedBytes - after.usedBytes >= drop.length, `gc freed ${before.usedBytes - after.usedBytes} bytes`);
    assert.ok((await readFile(p('keep'))).equals(keep));
    assert.deepEqual((await fsck(m.store)).problems, []);
  });

  it('never deletes a chunk under a writer that found it stored: the writer waits and stores it again', async () => {
    const content = randomBytes(2 * MiB);
    await writeFile(p('first'), content);
    await rm(p('first')); // its chunks are now unreferenced
    const claimed = await m.store.meta.claimUnreferenced(1000, Date.now()); // a gc begins...
    assert.ok(claimed.length > 0);
    const writing = writeFile(p('second'), content); // ...while a writer dedups against them
    await new Promise((r) => setTimeout(r, 300));
    for (const c of claimed) await m.store.chunks.delete(c.id); // ...and the gc finishes
    await m.store.chunks.sync();
    await m.store.meta.forgetChunks(claimed.map((c) => c.id));
    await writing;
    await m.remount(); // read from the pool, not the cache
    assert.ok((await readFile(p('second'))).equals(content));
    assert.deepEqual((await fsck(m.store)).problems, []);
  });
});

describe('a mount collecting unreferenced chunks by itself', () => {
  let m: MountedStore;
  const p = (...parts: string[]): string => path.join(m.dir, ...parts);

  before(async () => {
    m = await mountFreshStore({ serviceOptions: { collectEveryMs: 200 } });
  });
  after(() => m.close());

  it('gives back the space of deleted and overwritten files without orbit gc, and keeps the rest', async () => {
    const keep = randomBytes(3 * MiB);
    const drop = randomBytes(4 * MiB);
    const replaced = randomBytes(2 * MiB);
    const replacement = randomBytes(2 * MiB);
    await writeFile(p('keep'), keep);
    await writeFile(p('drop'), drop);
    await writeFile(p('replaced'), replaced);
    const used = async (): Promise<number> => (await m.store.chunks.capacity()).usedBytes;
    const before = await used();
    await rm(p('drop'));
    await writeFile(p('replaced'), replacement);
    // What the replacement stores comes on top of `before`; what the two old contents held goes.
    const goal = before - drop.length - replaced.length + replacement.length + 64 * 1024;
    let now = await used();
    for (const deadline = Date.now() + 15_000; now > goal && Date.now() < deadline; now = await used()) await sleep(100);
    assert.ok(now <= goal, `the pool holds ${now} bytes, ${now - goal} more than the live files need: nothing was collected`);
    assert.ok((await readFile(p('keep'))).equals(keep));
    assert.ok((await readFile(p('replaced'))).equals(replacement));
    assert.deepEqual((await fsck(m.store)).problems, []);
  });
});
