// The chunk format and the codec workers: round trips, compression only when it pays, and every
// kind of damage caught as ChunkCorruptError.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, describe, it } from 'node:test';
import { borrowShared, CodecPool, returnShared } from '../../src/content/codec-pool.js';
import { ChunkCorruptError, Codec, decodeChunk, encodeChunk, rawChunkHeader } from '../../src/content/codec.js';
import { chunkId } from '../../src/content/hash.js';
import { crc32c } from '../../src/pool/fragment.js';

describe('chunk format', () => {
  it('round-trips incompressible, compressible and empty chunks, compressing only when it pays', () => {
    const random = randomBytes(300_000);
    const zeros = Buffer.alloc(300_000);
    const text = Buffer.from('the quick brown fox jumps over the lazy dog\n'.repeat(5000));
    for (const [plain, codec] of [[random, Codec.Raw], [zeros, Codec.Zstd], [text, Codec.Zstd], [Buffer.alloc(0), Codec.Raw]] as const) {
      const enc = encodeChunk(plain);
      assert.equal(enc.id, chunkId(plain));
      assert.equal(enc.codec, codec);
      assert.ok(decodeChunk(enc.id, enc.bytes).equals(plain));
    }
    assert.ok(encodeChunk(zeros).bytes.length < 1000);
    assert.equal(encodeChunk(random).bytes.length, random.length + 16);
  });

  it('catches a flipped bit, a bad header, a truncation and a wrong name', () => {
    const plain = Buffer.from('some bytes worth keeping '.repeat(400));
    const enc = encodeChunk(plain);
    const flipped = Buffer.from(enc.bytes);
    flipped[flipped.length - 5]! ^= 0x10;
    assert.throws(() => decodeChunk(enc.id, flipped), ChunkCorruptError);
    const badMagic = Buffer.from(enc.bytes);
    badMagic[0] = 0;
    assert.throws(() => decodeChunk(enc.id, badMagic), /bad magic/);
    assert.throws(() => decodeChunk(enc.id, enc.bytes.subarray(0, enc.bytes.length - 1)), /length does not match/);
    assert.throws(() => decodeChunk(enc.id, enc.bytes.subarray(0, 8)), /shorter than the header/);
    const raw = encodeChunk(randomBytes(1000));
    const rawFlipped = Buffer.from(raw.bytes);
    rawFlipped[100]! ^= 1;
    assert.throws(() => decodeChunk(raw.id, rawFlipped), /BLAKE3 does not match/);
    assert.throws(() => decodeChunk(chunkId(Buffer.from('other')), enc.bytes), { code: 'EIO' });
  });
});

describe('codec pool', () => {
  const pool = new CodecPool(2);
  after(() => pool.close());

  it('encodes and decodes on worker threads, many at once', async () => {
    const plains = Array.from({ length: 24 }, (_, i) => (i % 2 ? randomBytes(100_000 + i) : Buffer.alloc(200_000 + i, i)));
    const encoded = await Promise.all(plains.map((p) => pool.encode(p)));
    encoded.forEach((e, i) => assert.equal(e.id, chunkId(plains[i]!)));
    encoded.forEach((e) => assert.equal(e.crc, crc32c(e.bytes)));
    const decoded = await Promise.all(encoded.map((e) => pool.decode(e.id, e.bytes)));
    decoded.forEach((d, i) => assert.ok(d.equals(plains[i]!)));
  });

  it('encodes only the bytes a view covers, and leaves the caller its buffer', async () => {
    const big = randomBytes(1 << 20);
    const view = big.subarray(1000, 5000);
    const enc = await pool.encode(view);
    assert.equal(enc.id, chunkId(view));
    assert.equal(big.length, 1 << 20); // not transferred away
  });

  it('chunks shared bytes, sending back a stored form only for compressed chunks: a raw one is its header and the plaintext', async () => {
    const text = Buffer.from('orbit keeps every byte it is given\n'.repeat(60_000));
    const random = randomBytes(3 << 20);
    const shared = borrowShared(text.length + random.length);
    try {
      shared.set(text, 0);
      shared.set(random, text.length);
      const res = await pool.chunk(shared, { from: 0, boundaries: [] });
      assert.ok(res.chunks.some((c) => c.buffer) && res.chunks.some((c) => !c.buffer), 'both kinds among the chunks');
      let at = 0;
      for (const c of res.chunks) {
        const plain = shared.subarray(at, at + c.length);
        const stored = c.buffer ? Buffer.from(c.buffer) : Buffer.concat([rawChunkHeader(c.length), plain]);
        // The same bytes as encodeChunk stores: one format, whichever way a chunk was written.
        assert.ok(stored.equals(encodeChunk(plain).bytes), `chunk at ${at}`);
        assert.equal(c.crc, crc32c(stored), `the CRC-32C of chunk ${at}'s stored form`);
        assert.ok(decodeChunk(c.id, stored).equals(plain));
        at += c.length;
      }
      assert.equal(at, res.used);
    } finally {
      returnShared(shared);
    }
  });

  it('rejects a corrupt chunk with ChunkCorruptError', async () => {
    const enc = await pool.encode(Buffer.from('x'.repeat(10_000)));
    const bad = Buffer.from(enc.bytes);
    bad[bad.length - 1]! ^= 0xff;
    await assert.rejects(pool.decode(enc.id, bad), (err: Error) => err instanceof ChunkCorruptError && (err as ChunkCorruptError).code === 'EIO');
  });
});
