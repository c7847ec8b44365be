// `orbit pool …` and `orbit scrub`: the disks that hold chunks, their redundancy, and the walks
// that keep it (rebuild, drain, scrub). Changes to the disks go into pool.json, which mounted
// volumes re-read within a second.
import { randomUUID } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import { Disk, type DiskConfig, type DiskState } from '../pool/disk.js';
import { configuredPolicy, readPoolConfig, setConfiguredPolicy, updatePoolConfig } from '../pool/pool-config.js';
import { formatPolicy, parsePolicy, PolicyError } from '../pool/policy.js';
import type { Pool } from '../pool/pool.js';
import { drain, healAll, type WalkReport } from '../pool/repair.js';
import type { Store } from '../store/store.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { CliError, formatBytes, printJson, printTable } from './output.js';

type JsonOptions = HomeOptions & { json?: boolean };

const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?$/i;

/** "500G", "1.5T", "1048576": bytes (binary units). */
export function parseSize(text: string): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`expected a size such as 500G, 2T or 1048576, not ${JSON.stringify(text)}`);
  const bytes = Number(m[1]) * 1024 ** ' KMGTP'.indexOf((m[2] || ' ').toUpperCase());
  if (!Number.isFinite(bytes) || bytes < 1) throw new InvalidArgumentError(`${text} is not a usable size`);
  return Math.floor(bytes);
}

