// Jobs as files: <home>/jobs/<id>.json, each replaced whole under <home>/jobs/lock (the runner
// writes progress while a command pauses or cancels), and <home>/audit.log, one JSON line per
// event worth keeping (a policy changed, a job started, finished or was stopped).
import { randomUUID } from 'node:crypto';
import { appendFile, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { replaceFile } from '../durable-file.js';
import { withFileLock } from '../file-lock.js';
import { JobError, type Job, type JobKind } from './contract.js';

export interface AuditEvent {
  time: string;
  event: string;
  [key: string]: unknown;
}

const JOB_FILE = /^[0-9a-f]{8}\.json$/;

export class JobStore {
  readonly dir: string;

  constructor(readonly home: string) {
    this.dir = path.join(home, 'jobs');
  }

  /** Holds the pid of the process that runs the jobs (runner.ts). */
  get runnerFile(): string {
    return path.join(this.dir, 'runner.pid');
  }

  private file(id: string): string {
    return path.join(this.dir, `${id}.json`);
  }

  /** Every job, oldest first. */
  async list(): Promise<Job[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    const jobs: Job[] = [];
    for (const name of names) {
      if (!JOB_FILE.test(name)) continue; // (scratch files, temp files, the lock)
      const job = await this.read(name.slice(0, -5));
      if (job) jobs.push(job);
    }
    return jobs.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async get(id: string): Promise<Job | undefined> {
    return this.read(id);
  }

  /** The job named by `ref`: its id, a unique prefix of it, or its kind when one job of that kind is unfinished. */
  async find(ref: string): Promise<Job> {
    const jobs = await this.list();
    const byId = jobs.filter((j) => j.id.startsWith(ref));
    if (byId.length === 1) return byId[0]!;
    const byKind = jobs.filter((j) => j.kind === ref && !finished(j));
    if (byKind.length === 1) return byKind[0]!;
    if (byId.length + byKind.length > 1) throw new JobError(`${ref} names more than one job: give more of its id (see 'orbit jobs')`);
    throw new JobError(`no job ${ref} (see 'orbit jobs')`);
  }

  async add(kind: JobKind, params: Record<string, unknown>, extra: Partial<Job> = {}): Promise<Job> {
    await mkdir(this.dir, { recursive: true });
    const now = new Date().toISOString();
    const job: Job = {
      id: randomUUID().slice(0, 8),
      kind,
      state: 'queued',
      params,
      progress: { done: 0, total: 0, unit: 'bytes' },
      counts: {},
      createdAt: now,
      updatedAt: now,
      ...extra,
    };
    await this.locked(() => replaceFile(this.file(job.id), JSON.stringify(job, null, 2) + '\n'));
    return job;
  }

  /** Applies `change` to the job as it is on disk now, and saves it; undefined when it is gone. */
  async update(id: string, change: (job: Job) => void): Promise<Job | undefined> {
    return this.locked(async () => {
      const job = await this.read(id);
      if (!job) return undefined;
      change(job);
      job.updatedAt = new Date().toISOString();
      await replaceFile(this.file(id), JSON.stringify(job, null, 2) + '\n');
      return job;
    });
  }

  async remove(id: string): Promise<void> {
    await this.locked(() => rm(this.file(id), { force: true }));
  }

  /** A job's own scratch file (a list it made once and works through). */
  scratch(id: string, name: string): string {
    return path.join(this.dir, `${id}.${name}`);
  }

  /** The unfinished repeating job of `kind` (the background scrubber, the tier job), if any. */
  async repeating(kind: JobKind): Promise<Job | undefined> {
    return (await this.list()).find((j) => j.kind === kind && j.everyMs !== undefined && !finished(j));
  }

  /** Cancels every unfinished repeating job of `kind` (one replaces it, or none: turned off). */
  async cancelRepeating(kind: JobKind): Promise<void> {
    for (const j of await this.list()) {
      if (j.kind !== kind || j.everyMs === undefined || finished(j)) continue;
      await this.update(j.id, (x) => {
        x.state = 'cancelled';
        x.finishedAt = new Date().toISOString();
      });
    }
  }

  async audit(event: string, fields: Record<string, unknown>): Promise<void> {
    await mkdir(this.home, { recursive: true });
    const line: AuditEvent = { time: new Date().toISOString(), event, ...fields };
    // One write with O_APPEND: lines of concurrent writers do not interleave.
    await appendFile(path.join(this.home, 'audit.log'), JSON.stringify(line) + '\n', { mode: 0o600 });
  }

  async auditLog(): Promise<AuditEvent[]> {
    const text = await readFile(path.join(this.home, 'audit.log'), 'utf8').catch(() => '');
    return text.split('\n').filter((l) => l.trim() !== '').map((l) => JSON.parse(l) as AuditEvent);
  }

  private async locked<T>(fn: () => Promise<T>): Promise<T> {
    await mkdir(this.dir, { recursive: true });
    return withFileLock(path.join(this.dir, 'lock'), 'the job list', fn);
  }

  private async read(id: string): Promise<Job | undefined> {
    try {
      return JSON.parse(await readFile(this.file(id), 'utf8')) as Job;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new JobError(`job file ${this.file(id)} is unreadable: ${(err as Error).message}`);
    }
  }
}

export function finished(job: Job): boolean {
  return job.state === 'done' || job.state === 'failed' || job.state === 'cancelled';
}
