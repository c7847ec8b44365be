// Crash safety of a volume: the process serving it is killed with SIGKILL at random moments of a
// write workload, 20 times over one store, and each time the store must come back whole. This is
// the promise fsync makes to applications: once fsync (of the file, and of its directory for a new
// or moved name) has returned, the bytes are there after a crash, whatever was in flight around
// them. The kills land wherever the serving process happens to be (mid-commit, mid-write to the
// pool, mid-sync), so they also show that what the store keeps on disk is consistent at every
// instant: fsck on the store as the crash left it finds no missing or damaged chunk and no
// reference count or pool entry the metadata cannot explain; every file left behind, fsynced or
// not, reads without error, and no file appears that the workload never made; and the next
// `orbit mount` detaches the stale FUSE mount the dead process left and serves the volume again.
// (A SIGKILL loses what the process held, not what it handed the kernel: this is not a power cut.)
//
// The workload runs in a child process, not in the test: a syscall caught by the dead connection
// fails or blocks that process only, and it can be killed. It reports on stdout, so that the test
// knows what each file must hold even when the workload dies with it:
//   dirty NAME        NAME is about to change: its contents are unknown until a later line
//   synced NAME SHA   fsync returned: NAME holds exactly the bytes whose sha256 is SHA
//   gone NAME         unlink (or rename away) and the directory's fsync returned: NAME is absent
// It carries on with the files the previous rounds left (read back from the volume), so commits
// rewrite extents written by an earlier, killed process; it deletes files beyond a budget so the
// store stays small, and `orbit gc` runs now and then after a crash.
//
// The serving process, the workload, `orbit fsck` and `orbit gc` are separate processes, as in
// use; most rounds run fsck's function in the test instead of the command, to save its start-up.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { mountsAt } from '../../src/fuse/mountpoint.js';
import { fsck } from '../../src/store/fsck.js';
import { Store } from '../../src/store/store.js';
import { ORBIT_NODE_ARGS, run, start, tempDir, waitFor, type RunResult } from '../helpers.js';

const orbit = (...args: string[]): Promise<RunResult> => run(process.execPath, [...ORBIT_NODE_ARGS, ...args], { timeoutMs: 120_000 });

const ROUNDS = 20;
/** How long after the workload starts writing the serving process is killed. */
const KILL_AFTER_MS = { min: 200, max: 2000 };
/** After every CLI_EVERY-th crash, `orbit fsck` and `orbit gc` run (after the others, fsck's function). */
const CLI_EVERY = 5;

/** The workload (CommonJS for `node -e`). Arguments: the volume's directory, a seed, the round.
 * Content and choices come from the seed; only the moment of the kill is left to chance. */
