// The metadata cache never answers differently from the database: random sequences of namespace
// operations go through MetaClient, and after each one (once the engine has done what it was
// sent) every name and inode the test knows is looked up both through the cache and straight from
// the database (a second connection). Creates in directories the client made go ahead of the
// engine (client.ts): a warm-up fills the reserve of inode numbers first, and the test says that
// some did.
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { MetaClient } from '../../src/meta/client.js';
import { FileType, type InodeAttr, type Ino } from '../../src/meta/contract.js';
import { SqliteEngine } from '../../src/meta/sqlite/engine.js';
import { SqliteMeta } from '../../src/meta/sqlite/host.js';
import { tempDir } from '../helpers.js';

const me = { uid: 0, gid: 0, umask: 0o022 };
const names = ['a', 'b', 'c'];

type Op =
  | { op: 'create' | 'mkdir' | 'unlink' | 'rmdir'; dir: number; name: string }
  | { op: 'link'; from: number; fromName: string; dir: number; name: string }
  | { op: 'rename'; from: number; fromName: string; dir: number; name: string; flags: number }
  | { op: 'chmod' | 'open' | 'release'; dir: number; name: string; mode: number }
  | { op: 'setxattr' | 'removexattr' | 'getxattr'; dir: number; name: string; value: string };

const anyOp: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ op: fc.constantFrom('create', 'mkdir', 'unlink', 'rmdir'), dir: fc.nat(3), name: fc.constantFrom(...names) }),
  fc.record({ op: fc.constant('link'), from: fc.nat(3), fromName: fc.constantFrom(...names), dir: fc.nat(3), name: fc.constantFrom(...names) }),
  fc.record({ op: fc.constant('rename'), from: fc.nat(3), fromName: fc.constantFrom(...names), dir: fc.nat(3), name: fc.constantFrom(...names), flags: fc.constantFrom(0, 0, 1, 2, 4) }),
  fc.record({ op: fc.constantFrom('chmod', 'open', 'release'), dir: fc.nat(3), name: fc.constantFrom(...names), mode: fc.nat(0o777) }),
  fc.record({ op: fc.constantFrom('setxattr', 'removexattr', 'getxattr'), dir: fc.nat(3), name: fc.constantFrom(...names), value: fc.constantFrom('x', 'yy') }),
) as fc.Arbitrary<Op>;

/** The answer or the error code, for comparing two engines' replies. */
async function outcome<T>(fn: () => Promise<T> | T): Promise<T | string> {
  try {
    return await fn();
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

describe('metadata cache', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let cached: MetaClient;
  let direct: SqliteEngine;

  before(async () => {
    tmp = await tempDir('meta-cache');
    const file = path.join(tmp.dir, 'meta.db');
    cached = new MetaClient(await SqliteMeta.open(file));
    direct = new SqliteEngine(file);
    // A first create asks the engine for inode numbers to go ahead with: from then on, every
    // create in a directory the sequences made can go ahead (else whether any did is up to the seed).
    const warm = await cached.createVolume('warm-up', me);
    const dir = (await cached.create(warm.root, 'd', { type: FileType.Directory, perm: 0o755 }, me)).attr.ino;
    await cached.create(dir, 'f', { type: FileType.Regular, perm: 0o644 }, me);
    await cached.sync();
  });
  after(async () => {
    await cached.close();
    direct.close();
    await tmp.remove();
  });

  it('agrees with the database after every operation', async () => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(anyOp, { minLength: 1, maxLength: 40 }), async (ops) => {
        const volume = await cached.createVolume(`v${run++}`, me);
        // Directories the operations address: the root, then whatever dirs got made.
        const dirs: Ino[] = [volume.root];
        const inos = new Set<Ino>([volume.root]);
        const dirOf = (i: number): Ino => dirs[i % dirs.length]!;
        for (const o of ops) {
          const dir = dirOf(o.dir);
          await outcome(async () => {
            switch (o.op) {
              case 'create': inos.add((await cached.create(dir, o.name, { type: FileType.Regular, perm: 0o644 }, me)).attr.ino); break;
              case 'mkdir': {
                const a = (await cached.create(dir, o.name, { type: FileType.Directory, perm: 0o755 }, me)).attr;
                dirs.push(a.ino);
                inos.add(a.ino);
                break;
              }
              case 'unlink': await cached.unlink(dir, o.name); break;
              case 'rmdir': await cached.rmdir(dir, o.name); break;
              case 'link': await cached.link((await cached.lookup(dirOf(o.from), o.fromName)).ino, dir, o.name); break;
              case 'rename': await cached.rename(dirOf(o.from), o.fromName, dir, o.name, o.flags, me); break;
              case 'chmod': await cached.setattr((await cached.lookup(dir, o.name)).ino, { mode: o.mode }); break;
              case 'open': await cached.open((await cached.lookup(dir, o.name)).ino); break;
              case 'release': await cached.release((await cached.lookup(dir, o.name)).ino); break;
              case 'setxattr': await cached.setxattr((await cached.lookup(dir, o.name)).ino, 'user.t', Buffer.from(o.value), 0); break;
              case 'removexattr': await cached.removexattr((await cached.lookup(dir, o.name)).ino, 'user.t'); break;
              case 'getxattr': await cached.getxattr((await cached.lookup(dir, o.name)).ino, 'user.t'); break;
            }
          });
          // Everything the cache might hold, compared with the database once the engine has done
          // what it was sent (a create answered ahead may still be on its way).
          await cached.sync();
          for (const d of dirs) {
            for (const name of names) {
              const viaCache = await outcome(() => cached.lookup(d, name));
              const truth = await outcome(() => direct.lookup(d, name));
              assert.deepEqual(viaCache, truth, `lookup ${d}/${name} after ${JSON.stringify(o)}`);
              if (typeof truth === 'object') inos.add((truth as InodeAttr).ino);
            }
          }
          for (const ino of inos) {
            assert.deepEqual(await outcome(() => cached.getattr(ino)), await outcome(() => direct.getattr(ino)), `getattr ${ino} after ${JSON.stringify(o)}`);
            const x = await outcome(() => cached.getxattr(ino, 'user.t'));
            const y = await outcome(() => direct.getxattr(ino, 'user.t'));
            assert.deepEqual(x, typeof y === 'string' ? y : Buffer.from(y), `getxattr ${ino} after ${JSON.stringify(o)}`);
          }
        }
      }),
      { numRuns: 60, includeErrorInReport: true, seed: process.env.ORBIT_PROPERTY_SEED ? Number(process.env.ORBIT_PROPERTY_SEED) : undefined },
    );
    assert.ok(cached.createsAhead > 0, 'some creates went ahead of the engine');
  });
});
