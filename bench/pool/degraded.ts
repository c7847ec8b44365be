// A pool losing disks, as a user reading a file sees it: a store on six directory disks under
// ec:4+2 (its home's pool/ and five more, all under a scratch directory in os.tmpdir() or --on DIR),
// a file of --size MiB of random data written through a real Orbit mount, then read sequentially
// with 1 MiB reads (bench/vfs/workload.c) twice: healthy, and after two of the disks' directories
// were deleted (rm -rf, as a lost disk). Each round makes a fresh store (the loss cannot be undone)
// and the table quotes medians.
//
// Both reads start cold: Orbit is unmounted after the write and mounted again for each read (its
// own chunk cache starts empty), the backing filesystem is synced and the kernel's caches dropped,
// so the page cache serves neither read. With two disks gone, every chunk that had a data shard on
// them is rebuilt from parity on the read, and Orbit also queues it for a repair in the background
// (which, with four disks left, has nowhere to write: the repair still reads, rebuilds and encodes
// it, competing with the read). Which chunks lose a data shard depends on placement: the bench
// counts them from the fragment headers on the deleted disks, and prints the share.
import { mkdir, open, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { ORBIT_NODE_ARGS, run } from '../../test/helpers.js';
import { describeFs, median, MiB, printTable, scratchDir, settle, startFs, Workload, type MountedProcess } from '../lib.js';

const K = 4;
const M = 2;
const DISKS = K + M;
/** The disks deleted: two of the added ones (0 is the home's pool/, which holds nothing else). */
const LOST = [2, 4];

export interface PoolReadBenchOptions {
  rounds: number;
  sizeMiB: number;
  /** The directory under which the stores go (default os.tmpdir()). */
  on?: string;
}

interface Figures {
  healthy: number;
  degraded: number;
  chunks: number;
  /** Chunks with at least one data shard on a deleted disk: rebuilt from parity on the read. */
  rebuilt: number;
}

async function orbit(...args: string[]): Promise<void> {
  const res = await run(process.execPath, [...ORBIT_NODE_ARGS, ...args], { timeoutMs: 120_000 });
  if (res.code !== 0) throw new Error(`orbit ${args.join(' ')}: ${res.stderr.trim() || `exit ${res.code}`}`);
}

/** Every fragment file on a disk. */
async function fragmentsOn(disk: string): Promise<string[]> {
  const entries = await readdir(path.join(disk, 'chunks'), { recursive: true, withFileTypes: true });
  return entries.filter((e) => e.isFile()).map((e) => path.join(e.parentPath, e.name));
}

/** The shard index in a fragment's header (src/pool/fragment.ts: byte 6). */
async function shardIndex(file: string): Promise<number> {
  const f = await open(file);
  try {
    const header = Buffer.alloc(8);
    await f.read(header, 0, 8, 0);
    return header[6]!;
  } finally {
    await f.close();
  }
}

/** How many chunks the pool holds, and how many have a data shard on the `lost` disks. */
async function census(disks: string[], lost: string[]): Promise<{ chunks: number; rebuilt: number }> {
  const all = new Set<string>();
  for (const d of disks) for (const f of await fragmentsOn(d)) all.add(path.basename(f));
  const rebuilt = new Set<string>();
  for (const d of lost) {
    for (const f of await fragmentsOn(d)) if ((await shardIndex(f)) < K) rebuilt.add(path.basename(f));
  }
  return { chunks: all.size, rebuilt: rebuilt.size };
}

async function round(work: Workload, scratch: string, label: string, sizeMiB: number): Promise<Figures> {
  const dir = path.join(scratch, label);
  const home = path.join(dir, 'home');
  const mnt = path.join(dir, 'mnt');
  const big = path.join(mnt, 'big');
  try {
    await mkdir(dir);
    await orbit('init', '--home', home);
    const disks = [path.join(home, 'pool')];
    for (let i = 1; i < DISKS; i++) {
      const disk = path.join(dir, `disk${i}`);
      await orbit('pool', 'add-disk', disk, '--home', home);
      disks.push(disk);
    }
    await orbit('pool', 'policy', `ec:${K}+${M}`, '--home', home);
    await mkdir(mnt);
    const mounted = async <T>(body: () => Promise<T>): Promise<T> => {
      const fs: MountedProcess = await startFs(process.execPath, [...ORBIT_NODE_ARGS, 'mount', '--home', home, mnt], mnt);
      try {
        return await body();
      } finally {
        await fs.unmount();
      }
    };
    const readBig = async (): Promise<number> => {
      await settle(scratch);
      const r = await mounted(() => work.run('seqread', big));
      if (r.bytes !== sizeMiB * MiB) throw new Error(`read ${r.bytes} bytes of ${sizeMiB * MiB}`);
      return r.bytes / r.seconds! / 1e6;
    };

    await mounted(() => work.run('seqwrite', work.source, big, sizeMiB));
    const healthy = await readBig();
    const lost = LOST.map((i) => disks[i]!);
    const { chunks, rebuilt } = await census(disks, lost);
    for (const d of lost) await rm(d, { recursive: true });
    const degraded = await readBig();
    return { healthy, degraded, chunks, rebuilt };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

export async function benchDegradedRead(opts: PoolReadBenchOptions): Promise<void> {
  const scratch = await scratchDir('pool', opts.on);
  // The source sits on tmpfs so that reading it costs no disk time.
  const sourceDir = await scratchDir('source', '/dev/shm');
  try {
    const work = new Workload(await Workload.build(sourceDir.dir), path.join(sourceDir.dir, 'random'));
    await work.run('fill', work.source, opts.sizeMiB);
    const results: Figures[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      results.push(await round(work, scratch.dir, `${i}`, opts.sizeMiB));
      console.error(`pool bench: round ${i + 1}/${opts.rounds} of the degraded read done`);
    }
    const med = (k: keyof Figures): number => median(results.map((f) => f[k]));
    printTable(
      `Pool read: ${opts.sizeMiB} MiB through a mount, ec:${K}+${M} on ${DISKS} directory disks under ${await describeFs(scratch.dir)}, random data, cold, median of ${opts.rounds} rounds`,
      `${LOST.length} disks deleted`, 'healthy',
      [{ what: 'sequential read, 1 MiB I/O', ours: med('degraded'), theirs: med('healthy'), unit: 'MB/s', goal: 0.5 }],
    );
    const share = results.map((f) => `${f.rebuilt}/${f.chunks}`).join(', ');
    console.log(`chunks with a data shard on the deleted disks (rebuilt from parity when read), per round: ${share}`);
  } finally {
    await sourceDir.remove();
    await scratch.remove();
  }
}
