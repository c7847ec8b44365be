// The pool's long walks over its chunks: rebuild (back to full redundancy after a disk is lost),
// drain (empty a disk being removed) and scrub (read every fragment, check it, repair what is
// bad). Each is a loop of Pool.heal over a set of chunks, so a walk stopped anywhere (a crash, ^C)
// is simply run again: what it already did is found done.
import type { ChunkId } from './contract.js';
import type { Pool } from './pool.js';

export interface WalkReport {
  /** Chunks looked at. */
  chunks: number;
  /** Fragment bytes read back and checked (scrub). */
  bytes: number;
  /** Corrupt fragments found. */
  corrupt: number;
  /** Fragments written: rebuilt, replaced or moved. */
  written: number;
  /** Chunks with fewer fragments than their policy (found by a scrub without --repair). */
  degraded: number;
  /** Chunks that cannot be rebuilt: fewer fragments are left than a read needs. */
  lost: ChunkId[];
}

export interface WalkOptions {
  /** Called after each chunk, with the fan-out prefix it is under (a walk given `after` that
   * prefix goes on from the one after it: chunks under one prefix are looked at together). */
  onProgress?: (report: WalkReport, prefix: string) => void | Promise<void>;
  /** Starts after this fan-out prefix. */
  after?: string;
  /** Also removes fragments chunks do not need (see Pool.heal): only the store's job runner may. */
  tidy?: boolean;
  /** Only look, write nothing (scrub without --repair). */
  checkOnly?: boolean;
  /** Stops the walk between chunks. */
  signal?: AbortSignal;
}

function emptyReport(): WalkReport {
  return { chunks: 0, bytes: 0, corrupt: 0, written: 0, degraded: 0, lost: [] };
}

async function walk(pool: Pool, ids: AsyncIterable<{ id: ChunkId; prefix: string }>, opts: WalkOptions): Promise<WalkReport> {
  const report = emptyReport();
  for await (const { id, prefix } of ids) {
    if (opts.signal?.aborted) break;
    if (opts.checkOnly) {
      const state = await pool.inspect(id);
      report.bytes += state.bytes;
      report.corrupt += state.corrupt;
      if (state.lost) report.lost.push(id);
      else if (state.degraded) report.degraded++;
    } else {
      const r = await pool.heal(id, undefined, opts.tidy);
      report.bytes += r.bytes;
      report.corrupt += r.corrupt;
      report.written += r.written;
      if (r.lost) report.lost.push(id);
    }
    report.chunks++;
    // (A job's rate is kept here: its onProgress waits.)
    await opts.onProgress?.(report, prefix);
  }
  return report;
}


/** Every chunk back to its policy's full redundancy, on the disks there are now: a rebuild, or a
 * scrub with repair (every fragment is read and checked either way). With checkOnly, a scrub that
 * only reports. */
export function healAll(pool: Pool, opts: WalkOptions = {}): Promise<WalkReport> {
  return walk(pool, pool.iterateFrom(opts.after), opts);
}

/** Moves every fragment off a draining disk (heal copies a draining disk's fragments to active
 * ones before deleting them). */
export function drain(pool: Pool, diskId: string, opts: WalkOptions = {}): Promise<WalkReport> {
  const disk = pool.disks().find((d) => d.config.id === diskId)?.disk;
  if (!disk) throw new Error(`disk ${diskId} is not readable: its fragments can only be rebuilt from the others (orbit pool rebuild)`);
  const after = opts.after ?? '';
  const ids = async function* (): AsyncGenerator<{ id: ChunkId; prefix: string }> {
    const prefixes: string[] = [];
    for await (const prefix of disk.prefixes()) if (prefix > after) prefixes.push(prefix);
    for (const prefix of prefixes.sort()) for (const c of await disk.chunksUnder(prefix)) yield { id: c.id, prefix };
  };
  return walk(pool, ids(), opts);
}
