// Creates answered ahead of the engine (meta/client.ts): what the client tells the kernel is what
// the engine then stores, for every kind of node and under a set-group-ID directory; the engine's
// reserved inode numbers are never handed out again; and a create the engine fails after the
// client answered it (the name made meanwhile by another connection) is undone, reported and
// looked up afresh.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { MetaClient, type LostCreate } from '../../src/meta/client.js';
import { FileType, type Ino, type NewNode } from '../../src/meta/contract.js';
import { SqliteEngine } from '../../src/meta/sqlite/engine.js';
import { SqliteMeta } from '../../src/meta/sqlite/host.js';
import { tempDir, waitFor } from '../helpers.js';

const root = { uid: 0, gid: 0, umask: 0o022 };
const user = { uid: 1000, gid: 1000, umask: 0o022 };

describe('creates answered ahead', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let client: MetaClient;
  let direct: SqliteEngine;

  before(async () => {
    tmp = await tempDir('create-ahead');
    const file = path.join(tmp.dir, 'meta.db');
    client = new MetaClient(await SqliteMeta.open(file));
    direct = new SqliteEngine(file);
  });
  after(async () => {
    await client.close();
    direct.close();
    await tmp.remove();
  });

  it('answer with the attributes the engine stores, for every kind of node', async () => {
    const volume = await client.createVolume('kinds', root);
    // Made here, so its names are all known: creates in it may go ahead.
    const dir = (await client.create(volume.root, 'd', { type: FileType.Directory, perm: 0o777 }, root)).attr.ino;
    const sgid = (await client.create(dir, 'sgid', { type: FileType.Directory, perm: 0o2775 }, root)).attr.ino;
    await client.setattr(sgid, { gid: 4242 });
    await client.sync(); // the reservation of inode numbers has landed
    const before = client.createsAhead;
    const nodes: Array<[string, NewNode]> = [
      ['file', { type: FileType.Regular, perm: 0o640 }],
      ['sub', { type: FileType.Directory, perm: 0o750 }],
      ['link', { type: FileType.Symlink, perm: 0o777, target: '../somewhere/é' }],
      ['fifo', { type: FileType.Fifo, perm: 0o600 }],
      ['dev', { type: FileType.CharDevice, perm: 0o600, rdev: 0x0103 }],
    ];
    for (const parent of [dir, sgid]) {
      for (const [name, node] of nodes) {
        const made = await client.create(parent, name, node, user);
        await client.sync();
        assert.deepEqual(made.attr, direct.getattr(made.attr.ino), `${name} in ${parent === sgid ? 'the set-group-ID directory' : 'a directory'}`);
        assert.deepEqual(made.dirs[0], direct.getattr(parent), `the directory after ${name}`);
      }
    }
    assert.equal(client.createsAhead - before, 2 * nodes.length, 'every one went ahead');
    const inSgid = direct.lookup(sgid, 'sub');
    assert.equal(inSgid.gid, 4242, 'the group of a set-group-ID directory');
    assert.equal(inSgid.mode & 0o2000, 0o2000, 'a new directory in it inherits the bit');
  });

  it('never hand out a reserved inode number to another create', async () => {
    const first = await client.reserveInodes(100);
    const volume = await client.createVolume('numbers', root);
    const other = direct.create(volume.root, 'x', { type: FileType.Regular, perm: 0o644 }, root);
    assert.ok(other.attr.ino >= first + 100, `${other.attr.ino} is after the reserved ${first}..${first + 99}`);
    assert.ok(volume.root >= first + 100);
  });

  it('undo a create the engine fails after it was answered, and say so', async () => {
    const volume = await client.createVolume('lost', root);
    const dir = (await client.create(volume.root, 'd', { type: FileType.Directory, perm: 0o755 }, root)).attr.ino;
    await client.sync();
    const lost: LostCreate[] = [];
    const stop = client.onLostCreate((l) => lost.push(l));
    // Another connection makes the name behind the client's back (a volume is served by one
    // process; this is how a create can fail after it was answered).
    const theirs: Ino = direct.create(dir, 'x', { type: FileType.Regular, perm: 0o600 }, user).attr.ino;
    const before = client.createsAhead;
    const ours = await client.create(dir, 'x', { type: FileType.Regular, perm: 0o644 }, root);
    assert.equal(client.createsAhead, before + 1, 'it went ahead');
    await waitFor(() => lost.length === 1, 'the engine to refuse it');
    stop();
    assert.deepEqual(lost[0], { parent: dir, name: 'x', ino: ours.attr.ino });
    assert.equal((await client.lookup(dir, 'x')).ino, theirs, 'the name is looked up afresh');
    await assert.rejects(client.getattr(ours.attr.ino), { code: 'ENOENT' });
    assert.deepEqual(await client.getattr(dir), direct.getattr(dir), 'the directory as the engine has it');
  });
});