const WORKLOAD = String.raw`
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const [root, seedArg, round] = process.argv.slice(1);
let s = Number(seedArg) >>> 0;
// mulberry32
const rand = () => {
  s = (s + 0x6d2b79f5) >>> 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const pick = (list) => list[Math.floor(rand() * list.length)];
const say = (line) => fs.writeSync(1, line + '\n');
const sha = (b) => crypto.createHash('sha256').update(b).digest('hex');
const p = (name) => path.join(root, name);

const DIRS = ['a', 'b', 'c'];
const MAX_FILES = 24, MAX_BYTES = 16 << 20;

const rootFd = fs.openSync(root, 'r');
for (const d of DIRS) fs.mkdirSync(p(d), { recursive: true });
fs.fsyncSync(rootFd);
const dirFds = Object.fromEntries(DIRS.map((d) => [d, fs.openSync(p(d), 'r')]));
const syncDirOf = (name) => fs.fsyncSync(dirFds[name.split('/')[0]]);

// name -> { data: the expected bytes, or null while not read back; size; synced: the last change
// was fsynced; named: the directory entry was fsynced }
const files = new Map();
for (const d of DIRS) {
  for (const n of fs.readdirSync(p(d))) files.set(d + '/' + n, { data: null, size: fs.statSync(p(d + '/' + n)).size, synced: false, named: true });
}
const load = (name) => {
  const f = files.get(name);
  if (f.data === null) f.data = fs.readFileSync(p(name));
  return f;
};
const sizeOf = (f) => (f.data === null ? f.size : f.data.length);
let next = 0;
const freshName = () => pick(DIRS) + '/f' + round + '-' + next++;

function randomBytes(n) {
  const b = Buffer.allocUnsafeSlow(n);
  const words = new Uint32Array(b.buffer, 0, n >>> 2);
  for (let i = 0; i < words.length; i++) words[i] = (rand() * 4294967296) >>> 0;
  for (let i = words.length * 4; i < n; i++) b[i] = int(0, 255);
  return b;
}
// Mostly small and mid-sized, a fifth of them several MiB (several chunks each).
function size() {
  const r = rand();
  return r < 0.25 ? int(1, 200) : r < 0.5 ? int(1000, 100000) : r < 0.8 ? int(200000, 1500000) : int(1500000, 5000000);
}
// Random (incompressible), repetitive text (compressed, and chunks repeat), or a copy of another
// file with a few bytes changed (deduplicated against it).
function content(n) {
  const r = rand();
  if (r < 0.5 || files.size === 0) return randomBytes(n);
  if (r < 0.75) return Buffer.alloc(n, 'round ' + round + ' line ' + int(0, 1e6) + ': the quick brown fox\n');
  const src = load(pick([...files.keys()])).data;
  const b = Buffer.alloc(n);
  for (let o = 0; o < n && src.length > 0; o += src.length) src.copy(b, o);
  const patch = randomBytes(Math.min(n, int(1, 64)));
  patch.copy(b, int(0, n - patch.length));
  return b;
}
function overlay(old, off, patch) {
  const b = Buffer.alloc(Math.max(old.length, off + patch.length));
  old.copy(b);
  patch.copy(b, off);
  return b;
}
// In pieces of one size per call: sometimes many small writes, mostly large ones.
function writeAt(fd, buf, pos) {
  const piece = rand() < 0.2 ? int(1, 16384) : int(65536, 1 << 20);
  for (let o = 0; o < buf.length; ) o += fs.writeSync(fd, buf, o, Math.min(piece, buf.length - o), pos + o);
}
// fsync (and the directory's, for a name not yet durable) and report; or, now and then, only close:
// then the file stays unknown to the test.
function finish(name, fd) {
  const f = files.get(name);
  if (rand() < 0.1) {
    fs.closeSync(fd);
    f.synced = false;
    return;
  }
  fs.fsyncSync(fd);
  fs.closeSync(fd);
  if (!f.named) syncDirOf(name);
  f.synced = f.named = true;
  say('synced ' + name + ' ' + sha(f.data));
}

function create() {
  const name = freshName();
  const data = content(size());
  say('dirty ' + name);
  files.set(name, { data, size: data.length, synced: false, named: false });
  const fd = fs.openSync(p(name), 'wx');
  writeAt(fd, data, 0);
  finish(name, fd);
}
function modify(name) {
  const f = load(name);
  const old = f.data;
  const r = rand();
  say('dirty ' + name);
  const fd = fs.openSync(p(name), 'r+');
  if (r < 0.35) {
    const add = content(Math.max(1, size() >> int(0, 3)));
    writeAt(fd, add, old.length);
    f.data = Buffer.concat([old, add]);
  } else if (r < 0.75) {
    const off = int(0, old.length);
    const patch = content(int(1, 300000));
    writeAt(fd, patch, off);
    f.data = overlay(old, off, patch);
  } else if (r < 0.85) {
    const off = old.length + int(1, 3 << 20); // past the end: a hole before it
    const patch = content(int(1, 5000));
    writeAt(fd, patch, off);
    f.data = overlay(old, off, patch);
  } else {
    const len = rand() < 0.5 ? int(0, old.length) : old.length + int(1, 200000);
    fs.ftruncateSync(fd, len);
    f.data = overlay(old.subarray(0, Math.min(len, old.length)), len, Buffer.alloc(0));
  }
  finish(name, fd);
}
function rename(from) {
  const f = load(from);
  const others = [...files.keys()].filter((n) => n !== from);
  const to = rand() < 0.3 && others.length > 0 ? pick(others) : freshName();
  say('dirty ' + from);
  say('dirty ' + to);
  if (!f.synced) {
    const fd = fs.openSync(p(from), 'r');
    fs.fsyncSync(fd);
    fs.closeSync(fd);
  }
  fs.renameSync(p(from), p(to));
  syncDirOf(from);
  if (to.split('/')[0] !== from.split('/')[0]) syncDirOf(to);
  files.delete(from);
  files.set(to, { ...f, synced: true, named: true });
  say('gone ' + from);
  say('synced ' + to + ' ' + sha(f.data));
}
function remove(name) {
  say('dirty ' + name);
  fs.unlinkSync(p(name));
  syncDirOf(name);
  files.delete(name);
  say('gone ' + name);
}

say('ready');
for (;;) {
  const names = [...files.keys()];
  let total = 0;
  for (const f of files.values()) total += sizeOf(f);
  const r = rand();
  if (files.size >= MAX_FILES || total > MAX_BYTES) remove(pick(names));
  else if (files.size === 0 || r < 0.35) create();
  else if (r < 0.7) modify(pick(names));
  else if (r < 0.82) rename(pick(names));
  else remove(pick(names));
}
`;