function parsePolicyOption(text: string): string {
  try {
    return formatPolicy(parsePolicy(text));
  } catch (err) {
    if (err instanceof PolicyError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}

async function resolveDir(dir: string): Promise<string> {
  return realpath(dir).catch(() => path.resolve(dir));
}

/** The configured disk at `dir` (by its resolved path). */
async function diskAt(pool: Pool, dir: string): Promise<{ id: string; path: string }> {
  const wanted = await resolveDir(dir);
  const found = pool.disks().find((d) => d.config.path === wanted || d.config.path === path.resolve(dir));
  if (!found) throw new CliError(`${dir} is not a disk of this pool (see 'orbit pool list')`);
  return found.config;
}

/** Records a new state for the disk at `dir` and has this process's pool see it. */
async function setDiskState(store: Store, dir: string, next: (d: DiskConfig) => DiskState): Promise<{ id: string; path: string }> {
  const disk = await diskAt(store.chunks, dir);
  await updatePoolConfig(store.home, (config) => {
    const d = config.disks.find((x) => x.id === disk.id)!;
    d.state = next(d);
  });
  await store.chunks.refresh(true);
  return disk;
}

function progressLine(verb: string): (r: WalkReport) => void {
  let last = 0;
  return (r) => {
    if (!process.stderr.isTTY || Date.now() - last < 200) return;
    last = Date.now();
    process.stderr.write(`\r${verb}: ${r.chunks} chunks, ${formatBytes(r.bytes)} read, ${r.written} fragments written`);
  };
}

function endProgress(): void {
  if (process.stderr.isTTY) process.stderr.write('\n');
}

function summary(r: WalkReport): string {
  const lost = r.lost.length > 0 ? `; ${r.lost.length} chunk(s) cannot be rebuilt (too few fragments left)` : '';
  return `${r.chunks} chunks (${formatBytes(r.bytes)}) checked, ${r.corrupt} corrupt fragment(s), ${r.written} fragment(s) written${r.degraded ? `, ${r.degraded} chunk(s) below their policy` : ''}${lost}`;
}

export function addPoolCommands(program: Command): void {
  const pool = program.command('pool').description('the disks that hold chunks, and their redundancy');

  pool
    .command('add-disk')
    .description('add a directory (normally a mount point) as a disk; used at once, also by mounted volumes')
    .argument('<path>', 'the directory')
    .option('--capacity <size>', 'bytes the pool may use there (500G, 2T); default: all its filesystem has', parseSize)
    .addOption(homeOption())
    .action((dir: string, opts: HomeOptions & { capacity?: number }) =>
      withStore(opts.home, async (store) => {
        const where = path.resolve(dir);
        const id = await updatePoolConfig(store.home, async (config) => {
          if (config.disks.some((d) => d.path === where)) throw new CliError(`${where} is already a disk of this pool`);
          const diskId = randomUUID().slice(0, 8);
          await Disk.label(where, config.id, diskId);
          config.disks.push({ id: diskId, path: await resolveDir(where), ...(opts.capacity ? { capacity: opts.capacity } : {}), state: 'active', added: new Date().toISOString() });
          return diskId;
        });
        await store.chunks.refresh(true);
        console.log(`added disk ${id} at ${where}; new chunks are stored under ${formatPolicy(store.chunks.policy)}`);
      }),
    );

  pool
    .command('remove-disk')
    .description('move every fragment off a disk to the others, then forget it (run again to resume)')
    .argument('<path>', 'the disk directory')
    .addOption(homeOption())
    .action((dir: string, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        const disk = await setDiskState(store, dir, (d) => (d.state === 'active' ? 'draining' : d.state));
        const report = await drain(store.chunks, disk.id, { onProgress: progressLine('draining') });
        endProgress();
        await store.chunks.sync();
        if (report.lost.length > 0) throw new CliError(`${disk.path}: ${summary(report)}; the disk is kept (draining) so nothing more is lost`);
        const left = (await store.chunks.disks().find((d) => d.config.id === disk.id)?.disk?.space())?.usedBytes ?? 0;
        if (left > 0) throw new CliError(`${disk.path} still holds ${formatBytes(left)} of fragments (the other disks lack room?); run remove-disk again`);
        await updatePoolConfig(store.home, (config) => {
          config.disks = config.disks.filter((x) => x.id !== disk.id);
        });
        console.log(`removed disk ${disk.path}: ${report.written} fragment(s) moved to the other disks`);
      }),
    );

  pool
    .command('fail-disk')
    .description('treat a disk as gone (never read or written again), and rebuild what it held from the others')
    .argument('<path>', 'the disk directory')
    .addOption(homeOption())
    .action((dir: string, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        const disk = await setDiskState(store, dir, () => 'failed');
        const report = await healAll(store.chunks, { onProgress: progressLine('rebuilding') });
        endProgress();
        await store.chunks.sync();
        console.log(`disk ${disk.path} marked failed; rebuild: ${summary(report)}`);
        if (report.lost.length > 0) process.exitCode = 1;
      }),
    );

  pool
    .command('rebuild')
    .description('bring every chunk back to its policy on the disks there are now (resumable)')
    .addOption(homeOption())
    .option('--json', 'print JSON')
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        const report = await healAll(store.chunks, { onProgress: progressLine('rebuilding') });
        endProgress();
        await store.chunks.sync();
        if (opts.json) printJson(report);
        else console.log(`rebuild: ${summary(report)}`);
        if (report.lost.length > 0) process.exitCode = 1;
      }),
    );

  pool
    .command('policy')
    .description('show, or set, the policy of new chunks: none, replicate:N or ec:K+M ("default": fit the disks)')
    .argument('[policy]', 'the new policy', (v: string) => (v === 'default' ? v : parsePolicyOption(v)))
    .addOption(homeOption())
    .action((policy: string | undefined, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        if (policy !== undefined) {
          await updatePoolConfig(store.home, (config) => setConfiguredPolicy(config, policy === 'default' ? undefined : parsePolicy(policy)));
          await store.chunks.refresh(true);
        }
        const configured = configuredPolicy(await readPoolConfig(store.home));
        console.log(`${formatPolicy(store.chunks.policy)}${configured ? '' : ' (the default for this many disks)'}`);
      }),
    );

  pool
    .command('list')
    .description('the disks: size, use, health and fragments')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        const rows = await Promise.all(store.chunks.disks().map(async (d) => {
          const space = await d.disk?.space();
          let fragments: number | undefined;
          if (d.disk) {
            fragments = 0;
            for await (const prefix of d.disk.prefixes()) fragments += (await d.disk.chunksUnder(prefix)).length;
          }
          return {
            id: d.config.id,
            path: d.config.path,
            state: d.config.state,
            health: d.available ? 'ok' : 'unavailable',
            ...(d.reason ? { reason: d.reason } : {}),
            totalBytes: space?.totalBytes ?? null,
            usedBytes: space?.usedBytes ?? null,
            freeBytes: space?.freeBytes ?? null,
            fragments: fragments ?? null,
          };
        }));
        if (opts.json) {
          printJson({ policy: formatPolicy(store.chunks.policy), disks: rows });
          return;
        }
        printTable([
          ['DISK', 'STATE', 'HEALTH', 'SIZE', 'USED', 'FREE', 'FRAGMENTS', 'PATH'],
          ...rows.map((r) => [
            r.id, r.state, r.health,
            r.totalBytes === null ? '-' : formatBytes(r.totalBytes),
            r.usedBytes === null ? '-' : formatBytes(r.usedBytes),
            r.freeBytes === null ? '-' : formatBytes(r.freeBytes),
            r.fragments === null ? '-' : String(r.fragments),
            r.reason ? `${r.path} (${r.reason})` : r.path,
          ]),
        ]);
        console.log(`policy of new chunks: ${formatPolicy(store.chunks.policy)}`);
      }),
    );

  program
    .command('scrub')
    .description('read every fragment of every chunk and check it; with --repair, rebuild what is bad')
    .option('--repair', 'rewrite corrupt and missing fragments from the others')
    .option('--rate <size>', 'read at most this many bytes a second (100M); default: as fast as the disks go', parseSize)
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions & { repair?: boolean; rate?: number }) =>
      withStore(opts.home, async (store) => {
        const report = await healAll(store.chunks, { checkOnly: opts.repair !== true, bytesPerSecond: opts.rate, onProgress: progressLine('scrubbing') });
        endProgress();
        await store.chunks.sync();
        if (opts.json) printJson(report);
        else console.log(`scrub: ${summary(report)}`);
        const unrepaired = opts.repair ? report.lost.length : report.corrupt + report.degraded + report.lost.length;
        if (unrepaired > 0) process.exitCode = 1;
      }),
    );
}
