// gc: deletes chunks no file refers to any more. Safe while volumes are mounted, by other
// processes too: it claims chunks in the metadata (unreferenced and unpinned) before deleting
// them, and commits pin the chunks they are about to store (see OpenFile), so a chunk is never
// deleted under a writer that found it already stored.
import type { MetaEngine } from '../meta/contract.js';
import type { ChunkId, ChunkStore } from '../pool/contract.js';
import type { Store } from './store.js';

const BATCH = 256;
/** A claim older than this was left by a gc that died (a live one finishes a batch in seconds). */
export const STALE_CLAIM_MS = 60_000;

export interface GcReport {
  chunks: number;
  storedBytes: number;
  /** Of them, chunks found in the pool that the metadata did not know at all. */
  orphans: number;
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
  const report: GcReport = { chunks: await finishStaleClaims(store.meta, store.chunks), storedBytes: 0, orphans: 0 };
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
  await removeOrphans(store, report);
  return report;
}

/** Chunks on the pool's disks that no metadata knows: left by a disk that was away while they
 * were collected, or by a store whose metadata lost them. They are claimed in the metadata first
 * (a commit that wants one from then on stores it anew), so none is deleted under a writer. */
async function removeOrphans(store: Store, report: GcReport): Promise<void> {
  const sweep = async (batch: Map<ChunkId, number>): Promise<void> => {
    const orphans = await store.meta.claimOrphans([...batch.keys()], Date.now());
    for (const id of orphans) {
      await store.chunks.delete(id);
      report.storedBytes += batch.get(id) ?? 0;
    }
    await store.chunks.sync();
    await store.meta.forgetChunks(orphans);
    report.chunks += orphans.length;
    report.orphans += orphans.length;
  };
  let batch = new Map<ChunkId, number>();
  for await (const c of store.chunks.iterate()) {
    batch.set(c.id, c.storedBytes);
    if (batch.size < BATCH) continue;
    await sweep(batch);
    batch = new Map();
  }
  if (batch.size > 0) await sweep(batch);
}
