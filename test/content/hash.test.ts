// Chunk naming: BLAKE3-256 test vectors, views into larger buffers, and the ChunkId form.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { chunkId, isChunkId } from '../../src/content/hash.js';

const EMPTY = 'af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262';
const ABC = '6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85';

describe('chunk ids', () => {
  it('are BLAKE3-256 in lowercase hex', () => {
    assert.equal(chunkId(new Uint8Array(0)), EMPTY);
    assert.equal(chunkId(new TextEncoder().encode('abc')), ABC);
  });

  it('hash only the bytes a view covers', () => {
    const buffer = new TextEncoder().encode('xxabcyy');
    assert.equal(chunkId(buffer.subarray(2, 5)), ABC);
    assert.equal(chunkId(Buffer.from(buffer.buffer, 2, 3)), ABC);
  });

  it('differ when one bit differs', () => {
    const a = new Uint8Array(64 * 1024).fill(7);
    const b = a.slice();
    b[40_000] = 6;
    assert.notEqual(chunkId(a), chunkId(b));
    assert.equal(chunkId(a), chunkId(a.slice()));
  });

  it('are recognized by isChunkId', () => {
    assert.ok(isChunkId(EMPTY));
    assert.ok(isChunkId(chunkId(new Uint8Array([1, 2, 3]))));
    for (const s of ['', EMPTY.slice(1), `${EMPTY}0`, EMPTY.toUpperCase(), `${EMPTY.slice(0, 63)}g`, ` ${EMPTY.slice(1)}`, `${EMPTY}\n`]) {
      assert.equal(isChunkId(s), false, JSON.stringify(s));
    }
  });
});
