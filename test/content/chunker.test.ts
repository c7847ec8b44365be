// FastCDC chunker: boundaries independent of how input is pushed, size bounds, average size,
// resynchronization after edits, degenerate input, pinned cut points, the native cutter agreeing
// with this one, and parameter checks.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Chunker, DEFAULT_CHUNKING, type ChunkingParams } from '../../src/content/chunker.js';
import { chunkId } from '../../src/content/hash.js';
import { nativeContent } from '../../src/content/native.js';

const SMALL: ChunkingParams = { minSize: 2 * 1024, avgSize: 8 * 1024, maxSize: 32 * 1024 };
const MiB = 1024 * 1024;

/** xorshift32 (Marsaglia's 13/17/5): seeded so any failure reproduces exactly. */
function xorshift32(seed: number): () => number {
  let x = seed | 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

function seededBytes(length: number, seed: number): Uint8Array {
  const next = xorshift32(seed);
  const words = new Uint32Array(Math.ceil(length / 4));
  for (let i = 0; i < words.length; i++) words[i] = next();
  return new Uint8Array(words.buffer, 0, length);
}

/** All chunk lengths of one stream, pushing the data in pieces of the given sizes (one push of
 * everything when none are given). */
function chunkLengths(params: ChunkingParams, data: Uint8Array, pieceSizes?: () => number, chunker = new Chunker(params)): number[] {
  const lengths: number[] = [];
  if (pieceSizes === undefined) {
    lengths.push(...chunker.push(data));
  } else {
    for (let off = 0; off < data.length; ) {
      const end = Math.min(data.length, off + pieceSizes());
      lengths.push(...chunker.push(data.subarray(off, end)));
      off = end;
    }
  }
  const last = chunker.finish();
  if (last > 0) lengths.push(last);
  return lengths;
}

function chunkIds(data: Uint8Array, lengths: readonly number[]): string[] {
  const ids: string[] = [];
  let off = 0;
  for (const len of lengths) {
    ids.push(chunkId(data.subarray(off, off + len)));
    off += len;
  }
  return ids;
}

const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);

function assertBounds(params: ChunkingParams, lengths: readonly number[], total: number): void {
  assert.equal(sum(lengths), total, 'chunk lengths sum to the input length');
  lengths.forEach((len, i) => {
    assert.ok(len <= params.maxSize, `chunk ${i} is ${len} bytes, above maxSize`);
    if (i < lengths.length - 1) assert.ok(len >= params.minSize, `chunk ${i} is ${len} bytes, below minSize`);
    else assert.ok(len >= 1, 'the last chunk is not empty');
  });
}

