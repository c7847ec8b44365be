// The change numbers behind a peer's index of a shared volume: changesSince lists every inode of
// the volume made or changed after a number (attributes, entries, content map, xattrs, targets)
// and those removed, page by page without splitting a change, and nothing of other volumes; a
// version-1 database is upgraded in place with everything in it counted as changed.
import assert from 'node:assert/strict';
import path from 'node:path';
import Database from 'better-sqlite3';
import { after, before, describe, it } from 'node:test';
import { FileType, type Caller, type Ino, type VolumeChanges } from '../../src/meta/contract.js';
import { SqliteEngine } from '../../src/meta/sqlite/engine.js';
import { tempDir } from '../helpers.js';

const me: Caller = { uid: 1000, gid: 1000, umask: 0o022 };
const file = { type: FileType.Regular, perm: 0o644 };
const dir = { type: FileType.Directory, perm: 0o755 };
const id = (n: number): string => n.toString(16).padStart(64, '0');
const t = { sec: 1, nsec: 0 };

const inos = (c: VolumeChanges): Ino[] => c.inodes.map((i) => i.attr.ino).sort((a, b) => a - b);

/** Every page after `from`, `limit` at a time, merged as a peer would apply them. */
function allPages(db: SqliteEngine, volume: string, from: number, limit: number): { pages: VolumeChanges[]; upTo: number } {
  const pages: VolumeChanges[] = [];
  let at = from;
  for (;;) {
    const page = db.changesSince(volume, at, limit);
    pages.push(page);
    assert.ok(page.upTo >= at);
    at = page.upTo;
    if (!page.more) return { pages, upTo: at };
  }
}

/** A volume's tree as text, inode numbers left out (they differ between stores). */
function tree(db: SqliteEngine, dirIno: Ino, at = ''): string[] {
  const out: string[] = [];
  for (const e of db.readdir(dirIno, 0, 100_000)) {
    if (e.name === '.' || e.name === '..') continue;
    const a = db.getattr(e.ino);
    const where = `${at}/${e.name}`;
    const xattrs = db.listxattr(e.ino).map((n) => `${n}=${db.getxattr(e.ino, n).toString('hex')}`).join(',');
    let what = '';
    if ((a.mode & 0o170000) === FileType.Symlink) what = `-> ${db.readlink(e.ino)}`;
    if ((a.mode & 0o170000) === FileType.Regular) what = JSON.stringify(db.extents(e.ino, 0, a.size));
    out.push(`${where} ${a.mode.toString(8)} ${a.uid}:${a.gid} n${a.nlink} ${a.size} ${a.mtime.sec}.${a.mtime.nsec} ${xattrs} ${what}`);
    if ((a.mode & 0o170000) === FileType.Directory) out.push(...tree(db, e.ino, where));
  }
  return out.sort();
}

