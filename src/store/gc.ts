// gc: deletes chunks no file refers to any more. Safe while volumes are mounted, by other
// processes too: it claims chunks in the metadata (unreferenced and unpinned) before deleting
// them, and commits pin the chunks they are about to store (see OpenFile), so a chunk is never
// deleted under a writer that found it already stored.
import type { MetaEngine } from '../meta/contract.js';
import type { ChunkStore } from '../pool/contract.js';
import type { Store } from './store.js';

const BATCH = 256;
/** A claim older than this was left by a gc that died (a live one finishes a batch in seconds). */
export const STALE_CLAIM_MS = 60_000;

export interface GcReport {
  chunks: number;
  storedBytes: number;
}

/** Finishes deleting chunks whose gc died midway: nothing refers to them. */
export async function finishStaleClaims(meta: MetaEngine, chunks: ChunkStore, olderThanMs = STALE_CLAIM_MS): Promise<number> {
  const stale = await meta.staleClaims(Date.now() - olderThanMs);
  for (const id of stale) await chunks.delete(id);
  await chunks.sync();
  await meta.forgetChunks(stale);
  return stale.length;
}

export async function gc(store: Store): Promise<GcReport> {
  const report: GcReport = { chunks: await finishStaleClaims(store.meta, store.chunks), storedBytes: 0 };
  for (;;) {
    const claimed = await store.meta.claimUnreferenced(BATCH, Date.now());
    if (claimed.length === 0) break;
    for (const c of claimed) {
      const stat = await store.chunks.stat(c.id);
      await store.chunks.delete(c.id);
      report.storedBytes += stat?.storedBytes ?? 0;
    }
    // The pool copies go first, durably: a crash between leaves claimed rows, not dangling names.
    await store.chunks.sync();
    await store.meta.forgetChunks(claimed.map((c) => c.id));
    report.chunks += claimed.length;
  }
  return report;
}
