// The job runner: one per store at a time (the holder of <home>/jobs/runner.pid), in whichever
// process runs long (a mount) or in a command waiting for its own job when no such process is up.
// It takes up queued jobs, and running ones whose runner died, one of each kind at a time;
// saves their progress about once a second; and stops a job at its next checkpoint when a
// command pauses or cancels it.
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import type { Logger } from '../log.js';
import { isAlive } from '../processes.js';
import { sleep } from '../sleep.js';
import type { Store } from '../store/store.js';
import type { Job, JobContext, JobHandler, JobKind } from './contract.js';
import { finished, JobStore } from './job-store.js';

const TICK_MS = 1000;

interface Active {
  job: Job;
  controller: AbortController;
  /** What the handler reported since the last save. */
  progress: Job['progress'];
  cursor: unknown;
  counts: Record<string, number>;
  dirty: boolean;
  /** Set when this runner stops it (the job is queued again, not paused). */
  stopping: boolean;
  finished: Promise<void>;
}

export class JobRunner {
  readonly jobs: JobStore;
  private readonly handlers: Map<JobKind, JobHandler>;
  private readonly active = new Map<string, Active>();
  private holdingLock = false;
  private timer: NodeJS.Timeout | undefined;
  private ticking: Promise<void> | undefined;
  private stopped = false;

  constructor(
    readonly store: Store,
    handlers: readonly JobHandler[],
    private readonly log: Logger,
  ) {
    this.jobs = new JobStore(store.home);
    this.handlers = new Map(handlers.map((h) => [h.kind, h]));
  }

  /** Whether this process runs the store's jobs now. */
  get holding(): boolean {
    return this.holdingLock;
  }

  /** Runs jobs in the background from now until stop(). */
  start(): void {
    const loop = (): void => {
      this.timer = setTimeout(() => {
        void this.tick().finally(() => {
          if (!this.stopped) loop();
        });
      }, TICK_MS);
      this.timer.unref();
    };
    void this.tick().finally(loop);
  }

  /** Runs jobs until `done` says so (a command waiting for its job), or, without it, until no job
   * is due. When another process runs the jobs, this only waits, and takes over if it dies. */
  async runUntil(done?: () => Promise<boolean>): Promise<void> {
    while (!this.stopped) {
      await this.tick();
      if (done ? await done() : this.active.size === 0 && !(await this.anyDue())) break;
      await new Promise((r) => setTimeout(r, this.holdingLock ? 200 : 500));
    }
  }