describe('change numbers for peers\' indexes', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let db: SqliteEngine;
  let root: Ino;

  before(async () => {
    tmp = await tempDir('changes');
    db = new SqliteEngine(path.join(tmp.dir, 'meta.db'));
    root = db.createVolume('home', me).root;
    db.createVolume('other', me);
  });
  after(async () => {
    db.close();
    await tmp.remove();
  });

  let mark = 0;
  let docs: Ino;
  let a: Ino;
  let link: Ino;

  it('lists everything after 0: attributes, entries, content maps, targets and xattrs', () => {
    docs = db.create(root, 'docs', dir, me).attr.ino;
    a = db.create(docs, 'a.txt', file, me).attr.ino;
    link = db.create(docs, 'link', { type: FileType.Symlink, perm: 0o777, target: 'a.txt' }, me).attr.ino;
    db.writeExtents(a, 0, 200, [{ offset: 0, length: 200, chunk: id(1), chunkOffset: 0 }], [{ id: id(1), size: 200, storedSize: 100 }], 200, t, 0);
    db.setxattr(a, 'user.note', Buffer.from('hi'), 0);
    const c = db.changesSince('home', 0, 1000);
    assert.equal(c.more, false);
    assert.equal(c.upTo, parseInt(db.seq(), 10));
    assert.deepEqual(inos(c), [root, docs, a, link].sort((x, y) => x - y));
    const byIno = new Map(c.inodes.map((i) => [i.attr.ino, i]));
    assert.deepEqual(byIno.get(root)!.entries, [{ name: 'docs', ino: docs, type: FileType.Directory }]);
    assert.deepEqual(byIno.get(docs)!.entries!.map((e) => e.name), ['a.txt', 'link']);
    assert.deepEqual(byIno.get(a)!.extents, [{ offset: 0, length: 200, chunk: id(1), chunkOffset: 0 }]);
    assert.equal(byIno.get(a)!.attr.size, 200);
    assert.deepEqual(byIno.get(a)!.xattrs!.map(([n, v]) => [n, v.toString()]), [['user.note', 'hi']]);
    assert.equal(byIno.get(link)!.target, 'a.txt');
    for (const i of c.inodes) assert.ok(i.changed > 0 && i.changed <= c.upTo);
    assert.deepEqual(c.removed, []);
    assert.deepEqual(db.changesSince('home', c.upTo, 1000).inodes, []);
    mark = c.upTo;
  });

  it('lists what each kind of change touched, and only that', () => {
    db.setattr(a, { mode: 0o600 });
    assert.deepEqual(inos(db.changesSince('home', mark, 100)), [a]);
    mark = parseInt(db.seq(), 10);
    db.rename(docs, 'a.txt', root, 'b.txt', 0);
    const moved = db.changesSince('home', mark, 100);
    assert.ok([root, docs].every((i) => inos(moved).includes(i)), 'both directories, whose entries changed');
    assert.ok(!inos(moved).includes(link));
    mark = moved.upTo;
    db.removexattr(a, 'user.note');
    assert.deepEqual(inos(db.changesSince('home', mark, 100)), [a]);
    mark = parseInt(db.seq(), 10);
    db.unlink(docs, 'link');
    const gone = db.changesSince('home', mark, 100);
    assert.deepEqual(gone.removed, [link]);
    assert.deepEqual(inos(gone), [docs]);
    mark = gone.upTo;
  });

  it('leaves other volumes out', () => {
    const otherRoot = db.volumes().find((v) => v.name === 'other')!.root;
    db.create(otherRoot, 'x', file, me);
    assert.deepEqual(db.changesSince('home', mark, 100).inodes, []);
    assert.equal(db.changesSince('other', mark, 100).inodes.length, 2);
    assert.throws(() => db.changesSince('nope', 0, 10), { code: 'ENOENT' });
  });

  it('pages without splitting a change, and the pages add up to the whole', () => {
    const start = parseInt(db.seq(), 10);
    for (let i = 0; i < 25; i++) db.create(docs, `f${i}`, file, me);
    const whole = db.changesSince('home', start, 1000);
    const { pages, upTo } = allPages(db, 'home', start, 4);
    assert.ok(pages.length >= 7, `${pages.length} pages`);
    assert.equal(upTo, whole.upTo);
    // docs changes with every create: it is in the page of its last change only once the pages
    // are applied in order, as a peer does; the union is the same set.
    const seen = new Set(pages.flatMap((p) => inos(p)));
    assert.deepEqual([...seen].sort((x, y) => x - y), inos(whole));
    // One change touching several inodes (a rename between directories) is one page, even past
    // the limit.
    const before = parseInt(db.seq(), 10);
    const sub = db.create(root, 'sub', dir, me).attr.ino;
    const mid = parseInt(db.seq(), 10);
    db.rename(docs, 'f0', sub, 'f0', 0);
    const page = db.changesSince('home', mid, 1);
    assert.ok(page.inodes.length >= 2, 'the rename\'s inodes together');
    assert.equal(new Set(page.inodes.map((i) => i.changed)).size, 1);
    assert.ok(db.changesSince('home', before, 1).more);
  });

  it('applied page by page to an attached volume on another store, gives the same tree', () => {
    const peer = new SqliteEngine(path.join(tmp.dir, 'peer.db'));
    try {
      const attached = peer.attachVolume('home-from-a', me, { peer: 'A', volume: 'home' });
      assert.deepEqual(attached.origin, { peer: 'A', volume: 'home', syncedTo: 0 });
      const sync = (): void => {
        const from = peer.volumes().find((v) => v.name === 'home-from-a')!.origin!.syncedTo;
        for (const page of allPages(db, 'home', from, 7).pages) peer.applyChanges('home-from-a', page);
        assert.deepEqual(tree(peer, attached.root), tree(db, root));
      };
      sync();
      // More changes: a move between directories, a removal, new content, an xattr, a symlink.
      const sub = db.lookup(root, 'sub').ino;
      db.rename(sub, 'f0', root, 'moved', 0);
      db.unlink(docs, 'f1');
      db.rmdir(root, 'sub');
      const g = db.create(docs, 'g', file, me).attr.ino;
      db.writeExtents(g, 0, 300, [{ offset: 0, length: 300, chunk: id(9), chunkOffset: 0 }], [{ id: id(9), size: 300, storedSize: 10 }], 300, t, 0);
      db.setxattr(g, 'user.x', Buffer.from([0, 1, 2]), 0);
      db.create(root, 'to-g', { type: FileType.Symlink, perm: 0o777, target: 'docs/g' }, me);
      sync();
      assert.throws(() => peer.applyChanges('nope', db.changesSince('home', 0, 10)), { code: 'EINVAL' });
      peer.createVolume('local', me);
      assert.throws(() => peer.applyChanges('local', db.changesSince('home', 0, 10)), { code: 'EINVAL' });
    } finally {
      peer.close();
    }
  });

  it('upgrades a version-1 database in place, counting everything in it as changed', () => {
    const file1 = path.join(tmp.dir, 'v1.db');
    const old = new SqliteEngine(file1);
    const vroot = old.createVolume('home', me).root;
    const f = old.create(vroot, 'kept', file, me).attr.ino;
    old.close();
    // Back to version 1: no change numbers, no tombstones.
    const raw = new Database(file1);
    for (const { name } of raw.prepare("SELECT name FROM sqlite_schema WHERE type = 'trigger'").all() as Array<{ name: string }>) raw.exec(`DROP TRIGGER ${name}`);
    raw.exec('DROP INDEX inodes_by_change; DROP INDEX removed_by_change; DROP TABLE removed_inodes; ALTER TABLE inodes DROP COLUMN changed');
    raw.prepare("UPDATE settings SET value = '1' WHERE key = 'schema'").run();
    raw.close();
    const upgraded = new SqliteEngine(file1);
    try {
      assert.deepEqual(inos(upgraded.changesSince('home', 0, 100)), [vroot, f]);
      const mark1 = parseInt(upgraded.seq(), 10);
      upgraded.unlink(vroot, 'kept');
      assert.deepEqual(upgraded.changesSince('home', mark1, 100).removed, [f]);
    } finally {
      upgraded.close();
    }
  });
});
