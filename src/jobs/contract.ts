// The jobs layer's contract. A job is a long operation on a store (a change of policy, a scrub, a
// rebuild, a drain, a tiering pass) whose state lives in a file, so that it shows progress to any
// process, can be paused and resumed, and finishes after a crash: the next runner starts it again
// from its last checkpoint. Every step of a job is safe to repeat, so a checkpoint need not be exact.
import type { Logger } from '../log.js';
import type { Store } from '../store/store.js';

export type JobKind = 'reencode' | 'scrub' | 'rebuild' | 'drain' | 'tier';

/**
 *   queued    waiting for a runner (or, with notBefore, for its time)
 *   running   a runner has it (runner: its pid; a dead runner's job is taken up again)
 *   paused    stopped at a checkpoint until resumed
 *   done, failed, cancelled: finished (a repeating job goes back to queued instead of done)
 */
export type JobState = 'queued' | 'running' | 'paused' | 'done' | 'failed' | 'cancelled';

export interface JobProgress {
  done: number;
  total: number;
  unit: 'bytes' | 'chunks';
}

export interface Job {
  id: string;
  kind: JobKind;
  state: JobState;
  /** What it was asked to do (by kind: see its handler). */
  params: Record<string, unknown>;
  /** Where a resumed run starts (the handler's own). */
  cursor?: unknown;
  progress: JobProgress;
  /** What it found and did so far, by name (chunks, corrupt, written, ...). */
  counts: Record<string, number>;
  /** Bytes a second it may read (a scrub's intensity); absent: as fast as the disks go. */
  rate?: number;
  /** Repeating (a scheduled scrub): queued again this many ms after it finishes. */
  everyMs?: number;
  /** Not to start before (ISO time). */
  notBefore?: string;
  runner?: number;
  createdAt: string;
  startedAt?: string;
  updatedAt: string;
  finishedAt?: string;
  /** How the last run ended, in words. */
  summary?: string;
  error?: string;
}

/** What a handler gets to run one job. */
export interface JobContext {
  readonly job: Readonly<Job>;
  readonly store: Store;
  readonly log: Logger;
  /** Aborted when the job is paused or cancelled, or its runner stops: return at the next
   * checkpoint (what was done is kept). */
  readonly signal: AbortSignal;
  progress(done: number, total?: number): void;
  /** Where to resume from; saved with the progress (at most about once a second). */
  checkpoint(cursor: unknown): void;
  count(name: string, n?: number): void;
  /** The counts so far (those saved by an earlier run of the job included). */
  readonly counts: Readonly<Record<string, number>>;
  /** Waits as long as reading `bytes` more takes at the job's rate. */
  throttle(bytes: number): Promise<void>;
}

export interface JobHandler {
  readonly kind: JobKind;
  /** Runs (or resumes) the job; resolves with a one-line summary when it is done. A run that
   * returns while ctx.signal is aborted has stopped early, not finished. */
  run(ctx: JobContext): Promise<string>;
}

export class JobError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'JobError';
  }
}
