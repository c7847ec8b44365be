// The pool: erasure coding and placement by themselves, then a Pool of labelled disk directories
// surviving lost disks, healing onto added ones, repairing corrupt fragments, refusing a policy it
// has too few disks for, and listing and deleting what it holds.
import assert from 'node:assert/strict';
import { randomBytes, randomInt, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chunkId } from '../../src/content/hash.js';
import type { ChunkId } from '../../src/pool/contract.js';
import { ChunkMemory } from '../../src/pool/chunk-memory.js';
import { Disk, type DiskConfig } from '../../src/pool/disk.js';
import { encodeShards, joinData, restoreShards, shardSize } from '../../src/pool/erasure.js';
import { decodeFragment, FRAGMENT_HEADER, type FragmentHeader } from '../../src/pool/fragment.js';
import { rank, seedOf } from '../../src/pool/placement.js';
import { updatePoolConfig, writePoolConfig } from '../../src/pool/pool-config.js';
import { parsePolicy, type Policy } from '../../src/pool/policy.js';
import { Pool, type HealResult } from '../../src/pool/pool.js';
import { tempDir } from '../helpers.js';

// ---- plumbing ----

interface Chunk {
  id: ChunkId;
  bytes: Buffer;
}

function randomChunk(min: number, max: number): Chunk {
  const bytes = randomBytes(randomInt(min, max + 1));
  return { id: chunkId(bytes), bytes };
}

function randomChunks(n: number, min: number, max: number): Chunk[] {
  return Array.from({ length: n }, () => randomChunk(min, max));
}

const fragmentPath = (disk: string, id: ChunkId): string => path.join(disk, 'chunks', id.slice(0, 2), id.slice(2, 4), id);

interface FragmentFile {
  disk: string;
  file: string;
  bytes: Buffer;
}

