// The household with real daemons on loopback: stores learn each other's IDs, a deaf store dials a
// listening one and the connection comes up both ways; a store nobody added is refused; a peer
// that goes away is dialed again when it comes back; a peer removed is dropped and refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { VolumeChanges } from '../../src/meta/contract.js';
import type { PeerState } from '../../src/peer/household.js';
import { loadIdentity } from '../../src/peer/identity.js';
import { PeerSession } from '../../src/peer/session.js';
import { dialPeer } from '../../src/peer/transport.js';
import { orbit, orbitOk, run, tempDir, waitFor } from '../helpers.js';
import { down, up, type Up } from './daemons.js';

async function peers(home: string): Promise<{ daemon: boolean; peers: PeerState[] }> {
  return JSON.parse(await orbitOk('peer', 'list', '--json', '--home', home)) as { daemon: boolean; peers: PeerState[] };
}

async function peerNamed(home: string, name: string): Promise<PeerState | undefined> {
  return (await peers(home)).peers.find((p) => p.name === name);
}

describe('the household: peers over mutual TLS', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  const home = { a: '', b: '', c: '' };
  const id = { a: '', b: '', c: '' };
  const daemons: Up[] = [];
  let a: Up;
  let b: Up;

  before(async () => {
    tmp = await tempDir('household');
    for (const k of ['a', 'b', 'c'] as const) {
      home[k] = path.join(tmp.dir, k);
      await orbitOk('init', '--home', home[k]);
      id[k] = (JSON.parse(await orbitOk('id', '--json', '--home', home[k])) as { id: string }).id;
    }
  });

  after(async () => {
    for (const d of daemons) await down(d);
    await tmp.remove();
  });

  it('gives each store a readable, checked ID', async () => {
    for (const k of ['a', 'b', 'c'] as const) assert.match(id[k], /^([A-Z2-7]{7}-){7}[A-Z2-7]{7}$/);
    assert.notEqual(id.a, id.b);
    assert.equal((await orbitOk('id', '--home', home.a)).trim(), id.a); // the same key next time
    const typo = id.a.slice(0, 10) + (id.a[10] === 'A' ? 'B' : 'A') + id.a.slice(11);
    const bad = await orbit('peer', 'add', typo, '--home', home.b);
    assert.equal(bad.code, 2);
    assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
    assert.match(bad.stderr, /check character/);
    const self = await orbit('peer', 'add', id.b, '--home', home.b);
    assert.notEqual(self.code, 0);
    assert.match(self.stderr, /own ID/);
  });

  it('connects a deaf store to a listening one, and the connection serves both', async () => {
    a = await up(home.a, ['--listen', '127.0.0.1:0']);
    daemons.push(a);
    assert.ok(a.listen, a.output());
    await orbitOk('peer', 'add', id.b, '--name', 'b', '--home', home.a); // deaf: it dials in
    await orbitOk('peer', 'add', id.a, '--name', 'a', '--address', a.listen!, '--home', home.b);
    const again = await orbit('up', '--home', home.a);
    assert.notEqual(again.code, 0);
    assert.match(again.stderr, /already serves/);
    b = await up(home.b);
    daemons.push(b);
    await waitFor(async () => (await peerNamed(home.b, 'a'))?.connected === true, 'b to connect to a');
    await waitFor(async () => (await peerNamed(home.a, 'b'))?.connected === true, 'a to see b');
    const fromB = (await peerNamed(home.b, 'a'))!;
    const fromA = (await peerNamed(home.a, 'b'))!;
    assert.equal(fromB.direction, 'out');
    assert.equal(fromA.direction, 'in');
    assert.ok(fromB.bytesIn > 0 && fromB.bytesOut > 0);
    assert.equal(fromA.address, undefined);
    const table = await orbitOk('peer', 'list', '--home', home.a);
    assert.match(table, /b\s+\S+\s+\(deaf\)\s+connected \(dialed in\)\s+now/);
  });

  it('refuses a store it does not know, before serving it anything', async () => {
    await orbitOk('peer', 'add', id.a, '--name', 'a', '--address', a.listen!, '--home', home.c);
    const c = await up(home.c);
    daemons.push(c);
    await waitFor(async () => (await peerNamed(home.c, 'a'))?.lastError !== undefined, 'c to be refused', 20_000);
    const seen = (await peerNamed(home.c, 'a'))!;
    assert.equal(seen.connected, false);
    assert.equal(seen.bytesIn, 0); // no session came up: nothing counted
    const refusal = a.output().split('\n').find((l) => l.includes('"msg":"refused a connection"'));
    assert.ok(refusal?.includes(id.c), a.output());
    assert.ok((await peers(home.a)).peers.every((p) => p.id !== id.c));
    await down(c);
  });

  it('dials a peer again when it comes back', async () => {
    const address = a.listen!;
    await down(a);
    await waitFor(async () => (await peerNamed(home.b, 'a'))?.connected === false, 'b to notice a gone');
    const offline = await peers(home.a);
    assert.equal(offline.daemon, false);
    assert.ok(offline.peers.find((p) => p.name === 'b')!.bytesIn > 0, 'the last daemon saved what it counted');
    a = await up(home.a, ['--listen', address]);
    daemons.push(a);
    await waitFor(async () => (await peerNamed(home.b, 'a'))?.connected === true, 'b to reconnect', 20_000);
  });

  it('offers a shared volume to its peer at once, and serves its index to it alone', async () => {
    const offersOf = async (h: string): Promise<Array<{ name: string; volumes: Array<{ name: string }> }>> =>
      JSON.parse(await orbitOk('volume', 'offers', '--json', '--home', h)) as Array<{ name: string; volumes: Array<{ name: string }> }>;
    assert.deepEqual((await offersOf(home.b)).flatMap((o) => o.volumes), []);
    await orbitOk('share', 'default', '--with', 'b', '--home', home.a);
    await waitFor(async () => (await offersOf(home.b)).some((o) => o.name === 'a' && o.volumes.some((v) => v.name === 'default')), 'b to see the offer');
    assert.match(await orbitOk('volume', 'list', '--home', home.b), /a:default/);
    const unknownVolume = await orbit('share', 'nope', '--with', 'b', '--home', home.a);
    assert.notEqual(unknownVolume.code, 0);

    // c, known to a but offered nothing, asks with c's own key.
    await orbitOk('peer', 'add', id.c, '--name', 'c', '--home', home.a);
    await waitFor(async () => (await peerNamed(home.a, 'c')) !== undefined, 'a\'s daemon to know c');
    const [host, port] = [a.listen!.split(':')[0]!, Number(a.listen!.split(':')[1])];
    const socket = await dialPeer({ identity: await loadIdentity(home.c), host, port, expect: id.a });
    const session = await PeerSession.open(socket, { localPeer: id.c, software: 'test' });
    try {
      await assert.rejects(session.request('index', { volume: 'default', after: 0 }), { code: 'EACCES' });
      assert.deepEqual((await session.request('offers', {})).header.volumes, []);
      const offered = new Promise<unknown>((resolve) => session.onNotify('offers', (n) => resolve(n.header.volumes)));
      await orbitOk('share', 'default', '--with', 'c', '--home', home.a);
      assert.deepEqual(await offered, [{ name: 'default' }]);
      const index = await session.request('index', { volume: 'default', after: 0 });
      const changes = JSON.parse(index.body.toString('utf8')) as VolumeChanges;
      assert.equal(changes.more, false);
      assert.ok(changes.upTo > 0);
      assert.ok(changes.inodes.some((i) => (i.attr.mode & 0o170000) === 0o040000), 'the root directory');
      await assert.rejects(session.request('index', { volume: 'nope', after: 0 }), { code: 'EACCES' });
    } finally {
      await session.close();
    }
    await orbitOk('unshare', 'default', '--with', 'b', '--home', home.a);
    await waitFor(async () => (await offersOf(home.b)).every((o) => o.volumes.length === 0), 'the offer to go');
  });

  it('attaches an offered volume: its whole tree listed at once, read-only, following the peer\'s changes', async () => {
    const mntA = path.join(tmp.dir, 'mnt-a');
    const mntB = path.join(tmp.dir, 'mnt-b');
    await mkdir(mntA);
    await mkdir(mntB);
    await orbitOk('volume', 'create', 'photos', '--home', home.a);
    await orbitOk('mount', '--volume', 'photos', '--background', '--home', home.a, mntA);
    try {
      for (let d = 0; d < 5; d++) {
        await mkdir(path.join(mntA, `d${d}`));
        for (let f = 0; f < 40; f++) await writeFile(path.join(mntA, `d${d}`, `f${f}`), `file ${d}/${f}\n`);
      }
      await writeFile(path.join(mntA, 'big'), randomBytes(3 << 20));
      await symlink('d0/f0', path.join(mntA, 'link'));
    } finally {
      await orbitOk('umount', mntA);
    }
    const bad = await orbit('volume', 'attach', 'a:photos', '--home', home.b);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /does not offer a volume photos/);
    await orbitOk('share', 'photos', '--with', 'b', '--home', home.a);
    await waitFor(async () => (JSON.parse(await orbitOk('volume', 'offers', '--json', '--home', home.b)) as Array<{ volumes: Array<{ name: string }> }>)
      .some((o) => o.volumes.some((v) => v.name === 'photos')), 'the offer');
    const attached = await orbitOk('volume', 'attach', 'a:photos', '--home', home.b);
    assert.match(attached, /attached a:photos as volume photos \(20[0-9] inodes/);
    await orbitOk('mount', '--volume', 'photos', '--background', '--home', home.b, mntB);
    try {
      const listing = async (dir: string): Promise<string> => (await run('find', [dir, '-printf', '%P %y %s %m %l\n'])).stdout.split('\n').sort().join('\n');
      const seenB = await listing(mntB);
      await orbitOk('mount', '--volume', 'photos', '--background', '--home', home.a, mntA);
      try {
        assert.equal(seenB, await listing(mntA));
        // A change on a reaches b's index once a's writes pause.
        await writeFile(path.join(mntA, 'd1', 'new'), 'new file\n');
        await waitFor(async () => (await readdir(path.join(mntB, 'd1'))).includes('new'), 'the new file to appear on b', 20_000);
        // A file b has read (its pages in b's kernel cache) and a then changes reads anew on b.
        assert.equal(await readFile(path.join(mntB, 'd0', 'f1'), 'utf8'), 'file 0/1\n');
        await writeFile(path.join(mntA, 'd0', 'f1'), 'file 0/1, changed\n');
        await waitFor(async () => (await readFile(path.join(mntB, 'd0', 'f1'), 'utf8')) === 'file 0/1, changed\n', 'the change to reach b', 20_000);
      } finally {
        await orbitOk('umount', mntA);
      }
      const touch = await run('touch', [path.join(mntB, 'mine')]);
      assert.notEqual(touch.code, 0);
      assert.match(touch.stderr, /Read-only file system/);
    } finally {
      await orbitOk('umount', mntB);
    }
  });

  it('drops and refuses a peer once it is removed', async () => {
    await orbitOk('peer', 'remove', 'b', '--home', home.a);
    await waitFor(async () => (await peerNamed(home.b, 'a'))?.connected === false, 'b to be dropped');
    await new Promise((r) => setTimeout(r, 3000)); // b keeps dialing, and is refused
    assert.equal((await peerNamed(home.b, 'a'))?.connected, false);
    assert.deepEqual((await peers(home.a)).peers.map((p) => p.name), ['c']);
  });
});
