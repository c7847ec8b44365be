// LocalChunkStore: the ChunkStore contract on a real directory, concurrency, reopening after a
// crash, and a full disk (a small tmpfs).
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChunkId, ChunkStat } from '../../src/pool/contract.js';
import { ChunkNotFoundError, ChunkStoreClosedError, InvalidChunkIdError } from '../../src/pool/contract.js';
import { LocalChunkStore } from '../../src/pool/local-store.js';
import { ok, tempDir } from '../helpers.js';

/** The store treats ids as opaque names, so any 64-hex digest of the bytes will do. */
const idOf = (bytes: Uint8Array): ChunkId => createHash('sha256').update(bytes).digest('hex');

function randomChunk(size: number): { id: ChunkId; bytes: Buffer } {
  const bytes = randomBytes(size);
  return { id: idOf(bytes), bytes };
}

const chunkFile = (dir: string, id: ChunkId): string => path.join(dir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);

async function listAll(store: LocalChunkStore): Promise<ChunkStat[]> {
  const found: ChunkStat[] = [];
  for await (const chunk of store.iterate()) found.push(chunk);
  return found.sort((a, b) => a.id.localeCompare(b.id));
}

describe('LocalChunkStore', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let n = 0;
  /** A fresh store directory (not yet created: open() makes it). */
  const freshDir = (): string => path.join(tmp.dir, `store${n++}`);

  before(async () => {
    tmp = await tempDir('pool');
  });
  after(() => tmp.remove());

  it('round-trips chunks of 0 bytes, 1 byte and 1 MiB', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    for (const size of [0, 1, 1 << 20]) {
      const { id, bytes } = randomChunk(size);
      assert.equal(await store.has(id), false);
      assert.equal(await store.stat(id), undefined);
      assert.equal(await store.put(id, bytes), 'stored');
      assert.equal(await store.has(id), true);
      assert.deepEqual(await store.stat(id), { id, storedBytes: size });
      assert.deepEqual(await store.get(id), bytes);
      assert.deepEqual(await readFile(chunkFile(dir, id)), bytes, 'in the fan-out layout');
      assert.equal(await store.delete(id), true);
      assert.equal(await store.has(id), false);
      assert.equal(await store.stat(id), undefined);
      assert.equal(await store.delete(id), false);
    }
    assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
    await store.close();
  });

  it('resolves existed for an id already present, keeping the first bytes', async () => {
    const store = await LocalChunkStore.open(freshDir());
    const { id, bytes } = randomChunk(1000);
    assert.equal(await store.put(id, bytes), 'stored');
    // Different bytes under the same id show whether the second put wrote anything.
    assert.equal(await store.put(id, randomBytes(10)), 'existed');
    assert.deepEqual(await store.get(id), bytes);
    assert.equal((await store.capacity()).usedBytes, 1000);
    await store.close();
  });

  it('stores 20 concurrent puts of one id once', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    const { id, bytes } = randomChunk(64 * 1024);
    const results = await Promise.all(Array.from({ length: 20 }, () => store.put(id, bytes)));
    assert.equal(results.filter((r) => r === 'stored').length, 1);
    assert.equal(results.filter((r) => r === 'existed').length, 19);
    assert.deepEqual(await readdir(path.dirname(chunkFile(dir, id))), [id]);
    assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
    assert.deepEqual(await store.get(id), bytes);
    assert.equal((await store.capacity()).usedBytes, bytes.length);
    await store.close();
  });

  it('stores 20 concurrent puts of different ids', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    // Two share a fan-out prefix, so that concurrent puts also meet on one new directory.
    const chunks = Array.from({ length: 19 }, (_, i) => randomChunk(1000 + i));
    const first = chunks[0];
    assert.ok(first);
    chunks.push({ id: first.id.slice(0, 4) + 'f'.repeat(60), bytes: randomBytes(7) });
    const results = await Promise.all(chunks.map((c) => store.put(c.id, c.bytes)));
    assert.deepEqual(results, chunks.map(() => 'stored'));
    for (const c of chunks) assert.deepEqual(await store.get(c.id), c.bytes);
    assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
    await store.close();
  });

  it('rejects get of a missing id with ChunkNotFoundError, code ENOENT', async () => {
    const store = await LocalChunkStore.open(freshDir());
    const { id } = randomChunk(10);
    await assert.rejects(store.get(id), (err: unknown) => {
      assert.ok(err instanceof ChunkNotFoundError);
      assert.equal(err.code, 'ENOENT');
      assert.equal(err.id, id);
      return true;
    });
    await store.close();
  });

  it('rejects invalid ids in every call, creating nothing', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    const valid = randomChunk(1).id;
    const bad = ['../../etc/passwd', valid.toUpperCase(), valid.slice(1), valid + '0', `${valid}\n`, `../${valid.slice(3)}`, ''];
    for (const id of bad) {
      const isInvalid = (err: unknown): boolean => err instanceof InvalidChunkIdError && err.code === 'EINVAL' && /64 lowercase hex/.test(err.message);
      await assert.rejects(store.put(id, Buffer.from('x')), isInvalid, id);
      await assert.rejects(store.get(id), isInvalid, id);
      await assert.rejects(store.has(id), isInvalid, id);
      await assert.rejects(store.stat(id), isInvalid, id);
      await assert.rejects(store.delete(id), isInvalid, id);
    }
    assert.deepEqual(await readdir(path.join(dir, 'chunks')), []);
    assert.deepEqual((await readdir(dir)).sort(), ['chunks', 'tmp']);
    await store.close();
  });

  it('iterates exactly the stored chunks after puts and deletes', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    assert.deepEqual(await listAll(store), []);
    const chunks = Array.from({ length: 30 }, (_, i) => randomChunk(i * 100));
    for (const c of chunks) await store.put(c.id, c.bytes);
    const removed = chunks.filter((_, i) => i % 3 === 0);
    for (const c of removed) assert.equal(await store.delete(c.id), true);
    // Names that do not fit the layout are not chunks.
    await writeFile(path.join(dir, 'chunks', 'stray'), 'x');
    await mkdir(path.join(dir, 'chunks', 'zz', 'zz'), { recursive: true });
    await writeFile(path.join(dir, 'chunks', 'zz', 'zz', 'f'.repeat(64)), 'x');
    const kept = chunks.filter((c) => !removed.includes(c));
    const expected = kept.map((c) => ({ id: c.id, storedBytes: c.bytes.length })).sort((a, b) => a.id.localeCompare(b.id));
    assert.deepEqual(await listAll(store), expected);
    await store.close();
  });

  it('finds its chunks after reopening, and removes old leftover temp files but not fresh ones', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    const chunks = Array.from({ length: 10 }, (_, i) => randomChunk(i * 333));
    for (const c of chunks) await store.put(c.id, c.bytes);
    await store.close();
    await assert.rejects(store.get(chunks[0]?.id ?? ''), ChunkStoreClosedError);
    // What a crash between writing a temp file and linking it leaves behind (an hour ago), and
    // a temp file of another process's put in flight (now).
    const leftover = path.join(dir, 'tmp', `${chunks[0]?.id}.leftover`);
    await writeFile(leftover, 'partial');
    const anHourAgo = new Date(Date.now() - 3600_000);
    await utimes(leftover, anHourAgo, anHourAgo);
    await writeFile(path.join(dir, 'tmp', `${chunks[1]?.id}.in-flight`), 'being written');

    const reopened = await LocalChunkStore.open(dir);
    assert.deepEqual(await readdir(path.join(dir, 'tmp')), [`${chunks[1]?.id}.in-flight`]);
    for (const c of chunks) assert.deepEqual(await reopened.get(c.id), c.bytes);
    const total = chunks.reduce((sum, c) => sum + c.bytes.length, 0);
    assert.equal((await reopened.capacity()).usedBytes, total, 'usedBytes counted by the scan at open');
    assert.equal((await listAll(reopened)).length, chunks.length);
    await reopened.close();
  });

  it('reports capacity, usedBytes following puts and deletes', async () => {
    const store = await LocalChunkStore.open(freshDir());
    const empty = await store.capacity();
    assert.ok(empty.totalBytes > 0);
    assert.ok(empty.freeBytes >= 0 && empty.freeBytes <= empty.totalBytes);
    assert.equal(empty.usedBytes, 0);
    const a = randomChunk(5000);
    const b = randomChunk(70_000);
    await store.put(a.id, a.bytes);
    await store.put(b.id, b.bytes);
    assert.equal((await store.capacity()).usedBytes, 75_000);
    await store.delete(a.id);
    assert.equal((await store.capacity()).usedBytes, 70_000);
    await store.delete(a.id);
    assert.equal((await store.capacity()).usedBytes, 70_000, 'a second delete frees nothing');
    await store.close();
  });

  it('syncs, concurrently too, and the data is there after reopening', async () => {
    const dir = freshDir();
    const store = await LocalChunkStore.open(dir);
    const chunks = Array.from({ length: 40 }, (_, i) => randomChunk(i * 50));
    await Promise.all(chunks.slice(0, 20).map((c) => store.put(c.id, c.bytes)));
    const firstSync = store.sync();
    await Promise.all(chunks.slice(20).map((c) => store.put(c.id, c.bytes)));
    const removed = chunks[3];
    assert.ok(removed);
    await store.delete(removed.id);
    await Promise.all([firstSync, store.sync(), store.sync()]);
    await store.sync();
    await store.close();

    const reopened = await LocalChunkStore.open(dir);
    for (const c of chunks) {
      if (c === removed) assert.equal(await reopened.has(c.id), false);
      else assert.deepEqual(await reopened.get(c.id), c.bytes);
    }
    await reopened.close();
  });

  describe('on a full disk', () => {
    let mnt: string;
    before(async () => {
      mnt = path.join(tmp.dir, 'small-tmpfs');
      await mkdir(mnt);
      await ok('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'tmpfs', mnt]);
    });
    after(() => ok('umount', [mnt]));

    it('rejects with ENOSPC, leaves no temp file, and keeps every earlier chunk', async () => {
      const store = await LocalChunkStore.open(mnt);
      assert.equal((await store.capacity()).totalBytes, 8 << 20);
      const stored: Array<{ id: ChunkId; bytes: Buffer }> = [];
      let failure: unknown;
      // 8 MiB less the 4 MiB kept for metadata holds at most 4 chunks of 1 MiB; the bound only
      // stops a broken store looping forever.
      for (let i = 0; i < 16 && failure === undefined; i++) {
        const chunk = randomChunk(1 << 20);
        try {
          assert.equal(await store.put(chunk.id, chunk.bytes), 'stored');
          stored.push(chunk);
        } catch (err) {
          failure = err;
          assert.equal(await store.has(chunk.id), false, 'the failed chunk is not stored');
        }
      }
      assert.equal((failure as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC');
      assert.ok(stored.length >= 1);
      assert.deepEqual(await readdir(path.join(mnt, 'tmp')), []);
      for (const c of stored) assert.deepEqual(await store.get(c.id), c.bytes);
      assert.equal((await store.capacity()).usedBytes, stored.length * (1 << 20));
      await store.sync();

      // Deleting makes room again.
      const freed = stored.pop();
      assert.ok(freed);
      await store.delete(freed.id);
      const next = randomChunk(1 << 20);
      assert.equal(await store.put(next.id, next.bytes), 'stored');
      await store.close();
    });
  });
});
