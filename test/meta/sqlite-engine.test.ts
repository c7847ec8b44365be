// The SQLite metadata engine against a real database file: the namespace rules, contents as
// extents with chunk reference counts, extended attributes, persistence.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { FileType, type Caller, type Extent, type Ino } from '../../src/meta/contract.js';
import { SqliteEngine } from '../../src/meta/sqlite/engine.js';
import { tempDir } from '../helpers.js';

const me: Caller = { uid: 1000, gid: 1000, umask: 0o022 };
const file = { type: FileType.Regular, perm: 0o644 };
const dir = { type: FileType.Directory, perm: 0o755 };
const id = (n: number): string => n.toString(16).padStart(64, '0');
const chunk = (n: number, size: number) => ({ id: id(n), size, storedSize: Math.ceil(size / 2) });

describe('SQLite metadata engine', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let db: SqliteEngine;
  let root: Ino;
  const dbPath = (): string => path.join(tmp.dir, 'meta.db');

  before(async () => {
    tmp = await tempDir('meta');
    db = new SqliteEngine(dbPath());
    root = db.createVolume('home', me).root;
  });
  after(async () => {
    db.close();
    await tmp.remove();
  });

  it('creates volumes with a root directory, refusing duplicates and bad names', () => {
    const attr = db.getattr(root);
    assert.equal(attr.mode, FileType.Directory | 0o755);
    assert.deepEqual([attr.uid, attr.gid, attr.nlink], [1000, 1000, 2]);
    assert.throws(() => db.createVolume('home', me), { code: 'EEXIST' });
    assert.throws(() => db.createVolume('../x', me), { code: 'EINVAL' });
    assert.deepEqual(db.volumes().map((v) => v.name), ['home']);
  });

  it('creates files, directories and symlinks, and finds them by name', () => {
    const d = db.create(root, 'docs', dir, me).attr;
    const f = db.create(d.ino, 'a.txt', file, me).attr;
    const l = db.create(d.ino, 'link', { type: FileType.Symlink, perm: 0o777, target: 'a.txt' }, me).attr;
    assert.equal(db.lookup(d.ino, 'a.txt').ino, f.ino);
    assert.equal(db.lookup(d.ino, '..').ino, root);
    assert.equal(db.lookup(d.ino, '.').ino, d.ino);
    assert.equal(db.readlink(l.ino), 'a.txt');
    assert.equal(l.size, 5);
    assert.equal(db.getattr(root).nlink, 3);
    assert.throws(() => db.create(d.ino, 'a.txt', file, me), { code: 'EEXIST' });
    assert.throws(() => db.lookup(d.ino, 'nope'), { code: 'ENOENT' });
    assert.throws(() => db.lookup(f.ino, 'x'), { code: 'ENOTDIR' });
    assert.throws(() => db.create(d.ino, 'n'.repeat(256), file, me), { code: 'ENAMETOOLONG' });
  });

  it('reports the attributes of the directories each change of names touched', () => {
    const a = db.create(root, 'ta', dir, me);
    assert.deepEqual(a.dirs, [db.getattr(root)]);
    const f = db.create(a.attr.ino, 'f', file, me);
    assert.deepEqual(f.dirs, [db.getattr(a.attr.ino)]);
    assert.deepEqual(db.link(f.attr.ino, root, 'tf').dirs, [db.getattr(root)]);
    const b = db.create(root, 'tb', dir, me).attr;
    assert.deepEqual(db.rename(a.attr.ino, 'f', b.ino, 'g', 0).dirs, [db.getattr(a.attr.ino), db.getattr(b.ino)]);
    assert.deepEqual(db.rename(root, 'tb', root, 'tc', 0).dirs, [db.getattr(root)]);
    assert.deepEqual(db.unlink(root, 'tf').dirs, [db.getattr(root)]);
    const rootBefore = db.getattr(root).nlink;
    const gone = db.rmdir(root, 'ta');
    assert.deepEqual(gone, { ino: a.attr.ino, orphaned: true, dirs: [db.getattr(root)] });
    assert.equal(gone.dirs[0]!.nlink, rootBefore - 1);
  });

  it('gives new entries a set-group-ID directory\'s group, and its bit to new directories', () => {
    const g = db.create(root, 'shared', { type: FileType.Directory, perm: 0o2775 }, { uid: 0, gid: 50, umask: 0 }).attr;
    const f = db.create(g.ino, 'f', file, me).attr;
    const sub = db.create(g.ino, 'sub', dir, me).attr;
    assert.equal(f.gid, 50);
    assert.equal(sub.gid, 50);
    assert.equal(sub.mode & 0o2000, 0o2000);
  });

  it('keeps an unlinked inode the caller holds open until removeOrphan, and drops others at once', () => {
    const f = db.create(root, 'tmpfile', file, me).attr;
    db.link(f.ino, root, 'second');
    assert.equal(db.getattr(f.ino).nlink, 2);
    assert.deepEqual(db.unlink(root, 'tmpfile'), { ino: f.ino, orphaned: false, dirs: [db.getattr(root)] });
    assert.deepEqual(db.unlink(root, 'second', f.ino), { ino: f.ino, orphaned: true, dirs: [db.getattr(root)] });
    assert.equal(db.getattr(f.ino).nlink, 0);
    assert.equal(db.removeOrphan(f.ino), true);
    assert.throws(() => db.getattr(f.ino), { code: 'ENOENT' });
    const g = db.create(root, 'unheld', file, me).attr;
    assert.deepEqual(db.unlink(root, 'unheld', f.ino), { ino: g.ino, orphaned: true, dirs: [db.getattr(root)] });
    assert.throws(() => db.getattr(g.ino), { code: 'ENOENT' });
    assert.throws(() => db.link(db.lookup(root, 'docs').ino, root, 'dirlink'), { code: 'EPERM' });
  });

  it('removes only empty directories', () => {
    const d = db.create(root, 'full', dir, me).attr;
    db.create(d.ino, 'x', file, me);
    assert.throws(() => db.rmdir(root, 'full'), { code: 'ENOTEMPTY' });
    assert.throws(() => db.rmdir(d.ino, 'x'), { code: 'ENOTDIR' });
    assert.throws(() => db.unlink(root, 'full'), { code: 'EISDIR' });
    db.unlink(d.ino, 'x');
    const before = db.getattr(root).nlink;
    db.rmdir(root, 'full');
    assert.equal(db.getattr(root).nlink, before - 1);
    assert.throws(() => db.getattr(d.ino), { code: 'ENOENT' });
  });

  it('renames: replaces, refuses with NOREPLACE, exchanges, moves directories, refuses loops', () => {
    const a = db.create(root, 'ra', file, me).attr;
    const b = db.create(root, 'rb', file, me).attr;
    assert.throws(() => db.rename(root, 'ra', root, 'rb', 1), { code: 'EEXIST' });
    db.rename(root, 'ra', root, 'rb', 2);
    assert.equal(db.lookup(root, 'ra').ino, b.ino);
    assert.equal(db.lookup(root, 'rb').ino, a.ino);
    assert.deepEqual(db.rename(root, 'ra', root, 'rb', 0).replaced, { ino: a.ino, orphaned: true });
    assert.equal(db.lookup(root, 'rb').ino, b.ino);
    assert.throws(() => db.getattr(a.ino), { code: 'ENOENT' });

    const p1 = db.create(root, 'p1', dir, me).attr;
    const p2 = db.create(root, 'p2', dir, me).attr;
    const child = db.create(p1.ino, 'child', dir, me).attr;
    db.rename(p1.ino, 'child', p2.ino, 'moved', 0);
    assert.equal(db.getattr(p1.ino).nlink, 2);
    assert.equal(db.getattr(p2.ino).nlink, 3);
    assert.equal(db.lookup(child.ino, '..').ino, p2.ino);
    assert.throws(() => db.rename(root, 'p2', child.ino, 'inside', 0), { code: 'EINVAL' });
    db.create(child.ino, 'occupant', file, me);
    assert.throws(() => db.rename(root, 'p1', p2.ino, 'moved', 0), { code: 'ENOTEMPTY' });
    assert.throws(() => db.rename(root, 'rb', p2.ino, 'moved', 0), { code: 'EISDIR' });
  });

  it('lists directories in pages whose cookies stay valid while entries change', () => {
    const d = db.create(root, 'list', dir, me).attr;
    for (let i = 0; i < 50; i++) db.create(d.ino, `e${i}`, file, me);
    const first = db.readdir(d.ino, 0, 20);
    assert.deepEqual(first.slice(0, 2).map((e) => e.name), ['.', '..']);
    db.unlink(d.ino, 'e0');
    db.create(d.ino, 'late', file, me);
    const names = first.map((e) => e.name);
    for (let cookie = first.at(-1)!.cookie; ; ) {
      const page = db.readdir(d.ino, cookie, 20);
      if (page.length === 0) break;
      names.push(...page.map((e) => e.name));
      cookie = page.at(-1)!.cookie;
    }
    assert.equal(new Set(names).size, names.length, 'an entry was listed twice');
    assert.ok(names.includes('late') && names.includes('e49'));
    assert.equal(names.length, 2 + 50 + 1);
    const withAttrs = db.readdir(d.ino, 0, 5, true);
    assert.deepEqual(withAttrs.map((e) => e.attr?.ino), withAttrs.map((e) => e.ino));
    assert.equal(withAttrs[2]!.attr!.mode & 0o170000, FileType.Regular);
  });

  it('replaces extents in a range, trimming what sticks out, and counts chunk references', () => {
    const f = db.create(root, 'data', file, me).attr;
    const t = { sec: 1, nsec: 0 };
    const whole: Extent[] = [
      { offset: 0, length: 100, chunk: id(1), chunkOffset: 0 },
      { offset: 100, length: 100, chunk: id(2), chunkOffset: 0 },
    ];
    db.writeExtents(f.ino, 0, 200, whole, [chunk(1, 100), chunk(2, 100)], 200, t, 0);
    // Overwrite [50, 150) with one new chunk: 1 and 2 are trimmed, both still referenced.
    const after = db.writeExtents(f.ino, 50, 100, [{ offset: 50, length: 100, chunk: id(3), chunkOffset: 0 }], [chunk(3, 100)], 200, t, 0);
    assert.equal(after.size, 200);
    assert.deepEqual(db.extents(f.ino, 0, 200), [
      { offset: 0, length: 50, chunk: id(1), chunkOffset: 0 },
      { offset: 50, length: 100, chunk: id(3), chunkOffset: 0 },
      { offset: 150, length: 50, chunk: id(2), chunkOffset: 50 },
    ]);
    assert.deepEqual(db.extents(f.ino, 120, 10).map((e) => e.chunk), [id(3)]);
    assert.deepEqual(db.unreferencedChunks(10), []);
    // Truncate to 40: chunks 3 and 2 lose their last references.
    db.setattr(f.ino, { size: 40 });
    assert.deepEqual(db.extents(f.ino, 0, 1000), [{ offset: 0, length: 40, chunk: id(1), chunkOffset: 0 }]);
    assert.deepEqual(db.unreferencedChunks(10).map((c) => c.id).sort(), [id(2), id(3)]);
    assert.deepEqual(db.claimUnreferenced(10, Date.now()).map((c) => c.id).sort(), [id(2), id(3)]);
    db.forgetChunks([id(2), id(3)]);
    assert.deepEqual(db.unreferencedChunks(10), []);
    assert.throws(() => db.writeExtents(f.ino, 0, 10, [{ offset: 5, length: 10, chunk: id(1), chunkOffset: 0 }], [], 10, t, 0), { code: 'EINVAL' });
    db.unlink(root, 'data');
    assert.deepEqual(db.unreferencedChunks(10).map((c) => c.id), [id(1)]);
  });

  it('reports usage: logical bytes, stored bytes of distinct chunks, inodes', () => {
    const t = { sec: 1, nsec: 0 };
    const a = db.create(root, 'u1', file, me).attr;
    const b = db.create(root, 'u2', file, me).attr;
    db.writeExtents(a.ino, 0, 1000, [{ offset: 0, length: 1000, chunk: id(9), chunkOffset: 0 }], [chunk(9, 1000)], 1000, t, 0);
    db.writeExtents(b.ino, 0, 1000, [{ offset: 0, length: 1000, chunk: id(9), chunkOffset: 0 }], [chunk(9, 1000)], 1000, t, 0);
    const u = db.usage('home');
    assert.ok(u.logicalBytes >= 2000);
    assert.ok(u.storedBytes >= 500 && u.storedBytes < u.logicalBytes);
    assert.ok(u.uniqueBytes >= 1000 && u.uniqueBytes < u.logicalBytes, 'one chunk, two files: counted once');
    assert.throws(() => db.usage('nope'), { code: 'ENOENT' });
  });

  it('keeps extended attributes, honouring XATTR_CREATE and XATTR_REPLACE', () => {
    const f = db.create(root, 'x', file, me).attr;
    db.setxattr(f.ino, 'user.a', Buffer.from('1'), 0);
    assert.throws(() => db.setxattr(f.ino, 'user.a', Buffer.from('2'), 1), { code: 'EEXIST' });
    assert.throws(() => db.setxattr(f.ino, 'user.b', Buffer.from('2'), 2), { code: 'ENODATA' });
    db.setxattr(f.ino, 'user.a', Buffer.from('3'), 2);
    assert.equal(db.getxattr(f.ino, 'user.a').toString(), '3');
    assert.deepEqual(db.listxattr(f.ino), ['user.a']);
    db.removexattr(f.ino, 'user.a');
    assert.throws(() => db.getxattr(f.ino, 'user.a'), { code: 'ENODATA' });
    assert.throws(() => db.removexattr(f.ino, 'user.a'), { code: 'ENODATA' });
  });

  it('keeps everything across a sync, close and reopen', () => {
    const f = db.create(root, 'persist', file, me).attr;
    db.setattr(f.ino, { mode: 0o600, mtime: { sec: 123, nsec: 456 } });
    db.sync();
    db.close();
    db = new SqliteEngine(dbPath());
    const back = db.lookup(root, 'persist');
    assert.equal(back.mode & 0o7777, 0o600);
    assert.deepEqual(back.mtime, { sec: 123, nsec: 456 });
  });

  it('removes a volume only when empty unless forced', () => {
    const v = db.createVolume('scratch', me);
    db.create(v.root, 'f', file, me);
    assert.throws(() => db.removeVolume('scratch', false), { code: 'ENOTEMPTY' });
    db.removeVolume('scratch', true);
    assert.deepEqual(db.volumes().map((x) => x.name), ['home']);
    assert.throws(() => db.getattr(v.root), { code: 'ENOENT' });
  });

  it('recovers after a crash: inodes kept for open files that are gone are removed', () => {
    const { root: r } = db.createVolume('crashy', me);
    const held = db.create(r, 'held', file, me).attr;
    db.create(r, 'kept', file, me);
    db.unlink(r, 'held', held.ino); // the process dies here, holding it
    assert.equal(db.getattr(held.ino).nlink, 0, 'a held inode outlives its last name');
    assert.equal(db.recoverVolume('crashy'), 1);
    assert.throws(() => db.getattr(held.ino), { code: 'ENOENT' });
    assert.equal(db.lookup(r, 'kept').nlink, 1);
  });

  it('keeps pinned chunks from gc, and tells a writer which chunks gc is deleting', () => {
    const t = Date.now();
    const mine = (x: { id: string }): boolean => x.id === id(100) || x.id === id(101);
    db.pinChunks([chunk(100, 10), chunk(101, 10)], 7, t + 60_000);
    assert.deepEqual(db.claimUnreferenced(10, t).filter(mine), [], 'pinned chunks were claimed');
    // A pin lapses (a writer that died): gc may claim the chunk then.
    const claimed = db.claimUnreferenced(10, t + 120_000).filter(mine).map((c) => c.id);
    assert.deepEqual(claimed.sort(), [id(100), id(101)]);
    assert.deepEqual(db.pinChunks([chunk(100, 10)], 8, t + 60_000), [id(100)], 'a claimed chunk must be reported as being deleted');
    const staleOf = (before: number): string[] => db.staleClaims(before).filter((x) => mine({ id: x })).sort();
    assert.deepEqual(staleOf(t + 1), [], 'claims made at t + 120 s are not stale at t');
    assert.deepEqual(staleOf(t + 200_000), [id(100), id(101)]);
    db.forgetChunks([id(100), id(101)]);
    assert.deepEqual(db.pinChunks([chunk(100, 10)], 9, t + 60_000), [], 'forgotten: pinned afresh');
    // Naming it in writeExtents drops the writer's pin: once unreferenced again, gc may take it.
    const f = db.create(root, 'pinned', file, me).attr;
    db.writeExtents(f.ino, 0, 10, [{ offset: 0, length: 10, chunk: id(100), chunkOffset: 0 }], [chunk(100, 10)], 10, { sec: 1, nsec: 0 }, 9);
    db.unlink(root, 'pinned');
    assert.deepEqual(db.claimUnreferenced(10, t).filter(mine).map((c) => c.id), [id(100)]);
  });
});
