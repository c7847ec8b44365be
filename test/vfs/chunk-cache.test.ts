// ChunkCache over the store's own chunks (a real chunk store, the codec workers, reused memory):
// a held chunk's bytes stay put while other chunks load through the memory it would go back to,
// and memory goes back once a chunk is both out of the cache and released by every reader.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { poolChunks } from '../../src/content/chunk-source.js';
import { encodeChunk } from '../../src/content/codec.js';
import { CodecPool } from '../../src/content/codec-pool.js';
import { ChunkMemory } from '../../src/pool/chunk-memory.js';
import type { ChunkId } from '../../src/pool/contract.js';
import { LocalChunkStore } from '../../src/pool/local-store.js';
import { ChunkCache } from '../../src/vfs/chunk-cache.js';
import { tempDir } from '../helpers.js';

const CHUNK = 600 * 1024;

describe('ChunkCache', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let store: LocalChunkStore;
  let codec: CodecPool;
  /** Random (so stored raw) chunks of one size: each load can reuse any other's memory. */
  const chunks: Array<{ id: ChunkId; plain: Buffer }> = [];

  before(async () => {
    tmp = await tempDir('chunk-cache');
    store = await LocalChunkStore.open(path.join(tmp.dir, 'chunks'));
    codec = new CodecPool(2);
    for (let i = 0; i < 6; i++) {
      const plain = randomBytes(CHUNK);
      const { id, bytes } = encodeChunk(plain);
      await store.put(id, bytes);
      chunks.push({ id, plain });
    }
  });
  after(async () => {
    await codec.close();
    await store.close();
    await tmp.remove();
  });

  /** A cache with room for one chunk, over its own memory. */
  function oneChunkCache(): { cache: ChunkCache; memory: ChunkMemory } {
    const memory = new ChunkMemory();
    return { cache: new ChunkCache(poolChunks(store, codec, memory), CHUNK), memory };
  }

  it('keeps a held chunk intact while others load over the memory it would go back to', async () => {
    const { cache, memory } = oneChunkCache();
    const [a, ...others] = chunks;
    const held = await cache.hold(a!.id);
    assert.ok(held.bytes.buffer instanceof SharedArrayBuffer, 'read into lent memory');
    for (const c of others) {
      const h = await cache.hold(c.id); // evicts the one before
      assert.ok(h.bytes.equals(c.plain));
      h.release();
      assert.ok(held.bytes.equals(a!.plain), `chunk a unchanged after ${c.id} loaded`);
    }
    const backing = held.bytes.buffer;
    held.release(); // out of the cache since the first other chunk: its memory goes back now
    assert.equal(memory.lend(CHUNK).buffer, backing, 'released memory is lent again');
  });

  it('a chunk several readers wait for goes back after the last of them releases it', async () => {
    const { cache, memory } = oneChunkCache();
    const [a, b] = chunks;
    const [first, second] = await Promise.all([cache.hold(a!.id), cache.hold(a!.id)]);
    assert.equal(first, second, 'one load, one chunk');
    (await cache.hold(b!.id)).release(); // a is out of the cache
    first.release();
    (await cache.hold(chunks[2]!.id)).release();
    assert.ok(second!.bytes.equals(a!.plain), 'still held by the second reader');
    const idle = memory.idleSize;
    second!.release();
    assert.equal(memory.idleSize, idle + second!.bytes.buffer.byteLength);
    assert.throws(() => second!.release(), /released more often than held/);
  });

  it('a prefetched chunk no reader held goes back as it leaves the cache; a failed load holds nothing', async () => {
    const { cache, memory } = oneChunkCache();
    cache.prefetch(chunks[3]!.id);
    const h = await cache.hold(chunks[3]!.id); // waits for the prefetch
    h.release();
    assert.equal(memory.lentSize, h.bytes.buffer.byteLength, 'cached, still lent');
    (await cache.hold(chunks[4]!.id)).release();
    assert.equal(memory.lentSize, h.bytes.buffer.byteLength, 'only the chunk in the cache is lent');
    const missing = 'f'.repeat(64);
    await assert.rejects(Promise.all([cache.hold(missing), cache.hold(missing)]), { code: 'ENOENT' });
    assert.equal(memory.lentSize, h.bytes.buffer.byteLength);
  });

  it('a compressed chunk is decoded out of lent memory, which goes back at once', async () => {
    const { cache, memory } = oneChunkCache();
    const plain = Buffer.alloc(CHUNK, 'orbit ');
    const { id, bytes } = encodeChunk(plain);
    await store.put(id, bytes);
    const h = await cache.hold(id);
    assert.ok(h.bytes.equals(plain));
    assert.equal(memory.lentSize, 0);
    h.release();
  });
});
