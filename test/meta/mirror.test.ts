// Mirrors of the metadata database (src/meta/sqlite/mirror.ts), on real SQLite files: every change
// lands identically on the mirrors; a lost primary comes back from the newest mirror; a mirror
// deleted, left behind, or handed a change the primary never committed is made again; a disk that
// is gone hands its mirror to the next; two engines (two processes) writing in turn keep every copy
// identical; and the pool decides where mirrors go.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { FileType, RENAME_EXCHANGE, RENAME_NOREPLACE, RENAME_WHITEOUT, type Caller, type Ino } from '../../src/meta/contract.js';
import { SqliteEngine } from '../../src/meta/sqlite/engine.js';
import { MirroredEngine, poolMirrorSites, type MirrorLog, type MirrorPlace, type MirrorSites } from '../../src/meta/sqlite/mirror.js';
import { Disk } from '../../src/pool/disk.js';
import { newPoolConfig, updatePoolConfig, writePoolConfig } from '../../src/pool/pool-config.js';
import { tempDir } from '../helpers.js';

const me: Caller = { uid: 1000, gid: 1000, umask: 0o022 };
const file = { type: FileType.Regular, perm: 0o644 };
const dir = { type: FileType.Directory, perm: 0o755 };
const id = (n: number): string => n.toString(16).padStart(64, '0');
const chunk = (n: number, size: number) => ({ id: id(n), size, storedSize: size });

/** Every row of every table, in key order (rowids too, where the table has them); the time of
 * the last sync() aside (each copy records its own). */
function dump(file: string): Record<string, unknown[]> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const tables = db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[];
    const out: Record<string, unknown[]> = {};
    for (const t of tables) {
      const columns = (db.prepare(`SELECT count(*) FROM pragma_table_info('${t}')`).pluck().get() as number) + 1;
      const order = Array.from({ length: columns }, (_, i) => i + 1).join(', ');
      let rows: unknown[];
      try {
        rows = db.prepare(`SELECT rowid AS rowid_, * FROM "${t}" ORDER BY ${order}`).all();
      } catch {
        rows = db.prepare(`SELECT * FROM "${t}" ORDER BY ${order.slice(0, order.lastIndexOf(','))}`).all(); // WITHOUT ROWID
      }
      out[t] = t === 'settings' ? rows.filter((r) => (r as { key: string }).key !== 'synced') : rows;
    }
    return out;
  } finally {
    db.close();
  }
}

function fixedSites(places: MirrorPlace[]): MirrorSites {
  return { current: () => places, all: () => places };
}

function recorder(): { log: MirrorLog; lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> } {
  const lines: Array<{ level: string; msg: string; fields: Record<string, unknown> }> = [];
  return { log: (level, fields, msg) => lines.push({ level, msg, fields }), lines };
}

/** The disks whose mirrors were seeded, in the log lines from `from` on. */
function seeded(lines: Array<{ msg: string; fields: Record<string, unknown> }>, from = 0): unknown[] {
  return lines.slice(from).filter((l) => l.msg === 'metadata mirror seeded from the primary').map((l) => l.fields.disk);
}

/** A snapshot of a database file as it is now (its WAL included), as a file of its own. */
function snapshot(from: string, to: string): void {
  rmSync(to, { force: true });
  const db = new Database(from, { readonly: true });
  db.prepare('VACUUM INTO ?').run(to);
  db.close();
}

/** Puts `copy` where `file` is, as a disk restored from an old backup would. */
function putBack(copy: string, file: string): void {
  for (const f of [file, `${file}-wal`, `${file}-shm`]) rmSync(f, { force: true });
  renameSync(copy, file);
}