/** Reads every file under the volume (a child process: a read that hangs cannot hang the test);
 * prints { "dir/name": sha256 | "ERR <code>" }. */
const READ_ALL = String.raw`
const fs = require('fs'), path = require('path'), crypto = require('crypto');
const root = process.argv[1];
const found = {};
(function walk(rel) {
  for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
    const name = rel ? rel + '/' + e.name : e.name;
    if (e.isDirectory()) walk(name);
    else {
      try {
        found[name] = crypto.createHash('sha256').update(fs.readFileSync(path.join(root, name))).digest('hex');
      } catch (err) {
        found[name] = 'ERR ' + err.code;
      }
    }
  }
})('');
process.stdout.write(JSON.stringify(found));
`;

/** What the test knows a file must be after a crash. */
type Expected = { state: 'synced'; sha: string } | { state: 'dirty' } | { state: 'gone' };

interface Workload {
  child: ChildProcess;
  ready: Promise<void>;
  /** Settles once the child has exited and every line it printed has been applied. */
  closed: Promise<void>;
  stderr: () => string;
  /** The last line it printed: a `dirty` one means the kill cut a change short. */
  lastLine: () => string;
}

const isFuse = async (dir: string): Promise<boolean> => (await mountsAt(dir)).some((m) => m.fsType.startsWith('fuse'));
const alive = (child: ChildProcess): boolean => child.exitCode === null && child.signalCode === null;
const tail = (text: string, lines = 30): string => text.split('\n').slice(-lines).join('\n');