  /** Stops every job at its next checkpoint (they are queued again for the next runner) and lets the lock go. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.ticking;
    for (const a of this.active.values()) {
      a.stopping = true;
      a.controller.abort();
    }
    await Promise.all([...this.active.values()].map((a) => a.finished));
    if (this.holdingLock) {
      this.holdingLock = false;
      if ((await readFile(this.jobs.runnerFile, 'utf8').catch(() => '')) === String(process.pid)) await rm(this.jobs.runnerFile, { force: true });
    }
  }

  private tick(): Promise<void> {
    this.ticking ??= this.tickOnce().catch((err: unknown) => {
      this.log.warn({ err }, 'job runner: a round failed; trying again');
    }).finally(() => {
      this.ticking = undefined;
    });
    return this.ticking;
  }

  private async tickOnce(): Promise<void> {
    if (this.stopped) return;
    if (!this.holdingLock && !(await this.acquire())) return;
    for (const a of this.active.values()) await this.save(a);
    const now = Date.now();
    for (const job of await this.jobs.list()) {
      const a = this.active.get(job.id);
      if (a) {
        if (job.state === 'paused' || job.state === 'cancelled') a.controller.abort();
        continue;
      }
      if (this.runnable(job, now) && ![...this.active.values()].some((x) => x.job.kind === job.kind)) this.begin(job);
    }
  }

  private runnable(job: Job, now: number): boolean {
    if (!this.handlers.has(job.kind)) return false;
    if (job.state === 'queued') return job.notBefore === undefined || Date.parse(job.notBefore) <= now;
    // A running job nobody runs: its runner died (or was this process, before a restart).
    return job.state === 'running' && (job.runner === undefined || job.runner === process.pid || !isAlive(job.runner));
  }

  private async anyDue(): Promise<boolean> {
    const now = Date.now();
    return (await this.jobs.list()).some((j) => this.runnable(j, now));
  }

  private async acquire(): Promise<boolean> {
    for (;;) {
      try {
        await mkdir(this.jobs.dir, { recursive: true });
        await writeFile(this.jobs.runnerFile, String(process.pid), { flag: 'wx' });
        this.holdingLock = true;
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
        const holder = Number(await readFile(this.jobs.runnerFile, 'utf8').catch(() => ''));
        if (holder > 0 && isAlive(holder)) return false;
        if (!(holder > 0)) return false; // being written: the next round sees whose it is
        await rm(this.jobs.runnerFile, { force: true });
      }
    }
  }

  private begin(queued: Job): void {
    const controller = new AbortController();
    const a: Active = {
      job: queued,
      controller,
      progress: queued.progress,
      cursor: queued.cursor,
      counts: { ...queued.counts },
      dirty: false,
      stopping: false,
      finished: Promise.resolve(),
    };
    this.active.set(queued.id, a);
    a.finished = this.run(a).finally(() => this.active.delete(queued.id));
  }

  private async run(a: Active): Promise<void> {
    const handler = this.handlers.get(a.job.kind)!;
    const resumed = a.job.state === 'running' || a.job.cursor !== undefined;
    const job = await this.jobs.update(a.job.id, (j) => {
      j.state = 'running';
      j.runner = process.pid;
      j.startedAt ??= new Date().toISOString();
      delete j.error;
    });
    if (!job) return;
    a.job = job;
    if (!resumed) a.counts = {};
    await this.jobs.audit(resumed ? 'job-resumed' : 'job-started', { job: job.id, kind: job.kind, params: job.params });
    this.log.info({ job: job.id, kind: job.kind, params: job.params }, resumed ? 'job resumed' : 'job started');
    let readSince = Date.now();
    let read = 0;
    const ctx: JobContext = {
      job,
      store: this.store,
      log: this.log,
      signal: a.controller.signal,
      progress: (done, total) => {
        a.progress = { ...a.progress, done, total: total ?? a.progress.total };
        a.dirty = true;
      },
      checkpoint: (cursor) => {
        a.cursor = cursor;
        a.dirty = true;
      },
      count: (name, n = 1) => {
        a.counts[name] = (a.counts[name] ?? 0) + n;
        a.dirty = true;
      },
      get counts() {
        return a.counts;
      },
      throttle: async (bytes) => {
        if (!job.rate) return;
        read += bytes;
        const due = readSince + (read / job.rate) * 1000;
        const wait = due - Date.now();
        if (wait > 0) await sleep(wait, a.controller.signal);
        if (wait < -1000) {
          // Far behind (the disks are slower than the rate): no credit for the past.
          readSince = Date.now();
          read = 0;
        }
      },
    };
    try {
      const summary = await handler.run(ctx);
      await this.finish(a, summary);
    } catch (err) {
      if (a.controller.signal.aborted) return this.finish(a, undefined);
      this.log.error({ job: job.id, err }, 'job failed');
      await this.save(a);
      await this.jobs.update(job.id, (j) => {
        j.state = 'failed';
        j.error = (err as Error).message;
        j.finishedAt = new Date().toISOString();
      });
      await this.jobs.audit('job-failed', { job: job.id, kind: job.kind, error: (err as Error).message });
    }
  }

  /** Records how a run ended: done (or queued again when it repeats), or stopped early. */
  private async finish(a: Active, summary: string | undefined): Promise<void> {
    await this.save(a);
    const id = a.job.id;
    if (summary === undefined || a.controller.signal.aborted) {
      const j = await this.jobs.update(id, (j) => {
        if (a.stopping && j.state === 'running') j.state = 'queued';
        if (j.state === 'cancelled') j.finishedAt = new Date().toISOString();
      });
      if (j) await this.jobs.audit(`job-${j.state === 'queued' ? 'interrupted' : j.state}`, { job: id, kind: j.kind, progress: j.progress });
      return;
    }
    const j = await this.jobs.update(id, (j) => {
      j.summary = summary;
      if (j.everyMs !== undefined && j.state === 'running') {
        j.state = 'queued';
        j.notBefore = new Date(Date.now() + j.everyMs).toISOString();
        delete j.cursor;
        j.progress = { ...j.progress, done: 0 };
      } else if (!finished(j)) {
        j.state = 'done';
        j.finishedAt = new Date().toISOString();
      }
    });
    this.log.info({ job: id, summary }, 'job finished');
    if (j) await this.jobs.audit('job-finished', { job: id, kind: j.kind, summary, counts: j.counts });
  }

  private async save(a: Active): Promise<void> {
    if (!a.dirty) return;
    a.dirty = false;
    const { progress, cursor, counts } = a;
    await this.jobs.update(a.job.id, (j) => {
      j.progress = progress;
      j.cursor = cursor;
      j.counts = { ...counts };
    });
  }
}

/** The process running the store's jobs now (the live holder of the runner's lock), if any. */
export async function jobRunnerPid(jobs: JobStore): Promise<number | undefined> {
  const holder = Number(await readFile(jobs.runnerFile, 'utf8').catch(() => ''));
  return holder > 0 && isAlive(holder) ? holder : undefined;
}
