// A full disk under a store: applications get ENOSPC, and the store stays whole. The store's home
// is on a small tmpfs of its own; incompressible files are written through the mount until writes
// fail, down to the last blocks (large files first, then smaller and smaller, as a disk shared by
// many writers fills). It proves that:
// - every failure an application sees is ENOSPC, which programs handle as "disk full", never EIO,
//   which they take for a broken disk, nor a hang; and the filesystem goes on being served;
// - what was fsync'd before stays byte-identical, and reads, stat, readdir and unlink keep working
//   on the full disk, so that a user can make room;
// - after deleting files and running gc, writes work again, and no space stays lost to the writes
//   that failed;
// - the volume then unmounts cleanly, and the store, reopened from disk, passes fsck and holds the
//   files kept.
// statfs on the mount must report the disk's size and free space too: that is how df, and programs
// that check before they write, see the disk.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { chmod, mkdir, open, readdir, readFile, stat, statfs, unlink } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fsck } from '../../src/store/fsck.js';
import { gc } from '../../src/store/gc.js';
import { Store } from '../../src/store/store.js';
import { mountVolume, type MountedVolume } from '../../src/vfs/mount.js';
import { ok, run, tempDir } from '../helpers.js';

const MiB = 1024 * 1024;
const DISK_BYTES = 48 * MiB;
/** Longer than any one operation takes on a loaded machine, shorter than the FUSE request timeout
 * (60 s), which would turn a hang into EIO. */
const HANG_MS = 20_000;
/** Written in turn, each size until a write of it fails: the last blocks go to small files. */
const FILE_SIZES = [4 * MiB, 256 * 1024, 16 * 1024, 1024];
/** Bounds the filling however much a broken store would accept. */
const MAX_FILES_PER_SIZE = 200;
/** The first files written are kept to the end: their bytes must survive everything. */
const KEPT_TO_THE_END = 2;
const FUSE_SUPER_MAGIC = 0x65735546;

interface Written {
  name: string;
  size: number;
  sha256: string;
}

interface Failure {
  name: string;
  size: number;
  step: 'open' | 'write' | 'fsync' | 'close';
  code: string;
  /** The inode, when the file was created. */
  ino?: number;
}

const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex');
const codeOf = (err: unknown): string => (err as NodeJS.ErrnoException).code ?? String(err);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The operation's result, or a rejection with code 'HANG' once HANG_MS have passed. */
async function inTime<T>(op: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(`${what}: no answer in ${HANG_MS} ms`), { code: 'HANG' })), HANG_MS);
  });
  try {
    return await Promise.race([op, hang]);
  } finally {
    clearTimeout(timer);
  }
}

/** Writes a file as an application that cares does: open, write, fsync, close. Returns what failed
 * (a close is tried whatever failed before it). */
async function writeDurably(name: string, data: Buffer): Promise<Failure[]> {
  const failures: Failure[] = [];
  let ino: number | undefined;
  const fail = (step: Failure['step'], err: unknown): void => void failures.push({ name, size: data.length, step, code: codeOf(err), ...(ino === undefined ? {} : { ino }) });
  let fh;
  try {
    fh = await inTime(open(name, 'w'), `open ${name}`);
  } catch (err) {
    fail('open', err);
    return failures;
  }
  let step: Failure['step'] = 'write';
  try {
    ino = (await inTime(fh.stat(), `fstat ${name}`)).ino;
    const { bytesWritten } = await inTime(fh.write(data, 0, data.length, 0), `write ${name}`);
    if (bytesWritten !== data.length) throw Object.assign(new Error('short write'), { code: `short write (${bytesWritten} of ${data.length})` });
    step = 'fsync';
    await inTime(fh.sync(), `fsync ${name}`);
  } catch (err) {
    fail(step, err);
  }
  try {
    await inTime(fh.close(), `close ${name}`);
  } catch (err) {
    fail('close', err);
  }
  return failures;
}

const describeFailure = (f: Failure): string => `${path.basename(f.name)} (${f.size} bytes): ${f.step} failed with ${f.code}`;

