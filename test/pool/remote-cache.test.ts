// RemoteCache: the bounded on-disk cache of chunks fetched from peers. Least-recently-used
// eviction, protection, a bound that concurrent puts never pass (checked against the files on
// disk), recency across restarts, crash leftovers, a full disk (a small tmpfs) and files removed
// behind the cache's back.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readdir, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ChunkId } from '../../src/pool/contract.js';
import { ChunkStoreClosedError, InvalidChunkIdError } from '../../src/pool/contract.js';
import { RemoteCache } from '../../src/pool/remote-cache.js';
import { capturedLogger, ok, tempDir, waitFor } from '../helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** The cache treats ids as opaque names (the caller checks contents), so any 64-hex digest will do. */
const idOf = (bytes: Uint8Array): ChunkId => createHash('sha256').update(bytes).digest('hex');

interface Chunk {
  id: ChunkId;
  bytes: Buffer;
}

function randomChunk(size: number): Chunk {
  const bytes = randomBytes(size);
  return { id: idOf(bytes), bytes };
}

const chunkFile = (dir: string, id: ChunkId): string => path.join(dir, 'chunks', id.slice(0, 2), id.slice(2, 4), id);

/** Every file under dir, with its size. */
async function filesUnder(dir: string): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const p = path.join(d, entry.name);
      if (entry.isDirectory()) await walk(p);
      else found.set(path.relative(dir, p), (await stat(p)).size);
    }
  };
  await walk(dir);
  return found;
}

/** What is on disk is what the cache counts, and within its bound. */
async function assertSettled(cache: RemoteCache, dir: string, what = ''): Promise<void> {
  const files = await filesUnder(dir);
  const total = [...files.values()].reduce((a, b) => a + b, 0);
  assert.equal(cache.reservedBytes, 0, `no put is writing ${what}`);
  assert.equal(total, cache.usedBytes, `the files on disk are what the cache counts ${what}`);
  assert.ok(total <= cache.maxBytes, `${total} bytes on disk within the bound of ${cache.maxBytes} ${what}`);
  assert.equal([...files.keys()].filter((f) => f.startsWith('chunks')).length, cache.count, `one file per cached chunk ${what}`);
  assert.deepEqual([...files.keys()].filter((f) => f.startsWith('tmp')), [], `no temp file left ${what}`);
}

