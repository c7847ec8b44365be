// gc: deletes chunks no file refers to any more. Safe while volumes are mounted, by other
// processes too: it claims chunks in the metadata (unreferenced and unpinned) before deleting
// them, and commits pin the chunks they are about to store (see OpenFile), so a chunk is never
// deleted under a writer that found it already stored.
//
// `orbit gc` runs it whole. A process serving mounts also collects unreferenced chunks by itself
// (BackgroundGc), as JuiceFS's mounts delete the slices of deleted files in the background: a
// workload that overwrites and deletes (two million fsx operations and some fsstress: 1 GiB of
// live data beside 12 GiB of dead chunks) must not fill the disks until someone runs the command.
import type { Logger } from '../log.js';
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
  const report = await collectUnreferenced(store);
  await removeOrphans(store, report);
  return report;
}

/** Deletes the chunks no file refers to (and finishes what a gc that died left), a batch at a
 * time, until none is left or `stop` says so between batches. */
async function collectUnreferenced(store: Store, stop: () => boolean = () => false): Promise<GcReport> {
  const report: GcReport = { chunks: await finishStaleClaims(store.meta, store.chunks), storedBytes: 0, orphans: 0 };
  while (!stop()) {
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

/** How often a process serving mounts collects unreferenced chunks by itself. A minute lets a
 * chunk dropped by one save and taken up by the next (an editor's rename over the old file)
 * mostly stay, and keeps what waits for collection to what a minute of writing leaves. */
export const COLLECT_EVERY_MS = 60_000;

/** Collects unreferenced chunks every so often in a process serving mounts, while that process
 * runs the store's jobs (one process of the store at a time does). Orphans are left to `orbit
 * gc`: finding them walks every disk, and only a disk that was away leaves them. */
export class BackgroundGc {
  private timer: NodeJS.Timeout | undefined;
  private pass: Promise<void> | undefined;
  private closed = false;

  constructor(
    private readonly store: Store,
    /** Whether this process runs the store's jobs now. */
    private readonly runsJobs: () => boolean,
    private readonly log: Logger,
    private readonly everyMs = COLLECT_EVERY_MS,
  ) {}

  start(): void {
    if (this.closed || this.timer) return;
    this.timer = setTimeout(() => {
      this.pass = this.collect().finally(() => {
        this.pass = undefined;
        this.timer = undefined;
        this.start();
      });
    }, this.everyMs);
    // A mount's process ends when its mounts do, not when this is due.
    this.timer.unref();
  }

  private async collect(): Promise<void> {
    if (!this.runsJobs()) return;
    try {
      const report = await collectUnreferenced(this.store, () => this.closed);
      if (report.chunks > 0) this.log.info({ chunks: report.chunks, storedBytes: report.storedBytes }, 'collected chunks no file uses');
    } catch (err) {
      // Claimed chunks it did not finish are finished by the next pass (finishStaleClaims).
      this.log.warn({ err }, 'cannot collect unreferenced chunks; trying again later');
    }
  }

  /** Stops; resolves once a pass under way has finished its batch. */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await this.pass;
  }
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
