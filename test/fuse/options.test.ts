// Init choices: the writeback cache batches small writes into large requests; max_write is what
// the kernel agreed.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';
import { mountMemFs } from './memfs-mount.js';

describe('session options', () => {
  it('with the writeback cache, 4 KiB application writes reach the handler in large requests', async () => {
    const sizes: number[] = [];
    const m = await mountMemFs({ writebackCache: true }, (fs) => {
      const write = fs.write.bind(fs);
      fs.write = (ctx, ino, fh, offset, data, info) => {
        sizes.push(data.length);
        return write(ctx, ino, fh, offset, data, info);
      };
    });
    try {
      const data = randomBytes(8 * 1024 * 1024);
      const file = path.join(m.dir, 'batched');
      const fh = await open(file, 'w');
      for (let off = 0; off < data.length; off += 4096) await fh.write(data, off, 4096, off);
      await fh.sync();
      await fh.close();
      assert.ok((await readFile(file)).equals(data));
      const average = sizes.reduce((a, b) => a + b, 0) / sizes.length;
      assert.ok(average >= 128 * 1024, `average write request ${average} bytes`);
      assert.equal(m.session.connection?.maxWrite, 1024 * 1024);
    } finally {
      await m.close();
    }
  });

  it('caps write requests at maxWrite', async () => {
    const sizes: number[] = [];
    const m = await mountMemFs({ maxWrite: 128 * 1024 }, (fs) => {
      const write = fs.write.bind(fs);
      fs.write = (ctx, ino, fh, offset, data, info) => {
        sizes.push(data.length);
        return write(ctx, ino, fh, offset, data, info);
      };
    });
    try {
      const file = path.join(m.dir, 'capped');
      const fh = await open(file, 'w');
      await fh.write(Buffer.alloc(1024 * 1024, 1), 0, 1024 * 1024, 0);
      await fh.close();
      assert.equal(m.session.connection?.maxWrite, 128 * 1024);
      assert.equal(Math.max(...sizes), 128 * 1024);
    } finally {
      await m.close();
    }
  });
});