/** A small deterministic PRNG (mulberry32), so that a failing run can be replayed by its seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe('RemoteCache', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let n = 0;
  /** A fresh cache directory (not yet created: open() makes it). */
  const freshDir = (): string => path.join(tmp.dir, `cache${n++}`);

  before(async () => {
    tmp = await tempDir('remote-cache');
  });
  after(() => tmp.remove());

  it('round-trips chunks, counts them, and drops them', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: 4 * MiB });
    const chunks = [randomChunk(0), randomChunk(1), randomChunk(300 * KiB)];
    for (const c of chunks) {
      assert.equal(cache.has(c.id), false);
      assert.equal(await cache.get(c.id), undefined);
      assert.equal(await cache.put(c.id, c.bytes), true);
      assert.equal(cache.has(c.id), true);
      assert.deepEqual(await cache.get(c.id), c.bytes);
      assert.deepEqual((await stat(chunkFile(dir, c.id))).size, c.bytes.length, 'in the fan-out layout');
    }
    assert.equal(cache.count, 3);
    assert.equal(cache.usedBytes, 1 + 300 * KiB);
    await assertSettled(cache, dir);

    const [, one, big] = chunks;
    assert.ok(one && big);
    await cache.drop(big.id);
    await cache.drop(big.id); // a second drop finds nothing to do
    assert.equal(cache.has(big.id), false);
    assert.equal(await cache.get(big.id), undefined);
    assert.equal(cache.count, 2);
    assert.equal(cache.usedBytes, 1);
    await assertSettled(cache, dir);
    assert.deepEqual(await cache.get(one.id), one.bytes);
    assert.deepEqual(cache.stats(), { hits: 4, misses: 4, evictions: 0, puts: 3, refusedPuts: 0 });
    await cache.close();
  });

  it('evicts the least recently used chunk: a get rescues it', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: 4 * KiB });
    const [a, b, c, d, e, f] = Array.from({ length: 6 }, () => randomChunk(KiB));
    assert.ok(a && b && c && d && e && f);
    for (const x of [a, b, c, d]) assert.equal(await cache.put(x.id, x.bytes), true);
    assert.ok(await cache.get(a.id));
    // Putting a chunk already there is a use too, and writes nothing.
    assert.equal(await cache.put(b.id, randomBytes(10)), true);
    assert.equal(await cache.put(e.id, e.bytes), true);
    assert.deepEqual([a, b, c, d, e].map((x) => cache.has(x.id)), [true, true, false, true, true], 'c, the least recently used, went');
    assert.equal(await cache.put(f.id, f.bytes), true);
    assert.deepEqual([a, b, d, e, f].map((x) => cache.has(x.id)), [true, true, false, true, true], 'then d');
    assert.deepEqual(await cache.get(b.id), b.bytes, 'the second put wrote nothing');
    assert.equal(cache.stats().evictions, 2);
    assert.equal(cache.stats().puts, 6, 'puts that wrote a file');
    await assertSettled(cache, dir);
    await cache.close();
  });

  it('stores concurrent puts of one id once', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: MiB });
    const c = randomChunk(200 * KiB);
    const results = await Promise.all(Array.from({ length: 20 }, () => cache.put(c.id, c.bytes)));
    assert.deepEqual(results, results.map(() => true));
    assert.equal(cache.stats().puts, 1);
    assert.equal(cache.usedBytes, 200 * KiB);
    await assertSettled(cache, dir);
    await cache.close();
  });

  it('never lets concurrent puts pass the bound, not even for an instant', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: MiB });
    let samples = 0;
    let sampling = true;
    const sample = (): void => {
      assert.ok(cache.usedBytes + cache.reservedBytes <= cache.maxBytes, `${cache.usedBytes} used + ${cache.reservedBytes} reserved`);
      samples++;
      if (sampling) setImmediate(sample);
    };
    sample();
    const chunks = Array.from({ length: 16 }, () => randomChunk(256 * KiB));
    const results = await Promise.all(chunks.map((c) => cache.put(c.id, c.bytes)));
    sampling = false;
    // Each waits for room, evicting those that landed before it: none is refused.
    assert.deepEqual(results, results.map(() => true));
    assert.equal(cache.count, 4);
    assert.equal(cache.usedBytes, MiB);
    assert.equal(cache.stats().evictions, 12);
    assert.ok(samples > 1);
    await assertSettled(cache, dir);
    await cache.close();
  });

  it('keeps the bound under a random workload of concurrent puts, gets, protects, releases and drops', async () => {
    const seed = Number(process.env.ORBIT_PROPERTY_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const random = prng(seed);
    const say = (what: string): string => `${what} (seed ${seed}: ORBIT_PROPERTY_SEED=${seed} replays it)`;
    const between = (lo: number, hi: number): number => lo + Math.floor(random() * (hi - lo + 1));
    const pick = <T>(items: readonly T[]): T | undefined => items[Math.floor(random() * items.length)];

    const dir = freshDir();
    const maxBytes = 2 * MiB;
    const cache = await RemoteCache.open({ dir, maxBytes });
    const known: Chunk[] = [];
    const contents = new Map<ChunkId, Buffer>();
    /** Releases of the holds taken, by id. */
    const holds = new Map<ChunkId, Array<() => void>>();
    let stored = 0;
    let refused = 0;
    const checkBound = (): void => assert.ok(cache.usedBytes + cache.reservedBytes <= maxBytes, say(`${cache.usedBytes} used + ${cache.reservedBytes} reserved`));

    for (let step = 0; step < 80; step++) {
      const dropped = new Set<ChunkId>();
      const ops: Array<() => Promise<void>> = [];
      for (let i = between(1, 24); i > 0; i--) {
        const roll = random();
        // Mostly recent ones, which may be cached or being written.
        const old = random() < 0.8 ? pick(known.slice(-16)) : pick(known);
        if (roll < 0.4 || old === undefined) {
          const chunk = randomChunk(between(KiB, 256 * KiB));
          known.push(chunk);
          contents.set(chunk.id, chunk.bytes);
          ops.push(async () => {
            if (await cache.put(chunk.id, chunk.bytes)) stored++;
            else refused++;
          });
        } else if (roll < 0.48) {
          ops.push(async () => {
            if (!(await cache.put(old.id, old.bytes))) refused++;
          });
        } else if (roll < 0.73) {
          ops.push(async () => {
            const got = await cache.get(old.id);
            if (got !== undefined) assert.deepEqual(got, contents.get(old.id), say('a get returns what was put'));
          });
        } else if (roll < 0.88) {
          // Enough to have puts refused at times, not so many that all are.
          const target = random() < 0.7 ? (pick(known.filter((c) => cache.has(c.id))) ?? old) : old;
          const heldBytes = [...holds.keys()].reduce((sum, id) => sum + (contents.get(id)?.length ?? 0), 0);
          if (heldBytes < maxBytes + MiB / 2) {
            const release = cache.protect(target.id);
            holds.set(target.id, [...(holds.get(target.id) ?? []), release]);
          }
        } else if (roll < 0.95) {
          const [id, releases] = pick([...holds.entries()]) ?? [];
          if (id !== undefined && releases !== undefined) {
            releases.pop()?.();
            if (releases.length === 0) holds.delete(id);
          }
        } else {
          dropped.add(old.id);
          ops.push(() => cache.drop(old.id));
        }
      }
      // The protections are taken (and released) before the operations run: the protected chunks
      // cached now must be there after them, unless dropped.
      const mustStay = [...holds.keys()].filter((id) => cache.has(id) && !dropped.has(id));
      let sampling = true;
      const sample = (): void => {
        checkBound();
        if (sampling) setImmediate(sample);
      };
      sample();
      await Promise.all(ops.map((op) => op().then(checkBound)));
      sampling = false;
      await assertSettled(cache, dir, say(`after step ${step}`));
      for (const id of mustStay) assert.ok(cache.has(id), say(`protected chunk ${id} stays`));
    }
    assert.ok(stored > 50, say(`${stored} puts stored`));
    // Coalesced puts of one id share one refusal: the cache counts it once.
    assert.ok(cache.stats().refusedPuts <= refused && (cache.stats().refusedPuts > 0) === refused > 0, say('refusals counted'));
    for (const releases of holds.values()) for (const release of releases) release();

    // What is cached survives a restart as it is.
    const cached = known.filter((c) => cache.has(c.id));
    await cache.close();
    const reopened = await RemoteCache.open({ dir, maxBytes });
    assert.equal(reopened.count, cached.length);
    for (const c of cached) assert.deepEqual(await reopened.get(c.id), c.bytes, say('same contents after reopening'));
    await assertSettled(reopened, dir, say('after reopening'));
    await reopened.close();
  });

  it('never evicts protected chunks, and refuses a put that does not fit beside them', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: 4 * KiB });
    const [a, b, c, d, e, f] = Array.from({ length: 6 }, () => randomChunk(KiB));
    assert.ok(a && b && c && d && e && f);
    for (const x of [a, b, c, d]) await cache.put(x.id, x.bytes);
    const releases = [a, b, c, d].map((x) => cache.protect(x.id));
    const secondHoldOnA = cache.protect(a.id);

    assert.equal(await cache.put(e.id, e.bytes), false, 'only protected chunks left');
    assert.equal(cache.has(e.id), false);
    assert.deepEqual(cache.stats(), { hits: 0, misses: 0, evictions: 0, puts: 4, refusedPuts: 1 });

    // Gets of protected chunks work; a is still held once after one release.
    assert.deepEqual(await cache.get(a.id), a.bytes);
    releases[0]?.();
    releases[0]?.(); // a release function releases once, however often called
    assert.equal(await cache.put(e.id, e.bytes), false, 'a is still held');

    releases[2]?.();
    assert.equal(await cache.put(e.id, e.bytes), true, 'c, released, makes room');
    assert.deepEqual([a, b, c, d, e].map((x) => cache.has(x.id)), [true, true, false, true, true]);

    // Protection taken before a chunk is cached holds once a put stores it.
    const holdOnF = cache.protect(f.id);
    assert.equal(await cache.put(f.id, f.bytes), true, 'e, the only unprotected chunk, goes');
    assert.equal(cache.has(e.id), false);
    assert.equal(await cache.put(c.id, c.bytes), false, 'now a, b, d and f are all protected');

    // A chunk bigger than the bound is refused without evicting anything.
    secondHoldOnA();
    holdOnF();
    const huge = randomChunk(4 * KiB + 1);
    assert.equal(await cache.put(huge.id, huge.bytes), false);
    assert.equal(cache.count, 4);
    assert.equal(cache.stats().refusedPuts, 4);

    // A protected chunk can still be dropped (its caller found it corrupt).
    await cache.drop(b.id);
    assert.equal(cache.has(b.id), false);
    await assertSettled(cache, dir);
    releases[1]?.();
    releases[3]?.();
    await cache.close();
  });

  it('evicts at once when the bound is lowered, and protected chunks above it when released', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: 8 * KiB });
    const chunks = Array.from({ length: 8 }, () => randomChunk(KiB));
    for (const c of chunks) await cache.put(c.id, c.bytes);
    const release = cache.protect(chunks[0]?.id ?? '');
    await cache.setMaxBytes(3 * KiB);
    assert.equal(cache.maxBytes, 3 * KiB);
    // The protected oldest stays; the other oldest went.
    assert.deepEqual(chunks.map((c) => cache.has(c.id)), [true, false, false, false, false, false, true, true]);
    await assertSettled(cache, dir);

    // Below what is protected: over the bound until released.
    await cache.setMaxBytes(0);
    assert.equal(cache.usedBytes, KiB);
    const extra = randomChunk(1);
    assert.equal(await cache.put(extra.id, extra.bytes), false);
    release();
    await waitFor(() => cache.usedBytes === 0, 'the released chunk evicted');
    assert.equal(cache.count, 0);
    await assert.rejects(cache.setMaxBytes(-1), RangeError);

    // Many at once: deleted a few at a time, every one of them.
    await cache.setMaxBytes(MiB);
    const many = Array.from({ length: 300 }, () => randomChunk(100));
    await Promise.all(many.map((c) => cache.put(c.id, c.bytes)));
    assert.equal(cache.count, 300);
    await cache.setMaxBytes(0);
    assert.equal(cache.count, 0);
    await assertSettled(cache, dir);
    await cache.close();
  });

  it('after a restart: the same chunks in the same use order; a lower bound evicts the least recently used', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: 8 * KiB });
    const [a, b, c, d, e] = Array.from({ length: 5 }, () => randomChunk(KiB));
    assert.ok(a && b && c && d && e);
    for (const x of [a, b, c, d]) await cache.put(x.id, x.bytes);
    await cache.get(b.id);
    await cache.get(a.id);
    // Use order now: c, d, b, a.
    await cache.close();
    await assert.rejects(cache.get(a.id), ChunkStoreClosedError);
    await assert.rejects(cache.put(e.id, e.bytes), ChunkStoreClosedError);

    // The files' mtimes bring the order back: c goes first.
    const reopened = await RemoteCache.open({ dir, maxBytes: 4 * KiB });
    assert.equal(reopened.count, 4);
    assert.equal(await reopened.put(e.id, e.bytes), true);
    assert.deepEqual([a, b, c, d, e].map((x) => reopened.has(x.id)), [true, true, false, true, true]);
    await reopened.close();

    // Reopened with a lower bound: the least recently used (d, then b) go at once.
    const smaller = await RemoteCache.open({ dir, maxBytes: 2 * KiB });
    assert.deepEqual([a, b, c, d, e].map((x) => smaller.has(x.id)), [true, false, false, false, true]);
    assert.equal(smaller.usedBytes, 2 * KiB);
    assert.deepEqual(await smaller.get(a.id), a.bytes);
    assert.deepEqual(await smaller.get(e.id), e.bytes);
    await assertSettled(smaller, dir);
    await smaller.close();
  });

  it('writes recency back to the files periodically, not only on close', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: MiB, flushIntervalMs: 20 });
    const [a, b] = [randomChunk(10), randomChunk(10)];
    await cache.put(a.id, a.bytes);
    await cache.put(b.id, b.bytes);
    await cache.get(a.id);
    await waitFor(async () => (await stat(chunkFile(dir, a.id))).mtimeMs > (await stat(chunkFile(dir, b.id))).mtimeMs, 'a written back as used after b');
    await cache.close();
  });

  it('removes temp files left by a crash, and files under chunks/ that are not cached chunks', async () => {
    const dir = freshDir();
    const { log, lines } = capturedLogger();
    const cache = await RemoteCache.open({ dir, maxBytes: MiB });
    const a = randomChunk(100);
    await cache.put(a.id, a.bytes);
    await cache.close();

    const other = randomChunk(5).id;
    await writeFile(path.join(dir, 'tmp', `${other}.crashed`), 'partial');
    await writeFile(path.join(dir, 'chunks', 'stray'), 'x');
    await writeFile(path.join(dir, 'chunks', a.id.slice(0, 2), a.id.slice(2, 4), 'not-a-chunk'), 'x');
    await mkdir(path.join(dir, 'chunks', 'zz', 'zz'), { recursive: true });
    await writeFile(path.join(dir, 'chunks', 'zz', 'zz', 'f'.repeat(64)), 'x');
    // A chunk's name under the wrong fan-out: no get would find it.
    await mkdir(path.join(dir, 'chunks', other.slice(0, 2) === '00' ? '01' : '00', '00'), { recursive: true });
    await writeFile(path.join(dir, 'chunks', other.slice(0, 2) === '00' ? '01' : '00', '00', other), 'x');
    // Beside chunks/ and tmp/: not the cache's to judge.
    await writeFile(path.join(dir, 'NOTES'), 'kept');

    const reopened = await RemoteCache.open({ dir, maxBytes: MiB, log });
    assert.deepEqual(await readdir(path.join(dir, 'tmp')), []);
    assert.deepEqual([...(await filesUnder(dir)).keys()].sort(), ['NOTES', path.join('chunks', a.id.slice(0, 2), a.id.slice(2, 4), a.id)].sort());
    assert.equal(reopened.count, 1);
    assert.equal(reopened.usedBytes, 100);
    assert.deepEqual(await reopened.get(a.id), a.bytes);
    assert.ok(lines().some((l) => l.removed === 4 && l.level === 40), 'one warning for the strays');
    await reopened.close();
  });

  it('forgets a file deleted behind its back, and remakes a removed fan-out directory', async () => {
    const dir = freshDir();
    const { log, lines } = capturedLogger();
    const cache = await RemoteCache.open({ dir, maxBytes: MiB, log });
    const [a, b] = [randomChunk(1000), randomChunk(2000)];
    await cache.put(a.id, a.bytes);
    await cache.put(b.id, b.bytes);
    await unlink(chunkFile(dir, a.id));
    assert.equal(await cache.get(a.id), undefined);
    assert.equal(cache.has(a.id), false);
    assert.equal(cache.usedBytes, 2000);
    assert.ok(lines().some((l) => l.chunk === a.id && /vanished/.test(String(l.msg))));

    // The whole fan-out directory of b, with it.
    await rm(path.join(dir, 'chunks', b.id.slice(0, 2)), { recursive: true });
    assert.equal(await cache.get(b.id), undefined);
    assert.equal(await cache.put(b.id, b.bytes), true);
    assert.deepEqual(await cache.get(b.id), b.bytes);
    // Eviction of a file gone behind its back is fine too.
    await unlink(chunkFile(dir, b.id));
    await cache.setMaxBytes(0);
    assert.equal(cache.count, 0);
    assert.equal(cache.usedBytes, 0);
    await assertSettled(cache, dir);
    await cache.close();
  });

  it('rejects a put whose eviction fails, keeping the chunk that could not be deleted', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: 2 * KiB, log: capturedLogger().log });
    const [a, b, c] = Array.from({ length: 3 }, () => randomChunk(KiB));
    assert.ok(a && b && c);
    await cache.put(a.id, a.bytes);
    await cache.put(b.id, b.bytes);
    // Root may unlink anything but a directory: a's name becomes one, so its eviction fails.
    await unlink(chunkFile(dir, a.id));
    await mkdir(path.join(chunkFile(dir, a.id), 'x'), { recursive: true });
    await assert.rejects(cache.put(c.id, c.bytes), (err: NodeJS.ErrnoException) => err.code === 'EISDIR' || err.code === 'EPERM');
    assert.equal(cache.has(a.id), true, 'still counted: its name is still taken on disk');
    assert.equal(cache.has(c.id), false);
    assert.equal(cache.usedBytes + cache.reservedBytes, 2 * KiB);

    // Back as just used, so that the next eviction tries another first.
    assert.equal(await cache.put(c.id, c.bytes), true);
    assert.deepEqual([a, b, c].map((x) => cache.has(x.id)), [true, false, true]);
    await rm(chunkFile(dir, a.id), { recursive: true });
    assert.equal(await cache.get(a.id), undefined);
    assert.equal(cache.has(a.id), false);
    await assertSettled(cache, dir);
    await cache.close();
  });

  it('rejects invalid ids and bounds', async () => {
    const dir = freshDir();
    const cache = await RemoteCache.open({ dir, maxBytes: MiB });
    const valid = randomChunk(1).id;
    for (const id of ['../../etc/passwd', valid.toUpperCase(), valid.slice(1), `${valid}\n`, '']) {
      await assert.rejects(cache.put(id, Buffer.from('x')), InvalidChunkIdError);
      await assert.rejects(cache.get(id), InvalidChunkIdError);
      await assert.rejects(cache.drop(id), InvalidChunkIdError);
      assert.throws(() => cache.protect(id), InvalidChunkIdError);
    }
    assert.deepEqual(await readdir(path.join(dir, 'chunks')), []);
    await cache.close();
    await assert.rejects(RemoteCache.open({ dir, maxBytes: 1.5 }), RangeError);
  });

  describe('on a full disk', { skip: process.getuid?.() !== 0 && 'mounting a tmpfs needs root' }, () => {
    let mnt: string;
    before(async () => {
      mnt = path.join(tmp.dir, 'small-tmpfs');
      await mkdir(mnt);
      await ok('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mnt]);
    });
    after(() => ok('umount', [mnt]));

    it('bounded at the size of its filesystem, never fills it, however many puts run at once', async () => {
      // Sizes in whole pages: a tmpfs counts the pages of files, and nothing for directories. So
      // a put that started writing before the files it evicted were gone would fail with ENOSPC.
      const dir = path.join(mnt, 'bounded');
      const cache = await RemoteCache.open({ dir, maxBytes: MiB });
      for (let round = 0; round < 30; round++) {
        const chunks = Array.from({ length: 16 }, (_, i) => randomChunk(64 * KiB * (1 + ((round + i) % 4))));
        const results = await Promise.all(chunks.map((c) => cache.put(c.id, c.bytes)));
        assert.deepEqual(results, results.map(() => true));
      }
      await assertSettled(cache, dir);
      await cache.close();
      await rm(dir, { recursive: true });
    });

    it('rejects puts with ENOSPC and counts exactly what is on disk', async () => {
      const dir = path.join(mnt, 'cache');
      const cache = await RemoteCache.open({ dir, maxBytes: 8 * MiB });
      const stored: Chunk[] = [];
      let failure: unknown;
      // A 1 MiB filesystem holds at most 4 of them; the bound only stops a broken cache looping.
      for (let i = 0; i < 16 && failure === undefined; i++) {
        const chunk = randomChunk(256 * KiB);
        try {
          assert.equal(await cache.put(chunk.id, chunk.bytes), true);
          stored.push(chunk);
        } catch (err) {
          failure = err;
          assert.equal(cache.has(chunk.id), false);
        }
      }
      assert.equal((failure as NodeJS.ErrnoException | undefined)?.code, 'ENOSPC');
      assert.ok(stored.length >= 1);
      await assertSettled(cache, dir);

      // Concurrent ones too, some of them partly written when the disk filled.
      await cache.drop(stored.pop()?.id ?? '');
      const results = await Promise.allSettled(Array.from({ length: 6 }, () => randomChunk(100 * KiB)).map((c) => cache.put(c.id, c.bytes)));
      assert.ok(results.some((r) => r.status === 'fulfilled'));
      assert.ok(results.some((r) => r.status === 'rejected' && (r.reason as NodeJS.ErrnoException).code === 'ENOSPC'));
      await assertSettled(cache, dir);

      // Making room lets puts in again.
      await cache.setMaxBytes(0);
      const next = randomChunk(256 * KiB);
      await cache.setMaxBytes(8 * MiB);
      assert.equal(await cache.put(next.id, next.bytes), true);
      await assertSettled(cache, dir);
      await cache.close();
    });
  });
});