/** The fragment files of `id` on the given disk directories (those that have one). */
async function fragmentFiles(disks: readonly string[], id: ChunkId): Promise<FragmentFile[]> {
  const found: FragmentFile[] = [];
  for (const disk of disks) {
    const file = fragmentPath(disk, id);
    try {
      found.push({ disk, file, bytes: await readFile(file) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return found;
}

/** Asserts `id` has exactly one checked fragment of each index its policy wants, on distinct disks
 * among `disks`; returns their headers. */
async function assertWhole(disks: readonly string[], id: ChunkId, policy: Policy, what: string): Promise<FragmentHeader[]> {
  const files = await fragmentFiles(disks, id);
  const want = policy.kind === 'replicate' ? policy.copies : policy.data + policy.parity;
  assert.equal(files.length, want, `${what}: chunk ${id} has ${files.length} fragment files, want ${want}`);
  assert.equal(new Set(files.map((f) => f.disk)).size, want, `${what}: fragments on distinct disks`);
  const headers = files.map((f) => {
    try {
      return decodeFragment(f.bytes).header;
    } catch (err) {
      assert.fail(`${what}: fragment ${f.file} does not decode: ${(err as Error).message}`);
    }
  });
  for (const h of headers) assert.deepEqual(h.policy, policy, `${what}: fragment policy`);
  const indexes = headers.map((h) => h.index).sort((a, b) => a - b);
  const wantIndexes = policy.kind === 'replicate' ? new Array<number>(want).fill(0) : Array.from({ length: want }, (_, i) => i);
  assert.deepEqual(indexes, wantIndexes, `${what}: fragment indexes of ${id}`);
  return headers;
}

/** The parts of a heal's result the tests check (it may report more). */
const counts = (r: HealResult): Pick<HealResult, 'written' | 'corrupt' | 'lost'> => ({ written: r.written, corrupt: r.corrupt, lost: r.lost });

async function assertAllReadable(pool: Pool, chunks: readonly Chunk[], what: string): Promise<void> {
  for (const c of chunks) {
    const got = await pool.get(c.id);
    assert.ok(got.equals(c.bytes), `${what}: get(${c.id}) returned ${got.length} bytes that differ from the ${c.bytes.length} stored`);
  }
}

interface TestPool {
  home: string;
  poolId: string;
  /** Disk directories, by index: disk `d${i}` is disks[i]. */
  disks: string[];
}

async function labelDisk(home: string, poolId: string, i: number): Promise<{ dir: string; config: DiskConfig }> {
  const dir = path.join(home, `d${i}`);
  await Disk.label(dir, poolId, `d${i}`);
  return { dir, config: { id: `d${i}`, path: dir, state: 'active', added: new Date().toISOString() } };
}

/** A home with `n` labelled disk directories and a pool.json naming them. */
async function makePool(root: string, name: string, n: number, policy?: string): Promise<TestPool> {
  const home = path.join(root, name);
  await mkdir(home, { recursive: true });
  const poolId = randomUUID();
  const disks: string[] = [];
  const configs: DiskConfig[] = [];
  for (let i = 0; i < n; i++) {
    const { dir, config } = await labelDisk(home, poolId, i);
    disks.push(dir);
    configs.push(config);
  }
  await writePoolConfig(home, { format: 1, id: poolId, disks: configs, ...(policy === undefined ? {} : { policy }) });
  return { home, poolId, disks };
}

// ---- erasure coding and placement by themselves ----

describe('erasure coding (ec 4+2)', () => {
  it('rebuilds the chunk from any 4 of its 6 shards', async () => {
    const k = 4;
    const m = 2;
    for (const length of [1, 1000, (1 << 20) + 3]) {
      const chunk = randomBytes(length);
      const shards = (await encodeShards(chunk, k, m)).map((s) => Buffer.from(s));
      assert.equal(shards.length, k + m);
      for (const s of shards) assert.equal(s.length, shardSize(length, k), `every shard of a ${length}-byte chunk has one size`);
      assert.ok(joinData(shards.slice(0, k), length).equals(chunk), `the data shards of a ${length}-byte chunk join to it`);
      for (let a = 0; a < k + m; a++) {
        for (let b = a + 1; b < k + m; b++) {
          const left = shards.map((s, i) => (i === a || i === b ? undefined : s));
          const restored = await restoreShards(left, k, m);
          assert.equal(restored.length, k + m);
          for (let i = 0; i < k + m; i++) assert.ok(restored[i]!.equals(shards[i]!), `length ${length}, without shards ${a} and ${b}: shard ${i} restored`);
          assert.ok(joinData(restored.slice(0, k), length).equals(chunk), `length ${length}, without shards ${a} and ${b}: the chunk`);
        }
      }
      // Three missing is one too many.
      await assert.rejects(restoreShards(shards.map((s, i) => (i < 3 ? undefined : s)), k, m));
    }
  });
});

describe('placement (weighted rendezvous hashing)', () => {
  const disk = (name: string, weight: number) => ({ name, seed: seedOf(name), weight });
  const ids = Array.from({ length: 20_000 }, () => randomBytes(32).toString('hex'));

  it('ranks deterministically, whatever the order the disks are given in', () => {
    const disks = [disk('d0', 1), disk('d1', 2), disk('d2', 8), disk('d3', 3)];
    for (const id of ids.slice(0, 1000)) {
      const first = rank(id, disks).map((d) => d.name);
      assert.equal(first.length, disks.length);
      assert.deepEqual(rank(id, disks).map((d) => d.name), first);
      assert.deepEqual(rank(id, [...disks].reverse()).map((d) => d.name), first);
    }
  });

  it('puts first the disks in proportion to their weights (1, 2, 8), and a new disk only takes ids', () => {
    const old = [disk('d0', 1), disk('d1', 2), disk('d2', 8)];
    const added = disk('d3', 4);
    const firsts = new Map<string, number>();
    const firstsAfter = new Map<string, number>();
    for (const id of ids) {
      const before = rank(id, old);
      firsts.set(before[0]!.name, (firsts.get(before[0]!.name) ?? 0) + 1);
      const withNew = rank(id, [...old, added]);
      firstsAfter.set(withNew[0]!.name, (firstsAfter.get(withNew[0]!.name) ?? 0) + 1);
      // The old disks keep their order among themselves: an id either moves to the new disk or
      // stays where it was (for every one of its fragments).
      assert.deepEqual(withNew.filter((d) => d !== added).map((d) => d.name), before.map((d) => d.name), `id ${id}`);
    }
    for (const [name, share] of [['d0', 1 / 11], ['d1', 2 / 11], ['d2', 8 / 11]] as const) {
      const got = (firsts.get(name) ?? 0) / ids.length;
      assert.ok(Math.abs(got - share) <= 0.03, `disk ${name} ranks first for ${(got * 100).toFixed(1)}% of ids, want ${(share * 100).toFixed(1)}% ± 3`);
    }
    const newShare = (firstsAfter.get('d3') ?? 0) / ids.length;
    assert.ok(Math.abs(newShare - 4 / 15) <= 0.03, `the added disk (weight 4 of 15) ranks first for ${(newShare * 100).toFixed(1)}% of ids`);
  });
});

// ---- the pool ----

describe('Pool', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  const open: Pool[] = [];
  const openPool = async (home: string): Promise<Pool> => {
    const pool = await Pool.open(home);
    open.push(pool);
    return pool;
  };

  before(async () => {
    tmp = await tempDir('pool');
  });
  after(async () => {
    for (const pool of open) await pool.close().catch(() => undefined);
    await tmp.remove();
  });

  it('replicate:2 on 3 disks: serves every chunk with a disk wiped, and heal copies them back', async () => {
    const t = await makePool(tmp.dir, 'replicate', 3, 'replicate:2');
    const policy = parsePolicy('replicate:2');
    const pool = await openPool(t.home);
    assert.deepEqual(pool.policy, policy);
    const chunks = randomChunks(30, 10 * 1024, 200 * 1024);
    for (const c of chunks) assert.equal(await pool.put(c.id, c.bytes), 'stored');
    await pool.sync();
    for (const c of chunks) await assertWhole(t.disks, c.id, policy, 'after put');
    await assertAllReadable(pool, chunks, 'after put');

    const wiped = 1;
    const lostCopy = new Set<ChunkId>();
    for (const c of chunks) if ((await fragmentFiles([t.disks[wiped]!], c.id)).length > 0) lostCopy.add(c.id);
    assert.ok(lostCopy.size > 0, 'the wiped disk held some chunk');
    await rm(t.disks[wiped]!, { recursive: true, force: true });

    await assertAllReadable(pool, chunks, 'with d1 wiped');
    const d1 = pool.disks().find((d) => d.config.id === 'd1');
    assert.equal(d1?.available, false, 'the wiped disk is seen as unavailable');

    const remaining = t.disks.filter((_, i) => i !== wiped);
    for (const c of chunks) {
      const r = await pool.heal(c.id);
      assert.deepEqual(counts(r), { written: lostCopy.has(c.id) ? 1 : 0, corrupt: 0, lost: false }, `heal of ${c.id} (lost a copy: ${lostCopy.has(c.id)})`);
    }
    await pool.sync();
    for (const c of chunks) await assertWhole(remaining, c.id, policy, 'after heal');
    await assert.rejects(stat(t.disks[wiped]!), { code: 'ENOENT' }, 'nothing wrote to the wiped disk');
    await assertAllReadable(pool, chunks, 'after heal');
  });

  it('ec:4+2 on 6 disks: survives two wiped disks, heals onto two added ones, then survives two more', async () => {
    const t = await makePool(tmp.dir, 'ec', 6, 'ec:4+2');
    const policy = parsePolicy('ec:4+2');
    let pool = await openPool(t.home);
    const chunks = randomChunks(40, 1, 100 * 1024);
    for (const c of chunks) assert.equal(await pool.put(c.id, c.bytes), 'stored');
    await pool.sync();
    for (const c of chunks) {
      const headers = await assertWhole(t.disks, c.id, policy, 'after put');
      for (const h of headers) {
        assert.equal(h.chunkLength, c.bytes.length);
        assert.equal(h.payloadLength, shardSize(c.bytes.length, 4));
      }
    }

    await rm(t.disks[0]!, { recursive: true, force: true });
    await rm(t.disks[1]!, { recursive: true, force: true });
    await assertAllReadable(pool, chunks, 'with d0 and d1 wiped');
    // Reads that needed parity queue repairs; closing waits for them (there is nowhere to write).
    await pool.close();
    pool = await openPool(t.home);
    await assertAllReadable(pool, chunks, 'reopened with d0 and d1 wiped');
    assert.deepEqual(pool.disks().map((d) => [d.config.id, d.available]), [['d0', false], ['d1', false], ['d2', true], ['d3', true], ['d4', true], ['d5', true]]);
    await pool.close();

    // Two fresh disks, added while the pool is open: refresh(true) picks them up.
    pool = await openPool(t.home);
    const fresh: string[] = [];
    for (const i of [6, 7]) {
      const { dir, config } = await labelDisk(t.home, t.poolId, i);
      fresh.push(dir);
      await updatePoolConfig(t.home, (config_) => {
        config_.disks.push(config);
      });
    }
    await pool.refresh(true);
    assert.deepEqual(pool.disks().filter((d) => d.available).map((d) => d.config.id), ['d2', 'd3', 'd4', 'd5', 'd6', 'd7']);
    for (const c of chunks) assert.deepEqual(counts(await pool.heal(c.id)), { written: 2, corrupt: 0, lost: false }, `heal of ${c.id}`);
    await pool.sync();
    const present = [...t.disks.slice(2), ...fresh];
    for (const c of chunks) await assertWhole(present, c.id, policy, 'after heal');
    for (const dir of fresh) assert.ok((await fragmentFiles([dir], chunks[0]!.id)).length === 1, `added disk ${dir} holds a fragment`);

    await rm(t.disks[2]!, { recursive: true, force: true });
    await rm(t.disks[3]!, { recursive: true, force: true });
    await assertAllReadable(pool, chunks, 'after heal, with d2 and d3 also wiped');
    await pool.close();
    pool = await openPool(t.home);
    await assertAllReadable(pool, chunks, 'reopened with d0-d3 wiped');
  });

  it('ec:4+2: reads around corrupt fragments, and heal (explicit or after a read) replaces them', async () => {
    const t = await makePool(tmp.dir, 'corrupt', 6, 'ec:4+2');
    const policy = parsePolicy('ec:4+2');
    let pool = await openPool(t.home);
    const chunks = randomChunks(20, 1000, 100 * 1024);
    for (const c of chunks) assert.equal(await pool.put(c.id, c.bytes), 'stored');
    await pool.sync();
    await pool.close();

    /** Flips one payload byte of the fragment of `c` with index `index`. */
    const corrupt = async (c: Chunk, index: number): Promise<void> => {
      const f = (await fragmentFiles(t.disks, c.id)).find((x) => decodeFragment(x.bytes).header.index === index);
      assert.ok(f, `chunk ${c.id} has a fragment ${index}`);
      const at = FRAGMENT_HEADER + 1 + randomInt(f.bytes.length - FRAGMENT_HEADER - 1);
      f.bytes[at]! ^= 0x5a;
      await writeFile(f.file, f.bytes);
      assert.throws(() => decodeFragment(f.bytes), /payload checksum mismatch/);
    };

    // Explicit heal, before any read has seen the damage.
    const healed = chunks.slice(0, 5);
    for (const [i, c] of healed.entries()) await corrupt(c, i % 6);
    pool = await openPool(t.home);
    for (const c of chunks) {
      const want = healed.includes(c) ? { written: 1, corrupt: 1, lost: false } : { written: 0, corrupt: 0, lost: false };
      assert.deepEqual(counts(await pool.heal(c.id)), want, `heal of ${c.id}`);
    }
    await pool.sync();
    for (const c of chunks) await assertWhole(t.disks, c.id, policy, 'after heal');
    await assertAllReadable(pool, chunks, 'after heal');
    await pool.close();

    // A read meets a corrupt data shard (the first it reads), returns the right bytes anyway, and
    // has it repaired in the background (close waits for that).
    const read = chunks.slice(5, 10);
    for (const c of read) await corrupt(c, 0);
    pool = await openPool(t.home);
    await assertAllReadable(pool, chunks, 'with corrupt fragments');
    await pool.close();
    for (const c of chunks) await assertWhole(t.disks, c.id, policy, 'after reads and their background repairs');
  });

  it('reads into lent memory: a replica is read into it, shards are joined into it, and what is not the chunk goes back', async () => {
    for (const policy of ['replicate:2', 'ec:4+2']) {
      const t = await makePool(tmp.dir, `lent-${policy.replace(/[:+]/g, '-')}`, 6, policy);
      const pool = await openPool(t.home);
      const chunks = randomChunks(12, 1000, 600 * 1024);
      for (const c of chunks) assert.equal(await pool.put(c.id, c.bytes), 'stored');
      await pool.sync();
      // A fragment of each of the first six chunks is corrupt (data shard 0, which is read;
      // one of two replicas, read about half the time): a read of one fails its checks and gives
      // its memory back.
      for (const c of chunks.slice(0, 6)) {
        const f = (await fragmentFiles(t.disks, c.id)).find((x) => decodeFragment(x.bytes).header.index === 0)!;
        f.bytes[f.bytes.length - 1]! ^= 0x5a;
        await writeFile(f.file, f.bytes);
      }

      const memory = new ChunkMemory();
      for (const c of chunks) {
        const got = await pool.get(c.id, memory);
        assert.ok(got.equals(c.bytes), `${policy}: get(${c.id}) into lent memory`);
        assert.ok(got.buffer instanceof SharedArrayBuffer, `${policy}: the chunk lies in lent memory`);
        assert.equal(memory.lentSize, got.buffer.byteLength, `${policy}: nothing but the chunk is still on loan`);
        memory.giveBack(got);
      }
      assert.equal(memory.lentSize, 0);
      await pool.close();
    }
  });

  it('rejects a put with ENOSPC when there are fewer disks than fragments, and leaves nothing behind', async () => {
    const t = await makePool(tmp.dir, 'enospc', 5, 'ec:4+2');
    const pool = await openPool(t.home);
    const c = randomChunk(1000, 50 * 1024);
    await assert.rejects(pool.put(c.id, c.bytes), (err: NodeJS.ErrnoException) => {
      assert.equal(err.code, 'ENOSPC');
      return true;
    });
    await pool.sync();
    assert.deepEqual(await fragmentFiles(t.disks, c.id), [], 'no fragment of the refused chunk on any disk');
    assert.equal(await pool.has(c.id), false);
    assert.equal(await pool.stat(c.id), undefined);
    await assert.rejects(pool.get(c.id), { code: 'ENOENT' });
    // A policy that fits is still taken.
    assert.equal(await pool.put(c.id, c.bytes, parsePolicy('ec:3+2')), 'stored');
    assert.ok((await pool.get(c.id)).equals(c.bytes));
  });

  it('raises a chunk that is there already when a put asks for a stronger policy', async () => {
    const t = await makePool(tmp.dir, 'raise', 6);
    const pool = await openPool(t.home);
    const [c] = randomChunks(1, 100_000, 300_000);
    assert.equal(await pool.put(c!.id, c!.bytes, parsePolicy('none')), 'stored');
    await assertWhole(t.disks, c!.id, parsePolicy('none'), 'stored under none');
    assert.equal(await pool.put(c!.id, c!.bytes, parsePolicy('ec:3+2')), 'existed');
    await assertWhole(t.disks, c!.id, parsePolicy('ec:3+2'), 'raised to ec:3+2');
    // ec:3+2 survives two lost disks, replicate:2 one: asking for it changes nothing.
    assert.equal(await pool.put(c!.id, c!.bytes, parsePolicy('replicate:2')), 'existed');
    await assertWhole(t.disks, c!.id, parsePolicy('ec:3+2'), 'kept under ec:3+2');
    assert.ok((await pool.get(c!.id)).equals(c!.bytes));
    await pool.close();
  });

  it('reads and finishes a chunk caught midway in a change of policy', async () => {
    const t = await makePool(tmp.dir, 'midway', 6);
    const pool = await openPool(t.home);
    const [c] = randomChunks(1, 200_000, 300_000);
    const old = parsePolicy('replicate:3');
    const next = parsePolicy('ec:4+2');
    assert.equal(await pool.put(c!.id, c!.bytes, old), 'stored');
    const replicas = await fragmentFiles(t.disks, c!.id);
    // What a crash halfway through a re-encode leaves: shards of the new policy written on the
    // disks without a replica (too few to read the chunk), the replicas still there.
    assert.equal((await pool.heal(c!.id, next)).lost, false);
    assert.equal((await fragmentFiles(t.disks, c!.id)).length, 6);
    for (const r of replicas) await writeFile(r.file, r.bytes);
    await pool.close();
    const again = await openPool(t.home);
    assert.ok((await again.get(c!.id)).equals(c!.bytes), 'readable in the mixed state');
    assert.equal((await again.heal(c!.id, next, true)).lost, false);
    await assertWhole(t.disks, c!.id, next, 'after the change is finished');
    assert.ok((await again.get(c!.id)).equals(c!.bytes));
    // Stopped later: four shards written, two replicas left, on the only six disks there are.
    const shards = await fragmentFiles(t.disks, c!.id);
    for (const f of shards.slice(0, 2)) await writeFile(f.file, replicas[0]!.bytes);
    assert.ok((await again.get(c!.id)).equals(c!.bytes));
    assert.equal((await again.heal(c!.id, next, true)).lost, false);
    await assertWhole(t.disks, c!.id, next, 'after the later stop is finished');
    await again.close();
  });

  it('changes ec:3+2 to ec:4+2 on six disks, where no disk is free, through a staged copy', async () => {
    const t = await makePool(tmp.dir, 'staged', 6);
    const pool = await openPool(t.home);
    const [c] = randomChunks(1, 200_000, 300_000);
    assert.equal(await pool.put(c!.id, c!.bytes, parsePolicy('ec:3+2')), 'stored');
    assert.equal((await pool.heal(c!.id, parsePolicy('ec:4+2'), true)).lost, false);
    await assertWhole(t.disks, c!.id, parsePolicy('ec:4+2'), 'after the change');
    for (const d of t.disks) assert.deepEqual(await readdir(path.join(d, 'staging')).catch(() => []), [], `no staged copy left on ${d}`);
    // Back, and a crash midway simulated: the staged copy alone (with three shards of each) reads.
    assert.equal((await pool.heal(c!.id, parsePolicy('ec:3+2'), true)).lost, false);
    await assertWhole(t.disks, c!.id, parsePolicy('ec:3+2'), 'after changing back');
    assert.ok((await pool.get(c!.id)).equals(c!.bytes));
    await pool.close();
  });

  it('stores a chunk given in parts as it stores the whole, replicated and erasure-coded', async () => {
    const t = await makePool(tmp.dir, 'parts', 3, 'replicate:2');
    const pool = await openPool(t.home);
    for (const policy of [parsePolicy('replicate:2'), parsePolicy('ec:2+1')]) {
      const parts = [Buffer.from('a small first part'), randomBytes(300_000), Buffer.from(policy.kind)];
      const whole = Buffer.concat(parts);
      const id = chunkId(whole);
      assert.equal(await pool.put(id, parts, policy), 'stored');
      await pool.sync();
      await assertWhole(t.disks, id, policy, `${policy.kind}, put in parts`);
      assert.ok((await pool.get(id)).equals(whole), policy.kind);
    }
  });

  it('has, stat, iterate and delete see every fragment of every chunk', async () => {
    const t = await makePool(tmp.dir, 'list', 6);
    const pool = await openPool(t.home);
    const policies = [parsePolicy('ec:4+2'), parsePolicy('replicate:3'), parsePolicy('none'), pool.policy];
    const chunks = randomChunks(16, 1, 64 * 1024);
    const policyOf = new Map<ChunkId, Policy>();
    for (const [i, c] of chunks.entries()) {
      const policy = policies[i % policies.length]!;
      policyOf.set(c.id, policy);
      assert.equal(await pool.has(c.id), false);
      assert.equal(await pool.put(c.id, c.bytes, policy), 'stored');
      assert.equal(await pool.has(c.id), true);
      // The chunk is there already: nothing is written under a policy no stronger than its own.
      assert.equal(await pool.put(c.id, randomBytes(10), parsePolicy('none')), 'existed');
    }
    await pool.sync();

    const sizeOnDisks = async (id: ChunkId): Promise<number> => (await fragmentFiles(t.disks, id)).reduce((n, f) => n + f.bytes.length, 0);
    const listed = async (): Promise<Map<ChunkId, number>> => {
      const seen = new Map<ChunkId, number>();
      for await (const s of pool.iterate()) {
        assert.ok(!seen.has(s.id), `iterate yields ${s.id} once`);
        seen.set(s.id, s.storedBytes);
      }
      return seen;
    };

    let seen = await listed();
    assert.deepEqual([...seen.keys()].sort(), chunks.map((c) => c.id).sort());
    for (const c of chunks) {
      const policy = policyOf.get(c.id)!;
      await assertWhole(t.disks, c.id, policy, 'after put');
      assert.ok((await pool.get(c.id)).equals(c.bytes));
      const bytes = await sizeOnDisks(c.id);
      const perFragment = FRAGMENT_HEADER + (policy.kind === 'replicate' ? c.bytes.length : shardSize(c.bytes.length, policy.data));
      assert.equal(bytes, perFragment * (policy.kind === 'replicate' ? policy.copies : policy.data + policy.parity));
      assert.equal(seen.get(c.id), bytes, `iterate's storedBytes of ${c.id}`);
      assert.deepEqual(await pool.stat(c.id), { id: c.id, storedBytes: bytes });
    }

    const [gone, kept] = [chunks.filter((_, i) => i % 2 === 0), chunks.filter((_, i) => i % 2 === 1)];
    for (const c of gone) {
      assert.equal(await pool.delete(c.id), true);
      assert.equal(await pool.has(c.id), false);
      assert.equal(await pool.stat(c.id), undefined);
      assert.deepEqual(await fragmentFiles(t.disks, c.id), [], `every fragment of ${c.id} deleted`);
      await assert.rejects(pool.get(c.id), { code: 'ENOENT' });
      assert.equal(await pool.delete(c.id), false);
    }
    seen = await listed();
    assert.deepEqual([...seen.keys()].sort(), kept.map((c) => c.id).sort());
    for (const c of kept) {
      assert.equal(await pool.has(c.id), true);
      assert.equal(seen.get(c.id), await sizeOnDisks(c.id));
      assert.ok((await pool.get(c.id)).equals(c.bytes));
    }
  });
});
