// Benchmark plumbing: starting filesystems in their own processes, timed dd runs, the C workload
// program (bench/vfs/workload.c), cold caches, RSS sampling, medians and ratio tables. Every
// figure compares two sides measured in the same run.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { mountsAt } from '../src/fuse/mountpoint.js';
import { run } from '../test/helpers.js';

export const MiB = 1024 * 1024;

const repo = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** One phase may take long on a slow disk or a slow side; run's default would cut it at a minute. */
export const PHASE_TIMEOUT_MS = 60 * 60_000;

export async function scratchDir(name: string, parent = tmpdir()): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(parent, `orbit-bench-${name}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface MountedProcess {
  child: ChildProcess;
  pid: number;
  output: () => string;
  unmount: () => Promise<void>;
}

/** Starts a filesystem program that mounts at `dir` and waits until the mount is there. */
export async function startFs(cmd: string, args: readonly string[], dir: string): Promise<MountedProcess> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 30_000;
  while (!(await mountsAt(dir)).some((m) => m.fsType.startsWith('fuse'))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      // One that is still trying must not outlive the bench (nor mount later, behind its back).
      child.kill('SIGKILL');
      throw new Error(`${cmd} did not mount ${dir}: ${out}`);
    }
    await sleep(20);
  }
  return {
    child,
    pid: child.pid!,
    output: () => out,
    unmount: async () => {
      // A process that died already left a dead mount behind: umount clears it, no exit to wait for.
      const exited = child.exitCode === null && child.signalCode === null ? once(child, 'exit') : Promise.resolve();
      const res = await run('umount', [dir]);
      if (res.code !== 0) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** Ends a child process (SIGTERM) and waits for it to exit; one that exited already is left. */
export async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await exited;
}

/** Whether a program is on the PATH (or, given a path, is there and executable). */
export async function installed(program: string): Promise<boolean> {
  return (await run('sh', ['-c', 'command -v "$0"', program])).code === 0;
}

/** Runs dd and returns its throughput in MB/s (10^6 bytes a second, as dd reports). */
export async function dd(args: readonly string[]): Promise<number> {
  const res = await run('dd', args);
  if (res.code !== 0) throw new Error(`dd ${args.join(' ')}: ${res.stderr}`);
  const m = /(\d+) bytes .* copied, ([\d.]+) s/.exec(res.stderr);
  if (!m) throw new Error(`dd printed no summary: ${res.stderr}`);
  return Number(m[1]) / Number(m[2]) / 1e6;
}

export async function dropCaches(): Promise<void> {
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/** Makes the next phase start cold: what was written reaches the backing store's disk (drop_caches
 * leaves dirty pages in memory), then the kernel forgets cached pages, dentries and inodes. */
export async function settle(backingRoot: string): Promise<void> {
  const res = await run('sync', ['-f', backingRoot], { timeoutMs: PHASE_TIMEOUT_MS });
  if (res.code !== 0) throw new Error(`sync -f ${backingRoot}: ${res.stderr.trim()}`);
  await dropCaches();
}

/** A directory and the type of the filesystem it is on, e.g. "/dev/shm/x (tmpfs)". */
export async function describeFs(dir: string): Promise<string> {
  const res = await run('findmnt', ['-n', '--first-only', '-o', 'FSTYPE', '-T', dir]);
  return res.code === 0 ? `${dir} (${res.stdout.trim()})` : dir;
}

export interface WorkloadReport {
  bytes?: number;
  seconds?: number;
  ops?: number;
  closed?: number;
  synced?: number;
}

/** bench/vfs/workload.c, compiled at bench time: each phase is one run of it, timed in C around
 * the system calls themselves. */
export class Workload {
  constructor(
    private readonly bin: string,
    /** The random source file, on tmpfs. */
    readonly source: string,
  ) {}

  static async build(outDir: string): Promise<string> {
    const bin = path.join(outDir, 'workload');
    const cc = await run('cc', ['-O2', '-o', bin, path.join(repo, 'bench/vfs/workload.c')]);
    if (cc.code !== 0) throw new Error(`cannot build the workload program: ${cc.stderr}`);
    return bin;
  }

  async run(...args: Array<string | number>): Promise<WorkloadReport> {
    const res = await run(this.bin, args.map(String), { timeoutMs: PHASE_TIMEOUT_MS });
    if (res.code !== 0) throw new Error(`workload ${args.join(' ')} failed: ${res.stderr.trim() || `exit ${res.code}`}`);
    return JSON.parse(res.stdout) as WorkloadReport;
  }

  async opsPerSecond(...args: Array<string | number>): Promise<number> {
    const r = await this.run(...args);
    return r.ops! / r.seconds!;
  }
}

export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmRSS:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) * 1024 : 0;
}

/** The most a process has held resident since it started (the kernel's high-water mark). */
export async function peakRssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /VmHWM:\s+(\d+) kB/.exec(status);
  return kb ? Number(kb[1]) * 1024 : 0;
}

/** Samples a process's RSS every `everyMs` until stopped; returns the peak. */
export function sampleRss(pid: number, everyMs = 100): { stop: () => Promise<number> } {
  let peak = 0;
  let running = true;
  const loop = (async () => {
    while (running) {
      peak = Math.max(peak, await rssBytes(pid).catch(() => 0));
      await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      running = false;
      await loop;
      return peak;
    },
  };
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export interface Row {
  what: string;
  ours: number;
  theirs?: number;
  unit: string;
  /** Lowest acceptable ours/theirs. */
  goal?: number;
  note?: string;
}

export function printTable(title: string, oursName: string, theirsName: string, rows: readonly Row[]): void {
  console.log(`\n${title}\n${'-'.repeat(title.length)}`);
  const head = ['', oursName, theirsName, 'ratio', 'goal'];
  const body = rows.map((r) => {
    const ratio = r.theirs ? r.ours / r.theirs : undefined;
    const verdict = r.goal === undefined || ratio === undefined ? '' : ratio >= r.goal ? `>= ${r.goal} met` : `>= ${r.goal} NOT met`;
    return [
      r.what,
      `${fmt(r.ours)} ${r.unit}`,
      r.theirs === undefined ? '' : `${fmt(r.theirs)} ${r.unit}`,
      ratio === undefined ? '' : ratio.toFixed(2),
      verdict + (r.note ? ` ${r.note}` : ''),
    ];
  });
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((row) => row[i]!.length)));
  for (const row of [head, ...body]) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}

function fmt(n: number): string {
  return n >= 100 ? n.toFixed(0) : n >= 10 ? n.toFixed(1) : n.toFixed(2);
}

export interface SidesRow {
  what: string;
  unit: string;
  /** One figure per side, in the order of the table's sides; undefined where a side has none. */
  values: ReadonlyArray<number | undefined>;
  /** Lowest acceptable first side / second side. */
  goal?: number;
}

/** A table of several sides: the first is the subject, and each other side gets a ratio column
 * (first / that side); the goal column, if any row has a goal, follows the first ratio. */
export function printSides(title: string, sides: readonly string[], rows: readonly SidesRow[]): void {
  console.log(`\n${title}\n${'-'.repeat(title.length)}`);
  const withGoal = rows.some((r) => r.goal !== undefined);
  const ratioHeads = sides.slice(1).map((s) => `${sides[0]} / ${s}`);
  const head = ['', ...sides, ...ratioHeads.slice(0, 1), ...(withGoal ? ['goal'] : []), ...ratioHeads.slice(1)];
  const body = rows.map((r) => {
    const ours = r.values[0];
    const ratios = sides.slice(1).map((_, i) => {
      const theirs = r.values[i + 1];
      return ours !== undefined && theirs ? ours / theirs : undefined;
    });
    const first = ratios[0];
    const verdict = r.goal === undefined || first === undefined ? '' : first >= r.goal ? `>= ${r.goal} met` : `>= ${r.goal} NOT met`;
    const ratioCells = ratios.map((x) => (x === undefined ? '' : x.toFixed(2)));
    return [
      r.what,
      ...sides.map((_, i) => {
        const v = r.values[i];
        return v === undefined ? '' : `${fmt(v)} ${r.unit}`;
      }),
      ...ratioCells.slice(0, 1),
      ...(withGoal ? [verdict] : []),
      ...ratioCells.slice(1),
    ];
  });
  const widths = head.map((_, i) => Math.max(...[head, ...body].map((row) => row[i]!.length)));
  for (const row of [head, ...body]) console.log(row.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd());
}
