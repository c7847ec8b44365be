// Orbit as a filesystem, next to libfuse's passthrough_ll (the same kernel path with no work of
// its own: what any FUSE filesystem on this machine can hope for) and next to the plain directory
// both of them store into. All backing stores (Orbit's home, passthrough_ll's source, the plain
// directory) are on one filesystem: a scratch directory under os.tmpdir(), or under --on DIR
// (/dev/shm takes the disk out and compares software paths only). Each round gives every side a
// fresh store, in alternating order, and the tables quote medians: disk speed here varies by half
// from one run to the next, and only figures taken side by side compare.
//
// Measured per side and round, by bench/vfs/workload.c (C, so that each figure is the filesystem's
// cost rather than Node's per-call overhead):
//  - sequential write of --size MiB with 1 MiB writes, until close (Orbit commits on close) and
//    until an fsync after it;
//  - sequential read of it with 1 MiB reads, and 20,000 4 KiB reads at random aligned offsets;
//  - create (open O_CREAT|O_WRONLY, close), stat and unlink of 10,000 empty files in one directory;
//  - 1,000 files of 128 KiB written, then read back;
//  - the filesystem process's peak RSS over the round (its VmHWM).
// Every read, stat and unlink phase starts cold: the backing filesystem is synced and the page,
// dentry and inode caches are dropped (a FUSE filesystem then hears the lookups again). Orbit's
// own 128 MiB cache of plaintext chunks stays warm, as it would in use: at the default 1 GiB it
// cannot hold the file, but with a --size much below that the read rows flatter Orbit.
// Contents are random and no two MiB alike (a file on tmpfs made once per run): Orbit
// deduplicates and compresses, so zeros or repeated blocks would flatter it.
import { access, mkdir, rm, unlink } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { ORBIT_NODE_ARGS, run } from '../../test/helpers.js';
import { describeFs, median, MiB, peakRssBytes, printSides, scratchDir, settle, startFs, Workload, type MountedProcess, type SidesRow } from '../lib.js';

const RANDOM_READS = 20_000;
const METADATA_FILES = 10_000;
const SMALL_FILES = 1_000;
const SMALL_FILE_BYTES = 128 * 1024;

export interface FilesystemBenchOptions {
  rounds: number;
  sizeMiB: number;
  /** The directory under which the backing stores go (default os.tmpdir()). */
  on?: string;
  /** A passthrough_ll binary built from libfuse's examples; without it, that column is left out. */
  passthrough?: string;
}

interface Side {
  name: string;
  /** Serves the store `backing` at `mountpoint`; absent for the plain directory, used directly. */
  mount?: (backing: string, mountpoint: string) => Promise<MountedProcess>;
}

interface Figures {
  seqWrite: number;
  seqWriteSynced: number;
  seqRead: number;
  randomRead: number;
  create: number;
  stat: number;
  unlink: number;
  smallWrite: number;
  smallRead: number;
  peakRss?: number;
}

async function round(side: Side, work: Workload, scratch: string, label: string, sizeMiB: number): Promise<Figures> {
  const backing = path.join(scratch, label);
  const mountpoint = `${backing}-mnt`;
  let fs: MountedProcess | undefined;
  try {
    if (side.mount) {
      await mkdir(mountpoint);
      fs = await side.mount(backing, mountpoint);
    } else {
      await mkdir(backing);
    }
    const dir = side.mount ? mountpoint : backing;
    const big = path.join(dir, 'big');
    const written = await work.run('seqwrite', work.source, big, sizeMiB);
    await settle(scratch);
    const read = await work.run('seqread', big);
    await settle(scratch);
    const randomRead = await work.opsPerSecond('randread', big, RANDOM_READS);
    await unlink(big);

    const meta = path.join(dir, 'meta');
    await mkdir(meta);
    const create = await work.opsPerSecond('create', meta, METADATA_FILES);
    await settle(scratch);
    const stat = await work.opsPerSecond('stat', meta, METADATA_FILES);
    await settle(scratch);
    const unlinked = await work.opsPerSecond('unlink', meta, METADATA_FILES);

    const small = path.join(dir, 'small');
    await mkdir(small);
    // The small files' bytes come from past the big file's in the source: nothing to dedup.
    const smallWrite = await work.opsPerSecond('smallwrite', work.source, sizeMiB * MiB, small, SMALL_FILES, SMALL_FILE_BYTES);
    await settle(scratch);
    const smallRead = await work.opsPerSecond('smallread', small, SMALL_FILES, SMALL_FILE_BYTES);

    return {
      seqWrite: written.bytes! / written.closed! / 1e6,
      seqWriteSynced: written.bytes! / written.synced! / 1e6,
      seqRead: read.bytes! / read.seconds! / 1e6,
      randomRead,
      create,
      stat,
      unlink: unlinked,
      smallWrite,
      smallRead,
      peakRss: fs ? await peakRssBytes(fs.pid) : undefined,
    };
  } finally {
    await fs?.unmount();
    await rm(backing, { recursive: true, force: true });
    await rm(mountpoint, { recursive: true, force: true });
  }
}

