// Tiering: with `orbit tier policy --hot replicate:3 --cold ec:4+2`, new chunks are stored cold; a
// chunk read hot moves to replicate:3 on its own (lazily, after the read), unless a file asks for
// a policy of its own; once nobody reads it for a while, the tier job moves it back; files read
// back identical throughout. Heat windows of a second stand for hours.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { componentLogger } from '../../src/log.js';
import { Heat } from '../../src/pool/heat.js';
import { formatPolicy } from '../../src/pool/policy.js';
import { resolveStorePath } from '../../src/store/paths.js';
import { Store } from '../../src/store/store.js';
import { TierMover } from '../../src/store/tier-mover.js';
import { orbit, orbitOk, run, storeWithDisks, tempDir, waitFor } from '../helpers.js';

const MiB = 1024 * 1024;
const WINDOW_MS = 1000;
const ok = orbitOk;

interface Shown {
  policy: string;
  source: string;
  chunks: Record<string, number>;
}

const md5 = (b: Buffer): string => createHash('md5').update(b).digest('hex');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('tiering by heat', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let home: string;
  let mnt: string;
  const sums = new Map<string, string>();
  let movedHot = 0;
  /** The chunks read hot in-process: the hot file's and the pinned file's. */
  const readHot: string[] = [];

  const show = async (file: string): Promise<Shown> => JSON.parse(await ok('policy', 'show', `default:/${file}`, '--json', '--home', home)) as Shown;

  before(async () => {
    tmp = await tempDir('tiering');
    mnt = path.join(tmp.dir, 'mnt');
    home = (await storeWithDisks(tmp.dir, 6)).home;
    await run('mkdir', [mnt]);
  });

  after(async () => {
    await orbit('umount', mnt);
    await tmp.remove();
  });

  it('is set and shown, and refuses what the pool cannot keep or a half-given pair', async () => {
    const off = JSON.parse(await ok('tier', 'policy', '--json', '--home', home)) as { off?: boolean };
    assert.equal(off.off, true);
    const wide = await orbit('tier', 'policy', '--hot', 'replicate:3', '--cold', 'ec:6+2', '--home', home);
    assert.notEqual(wide.code, 0);
    assert.match(wide.stderr, /ec:6\+2 needs 8 disks.*has 6/);
    const half = await orbit('tier', 'policy', '--hot', 'replicate:3', '--home', home);
    assert.notEqual(half.code, 0);
    assert.match(half.stderr, /both --hot and --cold/);
    const bad = await orbit('tier', 'policy', '--hot', 'raid5', '--cold', 'ec:4+2', '--home', home);
    assert.equal(bad.code, 2);
    const on = await ok('tier', 'policy', '--hot', 'replicate:3', '--cold', 'ec:4+2', '--window', '1s', '--every', '1h', '--home', home);
    assert.match(on, /hot chunks under replicate:3, cold ones \(and new ones\) under ec:4\+2; heat window 1s/);
    const shown = JSON.parse(await ok('tier', 'policy', '--json', '--home', home)) as { hot: string; cold: string; windowMs: number; everyMs: number };
    assert.deepEqual([shown.hot, shown.cold, shown.windowMs, shown.everyMs], ['replicate:3', 'ec:4+2', WINDOW_MS, 3_600_000]);
    const history = await readFile(path.join(home, 'audit.log'), 'utf8');
    assert.match(history, /"tiering-set"/);
  });

  it('stores new chunks cold', async () => {
    await ok('mount', '--home', home, '--background', mnt);
    for (const name of ['hot', 'idle', 'pinned']) {
      const data = randomBytes(3 * MiB);
      sums.set(name, md5(data));
      await writeFile(path.join(mnt, name), data);
    }
    await ok('policy', 'set', `default:/pinned`, 'ec:4+2', '--wait', '--home', home);
    await ok('umount', mnt);
    for (const name of ['hot', 'idle', 'pinned']) {
      const s = await show(name);
      assert.deepEqual(Object.keys(s.chunks), ['ec:4+2'], `${name}: ${JSON.stringify(s)}`);
    }
    assert.equal((await show('hot')).source, 'tiering');
    assert.equal((await show('pinned')).source, 'set');
  });

  it('moves a chunk read hot to the hot policy after the read, but not one whose file asks for a policy', async () => {
    const store = await Store.open(home);
    try {
      const heat = Heat.open(home, { windowMs: store.chunks.heatWindowMs });
      store.chunks.heat = heat;
      assert.equal(store.chunks.heatWindowMs, WINDOW_MS);
      // This process stands for the store's job runner: no other process runs now.
      const mover = new TierMover(store, () => true, componentLogger('tiering'));
      mover.attach();
      const chunksOf = async (name: string): Promise<string[]> => {
        const where = await resolveStorePath(store, `default:/${name}`);
        return [...new Set((await store.meta.extents(where.ino, 0, 3 * MiB)).map((e) => e.chunk))];
      };
      const hot = await chunksOf('hot');
      const pinned = await chunksOf('pinned');
      // Two busy windows make a chunk hot (one burst does not).
      for (let w = 0; w < 2; w++) {
        await sleep(WINDOW_MS - (Date.now() % WINDOW_MS) + 20);
        for (let i = 0; i < 3; i++) for (const id of [...hot, ...pinned]) await store.chunks.get(id);
      }
      for (const id of hot) assert.equal(heat.classify(id), 'hot');
      await waitFor(() => mover.moved === hot.length, 'hot chunks moved');
      for (const id of hot) assert.equal(formatPolicy((await store.chunks.policyOf(id))!), 'replicate:3');
      movedHot = hot.length;
      readHot.push(...hot, ...pinned);
      for (const id of pinned) assert.equal(formatPolicy((await store.chunks.policyOf(id))!), 'ec:4+2');
      await mover.close();
      await heat.close();
    } finally {
      await store.close();
    }
    assert.deepEqual(Object.keys((await show('hot')).chunks), ['replicate:3']); // nothing left under ec:4+2
    assert.deepEqual(Object.keys((await show('idle')).chunks), ['ec:4+2']);
  });

  it('moves chunks back to the cold policy once they cool, with the tier job', async () => {
    // A hot chunk is cold after ten quiet windows (more when a loaded machine spread its reads
    // over more windows): the hot file's chunks and the pinned one's.
    await sleep(10 * WINDOW_MS);
    let stillWarm: string[] = [];
    await waitFor(async () => {
      const cold = JSON.parse(await ok('tier', 'list', '--cold', '--limit', '10000', '--json', '--home', home)) as { chunks: Array<{ id: string }> };
      const ids = new Set(cold.chunks.map((c) => c.id));
      stillWarm = readHot.filter((id) => !ids.has(id));
      return stillWarm.length === 0;
    }, 'the read chunks to cool', 30_000).catch((err: Error) => {
      throw new Error(`${err.message}: ${stillWarm.length} of ${readHot.length} not cold`);
    });
    const applied = JSON.parse(await ok('tier', 'apply', '--json', '--home', home)) as { counts: Record<string, number> };
    assert.equal(applied.counts.cold, movedHot, JSON.stringify(applied));
    assert.equal(applied.counts.hot ?? 0, 0);
    for (const name of ['hot', 'idle', 'pinned']) assert.deepEqual(Object.keys((await show(name)).chunks), ['ec:4+2'], name);
    const gc = await ok('gc', '--home', home);
    assert.doesNotMatch(gc, /[1-9]\d* orphan/);
  });

  it('reads every file back identical, and turns off', async () => {
    await ok('mount', '--home', home, '--background', mnt);
    for (const [name, sum] of sums) assert.equal(md5(await readFile(path.join(mnt, name))), sum, name);
    await ok('umount', mnt);
    assert.match(await ok('tier', 'policy', '--off', '--home', home), /tiering is off/);
    const jobs = JSON.parse(await ok('jobs', '--json', '--home', home)) as Array<{ kind: string; state: string; everyMs?: number }>;
    assert.ok(jobs.filter((j) => j.kind === 'tier' && j.everyMs !== undefined).every((j) => j.state === 'cancelled'));
  });
});
