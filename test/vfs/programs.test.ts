// Real programs on an Orbit mount work as they do on a local disk. Each leans on a different part
// of POSIX, as users' programs will:
// - git: hundreds of small files created, written and renamed into place, packs read through mmap,
//   hard links (a local clone links the objects), checkouts rewriting the work tree;
// - SQLite (through python3): in WAL mode, a shared-memory file mapped by every connection, fcntl
//   locks, fsync on every commit, and recovery from a WAL left behind; in rollback-journal mode, a
//   journal created, fsync'd and deleted around every transaction;
// - tar: symlinks, hard links, a sparse file, xattrs and nanosecond mtimes, both written to the
//   mount and read back from it;
// - rsync -aHAX: temporary files renamed over their targets, times, modes and xattrs set after the
//   data, and a second run that must find nothing changed (times and sizes, then checksums).
// Results are compared with the same work on a plain directory, so that any difference is Orbit's.
// The programs are required (scripts/setup.sh installs them): a missing one fails its test, naming
// the package to install, instead of skipping it silently.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, link, lstat, mkdir, open, readdir, readFile, readlink, stat, symlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ok, py, run, tempDir, type RunResult } from '../helpers.js';
import { mountFreshStore, type MountedStore } from './orbit-mount.js';

const MiB = 1024 * 1024;
/** Past the mount's attribute timeout (1 s): stat then answers from Orbit, not the kernel's cache. */
const ATTR_CACHE_MS = 1100;

/** The Debian/Ubuntu package that provides each program the tests drive. */
const PACKAGE_OF: Readonly<Record<string, string>> = {
  git: 'git', rsync: 'rsync', tar: 'tar', gzip: 'gzip', python3: 'python3', diff: 'diffutils', cmp: 'diffutils',
  cp: 'coreutils', df: 'coreutils', getfattr: 'attr', setfattr: 'attr',
};

/** Fails (never skips) when a program is missing, saying which package provides it. */
async function requirePrograms(...names: string[]): Promise<void> {
  const missing: string[] = [];
  for (const name of names) {
    if ((await run('sh', ['-c', 'command -v "$1"', 'sh', name])).code !== 0) missing.push(name);
  }
  if (missing.length > 0) {
    const packages = [...new Set(missing.map((n) => PACKAGE_OF[n] ?? n))];
    assert.fail(`not installed: ${missing.join(', ')}. Install the apt package(s) ${packages.join(' ')} (scripts/setup.sh should list them).`);
  }
}

/** Runs a program that must succeed; the failure message carries its output. */
async function must(cmd: string, args: readonly string[], env?: NodeJS.ProcessEnv): Promise<RunResult> {
  const res = await run(cmd, args, { timeoutMs: 120_000, ...(env ? { env } : {}) });
  assert.equal(res.code, 0, `${cmd} ${args.join(' ')} exited ${res.code}\nstdout: ${res.stdout}\nstderr: ${res.stderr}`);
  return res;
}

/** git isolated from the machine's and the user's configuration, with a fixed identity. */
const GIT_ENV: NodeJS.ProcessEnv = {
  ...process.env,
  GIT_CONFIG_GLOBAL: '/dev/null',
  GIT_CONFIG_NOSYSTEM: '1',
  GIT_AUTHOR_NAME: 'Orbit Test', GIT_AUTHOR_EMAIL: 'test@orbit.invalid',
  GIT_COMMITTER_NAME: 'Orbit Test', GIT_COMMITTER_EMAIL: 'test@orbit.invalid',
};
const git = (repo: string, ...args: string[]): Promise<RunResult> => must('git', ['-C', repo, ...args], GIT_ENV);

/** What a copy must preserve of a tree: types, modes, sizes, link targets, which names share an
 * inode, mtimes to the nanosecond (not of symlinks, which tar does not restore) and user xattrs.
 * Directory sizes are left out: they are each filesystem's own business. */
