// The pool as users run it: a store on six directory disks under ec:4+2, a mounted volume, and
// the orbit commands that manage the disks. Files written through the mount must read back
// identical with two disks gone, after a rebuild onto new disks with two more gone, and through
// a scrub that finds and repairs flipped bits.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readdir, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { dropCaches } from '../../bench/lib.js';
import { orbit, orbitOk, run, storeWithDisks, tempDir } from '../helpers.js';

const MiB = 1024 * 1024;

const ok = orbitOk;

/** Every fragment file on a disk. */
async function fragmentsOn(disk: string): Promise<string[]> {
  const entries = await readdir(path.join(disk, 'chunks'), { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

describe('a pool of six disks under ec:4+2, through a mount', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let home: string;
  let mnt: string;
  const disks: string[] = [];
  const files = new Map<string, Buffer>();

  before(async () => {
    tmp = await tempDir('pool-mount');
    mnt = path.join(tmp.dir, 'mnt');
    const made = await storeWithDisks(tmp.dir, 6);
    home = made.home;
    disks.push(...made.disks);
    assert.match(await ok('pool', 'policy', 'ec:4+2', '--home', home), /^ec:4\+2\n$/);
    await run('mkdir', [mnt]);
    await ok('mount', '--home', home, '--background', mnt);
  });

  after(async () => {
    await orbit('umount', mnt);
    await tmp.remove();
  });

  async function readsBack(): Promise<void> {
    await dropCaches();
    for (const [name, data] of files) assert.ok((await readFile(path.join(mnt, name))).equals(data), `${name} differs`);
  }

  it('puts one fragment of each chunk on each disk', async () => {
    for (let i = 0; i < 6; i++) files.set(`f${i}`, randomBytes((2 + i) * MiB + i * 1000));
    for (const [name, data] of files) await writeFile(path.join(mnt, name), data);
    await run('sync', []);
    const counts = await Promise.all(disks.map(async (d) => (await fragmentsOn(d)).length));
    assert.ok(counts[0]! > 10, `only ${counts[0]} fragments`);
    assert.ok(counts.every((c) => c === counts[0]), `fragments per disk: ${counts.join(', ')}`);
    const list = JSON.parse(await ok('pool', 'list', '--json', '--home', home)) as { policy: string; disks: Array<{ fragments: number; health: string }> };
    assert.equal(list.policy, 'ec:4+2');
    assert.deepEqual(list.disks.map((d) => [d.health, d.fragments]), counts.map((c) => ['ok', c]));
  });

  it('reads every file with two disks deleted', async () => {
    await rm(disks[1]!, { recursive: true });
    await rm(disks[4]!, { recursive: true });
    await readsBack();
  });

  it('rebuilds onto new disks', async () => {
    for (const n of [6, 7]) {
      const d = path.join(tmp.dir, `disk${n}`);
      await ok('pool', 'add-disk', d, '--home', home);
      disks.push(d);
    }
    const out = await ok('pool', 'rebuild', '--home', home);
    assert.match(out, /0 corrupt fragment\(s\), [1-9]\d* fragment\(s\) written/);
    const newCounts = await Promise.all([disks[6]!, disks[7]!].map(async (d) => (await fragmentsOn(d)).length));
    assert.ok(newCounts.every((c) => c > 0), `fragments on the new disks: ${newCounts.join(', ')}`);
    // Nothing below its policy is left: a scrub finds nothing to do.
    assert.match(await ok('scrub', '--home', home), /0 corrupt fragment\(s\), 0 fragment\(s\) written/);
  });

  it('reads right with flipped bits, which scrub finds and --repair mends', async () => {
    let flipped = 0;
    for (const d of [disks[0]!, disks[6]!]) {
      for (const file of (await fragmentsOn(d)).slice(0, 4)) {
        const bytes = await readFile(file);
        bytes[40 + flipped * 7]! ^= 0x10;
        await writeFile(file, bytes);
        flipped++;
      }
    }
    await readsBack(); // (which may repair some of them already, in the background)
    const check = await orbit('scrub', '--json', '--home', home);
    const found = JSON.parse(check.stdout) as { corrupt: number };
    assert.ok(found.corrupt <= flipped, `scrub found ${found.corrupt} of ${flipped}`);
    assert.equal(check.code, found.corrupt > 0 ? 1 : 0, check.stderr);
    assert.match(await ok('scrub', '--repair', '--home', home), /fragment\(s\) written/);
    assert.match(await ok('scrub', '--home', home), /0 corrupt fragment\(s\), 0 fragment\(s\) written/);
  });

  it('after the rebuild, survives losing two more disks', async () => {
    await rm(disks[2]!, { recursive: true });
    await rm(disks[3]!, { recursive: true });
    await readsBack();
  });
});
