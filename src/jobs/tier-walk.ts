// The tier job: one walk over every chunk, moving each to the policy its heat asks (hot or cold,
// store/policies.ts) when it is under another. Reads move hot chunks at once (store/tier-mover.ts);
// this is what moves chunks that have cooled, and hot ones read by other processes. With tiering
// on, a repeating tier job runs it (orbit tier policy --every); `orbit tier apply` runs it once.
//
// The heat is read once at the start (every process's reads, merged). The cursor is the last
// fan-out prefix done, as for the pool's walks.
import { Heat } from '../pool/heat.js';
import { samePolicy } from '../pool/policy.js';
import { chunkPolicy } from '../store/policies.js';
import type { JobContext, JobHandler } from './contract.js';

export const tierHandler: JobHandler = {
  kind: 'tier',
  async run(ctx: JobContext): Promise<string> {
    const { store } = ctx;
    const pool = store.chunks;
    const tiering = pool.tiering;
    if (!tiering) return 'tiering is off: nothing to move';
    const heat = await Heat.load(store.home, { windowMs: tiering.windowMs, log: ctx.log });
    const start = ctx.job.cursor as string | undefined;
    const doneBefore = start === undefined ? 0 : ctx.job.progress.done;
    let done = doneBefore;
    ctx.progress(done, Math.max(pool.storedBytes(), done));
    let prefix: string | undefined;
    for await (const c of pool.iterateFrom(start)) {
      if (ctx.signal.aborted) return '';
      // A prefix is done when the walk moves past it.
      if (prefix !== undefined && c.prefix !== prefix) ctx.checkpoint(prefix);
      prefix = c.prefix;
      const stored = await pool.policyOf(c.id);
      const target = await chunkPolicy(store.meta, pool, c.id, heat, stored);
      ctx.count('chunks');
      if (stored !== undefined && !samePolicy(stored, target)) {
        const r = await pool.heal(c.id, target, true);
        if (r.written > 0) ctx.count(samePolicy(target, tiering.hot) ? 'hot' : samePolicy(target, tiering.cold) ? 'cold' : 'other');
        if (r.lost) ctx.count('lost');
        await ctx.throttle(r.bytes);
      }
      done += c.storedBytes;
      ctx.progress(done);
    }
    await pool.sync();
    const n = (k: string): number => ctx.counts[k] ?? 0;
    const lost = n('lost') > 0 ? `; ${n('lost')} chunk(s) cannot be read (see orbit scrub)` : '';
    return `tier: ${n('chunks')} chunks looked at; ${n('hot')} moved to hot, ${n('cold')} moved to cold${n('other') ? `, ${n('other')} to what their files ask` : ''}${lost}`;
  },
};