interface ManifestEntry {
  path: string;
  type: 'dir' | 'file' | 'symlink' | 'other';
  mode: string;
  size?: number;
  nlink?: number;
  /** The first path (in walk order) of the same inode: hard links. */
  sameInodeAs?: string;
  target?: string;
  mtimeNs?: string;
  xattrs?: Record<string, string>;
}

async function manifest(root: string): Promise<ManifestEntry[]> {
  const xattrs = await userXattrs(root);
  const firstPathOf = new Map<bigint, string>();
  const out: ManifestEntry[] = [];
  // One file at a time: the test process serves the mount, and its thread pool must not fill with
  // calls waiting on the mount.
  const walk = async (rel: string): Promise<void> => {
    const abs = path.join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const type = st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'symlink' : st.isFile() ? 'file' : 'other';
    const entry: ManifestEntry = { path: rel || '.', type, mode: (Number(st.mode) & 0o7777).toString(8) };
    if (type === 'file') {
      entry.size = Number(st.size);
      entry.nlink = Number(st.nlink);
      const first = firstPathOf.get(st.ino);
      if (first === undefined) firstPathOf.set(st.ino, entry.path);
      else entry.sameInodeAs = first;
    }
    if (type === 'symlink') entry.target = await readlink(abs);
    else entry.mtimeNs = st.mtimeNs.toString();
    const x = xattrs.get(entry.path);
    if (x) entry.xattrs = x;
    out.push(entry);
    if (type === 'dir') for (const name of (await readdir(abs)).sort()) await walk(path.join(rel, name));
  };
  await walk('');
  return out;
}

/** Asserts two manifests agree, naming each entry that differs and how (a whole-array diff of a
 * few hundred entries would bury the difference). */
function assertSameTree(actual: ManifestEntry[], expected: ManifestEntry[], what: string): void {
  const byPath = (entries: ManifestEntry[]): Map<string, ManifestEntry> => new Map(entries.map((e) => [e.path, e]));
  const got = byPath(actual);
  const want = byPath(expected);
  const differences: string[] = [];
  const differingFields = new Map<string, number>();
  for (const p of new Set([...want.keys(), ...got.keys()])) {
    const a = got.get(p);
    const e = want.get(p);
    if (!a || !e) {
      differences.push(`${p}: ${a ? 'not in the original' : 'missing'}`);
      differingFields.set('presence', (differingFields.get('presence') ?? 0) + 1);
      continue;
    }
    for (const key of new Set([...Object.keys(e), ...Object.keys(a)]) as Set<keyof ManifestEntry>) {
      const [x, y] = [JSON.stringify(a[key]), JSON.stringify(e[key])];
      if (x === y) continue;
      differences.push(`${p}: ${key} is ${x}, expected ${y}`);
      differingFields.set(key, (differingFields.get(key) ?? 0) + 1);
    }
  }
  const fields = [...differingFields].map(([k, n]) => `${k} ${n}`).join(', ');
  const shown = differences.slice(0, 12).join('\n  ');
  const more = differences.length > 12 ? `\n  ...and ${differences.length - 12} more` : '';
  assert.equal(differences.length, 0, `${what}: ${differences.length} difference(s) from the original (${fields}):\n  ${shown}${more}`);
}

/** user.* xattrs of every file under root, by relative path, values in hex. */
async function userXattrs(root: string): Promise<Map<string, Record<string, string>>> {
  const res = await must('getfattr', ['-R', '-h', '-d', '-m', '^user\\.', '-e', 'hex', '--absolute-names', root]);
  const byPath = new Map<string, Record<string, string>>();
  let current: Record<string, string> | undefined;
  for (const line of res.stdout.split('\n')) {
    if (line.startsWith('# file: ')) {
      current = {};
      byPath.set(path.relative(root, line.slice('# file: '.length)) || '.', current);
    } else if (current && line.includes('=')) {
      const at = line.indexOf('=');
      current[line.slice(0, at)] = line.slice(at + 1);
    }
  }
  return byPath;
}