export async function benchFilesystem(opts: FilesystemBenchOptions): Promise<void> {
  if (opts.passthrough) {
    try {
      await access(opts.passthrough, constants.X_OK);
    } catch {
      throw new Error(`passthrough_ll ${opts.passthrough} is not an executable file`);
    }
  } else {
    console.log('passthrough_ll not given (--passthrough PATH or ORBIT_BENCH_PASSTHROUGH): the table has no passthrough_ll column');
  }
  const scratch = await scratchDir('fs', opts.on);
  // The source sits on tmpfs so that reading it costs no disk time on any side.
  const sourceDir = await scratchDir('source', '/dev/shm');
  try {
    const work = new Workload(await Workload.build(sourceDir.dir), path.join(sourceDir.dir, 'random'));
    const smallMiB = Math.ceil((SMALL_FILES * SMALL_FILE_BYTES) / MiB);
    await work.run('fill', work.source, opts.sizeMiB + smallMiB);

    const orbit: Side = {
      name: 'orbit',
      mount: async (home, mountpoint) => {
        const init = await run(process.execPath, [...ORBIT_NODE_ARGS, 'init', '--home', home]);
        if (init.code !== 0) throw new Error(`orbit init --home ${home}: ${init.stderr.trim()}`);
        return startFs(process.execPath, [...ORBIT_NODE_ARGS, 'mount', '--home', home, mountpoint, '--allow-other'], mountpoint);
      },
    };
    const passthrough: Side | undefined = opts.passthrough
      ? {
          name: 'passthrough_ll',
          mount: async (source, mountpoint) => {
            await mkdir(source);
            // -f: stay in the foreground, so that the process measured is the one serving.
            return startFs(opts.passthrough!, ['-f', '-o', `source=${source}`, mountpoint], mountpoint);
          },
        }
      : undefined;
    const plain: Side = { name: 'plain dir' };
    const sides = [orbit, ...(passthrough ? [passthrough] : []), plain];

    const results = new Map<Side, Figures[]>(sides.map((s) => [s, []]));
    for (let i = 0; i < opts.rounds; i++) {
      for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
        const label = `${i}-${side.name.replace(/\W+/g, '-')}`;
        results.get(side)!.push(await round(side, work, scratch.dir, label, opts.sizeMiB));
        console.error(`fs bench: round ${i + 1}/${opts.rounds}, ${side.name} done`);
      }
    }

    const med = (side: Side, k: keyof Figures): number | undefined => {
      const xs = results.get(side)!.map((f) => f[k]).filter((x): x is number => x !== undefined);
      return xs.length > 0 ? median(xs) : undefined;
    };
    const row = (what: string, unit: string, k: keyof Figures, goal?: number, scale = 1): SidesRow => ({
      what,
      unit,
      values: sides.map((s) => {
        const v = med(s, k);
        return v === undefined ? undefined : v * scale;
      }),
      // Goals are set against passthrough_ll; without it there is nothing to hold them to.
      goal: passthrough ? goal : undefined,
    });
    const kib = SMALL_FILE_BYTES / 1024;
    printSides(
      `Filesystem: backing stores on ${await describeFs(scratch.dir)}, random data, median of ${opts.rounds} interleaved rounds`,
      sides.map((s) => s.name),
      [
        row(`sequential write ${opts.sizeMiB} MiB, 1 MiB I/O, until close`, 'MB/s', 'seqWrite', 0.5),
        row(`sequential write, until fsync after close`, 'MB/s', 'seqWriteSynced', 0.5),
        row(`sequential read, 1 MiB I/O, cold`, 'MB/s', 'seqRead', 0.7),
        row(`4 KiB random reads (${RANDOM_READS.toLocaleString('en')}), cold`, 'ops/s', 'randomRead'),
        row(`create ${METADATA_FILES.toLocaleString('en')} empty files, one dir`, 'ops/s', 'create', 0.5),
        row(`stat each, cold`, 'ops/s', 'stat', 0.5),
        row(`unlink each, cold`, 'ops/s', 'unlink'),
        row(`write ${SMALL_FILES.toLocaleString('en')} files of ${kib} KiB`, 'files/s', 'smallWrite'),
        row(`read them back, cold`, 'files/s', 'smallRead'),
        row(`peak RSS of the filesystem process`, 'MiB', 'peakRss', undefined, 1 / MiB),
      ],
    );
  } finally {
    await sourceDir.remove();
    await scratch.remove();
  }
}
