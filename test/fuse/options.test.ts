// Init choices: the writeback cache batches small writes into large requests; max_write is what
// the kernel agreed. Extended attributes: names outside the filesystem's namespaces are refused by
// the binding, and inodes that came without attributes have getxattr answered without a request.
// flushWrittenOnly: the close of a handle that wrote nothing costs no flush request.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { open, readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import type { CreateReply } from '../../src/fuse/contract.js';
import { py } from '../helpers.js';
import { mountMemFs } from './memfs-mount.js';

/** The name of an errno number, as Node knows it (ENOTSUP and EOPNOTSUPP are one on Linux). */
const errnoName = (n: number): string => Object.entries(constants.errno).find(([name, v]) => v === n && name !== 'ENOTSUP')![0];

/** getxattr through the mount: the value, or the errno's name. */
async function getxattr(file: string, name: string): Promise<string> {
  const r = await py('import os, sys\ntry:\n  print(os.getxattr(sys.argv[1], sys.argv[2]).decode())\nexcept OSError as e:\n  print(-e.errno)', file, name);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout.trim();
  return /^-\d+$/.test(out) ? errnoName(-Number(out)) : out;
}

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

  it('answers getxattr itself for inodes without extended attributes, and refuses names outside its namespaces', async () => {
    const asked: string[] = [];
    const m = await mountMemFs({ xattrNamespaces: ['user.', 'security.'], computedXattrs: 'user.derived.' }, (fs) => {
      // A new file has no attributes: say so with the entry.
      const create = fs.create.bind(fs);
      fs.create = (ctx, parent, name, mode, flags) => ({ ...(create(ctx, parent, name, mode, flags) as CreateReply), noXattrs: true });
      const get = fs.getxattr.bind(fs);
      fs.getxattr = (ctx, ino, name) => {
        asked.push(name);
        return get(ctx, ino, name);
      };
    });
    try {
      const file = path.join(m.dir, 'plain');
      await (await open(file, 'w')).close();
      assert.equal(await getxattr(file, 'user.a'), 'ENODATA');
      assert.equal(await getxattr(file, 'security.selinux'), 'ENODATA');
      assert.deepEqual(asked, [], 'answered by the binding');
      // Derived attributes are always asked.
      assert.equal(await getxattr(file, 'user.derived.size'), 'ENODATA');
      assert.deepEqual(asked, ['user.derived.size']);
      // Outside the namespaces: not supported, as ACLs on a filesystem without them.
      assert.equal(await getxattr(file, 'system.posix_acl_access'), 'EOPNOTSUPP');
      assert.equal(await getxattr(file, 'trusted.x'), 'EOPNOTSUPP');
      const set = await py('import os, sys\ntry:\n  os.setxattr(sys.argv[1], "system.x", b"1")\nexcept OSError as e:\n  print(e.errno)', file);
      assert.equal(Number(set.stdout), constants.errno.EOPNOTSUPP);
      assert.deepEqual(asked, ['user.derived.size']);
      // A setxattr through the mount ends the answering.
      await py('import os, sys\nos.setxattr(sys.argv[1], "user.a", b"blue")', file);
      assert.equal(await getxattr(file, 'user.a'), 'blue');
      // A change behind the kernel's back is seen once the filesystem says so.
      const other = path.join(m.dir, 'other');
      await (await open(other, 'w')).close();
      const ino = m.fs.inoOf('other');
      m.fs.setxattr({ uid: 0, gid: 0, pid: 0, umask: 0 }, ino, 'user.b', Buffer.from('green'), 0);
      assert.equal(await getxattr(other, 'user.b'), 'ENODATA', 'still answered from the mark');
      m.session.xattrsChanged(ino);
      assert.equal(await getxattr(other, 'user.b'), 'green');
    } finally {
      await m.close();
    }
  });
  it('with flushWrittenOnly, a flush reaches the filesystem only for handles that carried a write', async () => {
    const flushed = { on: [] as number[], off: [] as number[] };
    const opened: number[] = [];
    const mountWith = (flushWrittenOnly: boolean): ReturnType<typeof mountMemFs> =>
      mountMemFs({ flushWrittenOnly }, (fs) => {
        const openFile = fs.open.bind(fs);
        fs.open = (ctx, ino, flags) => {
          const reply = openFile(ctx, ino, flags) as { fh: number };
          opened.push(reply.fh);
          return reply;
        };
        fs.flush = (_ctx, _ino, fh) => void flushed[flushWrittenOnly ? 'on' : 'off'].push(fh);
      });
    const [m, plain] = await Promise.all([mountWith(true), mountWith(false)]);
    try {
      // Without the option every close is flushed.
      const other = path.join(plain.dir, 'f');
      await (await open(other, 'w')).close();
      await (await open(other, 'r')).close();
      assert.equal(flushed.off.length, 2);
      // With it: created and closed empty, opened and closed to be read or written: nothing to flush.
      const file = path.join(m.dir, 'f');
      await (await open(file, 'w')).close();
      assert.equal(await readFile(file, 'utf8'), '');
      await (await open(file, 'r+')).close();
      assert.deepEqual(flushed.on, []);
      // Written, truncated or allocated through the handle: its close is the filesystem's.
      const writer = await open(file, 'r+');
      await writer.write('blue');
      await writer.close();
      const truncater = await open(file, 'r+');
      await truncater.truncate(2);
      await truncater.close();
      const r = await py('import os, sys\nfd = os.open(sys.argv[1], os.O_RDWR)\nos.posix_fallocate(fd, 0, 8192)\nos.close(fd)', file);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(flushed.on, opened.slice(-3), 'one flush for each handle that wrote, its own');
      // A handle that wrote stays a writer's, whatever it does next.
      const again = await open(file, 'r+');
      await again.write('x', 0, 'utf8');
      await again.read(Buffer.alloc(1), 0, 1, 0);
      await again.close();
      assert.deepEqual(flushed.on, opened.slice(-4));
      assert.equal(await readFile(file, 'utf8'), 'xl' + '\0'.repeat(8190));
    } finally {
      await Promise.all([m.close(), plain.close()]);
    }
  });
});