/** A tree with what archivers and sync tools must carry over: nested directories, text and binary
 * files, an empty file and directory, unusual modes, symlinks (to a file, to a directory,
 * dangling, absolute), hard links, a sparse file, xattrs, and mtimes with sub-second parts. */
async function makeTree(root: string, textFiles: number): Promise<void> {
  const dirs = ['src', 'src/lib', 'src/lib/deep', 'docs', 'docs/notes', 'bin', 'private'];
  for (const d of dirs) await mkdir(path.join(root, d), { recursive: true });
  for (let i = 0; i < textFiles; i++) {
    await writeFile(path.join(root, dirs[i % 5]!, `file-${i}.txt`), `${i}\n${randomBytes((i * 37) % 6000).toString('base64')}\n`);
  }
  await writeFile(path.join(root, 'bin', 'blob.bin'), randomBytes(3 * MiB + 123));
  await writeFile(path.join(root, 'bin', 'run.sh'), '#!/bin/sh\necho hello\n');
  await chmod(path.join(root, 'bin', 'run.sh'), 0o755);
  await writeFile(path.join(root, 'private', 'secret'), 'shh\n');
  await chmod(path.join(root, 'private', 'secret'), 0o600);
  await chmod(path.join(root, 'private'), 0o700);
  await writeFile(path.join(root, 'empty'), '');
  await mkdir(path.join(root, 'empty-dir'));
  await symlink('src/file-0.txt', path.join(root, 'to-file'));
  await symlink('src/lib', path.join(root, 'to-dir'));
  await symlink('nowhere/at/all', path.join(root, 'dangling'));
  await symlink('/etc/hostname', path.join(root, 'absolute'));
  await link(path.join(root, 'src', 'file-0.txt'), path.join(root, 'docs', 'hard-0.txt'));
  await link(path.join(root, 'bin', 'blob.bin'), path.join(root, 'blob-again.bin'));
  await link(path.join(root, 'bin', 'blob.bin'), path.join(root, 'docs', 'notes', 'blob-third.bin'));
  const sparse = await open(path.join(root, 'sparse.img'), 'w');
  await sparse.write('head', 0);
  await sparse.write('middle', 8 * MiB + 5);
  await sparse.write('tail', 16 * MiB - 4);
  await sparse.close();
  await ok('setfattr', ['-n', 'user.color', '-v', 'blue', path.join(root, 'src', 'file-5.txt')]);
  await ok('setfattr', ['-n', 'user.binary', '-v', '0x00ff10', path.join(root, 'docs')]);
  await ok('setfattr', ['-n', 'user.empty', path.join(root, 'bin', 'blob.bin')]);
  await ok('setfattr', ['-n', 'user.sparse', '-v', 'yes', path.join(root, 'sparse.img')]);
  // Last, deepest first: creating entries above would move the directories' mtimes again.
  const past = (i: number): number => 1_600_000_000 + i * 86_400 + 0.123456;
  await utimes(path.join(root, 'src', 'file-10.txt'), past(1), past(2));
  await utimes(path.join(root, 'sparse.img'), past(3), past(4));
  for (const [i, d] of [...dirs].reverse().entries()) await utimes(path.join(root, d), past(10 + i), past(20 + i));
}

/** Python's sqlite3: `write` builds a database (10,000 rows in 10 transactions, small transactions,
 * a delete/update, a rolled-back delete) and prints a summary; `check` prints the summary of an
 * existing one. The data comes from a seeded generator, so every run prints the same summary. In
 * WAL mode, `write` ends without closing (no checkpoint): the next open recovers from the WAL. */
