// Mounting and unmounting: clear errors for bad mountpoints, stale mounts cleaned up, unmount on
// signals and on exit, busy and external unmounts.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdir, open, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { MemFs } from '../../examples/memfs/memfs.js';
import { MountError } from '../../src/fuse/errors.js';
import { mountsAt } from '../../src/fuse/mountpoint.js';
import { FuseSession } from '../../src/fuse/session.js';
import { capturedLogger, run, start, tempDir, waitFor } from '../helpers.js';
import { mountMemFs } from './memfs-mount.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const memfsMain = path.join(repo, 'examples/memfs/mount.ts');

const isMounted = async (dir: string): Promise<boolean> => (await mountsAt(dir)).some((m) => m.fsType.startsWith('fuse'));

/** The example filesystem mounted by a child process. */
async function mountInChild(dir: string): Promise<ReturnType<typeof start>> {
  const proc = start(process.execPath, ['--import', 'tsx', memfsMain, dir]);
  await waitFor(() => isMounted(dir), `child mount at ${dir}`);
  return proc;
}

describe('mount lifecycle', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let n = 0;
  const freshDir = async (): Promise<string> => {
    const dir = path.join(tmp.dir, `mnt${n++}`);
    await mkdir(dir);
    return dir;
  };

  before(async () => {
    tmp = await tempDir('lifecycle');
  });
  after(() => tmp.remove());

  it('refuses bad mountpoints with one clear line each', async () => {
    const session = (): FuseSession => new FuseSession(new MemFs(), { handleSignals: false }, capturedLogger().log);
    const missing = path.join(tmp.dir, 'nope');
    await assert.rejects(session().mount(missing), new MountError(`mountpoint ${missing} does not exist`));
    const file = path.join(tmp.dir, 'a-file');
    await writeFile(file, '');
    await assert.rejects(session().mount(file), new MountError(`mountpoint ${file} is not a directory`));
    const full = await freshDir();
    await writeFile(path.join(full, 'x'), '');
    await assert.rejects(session().mount(full), new MountError(`mountpoint ${full} is not empty`));
    const m = await mountMemFs();
    try {
      await assert.rejects(session().mount(m.dir), /^MountError: mountpoint .* is already mounted \(fuse\.memfs from memfs-test\)$/);
    } finally {
      await m.close();
    }
  });

  it('says so when /dev/fuse is missing', async () => {
    const dir = await freshDir();
    const res = await run('unshare', ['-m', 'sh', '-c', `mount -t tmpfs tmpfs /dev && exec "${process.execPath}" --import tsx "${memfsMain}" "${dir}"`]);
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^memfs: \/dev\/fuse is missing or not accessible/);
  });

  it('says so when libfuse3 is missing at run time', async () => {
    const dir = await freshDir();
    const lib = (await run('sh', ['-c', 'readlink -f "$(ldconfig -p | awk \'/libfuse3\\.so\\.3 /{print $NF; exit}\')"'])).stdout.trim();
    assert.ok(lib, 'libfuse3.so.3 not found by ldconfig');
    const res = await run('unshare', ['-m', 'sh', '-c', `mount --bind /dev/null "${lib}" && exec "${process.execPath}" --import tsx "${memfsMain}" "${dir}"`]);
    assert.equal(res.code, 1);
    assert.equal(res.stderr.trim(), 'memfs: libfuse3 is not installed (on Debian/Ubuntu: apt-get install fuse3)');
  });

  it('names the packages to install when libfuse3 headers are missing at build time', async () => {
    const res = await run(process.execPath, [path.join(repo, 'scripts/build-native.mjs')], {
      env: { ...process.env, PKG_CONFIG_LIBDIR: '/nonexistent', PKG_CONFIG_PATH: '' },
    });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /libfuse3 development files not found .* apt-get install -y fuse3 libfuse3-dev pkg-config/);
  });

  it('is unmounted by fusermount3 when its process is killed, with auto_unmount', async () => {
    const dir = await freshDir();
    const proc = start(process.execPath, ['--import', 'tsx', memfsMain, dir, '--auto-unmount']);
    await waitFor(() => isMounted(dir), `auto_unmount mount at ${dir}`);
    proc.child.kill('SIGKILL');
    await once(proc.child, 'exit');
    await waitFor(async () => !(await isMounted(dir)), 'the mount to go away');
  });

  it('detaches a stale mount left by a killed process, with a warning, and mounts', async () => {
    const dir = await freshDir();
    const child = await mountInChild(dir);
    child.child.kill('SIGKILL');
    await once(child.child, 'exit');
    await assert.rejects(stat(dir), { code: 'ENOTCONN' });
    const { log, lines } = capturedLogger();
    const session = new FuseSession(new MemFs(), { handleSignals: false }, log);
    await session.mount(dir);
    try {
      assert.ok(lines().some((l) => l.level === 40 && String(l.msg).startsWith('stale FUSE mount found')));
      await writeFile(path.join(dir, 'works'), 'yes');
    } finally {
      await session.unmount();
    }
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`unmounts on ${signal} and dies of the signal`, async () => {
      const dir = await freshDir();
      const child = await mountInChild(dir);
      child.child.kill(signal);
      const [code, sig] = (await once(child.child, 'exit')) as [number | null, string | null];
      assert.deepEqual([code, sig], [null, signal], child.output());
      assert.equal(await isMounted(dir), false);
      assert.match(child.output(), /"msg":"unmounted"/);
    });
  }

  it('detaches the mount when the process exits while mounted', async () => {
    const dir = await freshDir();
    const script = `
      import { FuseSession } from '${path.join(repo, 'src/fuse/session.ts')}';
      import { MemFs } from '${path.join(repo, 'examples/memfs/memfs.ts')}';
      await new FuseSession(new MemFs()).mount(process.argv[1]);
      process.exit(3);`;
    const res = await run(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, dir]);
    assert.equal(res.code, 3, res.stderr);
    assert.equal(await isMounted(dir), false);
    await writeFile(path.join(dir, 'plain-again'), ''); // the directory is an ordinary one again
  });

  it('refuses to unmount while files are open, and unmounts lazily', async () => {
    const m = await mountMemFs();
    const file = path.join(m.dir, 'held');
    await writeFile(file, 'busy');
    const fh = await open(file, 'r');
    try {
      await assert.rejects(m.session.unmount(), /is busy \(files are open\)/);
      await m.session.unmount({ lazy: true });
      assert.equal(await isMounted(m.dir), false);
      const buf = Buffer.alloc(4);
      await fh.read(buf, 0, 4, 0); // the open file is still served
      assert.equal(buf.toString(), 'busy');
    } finally {
      await fh.close();
    }
    await m.session.closed; // the session ends once the last file is closed
    await m.close();
  });

  it('ends the session when unmounted from outside', async () => {
    const m = await mountMemFs();
    const res = await run('umount', [m.dir]);
    assert.equal(res.code, 0, res.stderr);
    await m.session.closed;
    assert.equal(m.session.mountpoint, undefined);
    await m.close();
  });
});
