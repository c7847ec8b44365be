// `orbit jobs …`: the store's long operations (changes of policy, scrubs, rebuilds, drains) and
// their progress; pause, resume and cancel. Commands that start a job either wait for it here
// (running it in this process when no other runs the store's jobs) or leave it to the runner of
// a mounted volume, starting one in the background when there is none.
import { spawn } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import type { Job } from '../jobs/contract.js';
import { JOB_HANDLERS } from '../jobs/handlers.js';
import { finished, JobStore } from '../jobs/job-store.js';
import { jobRunnerPid, JobRunner } from '../jobs/runner.js';
import { componentLogger } from '../log.js';
import type { Store } from '../store/store.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { CliError, formatBytes, printJson, printTable } from './output.js';

/** "42% (1.2 GiB of 3 GiB)". */
export function progressText(job: Job): string {
  const { done, total, unit } = job.progress;
  const amount = (n: number): string => (unit === 'bytes' ? formatBytes(n) : String(n));
  if (total <= 0) return done > 0 ? amount(done) : '-';
  return `${Math.min(100, Math.floor((done / total) * 100))}% (${amount(done)} of ${amount(total)})`;
}

/** Runs the job here (or waits while another process runs it) until it finishes; shows progress on a terminal. */
export async function followJob(store: Store, id: string, verb: string): Promise<Job> {
  const jobs = new JobStore(store.home);
  const runner = new JobRunner(store, JOB_HANDLERS, componentLogger('jobs'));
  let job: Job | undefined;
  let shown = false;
  try {
    await runner.runUntil(async () => {
      job = await jobs.get(id);
      if (job && process.stderr.isTTY) {
        process.stderr.write(`\r${verb}: ${progressText(job)}   `);
        shown = true;
      }
      return job === undefined || finished(job) || job.state === 'paused';
    });
  } finally {
    await runner.stop();
    if (shown) process.stderr.write('\n');
  }
  if (!job) throw new CliError(`job ${id} is gone`);
  return job;
}

/** Makes sure some process runs the store's jobs: a mounted volume does; otherwise one is
 * started in the background, which ends when no job is left. */
export async function ensureRunner(store: Store): Promise<void> {
  if ((await jobRunnerPid(new JobStore(store.home))) !== undefined) return;
  const bin = fileURLToPath(new URL('../../bin/orbit.js', import.meta.url));
  await mkdir(path.join(store.home, 'jobs'), { recursive: true });
  const log = await open(path.join(store.home, 'jobs', 'runner.log'), 'a');
  try {
    const child = spawn(process.execPath, [...process.execArgv, bin, 'jobs', 'run', '--home', store.home], { detached: true, stdio: ['ignore', log.fd, log.fd], cwd: '/' });
    child.unref();
  } finally {
    await log.close();
  }
}

function jobRow(j: Job): string[] {
  return [j.id, j.kind, j.state, progressText(j), j.rate ? `${formatBytes(j.rate)}/s` : '-', describe(j)];
}

function describe(j: Job): string {
  if (j.error) return `failed: ${j.error}`;
  if (j.kind === 'reencode') return `${String(j.params.path)} → ${String(j.params.policy)}`;
  if (j.kind === 'drain') return `disk ${String(j.params.disk)}`;
  const next = j.state === 'queued' && j.notBefore ? `next ${j.notBefore}` : '';
  return [j.params.repair === false ? 'check only' : '', next, j.summary ?? ''].filter(Boolean).join('; ');
}

export function addJobCommands(program: Command): void {
  const jobs = program.command('jobs').description('long operations (re-encode, scrub, rebuild, drain): progress, pause, resume, cancel');

  jobs
    .command('list', { isDefault: true })
    .description('the jobs and their progress (finished ones too)')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: HomeOptions & { json?: boolean }) =>
      withStore(opts.home, async (store) => {
        const all = await new JobStore(store.home).list();
        if (opts.json) return printJson(all);
        if (all.length === 0) return console.log('no jobs');
        printTable([['JOB', 'KIND', 'STATE', 'PROGRESS', 'RATE', 'WHAT'], ...all.map(jobRow)]);
      }),
    );

  const control = (name: string, description: string, change: (j: Job) => string | undefined): void => {
    jobs
      .command(name)
      .description(description)
      .argument('<job>', 'its id (or a unique start of it), or its kind when one of that kind is unfinished')
      .addOption(homeOption())
      .action((ref: string, opts: HomeOptions) =>
        withStore(opts.home, async (store) => {
          const store_ = new JobStore(store.home);
          const job = await store_.find(ref);
          let refusal: string | undefined;
          const updated = await store_.update(job.id, (j) => {
            refusal = change(j);
          });
          if (refusal) throw new CliError(`job ${job.id} (${job.kind}, ${job.state}): ${refusal}`);
          await store_.audit(`job-${name}`, { job: job.id, kind: job.kind });
          if (updated?.state === 'queued') await ensureRunner(store);
          console.log(`job ${job.id} (${job.kind}): ${updated?.state ?? 'gone'}`);
        }),
      );
  };
  control('pause', 'stop a job at its next checkpoint, until resumed', (j) => {
    if (j.state !== 'queued' && j.state !== 'running') return 'only a queued or running job can be paused';
    j.state = 'paused';
    return undefined;
  });
  control('resume', 'let a paused job go on from where it stopped', (j) => {
    if (j.state !== 'paused' && j.state !== 'failed') return 'only a paused or failed job can be resumed';
    j.state = 'queued';
    delete j.error;
    delete j.finishedAt;
    return undefined;
  });
  control('cancel', 'stop a job for good (what it did stays done)', (j) => {
    if (finished(j)) return 'it has finished already';
    j.state = 'cancelled';
    j.finishedAt = new Date().toISOString();
    return undefined;
  });

  jobs
    .command('run')
    .description("run the store's jobs in this process until none is due (mounted volumes run them by themselves)")
    .addOption(homeOption())
    .action((opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        const runner = new JobRunner(store, JOB_HANDLERS, componentLogger('jobs'));
        const stop = (): void => void runner.stop();
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        try {
          await runner.runUntil();
        } finally {
          await runner.stop();
          process.off('SIGINT', stop);
          process.off('SIGTERM', stop);
        }
      }),
    );
}
