// `orbit pool …` and `orbit scrub`: the disks that hold chunks, their redundancy, and the walks
// that keep it (rebuild, drain, scrub). Changes to the disks go into pool.json, which mounted
// volumes re-read within a second.
import { randomUUID } from 'node:crypto';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { Disk, type DiskConfig, type DiskState } from '../pool/disk.js';
import { configuredPolicy, readPoolConfig, setConfiguredPolicy, updatePoolConfig } from '../pool/pool-config.js';
import { formatPolicy, parsePolicy } from '../pool/policy.js';
import type { Pool } from '../pool/pool.js';
import type { Job, JobKind } from '../jobs/contract.js';
import { JobStore } from '../jobs/job-store.js';
import type { Store } from '../store/store.js';
import { formatDuration, parseDuration, parseSize, policyOrDefault } from './arguments.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { followJob } from './job-commands.js';
import { CliError, formatBytes, printJson, printTable } from './output.js';

type JsonOptions = HomeOptions & { json?: boolean };

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

/** What a walk job found, as `--json` prints it. */
type WalkCounts = Record<'chunks' | 'bytes' | 'corrupt' | 'written' | 'degraded' | 'lost', number>;

function walkReport(job: Job): WalkCounts {
  const n = (k: string): number => job.counts[k] ?? 0;
  return { chunks: n('chunks'), bytes: n('bytes'), corrupt: n('corrupt'), written: n('written'), degraded: n('degraded'), lost: n('lost') };
}

/** Queues a walk, waits for it (running it here unless a mounted volume runs the store's jobs),
 * prints how it went; exit code 1 when `damaged` says something is left broken. */
async function runWalk(store: Store, kind: JobKind, params: Record<string, unknown>, verb: string, opts: { json?: boolean; rate?: number }, damaged: (r: WalkCounts) => boolean): Promise<Job> {
  const jobs = new JobStore(store.home);
  const queued = await jobs.add(kind, params, opts.rate ? { rate: opts.rate } : {});
  const job = await followJob(store, queued.id, verb);
  if (job.state === 'failed') throw new CliError(`${verb} failed: ${job.error ?? 'see the log'}`);
  if (job.state !== 'done') throw new CliError(`${verb} ${job.state} (job ${job.id}; orbit jobs resume ${job.id} goes on)`);
  const report = walkReport(job);
  if (opts.json) printJson(report);
  else console.log(job.summary);
  if (damaged(report)) process.exitCode = 1;
  return job;
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
        await runWalk(store, 'drain', { disk: disk.id, forget: true }, `draining ${disk.path}`, {}, (r) => r.lost > 0);
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
        console.log(`disk ${disk.path} marked failed; rebuilding what it held from the others`);
        await runWalk(store, 'rebuild', {}, 'rebuilding', {}, (r) => r.lost > 0);
      }),
    );

  pool
    .command('rebuild')
    .description('bring every chunk back to its policy on the disks there are now (resumable)')
    .addOption(homeOption())
    .option('--json', 'print JSON')
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        await runWalk(store, 'rebuild', {}, 'rebuilding', opts, (r) => r.lost > 0);
      }),
    );

  pool
    .command('policy')
    .description('show, or set, the policy of new chunks: none, replicate:N or ec:K+M ("default": fit the disks)')
    .argument('[policy]', 'the new policy', policyOrDefault)
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
    .description('read every fragment of every chunk and check it; with --repair, rebuild what is bad; with --schedule, do so in the background')
    .option('--repair', 'rewrite corrupt and missing fragments from the others')
    .option('--rate <size>', 'read at most this many bytes a second (100M); default: as fast as the disks go', parseSize)
    .option('--schedule <every>', "the background scrubber (it repairs): run every 30m, 12h, 7d..., or 'off'", (v: string) => (v === 'off' ? 0 : parseDuration(v)))
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions & { repair?: boolean; rate?: number; schedule?: number }) =>
      withStore(opts.home, async (store) => {
        if (opts.schedule !== undefined) return scheduleScrub(store, opts.schedule, opts.rate);
        await runWalk(store, 'scrub', { repair: opts.repair === true }, 'scrubbing', opts, (r) =>
          opts.repair ? r.lost > 0 : r.corrupt + r.degraded + r.lost > 0);
      }),
    );
}

/** The background scrubber: one repeating scrub job (replacing any before), run by whichever
 * process runs the store's jobs (a mounted volume); `orbit jobs pause scrub` pauses it. */
async function scheduleScrub(store: Store, everyMs: number, rate: number | undefined): Promise<void> {
  const jobs = new JobStore(store.home);
  await jobs.cancelRepeating('scrub');
  if (everyMs === 0) return console.log('background scrubbing is off');
  const job = await jobs.add('scrub', { repair: true }, { everyMs, ...(rate ? { rate } : {}) });
  await jobs.audit('scrub-scheduled', { job: job.id, everyMs, rate: rate ?? null });
  console.log(`background scrub every ${formatDuration(everyMs)}${rate ? ` at up to ${formatBytes(rate)}/s` : ''}: job ${job.id}, first run now (while a volume is mounted; orbit jobs)`);
}