describe('orbit volume killed mid-write', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let home: string;
  let mnt: string;
  let server: ReturnType<typeof start> | undefined;
  let workload: Workload | undefined;

  before(async () => {
    tmp = await tempDir('crash');
    home = path.join(tmp.dir, 'home');
    mnt = path.join(tmp.dir, 'mnt');
    await mkdir(mnt);
    const init = await orbit('init', '--home', home);
    assert.equal(init.code, 0, init.stderr);
  });

  after(async () => {
    if (workload && alive(workload.child)) workload.child.kill('SIGKILL');
    if (server && alive(server.child)) {
      const exited = once(server.child, 'exit');
      server.child.kill('SIGTERM');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
      if (alive(server.child)) server.child.kill('SIGKILL');
    }
    // A failed round may leave the dead process's mount behind (one per crash at most).
    for (let i = 0; i < 3 && (await isFuse(mnt)); i++) await run('umount', ['-l', mnt]);
    await tmp.remove();
  });

  /** Starts `orbit mount` in the foreground and waits until it serves. */
  async function mount(): Promise<ReturnType<typeof start>> {
    // Kept at once, so that `after` ends it even if it never comes up.
    const proc = (server = start(process.execPath, [...ORBIT_NODE_ARGS, 'mount', '--home', home, mnt]));
    await waitFor(() => proc.output().includes(' mounted at ') || !alive(proc.child), 'orbit mount', 60_000);
    assert.ok(alive(proc.child), `orbit mount ended: ${proc.output()}`);
    return proc;
  }

  function startWorkload(round: number, seed: number, expected: Map<string, Expected>, counts: { synced: number }): Workload {
    const child = spawn(process.execPath, ['-e', WORKLOAD, mnt, String(seed), String(round)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let pending = '';
    let stderr = '';
    let lastLine = '';
    let onReady: () => void = () => undefined;
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdout?.on('data', (d: Buffer) => {
      pending += d.toString();
      for (let nl = pending.indexOf('\n'); nl >= 0; nl = pending.indexOf('\n')) {
        lastLine = pending.slice(0, nl);
        pending = pending.slice(nl + 1);
        const [what, name, sha] = lastLine.split(' ');
        if (what === 'ready') onReady();
        else if (what === 'dirty') expected.set(name!, { state: 'dirty' });
        else if (what === 'gone') expected.set(name!, { state: 'gone' });
        else if (what === 'synced') {
          expected.set(name!, { state: 'synced', sha: sha! });
          counts.synced++;
        }
      }
    });
    return { child, ready, closed: once(child, 'close').then(() => undefined), stderr: () => stderr, lastLine: () => lastLine };
  }

  it(`keeps every fsynced file through ${ROUNDS} kills of the serving process`, { timeout: 10 * 60_000 }, async (t) => {
    const seed = Number(process.env.ORBIT_CRASH_SEED ?? Date.now() % 1_000_000);
    t.diagnostic(`seed ${seed} (ORBIT_CRASH_SEED=${seed} replays the workload; the moments of the kills still vary)`);
    const expected = new Map<string, Expected>();
    const counts = { synced: 0 };
    let verified = 0;
    const began = Date.now();

    server = await mount();
    for (let round = 1; round <= ROUNDS; round++) {
      const context = `round ${round}, seed ${seed}`;
      const syncedBefore = counts.synced;
      const phases: string[] = [];
      let lapStart = Date.now();
      const lap = (what: string): void => {
        phases.push(`${what} ${((Date.now() - lapStart) / 1000).toFixed(1)} s`);
        lapStart = Date.now();
      };
      const w = (workload = startWorkload(round, seed * 1000 + round, expected, counts));
      await Promise.race([w.ready, w.closed]);
      assert.ok(alive(w.child), `${context}: the workload ended before it began: ${w.stderr()}`);
      lap('workload start');

      const killAfter = KILL_AFTER_MS.min + Math.floor(Math.random() * (KILL_AFTER_MS.max - KILL_AFTER_MS.min));
      await new Promise((r) => setTimeout(r, killAfter));
      // Either ending early is a failure of its own: the workload meets an error, the server dies.
      if (!alive(w.child)) await w.closed;
      assert.ok(alive(w.child), `${context}: the workload failed while the volume was up: ${w.stderr()}\nserver:\n${tail(server.output())}`);
      assert.ok(alive(server.child), `${context}: the mount process died by itself:\n${tail(server.output())}`);

      const crashed: ReturnType<typeof start> = server;
      const serverExited = once(crashed.child, 'exit');
      crashed.child.kill('SIGKILL');
      await serverExited;
      w.child.kill('SIGKILL');
      await w.closed;
      lap('kill');

      // The dead process's mount stays until someone detaches it. (Not stat: the kernel may answer
      // that from attributes it cached in the last second.)
      assert.ok(await isFuse(mnt), `${context}: the dead process's mount is gone`);
      await assert.rejects(readdir(mnt), { code: 'ENOTCONN' }, context);

      // The store exactly as the crash left it, before a mount's recovery touches it. Most rounds
      // run fsck's function here: the command takes seconds more to start (it boots TypeScript).
      let problems: unknown[];
      if (round % CLI_EVERY === 0) {
        const check = await orbit('fsck', '--json', '--home', home);
        problems = (JSON.parse(check.stdout || '{"problems":["no report"]}') as { problems: unknown[] }).problems;
        assert.equal(check.code, 0, `${context}: orbit fsck after the crash exited ${check.code}: ${check.stdout}${check.stderr}`);
      } else {
        const store = await Store.open(home);
        problems = (await fsck(store).finally(() => store.close())).problems;
      }
      assert.deepEqual(problems, [], `${context}: fsck after the crash\nkilled server:\n${tail(crashed.output())}`);
      lap('fsck');
      if (round % CLI_EVERY === 0) {
        // Chunks of deleted and overwritten files go, so the store stays small.
        const collected = await orbit('gc', '--home', home);
        assert.equal(collected.code, 0, `${context}: orbit gc after the crash: ${collected.stderr}`);
        lap('gc');
      }

      server = await mount();
      assert.match(server.output(), /stale FUSE mount found/, `${context}: the new mount did not report the stale one`);
      assert.equal((await mountsAt(mnt)).filter((m) => m.fsType.startsWith('fuse')).length, 1, `${context}: the stale mount is still there`);
      lap('mount');

      const read = await run(process.execPath, ['-e', READ_ALL, mnt], { timeoutMs: 120_000 });
      assert.equal(read.code, 0, `${context}: reading the volume back: ${read.stderr}`);
      const found = JSON.parse(read.stdout) as Record<string, string>;
      for (const [name, sha] of Object.entries(found)) {
        assert.ok(expected.has(name), `${context}: ${name} is on the volume, but the workload never made it`);
        assert.ok(!sha.startsWith('ERR'), `${context}: ${name} cannot be read after the crash: ${sha}\nserver:\n${tail(server.output())}`);
      }
      for (const [name, want] of expected) {
        if (want.state === 'synced') {
          assert.ok(name in found, `${context}: ${name} was fsynced (sha256 ${want.sha}) but is gone after the crash`);
          assert.equal(found[name], want.sha, `${context}: ${name} was fsynced but reads back different bytes`);
          verified++;
        } else if (want.state === 'gone') {
          assert.ok(!(name in found), `${context}: ${name} was removed and its directory fsynced, but it is back after the crash`);
          expected.delete(name);
        }
      }
      lap('read back');
      const cut = w.lastLine().startsWith('dirty ') ? `while changing ${w.lastLine().slice(6)}` : 'between changes';
      t.diagnostic(`round ${round}: killed after ${killAfter} ms ${cut}, ${counts.synced - syncedBefore} fsyncs acknowledged, ${Object.keys(found).length} files; ${phases.join(', ')}`);
    }

    // An orderly end: the last recovery and everything after it also leave a clean store.
    const exited = once(server.child, 'exit');
    server.child.kill('SIGTERM');
    assert.deepEqual(await exited, [0, null], server.output());
    assert.equal(await isFuse(mnt), false);
    const check = await orbit('fsck', '--home', home);
    assert.equal(check.code, 0, `fsck at the end: ${check.stdout}${check.stderr}`);
    assert.match(check.stdout, /no problems found\n$/);

    // The kills must have cut into real work, not an idle volume.
    assert.ok(counts.synced >= ROUNDS, `only ${counts.synced} fsyncs in ${ROUNDS} rounds`);
    t.diagnostic(`${counts.synced} fsyncs acknowledged, ${verified} fsynced files checked after crashes, ${Math.round((Date.now() - began) / 1000)} s`);
  });
});
