// The metadata database protected by the pool, as users run it: a store on four directory disks
// made with the orbit commands, a mounted volume, files written through it. The database has two
// identical mirrors on the other disks; a disk holding one is deleted (the next disk takes its
// mirror); then meta.db itself is lost, and the next command restores it from a mirror. Every file,
// with its names, modes, links, symlinks, extended attributes and contents, is still there.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, readlink, rename, rm, symlink, unlink, writeFile, chmod, link } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { dropCaches } from '../../bench/lib.js';
import { orbit, orbitOk, py, run, tempDir, waitFor } from '../helpers.js';

const KiB = 1024;

const ok = orbitOk;

/** Every row of every table of a database, the time of its last sync aside. */
function dump(file: string): Record<string, unknown[]> {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    const out: Record<string, unknown[]> = {};
    for (const t of db.prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name").pluck().all() as string[]) {
      const rows = db.prepare(`SELECT * FROM "${t}"`).all();
      out[t] = rows.filter((r) => t !== 'settings' || (r as { key: string }).key !== 'synced').map((r) => JSON.stringify(r)).sort();
    }
    return out;
  } finally {
    db.close();
  }
}

/** What a tree holds, as `ls -lR`, `getfattr -d` and checksums would tell. */
async function describeTree(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const p = path.join(dir, name);
      const s = await lstat(p);
      const rel = path.relative(root, p);
      let what = `mode=${s.mode.toString(8)} nlink=${s.nlink} size=${s.size} mtime=${s.mtimeMs}`;
      if (s.isSymbolicLink()) what += ` -> ${await readlink(p)}`;
      else if (s.isFile()) what += ` sha256=${createHash('sha256').update(await readFile(p)).digest('hex')}`;
      const x = await py('import os,sys; p=sys.argv[1]; print(sorted((n, os.getxattr(p, n, follow_symlinks=False).hex()) for n in os.listxattr(p, follow_symlinks=False)))', p);
      what += ` xattrs=${x.stdout.trim()}`;
      out[rel] = what;
      if (s.isDirectory()) await walk(p);
    }
  };
  await walk(root);
  return out;
}

describe('the metadata database on a pool of four disks, through a mount', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let home: string;
  let mnt: string;
  const disks: string[] = [];
  let tree: Record<string, string>;
  const mirrorsOf = (): string[] => disks.filter((d) => existsSync(path.join(d, 'meta', 'meta.db')));

  before(async () => {
    tmp = await tempDir('mirror-mount');
    home = path.join(tmp.dir, 'home');
    mnt = path.join(tmp.dir, 'mnt');
    await ok('init', '--home', home);
    for (let i = 1; i <= 3; i++) {
      const d = path.join(tmp.dir, `disk${i}`);
      await ok('pool', 'add-disk', d, '--home', home);
      disks.push(d);
    }
    await mkdir(mnt);
    await ok('mount', '--home', home, '--background', mnt);
  });

  after(async () => {
    await orbit('umount', mnt);
    await tmp.remove();
  });

  it('keeps two mirrors identical to meta.db through every kind of change', async () => {
    await mkdir(path.join(mnt, 'docs', 'deep'), { recursive: true });
    for (let i = 0; i < 12; i++) await writeFile(path.join(mnt, 'docs', `f${i}`), randomBytes(i * 97 * KiB + i));
    await writeFile(path.join(mnt, 'docs', 'deep', 'note.txt'), 'kept\n');
    await symlink('docs/deep/note.txt', path.join(mnt, 'note'));
    await link(path.join(mnt, 'docs', 'f3'), path.join(mnt, 'hard'));
    await chmod(path.join(mnt, 'docs', 'f4'), 0o600);
    await rename(path.join(mnt, 'docs', 'f5'), path.join(mnt, 'docs', 'deep', 'f5-moved'));
    await unlink(path.join(mnt, 'docs', 'f6'));
    assert.equal((await run('setfattr', ['-n', 'user.colour', '-v', 'blue', path.join(mnt, 'docs', 'f7')])).code, 0);
    await writeFile(path.join(mnt, 'docs', 'f8'), randomBytes(300 * KiB)); // a rewrite: old chunks go
    // Another process changes the database too (gc forgets the old chunks), then the mount again:
    // both mirror in step, so neither has to re-seed a mirror.
    assert.match(await ok('gc', '--home', home), /deleted [1-9]\d* unreferenced chunks/);
    await writeFile(path.join(mnt, 'after-gc'), 'x');
    tree = await describeTree(mnt);
    const seeds = (await readFile(path.join(home, 'run', 'default.log'), 'utf8')).split('\n').filter((l) => l.includes('metadata mirror seeded'));
    assert.equal(seeds.length, 2, seeds.join('\n'));
    assert.match(seeds.join(''), /"why":"it is missing"/);

    const mirrors = mirrorsOf();
    assert.equal(mirrors.length, 2, `mirrors on ${mirrors.join(', ')}`);
    const want = dump(path.join(home, 'meta.db'));
    for (const d of mirrors) assert.deepEqual(dump(path.join(d, 'meta', 'meta.db')), want, `the mirror on ${d} differs`);
  });

  it('hands the mirror of a deleted disk to the next disk, and reads every file', async () => {
    const [lost] = mirrorsOf();
    const spare = disks.find((d) => !mirrorsOf().includes(d))!;
    await rm(lost!, { recursive: true });
    // The mount notices within a second (the disk's label is gone) and mirrors on the spare disk
    // at its next change.
    await waitFor(async () => {
      await writeFile(path.join(mnt, 'docs', 'deep', 'tick'), String(Date.now()));
      return existsSync(path.join(spare, 'meta', 'meta.db'));
    }, 'a mirror on the spare disk');
    await writeFile(path.join(mnt, 'after-loss'), 'still here\n');
    await rm(path.join(mnt, 'docs', 'deep', 'tick'));
    assert.equal(existsSync(lost!), false, 'the deleted disk was made again');
    const want = dump(path.join(home, 'meta.db'));
    assert.deepEqual(mirrorsOf().sort(), disks.filter((d) => d !== lost).sort());
    for (const d of mirrorsOf()) assert.deepEqual(dump(path.join(d, 'meta', 'meta.db')), want, `the mirror on ${d} differs`);

    await dropCaches();
    const now = await describeTree(mnt);
    assert.equal(now['after-loss']?.includes('nlink=1'), true);
    delete now['after-loss'];
    tree.docs = now.docs!; // (its mtime moved with the tick file)
    tree['docs/deep'] = now['docs/deep']!;
    assert.deepEqual(now, tree);
    tree = await describeTree(mnt);
  });

  it('restores a lost meta.db from a mirror, with every file intact', async () => {
    await ok('umount', mnt);
    for (const f of ['meta.db', 'meta.db-wal', 'meta.db-shm']) await rm(path.join(home, f), { force: true });
    // The next command that opens the store restores it, and says so.
    const listed = await orbit('volume', 'list', '--json', '--home', home);
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual((JSON.parse(listed.stdout) as Array<{ name: string }>).map((v) => v.name), ['default']);
    assert.match(listed.stderr, /metadata database restored from a mirror/);
    await ok('mount', '--home', home, '--background', mnt);
    await dropCaches();
    assert.deepEqual(await describeTree(mnt), tree);
    assert.equal(await readFile(path.join(mnt, 'docs', 'deep', 'note.txt'), 'utf8'), 'kept\n');
  });
});
