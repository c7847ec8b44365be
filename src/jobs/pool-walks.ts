// The pool's walks as jobs: scrub (read and check every fragment; with repair, mend what is bad),
// rebuild (back to full redundancy on the disks there are now) and drain (move every fragment
// off a disk being removed, then forget it). The cursor is the last fan-out prefix done.
//
// Chunks found beyond repair are recorded with the files they belong to (store/damage.ts), which
// is how `orbit status` names the files that cannot be read.
import { drain, healAll, type WalkOptions, type WalkReport } from '../pool/repair.js';
import { updatePoolConfig } from '../pool/pool-config.js';
import { recordDamage } from '../store/damage.js';
import type { JobContext, JobHandler, JobKind } from './contract.js';

/** Runs a walk with the job's cursor, progress, counts, rate and stop signal. */
async function walkAsJob(ctx: JobContext, run: (opts: WalkOptions) => Promise<WalkReport>): Promise<WalkReport> {
  const pool = ctx.store.chunks;
  const start = ctx.job.cursor as string | undefined;
  const doneBefore = start === undefined ? 0 : ctx.job.progress.done;
  ctx.progress(doneBefore, Math.max(pool.storedBytes(), doneBefore));
  let seen = { chunks: 0, bytes: 0, corrupt: 0, written: 0, degraded: 0 };
  let prefix: string | undefined;
  const report = await run({
    after: start,
    signal: ctx.signal,
    onProgress: async (r, p) => {
      // A prefix is done when the walk moves past it.
      if (prefix !== undefined && p !== prefix) ctx.checkpoint(prefix);
      prefix = p;
      for (const k of ['chunks', 'bytes', 'corrupt', 'written', 'degraded'] as const) {
        if (r[k] > seen[k]) ctx.count(k, r[k] - seen[k]);
      }
      await ctx.throttle(r.bytes - seen.bytes);
      seen = { chunks: r.chunks, bytes: r.bytes, corrupt: r.corrupt, written: r.written, degraded: r.degraded };
      ctx.progress(doneBefore + r.bytes);
    },
  });
  if (report.lost.length > 0) {
    ctx.count('lost', report.lost.length);
    await recordDamage(ctx.store, report.lost);
  }
  return report;
}

function summary(kind: string, counts: Record<string, number>): string {
  const n = (k: string): number => counts[k] ?? 0;
  const lost = n('lost') > 0 ? `; ${n('lost')} chunk(s) cannot be rebuilt (too few fragments left): see orbit status` : '';
  const degraded = n('degraded') > 0 ? `, ${n('degraded')} chunk(s) below their policy` : '';
  return `${kind}: ${n('chunks')} chunks checked, ${n('corrupt')} corrupt fragment(s), ${n('written')} fragment(s) written${degraded}${lost}`;
}

function walkHandler(kind: JobKind, run: (ctx: JobContext, opts: WalkOptions) => Promise<WalkReport>, after?: (ctx: JobContext) => Promise<string | undefined>): JobHandler {
  return {
    kind,
    async run(ctx) {
      await walkAsJob(ctx, (opts) => run(ctx, opts));
      if (ctx.signal.aborted) return '';
      await ctx.store.chunks.sync();
      const extra = after ? await after(ctx) : undefined;
      // The counts as saved plus this run's: the runner saves them after this returns.
      return summary(kind, ctx.counts) + (extra ? `; ${extra}` : '');
    },
  };
}

/** params: { repair: boolean }. */
export const scrubHandler = walkHandler('scrub', (ctx, opts) => healAll(ctx.store.chunks, { ...opts, checkOnly: ctx.job.params.repair !== true, tidy: ctx.job.params.repair === true }));

export const rebuildHandler = walkHandler('rebuild', (ctx, opts) => healAll(ctx.store.chunks, { ...opts, tidy: true }));

/** params: { disk: id, forget: boolean }: with forget, the disk leaves the pool once empty. */
export const drainHandler = walkHandler(
  'drain',
  (ctx, opts) => drain(ctx.store.chunks, String(ctx.job.params.disk), { ...opts, tidy: true }),
  async (ctx) => {
    const id = String(ctx.job.params.disk);
    const disk = ctx.store.chunks.disks().find((d) => d.config.id === id)?.disk;
    let left = 0;
    if (disk) for await (const prefix of disk.prefixes()) left += (await disk.chunksUnder(prefix)).length;
    if (left > 0) throw new Error(`disk ${id} still holds ${left} fragment(s) (the other disks lack room, or chunks are lost): it stays, draining`);
    if (ctx.job.params.forget !== true) return undefined;
    await updatePoolConfig(ctx.store.home, (config) => {
      config.disks = config.disks.filter((x) => x.id !== id);
    });
    await ctx.store.chunks.refresh(true);
    return `disk ${id} removed from the pool`;
  },
);
