// The content addon's copy into and out of shared memory: the bytes TypedArray.set would move,
// at any offset, and a clear error (nothing written) when they do not fit.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { copyBytes, nativeContent } from '../../src/content/native.js';

describe('copyBytes', () => {
  it('copies as TypedArray.set does, into and out of shared memory, at any offset', () => {
    assert.ok(nativeContent(), 'the content addon was not built (build/Release/orbit_content.node): npm ci builds it');
    const source = randomBytes(1 << 20);
    for (const [at, from, to] of [[0, 0, 1 << 20], [7, 3, 1000], [(2 << 20) - 5, 10, 15], [123, 0, 0]] as const) {
      const shared = new Uint8Array(new SharedArrayBuffer(2 << 20)).fill(0xaa);
      const expected = new Uint8Array(2 << 20).fill(0xaa);
      copyBytes(shared, at, source.subarray(from, to));
      expected.set(source.subarray(from, to), at);
      assert.deepEqual(Buffer.from(shared.buffer), Buffer.from(expected.buffer), `at ${at}, bytes [${from}, ${to})`);
      // And back out of shared memory into ordinary memory.
      const back = new Uint8Array(to - from);
      copyBytes(back, 0, shared.subarray(at, at + (to - from)));
      assert.deepEqual(Buffer.from(back), source.subarray(from, to));
    }
  });

  it('refuses bytes that do not fit, writing nothing', () => {
    const target = new Uint8Array(new SharedArrayBuffer(16));
    assert.throws(() => copyBytes(target, 10, new Uint8Array(7).fill(1)), RangeError);
    assert.throws(() => copyBytes(target, -1, new Uint8Array(1).fill(1)), RangeError);
    assert.throws(() => copyBytes(target, 17, new Uint8Array(0)), RangeError);
    assert.deepEqual([...target], new Array(16).fill(0));
  });
});