const SQLITE_SCRIPT = String.raw`
import hashlib, os, random, sqlite3, sys
path, mode, action = sys.argv[1], sys.argv[2], sys.argv[3]

def summary(con):
    h = hashlib.sha256()
    for row in con.execute("SELECT id, name, n, payload FROM items ORDER BY id"):
        h.update(repr(row[:3]).encode())
        h.update(row[3])
    tags = con.execute("SELECT count(*), coalesce(sum(item), 0) FROM tags").fetchone()
    integrity = con.execute("PRAGMA integrity_check").fetchone()[0]
    items = con.execute("SELECT count(*) FROM items").fetchone()[0]
    return f"integrity_check={integrity} items={items} tags={tags[0]}/{tags[1]} sha256={h.hexdigest()}"

con = sqlite3.connect(path, isolation_level=None)
if action == "write":
    got = con.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]
    assert got == mode, f"journal_mode is {got}"
    con.execute("PRAGMA synchronous=FULL")
    rnd = random.Random(42)
    con.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, n INTEGER NOT NULL, payload BLOB NOT NULL)")
    con.execute("CREATE INDEX items_name ON items (name)")
    con.execute("CREATE TABLE tags (item INTEGER NOT NULL REFERENCES items (id), tag TEXT NOT NULL)")
    for batch in range(10):
        con.execute("BEGIN")
        con.executemany("INSERT INTO items (name, n, payload) VALUES (?, ?, ?)",
            [(f"item-{i:05d}", i, rnd.randbytes(rnd.randrange(20, 400))) for i in range(batch * 1000, batch * 1000 + 1000)])
        con.execute("COMMIT")
    for i in range(10):
        con.execute("INSERT INTO tags VALUES (?, ?)", (i * 97 % 10000 + 1, f"tag-{i}"))
    con.execute("BEGIN")
    con.execute("DELETE FROM items WHERE n % 7 = 0 AND id NOT IN (SELECT item FROM tags)")
    con.execute("UPDATE items SET n = n * 3, payload = CAST(payload || x'00ff' AS BLOB) WHERE n % 5 = 0")
    con.execute("COMMIT")
    con.execute("BEGIN")
    con.execute("DELETE FROM items")
    con.execute("ROLLBACK")
    print(summary(con), flush=True)
    if mode == "wal":
        os._exit(0)
else:
    got = con.execute("PRAGMA journal_mode").fetchone()[0]
    assert got == mode, f"journal_mode is {got}"
    print(summary(con))
con.close()
`;

async function sqlite(db: string, mode: 'wal' | 'delete', action: 'write' | 'check'): Promise<string> {
  const res = await py(SQLITE_SCRIPT, db, mode, action);
  assert.equal(res.code, 0, `sqlite ${action} (${mode}) on ${db} exited ${res.code}: ${res.stderr}`);
  return res.stdout.trim();
}