describe('metadata mirrors', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let primary: string;
  let places: MirrorPlace[];
  const mirrorFile = (i: number): string => path.join(places[i]!.dir, 'meta.db');
  let engine: MirroredEngine | undefined;

  beforeEach(async () => {
    tmp = await tempDir('mirror');
    mkdirSync(path.join(tmp.dir, 'home'));
    primary = path.join(tmp.dir, 'home', 'meta.db');
    places = [1, 2, 3].map((n) => {
      mkdirSync(path.join(tmp.dir, `d${n}`));
      return { disk: `d${n}`, dir: path.join(tmp.dir, `d${n}`, 'meta') };
    });
  });
  afterEach(async () => {
    engine?.close();
    engine = undefined;
    await tmp.remove();
  });

  const open = (log?: MirrorLog, sites = fixedSites(places)): MirroredEngine => new MirroredEngine(primary, { sites, log, checkMs: 0 });

  /** Every kind of change there is, and a refused one. */
  function workload(e: MirroredEngine): { root: Ino } {
    const { root } = e.op('createVolume', 'v', me);
    const docs = e.op('create', root, 'docs', dir, me).attr;
    const a = e.op('create', docs.ino, 'a.txt', file, me).attr;
    const b = e.op('create', docs.ino, 'b.txt', file, me).attr;
    e.op('create', root, 'link', { type: FileType.Symlink, perm: 0o777, target: 'docs/a.txt' }, me);
    e.op('create', root, 'fifo', { type: FileType.Fifo, perm: 0o600 }, me);
    e.op('link', a.ino, root, 'hard');
    e.op('setxattr', docs.ino, 'user.orbit.policy', Buffer.from('replicate:3'), 0);
    e.op('create', docs.ino, 'inherits', file, me);
    e.op('setxattr', a.ino, 'user.k', Buffer.from('v'), 0);
    e.op('setxattr', b.ino, 'user.gone', Buffer.from('x'), 0);
    e.op('removexattr', b.ino, 'user.gone');
    e.op('pinChunks', [chunk(1, 100), chunk(2, 100)], 7, Date.now() + 60_000);
    e.op('writeExtents', a.ino, 0, 200, [
      { offset: 0, length: 100, chunk: id(1), chunkOffset: 0 },
      { offset: 100, length: 100, chunk: id(2), chunkOffset: 0 },
    ], [chunk(1, 100), chunk(2, 100)], 200, { sec: 1_700_000_000, nsec: 5 }, 7);
    e.op('pinChunks', [chunk(3, 50)], 8, Date.now() + 60_000);
    e.op('unpinChunks', 8);
    e.op('setattr', a.ino, { size: 150, mode: 0o600, atime: 'now' });
    e.op('rename', docs.ino, 'a.txt', root, 'moved.txt', 0);
    e.op('rename', root, 'moved.txt', root, 'hard', RENAME_EXCHANGE);
    e.op('rename', docs.ino, 'b.txt', root, 'b2', RENAME_WHITEOUT, me);
    e.op('rename', root, 'b2', docs.ino, 'inherits', 0);
    assert.throws(() => e.op('rename', root, 'fifo', root, 'link', RENAME_NOREPLACE), { code: 'EEXIST' });
    assert.throws(() => e.op('create', root, 'docs', dir, me), { code: 'EEXIST' });
    const held = e.op('create', root, 'held', file, me).attr;
    e.op('unlink', root, 'held', held.ino);
    e.op('removeOrphan', held.ino);
    const sub = e.op('create', docs.ino, 'sub', dir, me).attr;
    e.op('create', sub.ino, 'x', file, me);
    e.op('unlink', sub.ino, 'x');
    e.op('rmdir', docs.ino, 'sub');
    e.op('setattr', (e.op('lookup', root, 'hard') as { ino: number }).ino, { size: 0 });
    e.op('claimUnreferenced', 10, Date.now() + 120_000);
    e.op('forgetChunks', [id(2)]);
    e.op('claimOrphans', [id(40), id(41)], Date.now());
    e.op('repairRefcounts');
    e.op('createVolume', 'w', me);
    const w = e.op('volumes').find((v) => v.name === 'w')!;
    e.op('create', w.root, 'f', file, me);
    e.op('removeVolume', 'w', true);
    e.op('recoverVolume', 'v');
    e.sync();
    return { root };
  }

  function assertCopiesEqual(files: string[]): void {
    const want = dump(primary);
    for (const f of files) assert.deepEqual(dump(f), want, `${f} differs from the primary`);
  }

  it('applies every change to two mirrors, identically (times and inode numbers too)', () => {
    engine = open();
    workload(engine);
    assert.deepEqual(engine.mirrorDisks, ['d1', 'd2']);
    assert.equal(existsSync(places[2]!.dir), false, 'a third mirror was made');
    assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
    const seq = dump(primary).settings!.find((r) => (r as { key: string }).key === 'seq') as { value: string };
    assert.ok(parseInt(seq.value, 10) > 30, `seq ${seq.value}`);
  });

  it('does nothing more than the engine without mirrors', () => {
    engine = open(undefined, fixedSites([]));
    workload(engine);
    assert.deepEqual(engine.mirrorDisks, []);
    assert.deepEqual(places.map((p) => existsSync(p.dir)), [false, false, false]);
  });

  it('restores a lost primary from the mirror with the highest count, and re-seeds the one behind', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const { root } = workload(engine);
    const old = path.join(tmp.dir, 'old.db');
    snapshot(mirrorFile(0), old);
    engine.op('create', root, 'after-snapshot', file, me);
    const want = dump(primary);
    engine.close();
    engine = undefined;
    putBack(old, mirrorFile(0)); // d1's mirror is behind; d2's has everything
    for (const f of [primary, `${primary}-wal`, `${primary}-shm`]) rmSync(f, { force: true });
    const mark = lines.length;

    engine = open(log);
    assert.deepEqual(dump(primary), want);
    const restored = lines.filter((l) => l.msg === 'metadata database restored from a mirror');
    assert.equal(restored.length, 1);
    assert.equal(restored[0]!.fields.from, mirrorFile(1));
    assert.equal(engine.op('lookup', root, 'after-snapshot').mode & FileType.Regular, FileType.Regular);

    engine.op('create', root, 'after-restore', file, me);
    assert.deepEqual(seeded(lines, mark), ['d1']);
    assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
  });

  it('sets aside a primary that is not a database and restores it', () => {
    const { log, lines } = recorder();
    engine = open(log);
    workload(engine);
    const want = dump(primary);
    engine.close();
    engine = undefined;
    rmSync(`${primary}-wal`, { force: true });
    rmSync(`${primary}-shm`, { force: true });
    writeFileSync(primary, 'garbage'.repeat(1000));
    engine = open(log);
    assert.deepEqual(dump(primary), want);
    assert.equal(readdirSync(path.dirname(primary)).filter((f) => f.startsWith('meta.db.damaged-')).length, 1);
    assert.equal(lines.filter((l) => l.msg === 'metadata database restored from a mirror').length, 1);
  });

  it('restores the primary when it is deleted while open, losing nothing', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const { root } = workload(engine);
    for (const f of [primary, `${primary}-wal`, `${primary}-shm`]) rmSync(f, { force: true });
    engine.op('create', root, 'after-loss', file, me);
    assert.equal(lines.filter((l) => l.msg === 'metadata database restored from a mirror').length, 1);
    assert.equal(engine.op('lookup', root, 'after-loss').nlink, 1);
    assert.equal(engine.op('lookup', root, 'docs').nlink, 2);
    assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
  });

  it('makes a mirror again when its directory is deleted', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const { root } = workload(engine);
    rmSync(places[0]!.dir, { recursive: true });
    engine.op('create', root, 'after-rm', file, me);
    assert.ok(existsSync(mirrorFile(0)));
    assert.deepEqual(engine.mirrorDisks, ['d1', 'd2']);
    assert.deepEqual(lines.filter((l) => l.level === 'error'), []);
    assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
  });

  it('hands the mirror of a disk that is gone to the next disk, with one log line', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const { root } = workload(engine);
    rmSync(path.dirname(places[1]!.dir), { recursive: true }); // the disk d2, not just its mirror
    engine.op('create', root, 'after-loss', file, me);
    engine.op('create', root, 'and-after', file, me);
    assert.deepEqual(engine.mirrorDisks, ['d1', 'd3']);
    assert.equal(existsSync(places[1]!.dir), false, 'the lost disk was made again');
    const errors = lines.filter((l) => l.level === 'error');
    assert.equal(errors.length, 1, JSON.stringify(errors));
    assert.equal(errors[0]!.fields.disk, 'd2');
    assertCopiesEqual([mirrorFile(0), mirrorFile(2)]);
  });

  it('re-seeds a mirror left behind (an old copy put back)', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const { root } = workload(engine);
    const old = path.join(tmp.dir, 'old.db');
    snapshot(mirrorFile(1), old);
    for (let i = 0; i < 20; i++) engine.op('create', root, `late${i}`, file, me);
    engine.close();
    putBack(old, mirrorFile(1));
    const mark = lines.length;
    engine = open(log);
    engine.op('create', root, 'next', file, me);
    assert.deepEqual(seeded(lines, mark), ['d2']);
    assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
  });

  it('re-seeds a mirror holding a change the primary never committed, though the counts agree', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const { root } = workload(engine);
    // A process died between a mirror's commit and the primary's; then another, mirroring
    // elsewhere, made a different change: both files now count as many changes.
    const ghost = new SqliteEngine(mirrorFile(0));
    ghost.create(root, 'ghost', file, me);
    ghost.close();
    const other = new SqliteEngine(primary);
    other.create(root, 'real', file, me);
    other.close();
    const seqOf = (f: string): string => (dump(f).settings!.find((r) => (r as { key: string }).key === 'seq') as { value: string }).value;
    assert.equal(parseInt(seqOf(mirrorFile(0)), 10), parseInt(seqOf(primary), 10));
    assert.notEqual(seqOf(mirrorFile(0)), seqOf(primary));

    const mark = lines.length;
    engine.op('create', root, 'next', file, me);
    assert.deepEqual(seeded(lines, mark).sort(), ['d1', 'd2']);
    assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
    assert.throws(() => engine!.op('lookup', root, 'ghost'), { code: 'ENOENT' });
  });

  it('keeps every copy identical with two engines (two processes) writing in turn', () => {
    const { log, lines } = recorder();
    engine = open(log);
    const other = open(log);
    try {
      const { root } = workload(engine);
      const d = [engine, other];
      for (let i = 0; i < 60; i++) {
        const e = d[i % 2]!;
        const made = e.op('create', root, `n${i}`, i % 3 === 0 ? dir : file, me).attr;
        if (i % 5 === 0) e.op('setattr', made.ino, { mode: 0o640 });
        if (i % 7 === 0) d[(i + 1) % 2]!.op('rename', root, `n${i}`, root, `r${i}`, 0);
        if (i % 11 === 0) d[(i + 1) % 2]!.op(i % 3 === 0 ? 'rmdir' : 'unlink', root, i % 7 === 0 ? `r${i}` : `n${i}`);
      }
      assert.deepEqual(seeded(lines), ['d1', 'd2'], 'seeded more than once');
      assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);

      // The other process mirrors elsewhere for a while (it saw another pool): this one's mirrors
      // fall behind and are caught up before they get a change.
      const elsewhere = new MirroredEngine(primary, { sites: fixedSites([places[2]!]), log, checkMs: 0 });
      try {
        elsewhere.op('create', root, 'elsewhere', file, me);
        engine.op('create', root, 'here', file, me);
        assertCopiesEqual([mirrorFile(0), mirrorFile(1)]);
        elsewhere.op('create', root, 'elsewhere-again', file, me);
        assertCopiesEqual([mirrorFile(2)]);
      } finally {
        elsewhere.close();
      }
    } finally {
      other.close();
    }
  });
});

