// The FUSE binding against a C libfuse3 program doing the same work (bench/fuse/memfs.c), both
// answering from memory, both in their own process, interleaved round by round:
//  - 1 GiB sequential write with 1 MiB application I/O: into a new file (both sides allocate as
//    they go), and overwriting it in steady state (after one unmeasured pass); then reading it;
//  - the average write request size the TypeScript handler saw;
//  - RSS of the TypeScript process while 10 GiB stream through it.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { run } from '../../test/helpers.js';
import { dd, dropCaches, median, MiB, printTable, rssBytes, sampleRss, scratchDir, startFs, type MountedProcess } from '../lib.js';

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

interface Side {
  name: string;
  start: (dir: string) => Promise<MountedProcess>;
}

interface RoundResult {
  writeNew: number;
  overwrite: number;
  read: number;
}

async function buildReference(outDir: string): Promise<string> {
  const bin = path.join(outDir, 'memfs-c');
  const flags = await run('pkg-config', ['--cflags', '--libs', 'fuse3']);
  if (flags.code !== 0) throw new Error('pkg-config fuse3 failed: install libfuse3-dev');
  const cc = await run('cc', ['-O2', '-o', bin, path.join(repo, 'bench/fuse/memfs.c'), ...flags.stdout.trim().split(/\s+/)]);
  if (cc.code !== 0) throw new Error(`cannot build the C reference: ${cc.stderr}`);
  return bin;
}

async function stats(fs: MountedProcess): Promise<{ writes: number; writeBytes: number }> {
  const before = fs.output().length;
  fs.child.kill('SIGUSR1');
  for (let i = 0; i < 100 && !fs.output().slice(before).includes('\n'); i++) await new Promise((r) => setTimeout(r, 10));
  const line = fs.output().slice(before).split('\n').find((l) => l.startsWith('{"reads"'));
  return line ? (JSON.parse(line) as { writes: number; writeBytes: number }) : { writes: 0, writeBytes: 0 };
}

async function round(side: Side, dir: string, sizeMiB: number): Promise<RoundResult & { avgWrite?: number }> {
  const fs = await side.start(dir);
  try {
    const file = path.join(dir, 'data');
    const io = ['bs=1M', `count=${sizeMiB}`];
    const before = side.name.startsWith('orbit') ? await stats(fs) : undefined;
    const writeNew = await dd(['if=/dev/zero', `of=${file}`, ...io]);
    const after = before ? await stats(fs) : undefined;
    await dd(['if=/dev/zero', `of=${file}`, 'conv=notrunc', ...io]); // settle both sides' caches first
    const overwrite = await dd(['if=/dev/zero', `of=${file}`, 'conv=notrunc', ...io]);
    await dropCaches();
    const read = await dd([`if=${file}`, 'of=/dev/null', ...io]);
    const avgWrite = before && after && after.writes > before.writes ? (after.writeBytes - before.writeBytes) / (after.writes - before.writes) : undefined;
    return { writeNew, overwrite, read, avgWrite };
  } finally {
    await fs.unmount();
  }
}

/** 10 GiB through one mount: 1 GiB overwritten and read back five times; RSS after each GiB. */
async function streamRss(side: Side, dir: string): Promise<{ samples: number[]; peak: number }> {
  const fs = await side.start(dir);
  const sampler = sampleRss(fs.pid);
  const samples: number[] = [];
  let peak: number;
  try {
    const file = path.join(dir, 'stream');
    for (let i = 0; i < 5; i++) {
      await dd(['if=/dev/zero', `of=${file}`, 'bs=1M', 'count=1024', 'conv=notrunc']);
      samples.push(await rssBytes(fs.pid));
      await dropCaches();
      await dd([`if=${file}`, 'of=/dev/null', 'bs=1M']);
      samples.push(await rssBytes(fs.pid));
    }
  } finally {
    peak = await sampler.stop();
    await fs.unmount();
  }
  return { samples, peak };
}

export async function benchBinding(rounds: number, sizeMiB = 1024): Promise<void> {
  const tmp = await scratchDir('fuse');
  try {
    const reference = await buildReference(tmp.dir);
    const ours: Side = {
      name: 'orbit binding',
      start: (dir) => startFs(process.execPath, ['--import', 'tsx', path.join(repo, 'examples/memfs/mount.ts'), dir, '--stats'], dir),
    };
    const theirs: Side = { name: 'C libfuse3', start: (dir) => startFs(reference, [dir], dir) };
    const results = new Map<Side, RoundResult[]>([[ours, []], [theirs, []]]);
    const avgWrites: number[] = [];
    for (let i = 0; i < rounds; i++) {
      for (const side of i % 2 === 0 ? [ours, theirs] : [theirs, ours]) {
        const dir = path.join(tmp.dir, `mnt-${i}-${side === ours ? 'ts' : 'c'}`);
        await mkdir(dir);
        const r = await round(side, dir, sizeMiB);
        results.get(side)!.push(r);
        if (r.avgWrite) avgWrites.push(r.avgWrite);
      }
    }
    const med = (side: Side, k: keyof RoundResult): number => median(results.get(side)!.map((r) => r[k]));
    printTable(
      `FUSE binding: ${sizeMiB} MiB with 1 MiB I/O, memory-backed, median of ${rounds} interleaved rounds`,
      ours.name, theirs.name,
      [
        { what: 'sequential write, new file', ours: med(ours, 'writeNew'), theirs: med(theirs, 'writeNew'), unit: 'MB/s', goal: 0.8 },
        { what: 'sequential write, overwrite (steady)', ours: med(ours, 'overwrite'), theirs: med(theirs, 'overwrite'), unit: 'MB/s', goal: 0.8 },
        { what: 'sequential read', ours: med(ours, 'read'), theirs: med(theirs, 'read'), unit: 'MB/s', goal: 0.8 },
      ],
    );
    const avg = median(avgWrites) / 1024;
    console.log(`average write request seen by the handler: ${avg.toFixed(0)} KiB (goal >= 128 KiB: ${avg >= 128 ? 'met' : 'NOT met'})`);

    const dir = path.join(tmp.dir, 'mnt-stream');
    await mkdir(dir);
    const { samples, peak } = await streamRss(ours, dir);
    const mb = (b: number): string => `${(b / MiB).toFixed(0)} MiB`;
    const settled = samples.slice(2);
    console.log(`\nRSS of the TypeScript filesystem while 10 GiB stream through it (1 GiB file overwritten and read 5 times):`);
    console.log(`  after each GiB: ${samples.map(mb).join(', ')}`);
    console.log(`  peak ${mb(peak)}; from GiB 3 to 10: min ${mb(Math.min(...settled))}, max ${mb(Math.max(...settled))}, last - first ${mb(settled.at(-1)! - settled[0]!)}`);
  } finally {
    await tmp.remove();
  }
}
