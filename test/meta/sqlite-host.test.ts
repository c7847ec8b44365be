// The embedded engine as Orbit uses it: asynchronous, on its own thread, errors intact.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileType, MetaError } from '../../src/meta/contract.js';
import { SqliteMeta } from '../../src/meta/sqlite/host.js';
import { tempDir } from '../helpers.js';

const me = { uid: 0, gid: 0, umask: 0o022 };

describe('SQLite engine on its thread', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let meta: SqliteMeta;

  before(async () => {
    tmp = await tempDir('meta-host');
    meta = await SqliteMeta.open(path.join(tmp.dir, 'meta.db'));
  });
  after(async () => {
    await meta.close();
    await tmp.remove();
  });

  it('answers operations, many in flight, in order of arrival', async () => {
    const { root } = await meta.createVolume('v', me);
    const made = await Promise.all(Array.from({ length: 100 }, (_, i) => meta.create(root, `f${i}`, { type: FileType.Regular, perm: 0o644 }, me)));
    assert.equal(new Set(made.map((m) => m.attr.ino)).size, 100);
    const listed = await meta.readdir(root, 0, 1000);
    assert.equal(listed.length, 102);
    assert.equal((await meta.lookup(root, 'f42')).ino, made[42]!.attr.ino);
  });

  it('rejects with MetaError carrying the errno code', async () => {
    const { root } = (await meta.volumes())[0]!;
    await assert.rejects(meta.lookup(root, 'missing'), (err: Error) => err instanceof MetaError && err.code === 'ENOENT');
    await assert.rejects(meta.create(root, 'f1', { type: FileType.Regular, perm: 0o644 }, me), { code: 'EEXIST' });
  });

  it('returns extended attributes as Buffers, and syncs', async () => {
    const { root } = (await meta.volumes())[0]!;
    const f = await meta.lookup(root, 'f1');
    await meta.setxattr(f.ino, 'user.k', Buffer.from('value'), 0);
    const v = await meta.getxattr(f.ino, 'user.k');
    assert.ok(Buffer.isBuffer(v));
    assert.equal(v.toString(), 'value');
    await meta.sync();
  });

  it('fails clearly on a file that is not a database', async () => {
    const bogus = path.join(tmp.dir, 'not-a-db');
    await (await import('node:fs/promises')).writeFile(bogus, 'this is not sqlite'.repeat(100));
    await assert.rejects(SqliteMeta.open(bogus), /^Error: cannot open the metadata database .*not-a-db: file is not a database$/);
  });
});