describe('chunker', () => {
  it('finds the same boundaries for one push, 1-byte pushes and random splits', () => {
    const data = seededBytes(2 * MiB, 1);
    const whole = chunkLengths(SMALL, data);
    assert.ok(whole.length > 100, `expected many chunks, got ${whole.length}`);
    assert.deepEqual(chunkLengths(SMALL, data, () => 1), whole);
    for (const seed of [2, 3, 4]) {
      const next = xorshift32(seed);
      // Pieces from 1 byte to beyond maxSize, so splits land in every phase of a chunk.
      assert.deepEqual(chunkLengths(SMALL, data, () => 1 + (next() % (SMALL.maxSize + 5000))), whole, `split seed ${seed}`);
    }
  });

  it('keeps every chunk within [minSize, maxSize] except a shorter last one', () => {
    for (const [params, size] of [[SMALL, 2 * MiB + 17], [DEFAULT_CHUNKING, 24 * MiB + 5]] as const) {
      const lengths = chunkLengths(params, seededBytes(size, 5));
      assertBounds(params, lengths, size);
      // Random data should be cut by content, not by the maxSize limit.
      const forced = lengths.filter((len) => len === params.maxSize).length;
      assert.ok(forced * 10 < lengths.length, `${forced} of ${lengths.length} chunks were cut at maxSize`);
    }
  });

  it('averages close to avgSize with the default parameters', () => {
    const size = 48 * MiB;
    const lengths = chunkLengths(DEFAULT_CHUNKING, seededBytes(size, 6));
    // Every chunk but the last is a full one; the tail would bias the mean low.
    const full = lengths.slice(0, -1);
    const mean = sum(full) / full.length;
    const avg = DEFAULT_CHUNKING.avgSize;
    assert.ok(mean >= 0.6 * avg && mean <= 1.6 * avg, `mean chunk size ${Math.round(mean)} bytes (${(mean / avg).toFixed(3)}x avgSize) over ${full.length} chunks`);
  });

  it('resynchronizes after an inserted byte and after a changed byte', () => {
    const original = seededBytes(32 * MiB, 7);
    const originalIds = new Set(chunkIds(original, chunkLengths(DEFAULT_CHUNKING, original)));
    assert.ok(originalIds.size > 16, `expected many chunks, got ${originalIds.size}`);

    const inserted = new Uint8Array(original.length + 1);
    inserted.set(original.subarray(0, 1000), 0);
    inserted[1000] = 0x5a;
    inserted.set(original.subarray(1000), 1001);

    const changed = original.slice();
    const middle = original.length >> 1;
    changed[middle] = changed[middle]! ^ 0xff;

    for (const [what, data] of [['inserted byte', inserted], ['changed byte', changed]] as const) {
      const lengths = chunkLengths(DEFAULT_CHUNKING, data);
      assertBounds(DEFAULT_CHUNKING, lengths, data.length);
      const fresh = chunkIds(data, lengths).filter((id) => !originalIds.has(id));
      assert.ok(fresh.length >= 1 && fresh.length <= 3, `${what}: ${fresh.length} of ${lengths.length} chunks are new`);
    }
  });

  it('cuts a chunk the same whatever came before it', () => {
    // Equal content must chunk equally wherever it sits, or it does not deduplicate. Chunks cut
    // within their first 32 hashed bytes are where hash state left over from the previous chunk
    // would still show, so find some (about 1 candidate in 1000 qualifies).
    const early: Uint8Array[] = [];
    for (let seed = 100; early.length < 8 && seed < 100_000; seed++) {
      const candidate = seededBytes(SMALL.minSize + 64, seed);
      const first = new Chunker(SMALL).push(candidate)[0];
      if (first !== undefined && first < SMALL.minSize + 32) early.push(candidate.subarray(0, first));
    }
    assert.equal(early.length, 8, 'too few chunks cut within their first 32 hashed bytes');
    for (let seed = 20; seed < 30; seed++) {
      const before = seededBytes(64 * 1024, seed);
      const full = chunkLengths(SMALL, before).slice(0, -1);
      const stream = new Uint8Array(sum(full) + sum(early.map((e) => e.length)));
      stream.set(before.subarray(0, sum(full)), 0);
      let off = sum(full);
      for (const e of early) {
        stream.set(e, off);
        off += e.length;
      }
      assert.deepEqual(chunkLengths(SMALL, stream), [...full, ...early.map((e) => e.length)], `preceded by seed ${seed}`);
    }
  });

  it('cuts all-zero input at maxSize, deterministically', () => {
    for (const params of [SMALL, DEFAULT_CHUNKING]) {
      const size = 2 * params.maxSize + 123;
      const zeros = new Uint8Array(size);
      const expected = [params.maxSize, params.maxSize, 123];
      assert.deepEqual(chunkLengths(params, zeros), expected);
      const next = xorshift32(8);
      assert.deepEqual(chunkLengths(params, zeros, () => 1 + (next() % 100_000)), expected);
    }
  });

  it('cuts at pinned points, because they are part of the storage format', () => {
    // Changing the Gear table, its seed or the masks changes these, and with them every chunk
    // already stored or held by peers.
    assert.deepEqual(chunkLengths(SMALL, seededBytes(96 * 1024, 9)), PINNED_SMALL);
    assert.deepEqual(chunkLengths(DEFAULT_CHUNKING, seededBytes(8 * MiB, 9)), PINNED_DEFAULT);
  });

  it('starts over after finish() and reset()', () => {
    const data = seededBytes(256 * 1024, 10);
    const expected = chunkLengths(SMALL, data);
    const chunker = new Chunker(SMALL);
    assert.equal(chunker.finish(), 0, 'an empty stream has no last chunk');
    assert.deepEqual(chunkLengths(SMALL, data, undefined, chunker), expected);
    assert.deepEqual(chunkLengths(SMALL, data, undefined, chunker), expected, 'finish() readied a new stream');
    chunker.push(seededBytes(SMALL.minSize + 1000, 11));
    chunker.reset();
    assert.deepEqual(chunkLengths(SMALL, data, undefined, chunker), expected, 'reset() dropped the partial stream');
  });

  it('cuts in C (the native cutter) exactly where it cuts in TypeScript', () => {
    assert.ok(nativeContent(), 'the native cutter was not built (build/Release/orbit_content.node): npm ci builds it');
    const cases: Array<[ChunkingParams, number]> = [[DEFAULT_CHUNKING, 24 * MiB], [SMALL, 2 * MiB], [{ minSize: 64, avgSize: 64, maxSize: 64 }, 10_000]];
    for (const [params, length] of cases) {
      for (const seed of [1, 2, 3]) {
        const data = seededBytes(length, seed);
        // Text-like bytes too: long runs and few distinct values exercise the maxSize cut.
        const text = data.map((b) => 97 + (b % 4));
        for (const bytes of [data, text, new Uint8Array(length)]) {
          const inTs = new Chunker(params).push(bytes);
          const shared = new Uint8Array(new SharedArrayBuffer(length));
          shared.set(bytes);
          assert.deepEqual(new Chunker(params).cutAll(bytes), inTs, `params ${JSON.stringify(params)}, seed ${seed}`);
          assert.deepEqual(new Chunker(params).cutAll(shared), inTs, 'from shared memory');
        }
      }
    }
  });

  it('rejects invalid parameters with a RangeError', () => {
    const bad: ChunkingParams[] = [
      { minSize: 2048, avgSize: 12 * 1024, maxSize: 32 * 1024 }, // avgSize not a power of two
      { minSize: 16 * 1024, avgSize: 8 * 1024, maxSize: 32 * 1024 }, // minSize > avgSize
      { minSize: 2048, avgSize: 8 * 1024, maxSize: 4 * 1024 }, // maxSize < avgSize
      { minSize: 0, avgSize: 8 * 1024, maxSize: 32 * 1024 },
      { minSize: 2048.5, avgSize: 8 * 1024, maxSize: 32 * 1024 },
      { minSize: 2048, avgSize: 8 * 1024, maxSize: Number.NaN },
      { minSize: 8, avgSize: 32, maxSize: 128 }, // too small for the easier mask to keep bits
      { minSize: 2048, avgSize: 8 * 1024, maxSize: 2 ** 31 },
    ];
    for (const params of bad) assert.throws(() => new Chunker(params), RangeError, JSON.stringify(params));
    assert.doesNotThrow(() => new Chunker({ minSize: 64, avgSize: 64, maxSize: 64 }));
  });
});

const PINNED_SMALL = [2238, 9552, 3174, 6386, 10059, 6681, 2448, 10874, 9159, 9356, 7101, 4268, 3798, 13210];
const PINNED_DEFAULT = [1208364, 1069245, 1079880, 1115115, 1087768, 1326345, 1110344, 391547];
