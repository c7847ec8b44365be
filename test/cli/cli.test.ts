// The orbit command line run as users run it (bin/orbit.js) on temporary stores: store and
// volume commands, usage errors as one line, and mounting in the background and the foreground.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountsAt } from '../../src/fuse/mountpoint.js';
import { ORBIT_NODE_ARGS, run, start, tempDir, waitFor, type RunResult } from '../helpers.js';

const orbit = (...args: string[]): Promise<RunResult> => run(process.execPath, [...ORBIT_NODE_ARGS, ...args]);

/** Runs orbit, expecting success; returns stdout. */
async function ok(...args: string[]): Promise<string> {
  const res = await orbit(...args);
  assert.equal(res.code, 0, `orbit ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
  return res.stdout;
}

/** Asserts `res` failed with `code` and exactly one line on stderr, and returns that line. */
function failure(res: RunResult, code: number): string {
  assert.equal(res.code, code, `exit code (stderr: ${res.stderr})`);
  const lines = res.stderr.split('\n');
  assert.equal(lines.length, 2, `one line on stderr, got: ${res.stderr}`);
  assert.equal(lines[1], '');
  return lines[0] ?? '';
}

const isMounted = async (dir: string): Promise<boolean> => (await mountsAt(dir)).some((m) => m.fsType.startsWith('fuse'));

interface StatusJson {
  home: string;
  id: string;
  volumes: Array<{ name: string; createdAt: string; mount: { mountpoint: string; pid: number; since: string } | null }>;
}

const status = async (home: string): Promise<StatusJson> => JSON.parse(await ok('status', '--json', '--home', home)) as StatusJson;

describe('orbit command line', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let n = 0;
  const fresh = (name: string): string => path.join(tmp.dir, `${name}${n++}`);
  const freshMountpoint = async (): Promise<string> => {
    const dir = fresh('mnt');
    await mkdir(dir);
    return dir;
  };
  const initStore = async (): Promise<string> => {
    const home = fresh('home');
    await ok('init', '--home', home);
    return home;
  };

  before(async () => {
    tmp = await tempDir('cli');
  });
  after(() => tmp.remove());

  it('creates a store, and says so when it exists', async () => {
    const home = fresh('home');
    assert.equal(await ok('init', '--home', home), `created an Orbit store at ${home} with volume 'default'\n`);
    assert.equal(await ok('init', '--home', home), `an Orbit store already exists at ${home}\n`);
    const s = await status(home);
    assert.equal(s.home, home);
    assert.deepEqual(s.volumes.map((v) => v.name), ['default']);
  });

  it('creates, lists and removes volumes', async () => {
    const home = await initStore();
    assert.equal(await ok('volume', 'create', 'photos', '--home', home), 'created volume photos\n');
    assert.equal(failure(await orbit('volume', 'create', 'photos', '--home', home), 1), 'orbit: volume photos exists');
    assert.match(failure(await orbit('volume', 'create', '../up', '--home', home), 1), /^orbit: bad volume name "\.\.\/up"/);

    const text = await ok('volume', 'list', '--home', home);
    assert.match(text, /^VOLUME +CREATED\ndefault +\d{4}-\d\d-\d\dT[\d:.]+Z\nphotos +\d{4}-/);
    const list = JSON.parse(await ok('volume', 'list', '--json', '--home', home)) as Array<{ name: string; createdAt: string }>;
    assert.deepEqual(list.map((v) => v.name), ['default', 'photos']);
    assert.ok(!Number.isNaN(Date.parse(list[1]?.createdAt ?? '')));

    assert.equal(await ok('volume', 'remove', 'photos', '--home', home), 'removed volume photos\n');
    assert.equal(failure(await orbit('volume', 'remove', 'photos', '--home', home), 1), 'orbit: no volume photos');
    assert.deepEqual((await status(home)).volumes.map((v) => v.name), ['default']);
  });

  it('answers wrong usage with one line on stderr and exit code 2', async () => {
    const home = await initStore();
    const cases: Array<[string[], string]> = [
      [['status', '--bogus', '--home', home], "orbit status: unknown option '--bogus'"],
      [['volume', 'list', '--jsn', '--home', home], "orbit volume list: unknown option '--jsn' (Did you mean --json?)"],
      [['--bogus'], "orbit: unknown option '--bogus'"],
      [['volume', 'create', '--home', home], "orbit volume create: missing required argument 'name'"],
      [['mount', '--home', home], "orbit mount: missing required argument 'mountpoint'"],
      [['stats', '--volume'], "orbit stats: option '--volume <name>' argument missing"],
      [['bogus'], "orbit: unknown command 'bogus'"],
      [['volume'], "orbit volume: expects a command (create, list, attach, offers, remove); see 'orbit volume --help'"],
      [[], "orbit: expects a command (init, volume, status, stats, mount, umount, fsck, gc, pool, scrub, policy, jobs, tier, id, peer, share, unshare, up, pin, unpin); see 'orbit --help'"],
    ];
    for (const [args, line] of cases) {
      const res = await orbit(...args);
      assert.equal(failure(res, 2), line, `orbit ${args.join(' ')}`);
      assert.equal(res.stdout, '');
    }
  });

  it('says in one line when there is no store', async () => {
    const home = fresh('nowhere');
    for (const args of [['status'], ['stats'], ['volume', 'list'], ['volume', 'create', 'x'], ['mount', '--background', tmp.dir]]) {
      assert.equal(
        failure(await orbit(...args, '--home', home), 1),
        `orbit: no Orbit store at ${home}: run 'orbit init' first (or set --home / ORBIT_HOME)`,
        `orbit ${args.join(' ')}`,
      );
    }
    const res = await run(process.execPath, [...ORBIT_NODE_ARGS, 'status'], { env: { ...process.env, ORBIT_HOME: home } });
    assert.match(failure(res, 1), new RegExp(`^orbit: no Orbit store at ${home}: `));
  });

  it('reports an unexpected failure in one line, and its stack with ORBIT_DEBUG=1', async () => {
    const home = await initStore();
    await rm(path.join(home, 'meta.db-wal'), { force: true });
    await writeFile(path.join(home, 'meta.db'), 'not a database');
    assert.match(failure(await orbit('status', '--home', home), 1), /^orbit: .*meta\.db.*not a database/);
    const debug = await run(process.execPath, [...ORBIT_NODE_ARGS, 'status', '--home', home], { env: { ...process.env, ORBIT_DEBUG: '1' } });
    assert.equal(debug.code, 1);
    assert.match(debug.stderr, /^orbit: .*not a database.*\n.*not a database\n {4}at /);
  });

  it('shows status and stats as text and JSON', async () => {
    const home = await initStore();
    await ok('volume', 'create', 'photos', '--home', home);
    assert.equal(await ok('status', '--home', home), `Orbit store at ${home}\ndaemon: not running ('orbit up' starts it)\nVOLUME   MOUNTPOINT  PROCESS  SINCE\ndefault  -\nphotos   -\npool: 1 disk(s); new chunks under none\n`);
    const s = await status(home);
    assert.match(s.id, /^[0-9a-f-]{36}$/);
    assert.deepEqual(s.volumes.map((v) => [v.name, v.mount]), [['default', null], ['photos', null]]);

    const text = await ok('stats', '--home', home);
    assert.match(text, /^volume +all volumes\nlogical +0 B\nunique +0 B .*\nstored +0 B .*\ndedup +n\/a .*\ncompression +n\/a .*\ninodes +2\n$/);
    assert.deepEqual(JSON.parse(await ok('stats', '--json', '--volume', 'photos', '--home', home)), {
      volume: 'photos', logicalBytes: 0, uniqueBytes: 0, storedBytes: 0, dedupRatio: null, compressionRatio: null, inodes: 1,
    });
    assert.equal(failure(await orbit('stats', '--volume', 'nope', '--home', home), 1), 'orbit: no volume nope');
  });

  it('has --help for the program and every command', async () => {
    const commands = [[], ['init'], ['volume'], ['volume', 'create'], ['volume', 'list'], ['volume', 'remove'], ['status'], ['stats'], ['mount'], ['umount']];
    for (const command of commands) {
      const res = await orbit(...command, '--help');
      assert.equal(res.code, 0, `orbit ${command.join(' ')} --help: ${res.stderr}`);
      assert.equal(res.stderr, '');
      assert.ok(res.stdout.startsWith(`Usage: ${['orbit', ...command].join(' ')} `), res.stdout);
    }
    const mountHelp = await ok('mount', '--help');
    for (const flag of ['--home <dir>', '--volume <name>', '--allow-other', '--background']) assert.ok(mountHelp.includes(flag), flag);
    assert.ok(!mountHelp.includes('--background-child'));
    assert.match(await ok('status', '--help'), /--home <dir> +the store directory \(default: \$ORBIT_HOME, else\s+~\/\.local\/share\/orbit\)/);
  });

  describe('mounting', () => {
    const mounted = new Set<string>();
    after(async () => {
      for (const dir of mounted) if (await isMounted(dir)) await orbit('umount', '--lazy', dir);
    });

    it('mounts in the background, serves files, refuses a second mount, unmounts', async () => {
      const home = await initStore();
      const mnt = await freshMountpoint();
      const res = await orbit('mount', '--background', '--home', home, mnt);
      mounted.add(mnt);
      assert.equal(res.code, 0, res.stderr);
      const log = path.join(home, 'run', 'default.log');
      assert.match(res.stdout, new RegExp(`^volume default of the store at ${home} mounted at ${mnt} \\(in the background: process (\\d+), log ${log}\\)\\n$`));
      const pid = Number(/process (\d+)/.exec(res.stdout)?.[1]);
      assert.ok(await isMounted(mnt));

      // The same contents twice: stored once.
      const data = randomBytes(300_000);
      await writeFile(path.join(mnt, 'a.bin'), data);
      await writeFile(path.join(mnt, 'b.bin'), data);
      assert.deepEqual(await readFile(path.join(mnt, 'b.bin')), data);

      const s = await status(home);
      assert.deepEqual(s.volumes.map((v) => [v.name, v.mount?.mountpoint, v.mount?.pid]), [['default', mnt, pid]]);
      assert.match(await ok('status', '--home', home), new RegExp(`\\ndefault +${mnt} +${pid} +\\d{4}-`));
      const stats = JSON.parse(await ok('stats', '--json', '--home', home)) as { logicalBytes: number; uniqueBytes: number; dedupRatio: number; inodes: number };
      assert.equal(stats.logicalBytes, 2 * data.length);
      assert.equal(stats.uniqueBytes, data.length);
      assert.equal(stats.dedupRatio, 2);
      assert.equal(stats.inodes, 3);
      assert.match(await ok('stats', '--home', home), /\nlogical +585\.9 KiB\n.*\ndedup +2\.00x /s);

      const other = await freshMountpoint();
      assert.equal(failure(await orbit('mount', '--background', '--home', home, other), 1), `orbit: volume default is already mounted at ${mnt} (process ${pid})`);
      assert.equal(failure(await orbit('mount', '--home', home, other), 1), `orbit: volume default is already mounted at ${mnt} (process ${pid})`);
      assert.ok(!(await isMounted(other)));
      assert.equal(failure(await orbit('volume', 'remove', 'default', '--home', home), 1), `orbit: volume default is mounted at ${mnt}: unmount it first`);

      assert.equal(await ok('umount', mnt), `unmounted ${mnt}\n`);
      assert.ok(!(await isMounted(mnt)));
      await waitFor(async () => (await status(home)).volumes[0]?.mount === null, 'the mount record to go');
      assert.equal(failure(await orbit('umount', mnt), 1), `orbit: ${mnt} is not a mounted Orbit filesystem`);
      assert.match(await readFile(log, 'utf8'), /"msg":"unmounted"/);

      assert.equal(failure(await orbit('volume', 'remove', 'default', '--home', home), 1), 'orbit: volume default is not empty: --force removes it with everything in it');
      assert.equal(await ok('volume', 'remove', 'default', '--force', '--home', home), 'removed volume default\n');
      assert.deepEqual((await status(home)).volumes, []);
    });

    it('reports why a background mount failed', async () => {
      const home = await initStore();
      const missing = fresh('missing');
      assert.equal(failure(await orbit('mount', '--background', '--home', home, missing), 1), `orbit: mountpoint ${missing} does not exist`);
      assert.equal(failure(await orbit('mount', '--background', '--volume', 'nope', '--home', home, tmp.dir), 1), `orbit: no volume nope in the store at ${home}`);
      assert.deepEqual((await status(home)).volumes.map((v) => v.mount), [null]);
    });

    it('mounts in the foreground until signalled', async () => {
      const home = await initStore();
      const mnt = await freshMountpoint();
      const proc = start(process.execPath, [...ORBIT_NODE_ARGS, 'mount', '--home', home, mnt]);
      mounted.add(mnt);
      await waitFor(() => proc.output().includes('mounted at'), 'the mount line');
      assert.ok(proc.output().includes(`volume default of the store at ${home} mounted at ${mnt}; Ctrl-C or 'orbit umount ${mnt}' unmounts\n`), proc.output());
      assert.ok(await isMounted(mnt));
      await writeFile(path.join(mnt, 'kept.txt'), 'still here');

      const exited = once(proc.child, 'exit');
      proc.child.kill('SIGTERM');
      // An orderly end: unmounted, synced, the store closed, then a plain exit.
      assert.deepEqual(await exited, [0, null], proc.output());
      assert.ok(!(await isMounted(mnt)));
      assert.deepEqual((await status(home)).volumes.map((v) => v.mount), [null]);

      // What was written survives: mounted again, it is there.
      await ok('mount', '--background', '--home', home, mnt);
      assert.equal(await readFile(path.join(mnt, 'kept.txt'), 'utf8'), 'still here');
      await ok('umount', mnt);
    });

    it('fsck finds nothing wrong after use and names the file a damaged chunk belongs to; gc frees deleted files', async () => {
      const home = await initStore();
      const mnt = await freshMountpoint();
      await ok('mount', '--background', '--home', home, mnt);
      mounted.add(mnt);
      await writeFile(path.join(mnt, 'keep.bin'), randomBytes(3 * 1024 * 1024));
      await writeFile(path.join(mnt, 'drop.bin'), randomBytes(2 * 1024 * 1024));
      await rm(path.join(mnt, 'drop.bin'));
      assert.match(await ok('gc', '--home', home), /^deleted [1-9]\d* unreferenced chunks \(/);
      assert.match(await ok('fsck', '--home', home), /no problems found\n$/);
      await ok('umount', mnt);
      await waitFor(async () => (await status(home)).volumes.every((v) => v.mount === null), 'the mount to end');
      // Damage one stored chunk: fsck says which file it belongs to, and fails.
      // Any stored chunk (gc leaves emptied fan-out directories behind, so search for one).
      const entries = await readdir(path.join(home, 'pool', 'chunks'), { recursive: true, withFileTypes: true });
      const found = entries.find((e) => e.isFile());
      assert.ok(found, 'no chunk stored');
      const id = found.name;
      const file = path.join(found.parentPath, id);
      const bytes = await readFile(file);
      bytes[bytes.length - 1]! ^= 0xff;
      await writeFile(file, bytes);
      const res = await orbit('fsck', '--home', home);
      assert.equal(res.code, 1);
      assert.match(res.stdout, new RegExp(`corrupt chunk ${id}, used by default:/keep\\.bin`));
    });
  });
});