describe('a full disk gives ENOSPC and the store stays consistent', () => {
  let tmp: { dir: string; remove: () => Promise<void> } | undefined;
  let disk: string;
  let diskMounted = false;
  let mountpoint: string;
  let home: string;
  let store: Store;
  let mounted: MountedVolume;
  /** Everything opened or mounted, for the clean-up whatever happened. */
  const stores: Store[] = [];
  const mounts: MountedVolume[] = [];
  const written: Written[] = [];
  const failures: Failure[] = [];
  const onMount = (name: string): string => path.join(mountpoint, name);

  before(async () => {
    tmp = await tempDir('enospc');
    await chmod(tmp.dir, 0o755);
    disk = path.join(tmp.dir, 'disk');
    mountpoint = path.join(tmp.dir, 'mnt');
    await mkdir(disk);
    await mkdir(mountpoint);
    await ok('mount', ['-t', 'tmpfs', '-o', `size=${DISK_BYTES / MiB}m`, 'tmpfs', disk]);
    diskMounted = true;
    home = path.join(disk, 'home');
    store = (await Store.init(home)).store;
    stores.push(store);
    // The codec workers load (through tsx) on their first chunk. This process writes to the mount
    // it serves: a worker still loading then can deadlock with this process's own open file until
    // the FUSE request timeout, a hang of the test harness, not of the full disk (see the report
    // on CodecPool readiness). Their first chunks go before the mount.
    await Promise.all(Array.from({ length: store.codec.size }, () => store.codec.encode(Buffer.alloc(1))));
    mounted = await mountVolume(store, { volume: 'default', mountpoint, allowOther: true });
    mounts.push(mounted);
  });

  after(async () => {
    for (const m of mounts) await m.unmount().catch(() => m.unmount({ lazy: true })).catch(() => undefined);
    for (const s of stores) await s.close().catch(() => undefined);
    // A store that could not close still holds its database open: detach the disk anyway.
    if (diskMounted && (await run('umount', [disk])).code !== 0) await run('umount', ['-l', disk]);
    await tmp?.remove();
  });

  it("reports the disk's size and free space through statfs and df", async () => {
    const [onVolume, onDisk] = [await statfs(mountpoint), await statfs(disk)];
    const total = (s: { blocks: number; bsize: number }): number => s.blocks * s.bsize;
    const free = (s: { bavail: number; bsize: number }): number => s.bavail * s.bsize;
    // Free space may differ by what Orbit keeps in reserve for its metadata, not by more.
    const closeTo = (got: number, want: number, slack: number, what: string): void =>
      assert.ok(Math.abs(got - want) <= slack, `${what}: ${got} bytes on the mount, ${want} on the disk`);
    closeTo(total(onVolume), total(onDisk), 0.01 * total(onDisk), 'statfs total');
    closeTo(free(onVolume), free(onDisk), 0.1 * total(onDisk), 'statfs free');
    const df = (await ok('df', ['-B1', '--output=size,avail', mountpoint])).trim().split('\n')[1] ?? '';
    const [size, avail] = df.trim().split(/\s+/).map(Number);
    closeTo(size ?? NaN, total(onDisk), 0.01 * total(onDisk), 'df size');
    closeTo(avail ?? NaN, free(onDisk), 0.1 * total(onDisk), 'df avail');
  });

  it('fills the disk: every write that fails fails with ENOSPC, in time, and the volume stays mounted', async () => {
    let n = 0;
    for (const size of FILE_SIZES) {
      for (let i = 0; i < MAX_FILES_PER_SIZE; i++) {
        const name = onMount(`fill-${String(n++).padStart(4, '0')}`);
        const data = randomBytes(size);
        const failed = await writeDurably(name, data);
        if (failed.length > 0) {
          failures.push(...failed);
          break;
        }
        written.push({ name, size, sha256: sha256(data) });
      }
    }
    const ended = await Promise.race([mounted.closed.then(() => true, () => true), sleep(100).then(() => false)]);
    assert.equal(ended, false, 'the FUSE session ended');
    assert.equal((await inTime(statfs(mountpoint), 'statfs')).type, FUSE_SUPER_MAGIC, 'the volume is no longer mounted');
    assert.ok(failures.length > 0, `the disk never filled: ${written.length} files written`);
    assert.deepEqual(failures.filter((f) => f.code !== 'ENOSPC').map(describeFailure), [], 'failures other than ENOSPC');
    // Refusing early would be ENOSPC too, but of a disk mostly empty.
    const writtenBytes = written.reduce((sum, w) => sum + w.size, 0);
    assert.ok(writtenBytes >= (2 / 3) * DISK_BYTES, `only ${writtenBytes} bytes fitted on a ${DISK_BYTES}-byte disk`);
    assert.ok(written.length >= KEPT_TO_THE_END);
  });

  it("keeps the fsync'd files byte-identical, and serves stat, readdir and reads on the full disk", async () => {
    const problems: string[] = [];
    let listed: string[] | undefined;
    try {
      listed = await inTime(readdir(mountpoint), 'readdir');
    } catch (err) {
      problems.push(`readdir failed with ${codeOf(err)}`);
    }
    for (const w of written) {
      const base = path.basename(w.name);
      if (listed && !listed.includes(base)) problems.push(`${base} is not listed`);
      try {
        const { size } = await inTime(stat(w.name), `stat ${base}`);
        if (size !== w.size) problems.push(`${base}: size ${size}, written ${w.size}`);
      } catch (err) {
        problems.push(`stat ${base} failed with ${codeOf(err)}`);
      }
      try {
        if (sha256(await inTime(readFile(w.name), `read ${base}`)) !== w.sha256) problems.push(`${base}: content differs from what was written`);
      } catch (err) {
        problems.push(`read ${base} failed with ${codeOf(err)}`);
      }
    }
    assert.deepEqual(problems, []);
  });

  it('unlinks on the full disk; after gc, writes work again', async () => {
    const problems: string[] = [];
    const doomed = [...new Set([...written.slice(KEPT_TO_THE_END).map((w) => w.name), ...failures.map((f) => f.name)])];
    for (const name of doomed) {
      await inTime(unlink(name), `unlink ${path.basename(name)}`).catch((err: unknown) => {
        // A file whose create failed is not there to unlink.
        const createFailed = failures.some((f) => f.name === name && f.step === 'open');
        if (!(createFailed && codeOf(err) === 'ENOENT')) problems.push(`unlink ${path.basename(name)} failed with ${codeOf(err)}`);
      });
    }
    written.splice(KEPT_TO_THE_END);
    assert.deepEqual(problems, []);
    await gc(store);
    const data = randomBytes(8 * MiB);
    assert.deepEqual((await writeDurably(onMount('after-gc'), data)).map(describeFailure), [], 'writing after gc');
    assert.equal(sha256(await readFile(onMount('after-gc'))), sha256(data));
    await unlink(onMount('after-gc'));
  });

  it('leaves nothing of the failed writes behind: gc gives back all the space no file uses', async () => {
    const keptBytes = written.reduce((sum, w) => sum + w.size, 0);
    // Chunks carry a 16-byte header; a few KiB of slack covers them.
    const expectedAtMost = keptBytes + 64 * 1024;
    // The kernel releases a closed file just after close() returns: give it a moment.
    let used = Number.POSITIVE_INFINITY;
    for (const deadline = Date.now() + 5_000; Date.now() < deadline; await sleep(250)) {
      await gc(store);
      used = (await store.chunks.capacity()).usedBytes;
      if (used <= expectedAtMost) break;
    }
    const lingering: number[] = [];
    for (const f of failures) {
      if (f.ino !== undefined && (await store.meta.getattr(f.ino).then(() => true, () => false))) lingering.push(f.ino);
    }
    assert.deepEqual(
      { poolBytes: used <= expectedAtMost ? 'only what the kept files use' : used, lingeringInodes: [...new Set(lingering)] },
      { poolBytes: 'only what the kept files use', lingeringInodes: [] },
      `the kept files use ${keptBytes} bytes; deleted files whose writes failed must leave no inode behind`,
    );
  });

  it('unmounts cleanly, and the store reopened from disk passes fsck and holds the kept files', async () => {
    const problems: string[] = [];
    await mounted.unmount().catch((err: unknown) => void problems.push(`unmount failed: ${(err as Error).message}`));
    await store.close().catch((err: unknown) => void problems.push(`closing the store failed: ${(err as Error).message}`));
    store = await Store.open(home);
    stores.push(store);
    const report = await fsck(store);
    assert.ok(report.chunksVerified > 0);
    problems.push(...report.problems.map((p) => `fsck: ${JSON.stringify(p)}`));
    assert.deepEqual(problems, []);
    mounted = await mountVolume(store, { volume: 'default', mountpoint, allowOther: true });
    mounts.push(mounted);
    for (const w of written) assert.equal(sha256(await readFile(w.name)), w.sha256, `${path.basename(w.name)} after the restart`);
  });
});