describe('real programs work on the mount as on a local disk', () => {
  let m: MountedStore;
  let plain: { dir: string; remove: () => Promise<void> };
  const onMount = (...parts: string[]): string => path.join(m.dir, ...parts);
  const onPlain = (...parts: string[]): string => path.join(plain.dir, ...parts);

  before(async () => {
    m = await mountFreshStore();
    plain = await tempDir('programs-plain');
  });
  after(async () => {
    await m?.close();
    await plain?.remove();
  });

  it('has every program these tests drive', async () => {
    await requirePrograms(...Object.keys(PACKAGE_OF));
  });

  it('git: commits two hundred files and a binary, branches, checks out, packs (gc), verifies (fsck) and clones', async () => {
    await requirePrograms('git', 'cp', 'diff');
    const source = onPlain('git-source');
    await mkdir(source);
    for (let d = 0; d < 8; d++) {
      await mkdir(path.join(source, `dir-${d}`, 'sub'), { recursive: true });
      for (let i = 0; i < 25; i++) {
        const where = i % 2 === 0 ? `dir-${d}` : `dir-${d}/sub`;
        await writeFile(path.join(source, where, `f-${i}.txt`), `dir ${d} file ${i}\n${randomBytes(200 + i * 40).toString('hex')}\n`);
      }
    }
    await writeFile(path.join(source, 'data.bin'), randomBytes(MiB + 17));
    await writeFile(path.join(source, 'tool.sh'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    await symlink('dir-0/f-0.txt', path.join(source, 'link'));
    const repo = onMount('repo');
    await must('cp', ['-a', source, repo]);

    await git(repo, 'init', '-q', '-b', 'main');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'initial');
    assert.equal((await git(repo, 'status', '--porcelain')).stdout, '', 'a clean work tree after the commit');
    assert.equal((await git(repo, 'ls-files')).stdout.trim().split('\n').length, 8 * 25 + 3);
    assert.equal((await git(repo, 'log', '--format=%s')).stdout, 'initial\n');
    // The blob in the repository is the file's bytes: the same object id as hashed on a plain disk.
    const blobOnPlain = (await must('git', ['hash-object', path.join(source, 'data.bin')], GIT_ENV)).stdout;
    assert.equal((await git(repo, 'rev-parse', 'HEAD:data.bin')).stdout, blobOnPlain);

    await git(repo, 'checkout', '-q', '-b', 'feature');
    await writeFile(path.join(repo, 'dir-3', 'f-0.txt'), 'rewritten on the feature branch\n');
    await git(repo, 'rm', '-q', 'dir-4/sub/f-1.txt');
    await writeFile(path.join(repo, 'added.txt'), 'only on the feature branch\n');
    await git(repo, 'add', '-A');
    await git(repo, 'commit', '-q', '-m', 'feature work');
    await git(repo, 'checkout', '-q', 'main');
    assert.equal((await git(repo, 'status', '--porcelain')).stdout, '');
    assert.equal(await readFile(path.join(repo, 'dir-3', 'f-0.txt'), 'utf8'), await readFile(path.join(source, 'dir-3', 'f-0.txt'), 'utf8'));
    await stat(path.join(repo, 'dir-4', 'sub', 'f-1.txt'));
    await assert.rejects(stat(path.join(repo, 'added.txt')), { code: 'ENOENT' });
    assert.equal((await git(repo, 'log', '--format=%s', 'main..feature')).stdout, 'feature work\n');
    await must('diff', ['-r', '--no-dereference', '--exclude=.git', source, repo]);

    await git(repo, 'gc', '-q', '--prune=now');
    const objects = (await git(repo, 'count-objects', '-v')).stdout;
    assert.match(objects, /^count: 0$/m, `no loose objects left after gc:\n${objects}`);
    assert.match(objects, /^packs: 1$/m);
    const fsck = await git(repo, 'fsck', '--full', '--strict');
    assert.doesNotMatch(fsck.stdout + fsck.stderr, /error|missing|broken|corrupt/i);

    // A local clone hard-links the object files: links within the mount.
    const clone = onMount('clone');
    await must('git', ['clone', '-q', repo, clone], GIT_ENV);
    await git(clone, 'fsck', '--full', '--strict');
    assert.equal((await git(clone, 'status', '--porcelain')).stdout, '');
    assert.equal((await git(clone, 'rev-parse', 'origin/feature')).stdout, (await git(repo, 'rev-parse', 'feature')).stdout);
    await must('diff', ['-r', '--no-dereference', '--exclude=.git', source, clone]);
  });

  it('SQLite in WAL and rollback-journal modes: transactions, integrity_check, and the same data after a remount', async () => {
    await requirePrograms('python3');
    // The same seeded work on a plain directory gives the summary to expect.
    const modes = ['wal', 'delete'] as const;
    const [expected, written] = await Promise.all([
      Promise.all(modes.map((mode) => sqlite(onPlain(`plain-${mode}.db`), mode, 'write'))),
      Promise.all(modes.map((mode) => sqlite(onMount(`${mode}.db`), mode, 'write'))),
    ]);
    for (const [i, summary] of expected.entries()) assert.match(summary, /^integrity_check=ok items=\d+ /, `${modes[i]} on a plain directory`);
    assert.deepEqual(written, expected);
    // The WAL writer ended without a checkpoint: reopening must replay the WAL from the mount.
    assert.ok((await stat(onMount('wal.db-wal'))).size > 0, 'the WAL is still there to recover from');
    await m.remount();
    const reopened = await Promise.all(modes.map((mode) => sqlite(onMount(`${mode}.db`), mode, 'check')));
    assert.deepEqual(reopened, expected);
  });

  describe('archivers and sync tools', () => {
    let original: string;
    let originalManifest: ManifestEntry[];
    before(async () => {
      original = onPlain('tree');
      await mkdir(original);
      await makeTree(original, 80);
      originalManifest = await manifest(original);
    });

    it('tar: archives to the mount, extracts on it, and archives from it, keeping links, holes, xattrs and times', async () => {
      await requirePrograms('tar', 'gzip', 'diff', 'cmp', 'getfattr', 'setfattr');
      const flags = ['--format=posix', '--xattrs', '--xattrs-include=user.*', '--sparse'];
      const archive = onMount('tree.tgz');
      await must('tar', [...flags, '-czf', archive, '-C', original, '.']);
      await must('gzip', ['-t', archive]);
      const extracted = onMount('tar-extracted');
      await mkdir(extracted);
      await must('tar', [...flags, '-xpzf', archive, '-C', extracted]);
      await must('diff', ['-r', '--no-dereference', original, extracted]);
      await must('cmp', [path.join(original, 'sparse.img'), path.join(extracted, 'sparse.img')]);
      // tar restores a sparse member by seeking over its holes: Orbit keeps them as holes.
      const sparseIno = (await stat(path.join(extracted, 'sparse.img'))).ino;
      const covered = (await m.store.meta.extents(sparseIno, 0, 16 * MiB)).reduce((n, e) => n + e.length, 0);
      assert.ok(covered < MiB, `the extracted sparse file has extents over ${covered} bytes`);

      // And back: an archive of the extracted tree, read through the mount, restores the original.
      const back = onPlain('tar-back');
      await mkdir(back);
      await must('tar', [...flags, '-czf', onPlain('back.tgz'), '-C', extracted, '.']);
      await must('tar', [...flags, '-xpzf', onPlain('back.tgz'), '-C', back]);
      await must('diff', ['-r', '--no-dereference', original, back]);

      // Last, what diff does not see: modes, times, hard links, xattrs. (The attribute cache is
      // bypassed: the kernel may still hold what tar set while the file was open.)
      await new Promise((r) => setTimeout(r, ATTR_CACHE_MS));
      assertSameTree(await manifest(extracted), originalManifest, 'extracted by tar on the mount');
      assertSameTree(await manifest(back), originalManifest, 'archived by tar from the mount');
    });

    it('rsync -aHAX: copies the tree exactly; a second run, and a checksum dry run, find nothing to transfer', async () => {
      await requirePrograms('rsync', 'diff', 'getfattr', 'setfattr');
      const target = onMount('rsynced');
      await must('rsync', ['-aHAX', `${original}/`, `${target}/`]);
      await must('diff', ['-r', '--no-dereference', original, target]);
      await new Promise((r) => setTimeout(r, ATTR_CACHE_MS));
      assertSameTree(await manifest(target), originalManifest, 'copied by rsync to the mount');
      const again = await must('rsync', ['-aHAX', '--itemize-changes', `${original}/`, `${target}/`]);
      assert.equal(again.stdout, '', 'the second rsync itemizes changes');
      const checksums = await must('rsync', ['-aHAX', '--checksum', '--dry-run', '--itemize-changes', `${original}/`, `${target}/`]);
      assert.equal(checksums.stdout, '', 'rsync --checksum finds different content');
    });
  });
});
