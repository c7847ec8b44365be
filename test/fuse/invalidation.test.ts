// Kernel cache invalidation: a file or name changes behind the kernel's back (as when a peer
// changes it), the session notifies, and the next access sees the change.
import assert from 'node:assert/strict';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { RequestContext } from '../../src/fuse/contract.js';
import { mountMemFs, type MountedMemFs } from './memfs-mount.js';

const ROOT = 1;
const root: RequestContext = { uid: 0, gid: 0, pid: 0, umask: 0o022 };

describe('cache invalidation', () => {
  let m: MountedMemFs;
  const p = (name: string): string => path.join(m.dir, name);

  // Long cache times: without a notification the kernel would keep serving what it has.
  before(async () => {
    m = await mountMemFs({ entryTimeout: 3600, attrTimeout: 3600 });
  });
  after(() => m.close());

  it('drops cached pages on notifyInvalInode: the next read sees the new bytes', async () => {
    await writeFile(p('page'), 'aaaa');
    assert.equal(await readFile(p('page'), 'utf8'), 'aaaa');
    const ino = m.fs.inoOf('page');
    m.fs.replaceContent(ino, Buffer.from('bbbb'));
    assert.equal(await readFile(p('page'), 'utf8'), 'aaaa', 'the kernel should still serve its cached pages');
    await m.session.notifyInvalInode(ino);
    assert.equal(await readFile(p('page'), 'utf8'), 'bbbb');
  });

  it('invalidates a byte range of an open file and its attributes', async () => {
    await writeFile(p('range'), Buffer.alloc(8192, 'x'));
    const fh = await open(p('range'), 'r');
    try {
      await fh.read(Buffer.alloc(8192), 0, 8192, 0);
      assert.equal((await fh.stat()).size, 8192); // writes invalidated the attributes: refetched
      const ino = m.fs.inoOf('range');
      m.fs.replaceContent(ino, Buffer.concat([Buffer.alloc(4096, 'x'), Buffer.alloc(8192, 'y')]));
      assert.equal((await fh.stat()).size, 8192, 'attributes should still be cached');
      await m.session.notifyInvalInode(ino, 4096, 4096);
      assert.equal((await fh.stat()).size, 12288);
      const again = Buffer.alloc(12288);
      const { bytesRead } = await fh.read(again, 0, 12288, 0);
      assert.equal(bytesRead, 12288);
      assert.equal(again.subarray(4096).toString(), 'y'.repeat(8192));
    } finally {
      await fh.close();
    }
  });

  it('drops a cached name on notifyInvalEntry', async () => {
    await writeFile(p('old-name'), 'moved');
    await stat(p('old-name'));
    m.fs.rename(root, ROOT, 'old-name', ROOT, 'new-name', 0);
    assert.ok(await stat(p('old-name')), 'the kernel should still have the old name cached');
    await m.session.notifyInvalEntry(ROOT, 'old-name');
    await assert.rejects(stat(p('old-name')), { code: 'ENOENT' });
    assert.equal(await readFile(p('new-name'), 'utf8'), 'moved');
  });

  it('announces a deletion on notifyDelete', async () => {
    await writeFile(p('doomed'), 'bye');
    await stat(p('doomed'));
    const ino = m.fs.inoOf('doomed');
    m.fs.unlink(root, ROOT, 'doomed');
    assert.ok(await stat(p('doomed')));
    await m.session.notifyDelete(ROOT, ino, 'doomed');
    await assert.rejects(stat(p('doomed')), { code: 'ENOENT' });
  });

  it('treats notifying an inode the kernel does not hold as done', async () => {
    await m.session.notifyInvalInode(987654);
    await m.session.notifyInvalEntry(ROOT, 'never-looked-up');
  });
});