describe('where the pool puts mirrors', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let home: string;
  const poolId = 'pool-under-test';

  before(async () => {
    tmp = await tempDir('mirror-sites');
    home = path.join(tmp.dir, 'home');
    const first = path.join(home, 'pool');
    await Disk.label(first, poolId, 'home');
    await writePoolConfig(home, newPoolConfig(poolId, { id: 'home', path: first, state: 'active', added: new Date().toISOString() }));
  });
  after(async () => {
    await tmp.remove();
  });

  async function addDisk(diskId: string, state: 'active' | 'draining' = 'active'): Promise<string> {
    const p = path.join(tmp.dir, diskId);
    await Disk.label(p, poolId, diskId);
    await updatePoolConfig(home, (c) => {
      c.disks.push({ id: diskId, path: p, state, added: new Date().toISOString() });
    });
    return p;
  }

  it('mirrors on the first two other active disks in a fixed order, from three disks on', async () => {
    const sites = poolMirrorSites(home);
    await addDisk('a');
    assert.deepEqual(sites.current(), [], 'two disks: no mirrors');
    assert.deepEqual(sites.all().map((p) => p.disk), ['a']);
    await addDisk('b');
    const two = sites.current();
    assert.deepEqual(two.map((p) => p.disk).sort(), ['a', 'b']);
    assert.deepEqual(two.map((p) => p.dir).sort(), [path.join(tmp.dir, 'a', 'meta'), path.join(tmp.dir, 'b', 'meta')]);
    const c = await addDisk('c');
    const d = await addDisk('d');
    const order = sites.current().map((p) => p.disk);
    assert.deepEqual(order.slice().sort(), ['a', 'b', 'c', 'd']);
    assert.deepEqual(poolMirrorSites(home).current().map((p) => p.disk), order, 'another process ranks them alike');

    // A wiped disk (no label) is passed over; a draining one holds no mirror; a failed one is
    // not even looked at for a restore.
    await rm(path.join(c, 'orbit-disk.json'));
    await updatePoolConfig(home, (cfg) => {
      cfg.disks.find((x) => x.id === 'd')!.state = 'draining';
    });
    assert.deepEqual(sites.current().map((p) => p.disk), order.filter((x) => x !== 'c' && x !== 'd'));
    assert.deepEqual(sites.all().map((p) => p.disk), order.filter((x) => x !== 'c'));
    await updatePoolConfig(home, (cfg) => {
      cfg.disks.find((x) => x.id === 'd')!.state = 'failed';
    });
    assert.deepEqual(sites.all().map((p) => p.disk), order.filter((x) => x !== 'c' && x !== 'd'));
    assert.ok(d);
  });
});
