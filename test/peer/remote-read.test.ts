// Unreal files read on demand, with real daemons on loopback: a shares a volume with b and c; b
// mounts it and reads only the chunks under the bytes it reads; every fetched chunk is checked,
// so a peer (c) that serves corrupt bytes is caught and the reader gets the right ones from a;
// with a gone, a read of content not here fails with EIO within the fetch timeout while cached
// content stays readable, and reads resume when a is back; the cache never exceeds its bound.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { PeerState } from '../../src/peer/household.js';
import { orbitOk, run, tempDir, waitFor } from '../helpers.js';
import { down, up, type Up } from './daemons.js';

const MiB = 1024 * 1024;
const CACHE_BYTES = 48 * MiB;
const FETCH_TIMEOUT_S = 3;

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');

/** Bytes of the files under `dir` (the cache's chunks and those being written). */
async function bytesUnder(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => []);
  for (const e of entries) {
    if (!e.isFile()) continue;
    total += (await stat(path.join(e.parentPath, e.name)).catch(() => ({ size: 0 }))).size;
  }
  return total;
}

describe('Unreal files read on demand', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  const home = { a: '', b: '', c: '' };
  const id = { a: '', b: '', c: '' };
  const d: Partial<Record<'a' | 'b' | 'c', Up>> = {};
  const sums = new Map<string, string>();
  let mntB = '';
  let mntC = '';
  let cacheSampler: NodeJS.Timeout | undefined;
  let largestCache = 0;

  const peerOfB = async (name: string): Promise<PeerState> =>
    (JSON.parse(await orbitOk('peer', 'list', '--json', '--home', home.b)) as { peers: PeerState[] }).peers.find((p) => p.name === name)!;

  before(async () => {
    tmp = await tempDir('remote-read');
    for (const k of ['a', 'b', 'c'] as const) {
      home[k] = path.join(tmp.dir, k);
      await orbitOk('init', '--home', home[k]);
      id[k] = (JSON.parse(await orbitOk('id', '--json', '--home', home[k])) as { id: string }).id;
    }
    // a's files, written through its own mount before its daemon starts.
    const mntA = path.join(tmp.dir, 'mnt-a');
    mntB = path.join(tmp.dir, 'mnt-b');
    mntC = path.join(tmp.dir, 'mnt-c');
    for (const m of [mntA, mntB, mntC]) await mkdir(m);
    await orbitOk('volume', 'create', 'media', '--home', home.a);
    await orbitOk('mount', '--volume', 'media', '--background', '--home', home.a, mntA);
    try {
      for (const [name, size] of [['big', 64 * MiB], ['other', 12 * MiB], ['cold', 12 * MiB]] as const) {
        const data = randomBytes(size);
        sums.set(name, md5(data));
        await writeFile(path.join(mntA, name), data);
      }
      await mkdir(path.join(mntA, 'small'));
      for (let i = 0; i < 50; i++) await writeFile(path.join(mntA, 'small', `f${i}`), `small file ${i}\n`);
    } finally {
      await orbitOk('umount', mntA);
    }
    d.a = await up(home.a, ['--listen', '127.0.0.1:0']);
    d.c = await up(home.c, ['--listen', '127.0.0.1:0']);
    await orbitOk('peer', 'add', id.b, '--name', 'b', '--home', home.a);
    await orbitOk('peer', 'add', id.c, '--name', 'c', '--home', home.a);
    await orbitOk('peer', 'add', id.a, '--name', 'a', '--address', d.a.listen!, '--home', home.c);
    await orbitOk('peer', 'add', id.b, '--name', 'b', '--home', home.c);
    await orbitOk('peer', 'add', id.a, '--name', 'a', '--address', d.a.listen!, '--home', home.b);
    await orbitOk('peer', 'add', id.c, '--name', 'c', '--address', d.c.listen!, '--home', home.b);
    d.b = await up(home.b, ['--cache-size', String(CACHE_BYTES), '--fetch-timeout', `${FETCH_TIMEOUT_S}s`]);
    await orbitOk('share', 'media', '--with', 'b', '--home', home.a);
    await orbitOk('share', 'media', '--with', 'c', '--home', home.a);
    for (const k of ['b', 'c'] as const) {
      await waitFor(async () => (JSON.parse(await orbitOk('volume', 'offers', '--json', '--home', home[k])) as Array<{ volumes: Array<{ name: string }> }>)
        .some((o) => o.volumes.some((v) => v.name === 'media')), `the offer to ${k}`);
      await orbitOk('volume', 'attach', 'a:media', '--home', home[k]);
    }
    cacheSampler = setInterval(() => {
      void bytesUnder(path.join(home.b, 'cache')).then((n) => (largestCache = Math.max(largestCache, n)));
    }, 100);
  });

  after(async () => {
    clearInterval(cacheSampler);
    for (const m of [mntB, mntC]) await run('fusermount3', ['-u', m]);
    for (const k of ['a', 'b', 'c'] as const) if (d[k]) await down(d[k]);
    await tmp.remove();
  });

  it('mounts the attached volume through the daemon, and reads only the chunks under the bytes read', async () => {
    const mounted = await orbitOk('mount', '--volume', 'media', '--home', home.b, mntB);
    assert.match(mounted, /served by the daemon/);
    const before = await peerOfB('a');
    const tail = await run('tail', ['-c', '200', path.join(mntB, 'big')]);
    assert.equal(tail.code, 0, tail.stderr);
    const afterTail = await peerOfB('a');
    const chunks = (afterTail.chunksFetched ?? 0) - (before.chunksFetched ?? 0);
    assert.ok(chunks >= 1 && chunks <= 2, `tail -c 200 fetched ${chunks} chunks`);
    assert.ok(afterTail.bytesIn - before.bytesIn < 9 * MiB, `tail -c 200 moved ${afterTail.bytesIn - before.bytesIn} bytes`);
    // Reads of 2 MiB at a few places move the chunks under them, not what follows.
    const f = await open(path.join(mntB, 'big'), 'r');
    try {
      for (const at of [5, 21, 40]) await f.read(Buffer.alloc(2 * MiB), 0, 2 * MiB, at * MiB);
    } finally {
      await f.close();
    }
    const afterRandom = await peerOfB('a');
    const moved = (afterRandom.chunksFetched ?? 0) - (afterTail.chunksFetched ?? 0);
    assert.ok(moved <= 3 * 4, `3 reads of 2 MiB fetched ${moved} chunks`);
    // The whole file, sequentially: the right bytes, and within a sampled cache bound.
    assert.equal(md5(await readFile(path.join(mntB, 'big'))), sums.get('big'));
    assert.ok(largestCache <= CACHE_BYTES, `the cache held ${largestCache} bytes`);
    assert.ok(largestCache > CACHE_BYTES / 2, `the cache was used: ${largestCache} bytes`);
  });

  it('catches a peer that serves a corrupt chunk, and gets the right bytes from another', async () => {
    // c reads "other" (into its cache), shares its copy on, and its cached chunks then rot.
    await orbitOk('mount', '--volume', 'media', '--home', home.c, mntC);
    assert.equal(md5(await readFile(path.join(mntC, 'other'))), sums.get('other'));
    await orbitOk('share', 'media', '--with', 'b', '--home', home.c);
    const cached = (await readdir(path.join(home.c, 'cache', 'chunks'), { withFileTypes: true, recursive: true })).filter((e) => e.isFile());
    assert.ok(cached.length >= 3, `c cached ${cached.length} chunks`);
    for (const e of cached) {
      const file = path.join(e.parentPath, e.name);
      const bytes = await readFile(file);
      bytes[bytes.length >> 1]! ^= 0x20;
      await writeFile(file, bytes);
    }
    // b hears of c's offer, then reads "other": c, not measured yet, is asked first.
    await waitFor(async () => (JSON.parse(await orbitOk('volume', 'offers', '--json', '--home', home.b)) as Array<{ peer: string; volumes: Array<{ name: string }> }>)
      .some((o) => o.peer === id.c && o.volumes.some((v) => v.name === 'media')), 'c\'s offer to b');
    assert.equal(md5(await readFile(path.join(mntB, 'other'))), sums.get('other'));
    const c = await peerOfB('c');
    assert.ok((c.corruptChunks ?? 0) >= 1, `c's corrupt chunks caught: ${JSON.stringify(c)}`);
    assert.match(d.b!.output(), /a peer sent a chunk that fails its check/);
  });

  it('fails a read with EIO within the fetch timeout when no peer can serve it, and resumes when one comes back', async () => {
    await down(d.a!, 'SIGKILL');
    await waitFor(async () => !(await peerOfB('a')).connected, 'b to notice a is gone');
    const began = Date.now();
    const read = await run('dd', [`if=${path.join(mntB, 'cold')}`, 'of=/dev/null', 'bs=1M']);
    const took = (Date.now() - began) / 1000;
    assert.notEqual(read.code, 0);
    assert.match(read.stderr, /Input\/output error/);
    assert.ok(took < FETCH_TIMEOUT_S + 2, `the read failed after ${took} s`);
    // The timeout has passed since a went: reads of other content not here fail at once.
    const again = Date.now();
    const other = await run('dd', [`if=${path.join(mntB, 'cold')}`, 'of=/dev/null', 'bs=1M', 'skip=8', 'count=1']);
    assert.match(other.stderr, /Input\/output error/);
    assert.ok(Date.now() - again < 1500, `the second read failed after ${Date.now() - again} ms`);
    // What is here stays readable: the small files' chunks were never fetched, but "big" was.
    assert.equal(md5(await readFile(path.join(mntB, 'other'))), sums.get('other'));
    d.a = await up(home.a, ['--listen', d.a!.listen!]);
    await waitFor(async () => (await peerOfB('a')).connected, 'b to reconnect to a', 30_000);
    assert.equal(md5(await readFile(path.join(mntB, 'cold'))), sums.get('cold'));
    assert.ok(largestCache <= CACHE_BYTES, `the cache held ${largestCache} bytes`);
  });

  it('makes a pinned directory Real: fully local, kept through cache churn, readable with its peers gone', async () => {
    const status = async (): Promise<{ real: { realBytes: number; pinnedBytes: number; pinnedRealBytes: number } }> =>
      (JSON.parse(await orbitOk('status', '--json', '--home', home.b)) as { volumes: Array<{ name: string; real: { realBytes: number; pinnedBytes: number; pinnedRealBytes: number } }> }).volumes.find((v) => v.name === 'media')!;
    assert.equal((await status()).real.pinnedBytes, 0);
    // By the attribute, on a directory: its files follow it.
    await run('setfattr', ['-n', 'user.orbit.pin', '-v', '1', path.join(mntB, 'small')]);
    assert.equal((await run('getfattr', ['--only-values', '-n', 'user.orbit.pin', path.join(mntB, 'small', 'f7')])).stdout, '1');
    // By the command, on a file, waiting until it is here.
    const pinned = await orbitOk('pin', 'media:/cold', '--wait', '--home', home.b);
    assert.match(pinned, /Real/);
    await waitFor(async () => {
      const s = await status();
      return s.real.pinnedBytes > 12 * MiB && s.real.pinnedRealBytes === s.real.pinnedBytes;
    }, 'the Real files to be here', 30_000);
    // Reading more than the cache holds evicts cached chunks, not Real ones.
    assert.equal(md5(await readFile(path.join(mntB, 'big'))), sums.get('big'));
    await down(d.a!, 'SIGKILL');
    await down(d.c!);
    await run('fusermount3', ['-u', mntC]);
    await writeFile('/proc/sys/vm/drop_caches', '3');
    assert.equal(md5(await readFile(path.join(mntB, 'cold'))), sums.get('cold'));
    for (let i = 0; i < 50; i++) assert.equal(await readFile(path.join(mntB, 'small', `f${i}`), 'utf8'), `small file ${i}\n`);
    // Unpinned, the file is Unreal again: its chunks go from the pool to the cache.
    await orbitOk('unpin', 'media:/cold', '--home', home.b);
    await waitFor(async () => (await status()).real.pinnedBytes < 12 * MiB, 'cold to be Unreal');
    const writes = await run('touch', [path.join(mntB, 'small', 'mine')]);
    assert.match(writes.stderr, /Read-only file system/);
  });
});
