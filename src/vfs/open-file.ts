// An inode's contents while it is open: writes buffered as dirty ranges over the committed
// extents, reads that see both, and the commit that turns dirty ranges into chunks.
//
// A commit re-chunks only a window around each change: from the cut point before it (the start
// of the extent holding the byte before the change) through the change, on until the chunker
// cuts where an unchanged extent begins: from there on, content-defined cut points agree with the
// old ones, so the rest of the file is kept as it is. Work is in proportion to the change, not to
// the file. A window also ends where a hole begins, and one that does not resynchronise within
// FORCE_CUT_AFTER bytes is closed at the next existing boundary.
import { randomInt } from 'node:crypto';
import type { Logger } from '../log.js';
import type { CodecPool } from '../content/codec-pool.js';
import { borrowShared, returnShared, SHARED_BATCH } from '../content/codec-pool.js';
import { rawChunkHeader, RAW_HEADER } from '../content/codec.js';
import { copyBytes } from '../content/native.js';
import type { LentReadReply } from '../fuse/contract.js';
import type { ChunkInfo, Extent, Ino, MetaEngine } from '../meta/contract.js';
import { SMALLEST_CLASS, type ChunkMemory } from '../pool/chunk-memory.js';
import type { ChunkStore } from '../pool/contract.js';
import { finishStaleClaims, STALE_CLAIM_MS } from '../store/gc.js';
import { ownPolicy } from '../store/policies.js';
import type { ChunkCache, HeldChunk } from './chunk-cache.js';
import { ReadPattern, type ByteRange } from './read-pattern.js';

const MiB = 1024 * 1024;
const ZEROS = Buffer.alloc(4 * MiB);
/** Committed extents are fetched for this much of the file at a time. */
const EXTENT_WINDOW = 64 * MiB;
/** Dirty bytes (or ranges) past which a write starts a commit, and past twice which it waits. */
export const DIRTY_LIMIT = 16 * MiB;
const DIRTY_RANGE_LIMIT = 4096;
const FORCE_CUT_AFTER = 8 * MiB;
/** Chunks stored at once during a commit. */
const CHUNKS_IN_FLIGHT = 4;
/** Bytes gathered for the chunkers at a time: a shared batch holds them and the bytes left after
 * the last cut of the batch before (less than a chunk's maximum size). */
const BATCH = SHARED_BATCH - 4 * MiB;
/** Batches of a commit whose chunks may still be being stored while the next batch is cut (each
 * commit then holds at most this many and two more: see SPARE_BATCHES). */
const BATCHES_STORING = 2;
/** How long a commit's pins keep gc away from its chunks (a crashed writer's pins lapse). */
const PIN_MS = 10 * 60 * 1000;
/** How often a commit looks again at chunks gc is deleting. */
const GC_WAIT_MS = 50;

interface Dirty {
  start: number;
  data: Buffer;
}

interface EncodedPiece {
  offset: number;
  length: number;
  id: string;
  /** The stored form, whole or in parts (a raw chunk's header, then its plaintext). */
  bytes: Uint8Array | readonly Uint8Array[];
  storedSize: number;
  /** CRC-32C of the stored form, computed by the codec worker. */
  crc: number;
}

export interface ContentParts {
  meta: MetaEngine;
  chunks: ChunkStore;
  codec: CodecPool;
  cache: ChunkCache;
  /** Where large writes wait to be committed. */
  memory: ChunkMemory;
  log: Logger;
}

export class OpenFile {
  /** Open handles on the inode. */
  handles = 0;
  /** The size as applications see it now, dirty writes included. */
  size: number;
  private dirty: Dirty[] = [];
  /** Ranges being committed: still read from here until the commit lands. */
  private committing: Dirty[] = [];
  /** The copies that `dirty` and `committing` lie in, to give back to parts.memory (which takes
   * back only what it lent). */
  private dirtyMemory: Buffer[] = [];
  private committingMemory: Buffer[] = [];
  /** Memory of landed commits that a read in progress may still be copying from. */
  private memoryAfterReads: Buffer[] = [];
  /** Reads copying from dirty or committing ranges (readInto). */
  private readsInProgress = 0;
  private dirtyBytes = 0;
  /** Committed extents of a window of the file: the one the reader is in, and the one prefetch
   * looks at ahead of it (kept apart, so that neither moves the other's window). */
  private readonly extentWindows: Record<'reader' | 'ahead', ExtentWindow | undefined> = { reader: undefined, ahead: undefined };
  /** The size as the running commit sees it: committed bytes and the ranges being committed.
   * Writes that arrive meanwhile are the next commit's: this one neither reads nor re-chunks them. */
  private horizon = 0;
  /** How this file is being read: what to fetch ahead of its reader. */
  private readonly pattern = new ReadPattern();
  private commits: Promise<void> = Promise.resolve();
  /** Commits asked for and not yet settled. */
  private commitsUnderWay = 0;

  constructor(
    readonly ino: Ino,
    size: number,
    private readonly parts: ContentParts,
  ) {
    this.size = size;
  }

  get isDirty(): boolean {
    return this.dirty.length > 0;
  }

  /** Buffers a write; `data` is the caller's again once this returns (it is copied). Resolves at
   * once unless too much is waiting to be committed, when it waits for a commit (backpressure). */
  async write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    const own = this.copy(data);
    this.dirtyMemory.push(own);
    insertRange(this.dirty, { start: offset, data: own });
    this.dirtyBytes += data.length;
    this.size = Math.max(this.size, offset + data.length);
    if (this.dirtyBytes < DIRTY_LIMIT && this.dirty.length < DIRTY_RANGE_LIMIT) return;
    // A writer far ahead waits for the commit under way, not for the one that will take its own
    // bytes: writing the next bytes and committing the last ones overlap.
    if (this.dirtyBytes >= 2 * DIRTY_LIMIT && this.commitsUnderWay > 0) await this.commits;
    if (this.commitsUnderWay === 0) this.commit(true).catch(() => undefined); // reported by the flush or fsync that follows
  }

  /** A copy of bytes to keep: large ones in lent memory (fresh buffers cost a page fault per
   * page, and the collector counts them as outside memory: a major collection followed every few
   * dozen MiB written), small ones (under the smallest size class, which they would leave mostly
   * empty) in buffers of their own. */
  private copy(bytes: Uint8Array): Buffer {
    if (bytes.length < SMALLEST_CLASS) return Buffer.from(bytes);
    const data = this.parts.memory.lend(bytes.length);
    copyBytes(data, 0, bytes);
    return data;
  }

  /** The bytes of [offset, offset + size), cut short at the end of the file: slices of the
   * cached chunks, lent until sent() when there are any. */
  async read(offset: number, size: number): Promise<Buffer[] | LentReadReply> {
    const end = Math.min(offset + size, this.size);
    if (end <= offset) return [];
    let reply: Buffer[] | LentReadReply;
    if (!overlaps(this.committing, offset, end) && !overlaps(this.dirty, offset, end)) {
      const { parts, held } = await this.committedBytes(offset, end);
      reply = held.length === 0 ? parts : { parts, sent: () => releaseAll(held) };
    } else {
      const out = Buffer.allocUnsafe(end - offset);
      await this.readInto(offset, end, out, 0);
      reply = [out];
    }
    // A sequential or strided reader wants what follows next: fetch it while this reply goes
    // out, so that decoding (and, for an attached volume, fetching) keeps ahead of it. Random
    // readers get no prefetch.
    const ahead = this.pattern.read(offset, end);
    if (ahead.length > 0) this.prefetch(ahead).catch(() => undefined);
    return reply;
  }

  /** Starts loading the chunks under `ranges` (failures surface when they are read). */
  private async prefetch(ranges: readonly ByteRange[]): Promise<void> {
    for (const [from, to] of ranges) {
      if (from >= this.size) continue;
      const end = Math.min(to, this.size);
      const reader = this.extentWindows.reader;
      const inReader = reader !== undefined && reader.start <= from && reader.end >= end;
      for (const e of await this.extentsIn(from, end - from, inReader ? 'reader' : 'ahead')) this.parts.cache.prefetch(e.chunk);
    }
  }

  /** Copies the file's bytes [offset, end) into `out` at `at`: committed bytes under `buffered`
   * ones (by default everything written so far). */
  private async readInto(offset: number, end: number, out: Uint8Array, at: number, buffered = [...this.committing, ...this.dirty]): Promise<void> {
    // The ranges were taken before the wait for committed bytes: a commit may land meanwhile, and
    // their memory must outlive this copy.
    this.readsInProgress++;
    try {
      // New data is all buffered: then the committed bytes beneath it need not be read.
      if (!covers(buffered, offset, end)) {
        const { parts, held } = await this.committedBytes(offset, end);
        try {
          let to = at;
          for (const part of parts) {
            copyBytes(out, to, part);
            to += part.length;
          }
        } finally {
          releaseAll(held);
        }
      }
      for (const d of buffered) {
        const from = Math.max(offset, d.start);
        const to = Math.min(end, d.start + d.data.length);
        if (from < to) copyBytes(out, at + (from - offset), d.data.subarray(from - d.start, to - d.start));
      }
    } finally {
      if (--this.readsInProgress === 0) this.giveBack([]);
    }
  }

  /** Gives back the memory of ranges no longer needed, once no read may be copying from it. */
  private giveBack(memory: Buffer[]): void {
    this.memoryAfterReads.push(...memory);
    if (this.readsInProgress > 0) return;
    for (const bytes of this.memoryAfterReads) this.parts.memory.giveBack(bytes);
    this.memoryAfterReads = [];
  }

  /** Commits every dirty range (not durable yet: see Store.sync). Commits run one at a time.
   * `background`: a commit to make room while the file is being written, which leaves the
   * bytes after its last cut at the end of the file dirty: the writes that follow continue them,
   * so cutting them now would store a chunk that the next commit replaces. */
  commit(background = false): Promise<void> {
    this.commitsUnderWay++;
    this.commits = this.commits
      .catch(() => undefined)
      .then(() => this.commitDirty(background))
      .finally(() => this.commitsUnderWay--);
    return this.commits;
  }

  /** A truncate: dirty bytes are committed first, so that the metadata sees one order of events. */
  async truncate(size: number): Promise<void> {
    await this.commit();
    await this.parts.meta.setattr(this.ino, { size });
    this.size = size;
    this.forgetExtents();
  }

  /** Makes [offset, offset + length) a hole (reads as zeros), growing the file to its end
   * unless `keepSize`. Dirty bytes are committed first, for the same reason as in truncate. */
  async punchHole(offset: number, length: number, keepSize: boolean): Promise<void> {
    await this.commit();
    const end = keepSize ? Math.min(offset + length, this.size) : offset + length;
    if (end <= offset) return;
    const size = Math.max(this.size, end);
    await this.parts.meta.writeExtents(this.ino, offset, end - offset, [], [], size, now(), 0);
    this.size = size;
    this.forgetExtents();
  }

  private async commitDirty(background: boolean): Promise<void> {
    if (this.dirty.length === 0) return;
    this.committing = this.dirty;
    this.committingMemory = this.dirtyMemory;
    this.dirty = [];
    this.dirtyMemory = [];
    this.dirtyBytes = 0;
    this.horizon = this.size;
    /** The bytes after a background commit's last cut at the end of the file, copied out of its batch. */
    const tails: Dirty[] = [];
    try {
      const regions = this.committing;
      for (let i = 0; i < regions.length; ) i = await this.rechunkWindow(regions, i, background ? tails : undefined);
      // The tail left uncut is dirty again, beneath what was written meanwhile; in the same
      // turn, the committed ranges go: a reader sees one or the other.
      for (const t of tails) {
        insertUnder(this.dirty, t);
        this.dirtyBytes += t.data.length;
        this.dirtyMemory.push(t.data);
      }
      this.committing = [];
      this.giveBack(this.committingMemory);
      this.committingMemory = [];
    } catch (err) {
      // Nothing was lost: the ranges go back under whatever was written since.
      for (const d of this.committing.reverse()) insertUnder(this.dirty, d);
      this.dirtyBytes += this.committing.reduce((n, d) => n + d.data.length, 0);
      this.dirtyMemory.push(...this.committingMemory);
      this.giveBack(tails.map((t) => t.data));
      this.committing = [];
      this.committingMemory = [];
      throw err;
    } finally {
      this.forgetExtents();
    }
  }

  /** Re-chunks the window around regions[i] (and any later regions it reaches); returns the
   * index of the first region it did not cover.
   *
   * The window's bytes are gathered a batch at a time into memory shared with the codec workers,
   * which cut and encode them in place, told where the old cut points are so that they stop where
   * the new ones meet them: the event loop copies the bytes once and does nothing per byte. A batch
   * starts with the bytes after the last cut of the one before (cut points restart at every cut,
   * so batches find the cuts one stream would). */
  private async rechunkWindow(regions: Dirty[], i: number, tails?: Dirty[]): Promise<number> {
    const first = regions[i]!;
    const start = await this.windowStart(first.start);
    let changedUntil = first.start + first.data.length;
    let next = i + 1;
    /** Folds in the later regions that begin before `offset`. */
    const reach = (offset: number): void => {
      while (next < regions.length && regions[next]!.start < offset) {
        changedUntil = Math.max(changedUntil, regions[next]!.start + regions[next]!.data.length);
        next++;
      }
    };
    const pieces: EncodedPiece[] = [];
    const encoding: Array<Promise<void>> = [];
    // Chunks are pinned and stored a batch at a time, while the next batch is cut: the disk
    // writes overlap the hashing. The extents name them all at the end, in one transaction.
    const token = randomInt(2 ** 47);
    // Read at each commit: a change of policy holds for the next write.
    const policy = await ownPolicy(this.parts.meta, this.ino);
    const storing: Array<Promise<void>> = [];
    const store = (found: EncodedPiece[]): Promise<void> => {
      pieces.push(...found);
      const stored = (async () => {
        await this.pin(found.map(chunkInfo), token);
        await forEachLimited(found, CHUNKS_IN_FLIGHT, async (c) => void (await this.parts.chunks.put(c.id, c.bytes, policy, c.crc)));
      })();
      stored.catch(() => undefined); // awaited below: until then, a failure is not unhandled
      storing.push(stored);
      return stored;
    };
    let batch: Buffer | undefined;
    /** The stores of chunks the batch holds the plaintext of (raw chunks are stored from it): the
     * batch goes back to the free list once they settle. */
    let batchStored: Promise<unknown> = Promise.resolve();
    /** Earlier batches, back once their stores settle, oldest first. */
    const batchesStoring: Array<Promise<unknown>> = [];
    let carry: Uint8Array = new Uint8Array(0); // bytes after the last cut (in batch)
    let cutAt = start; // where carry begins in the file
    let pos = start; // bytes before pos have been gathered
    let end: number | undefined;

    try {
      while (end === undefined) {
        // Later regions the window has reached are part of it.
        reach(pos + 1);
        // Past the change, the window ends where the data does (holes stay holes, and what follows
        // them is cut as before), and, long past it, at the next old cut point.
        const past = pos >= changedUntil;
        if (pos >= this.horizon || (past && (await this.isHole(pos))) || (pos >= changedUntil + FORCE_CUT_AFTER && (await this.isBoundary(pos)))) {
          if (carry.length > 0 && tails && pos >= this.horizon) {
            // A background commit leaves the end of the file after the last cut to the next one.
            tails.push({ start: cutAt, data: this.copy(carry) });
            end = cutAt;
            break;
          }
          if (carry.length > 0) {
            const last = carry;
            const at = cutAt;
            encoding.push(this.parts.codec.encode(last).then(({ id, bytes, crc }) => void store([{ offset: at, length: last.length, id, bytes, storedSize: bytes.length, crc }])));
          }
          end = pos;
          break;
        }
        let limit = Math.min(this.horizon, pos + BATCH);
        if (pos + BATCH >= changedUntil + FORCE_CUT_AFTER) limit = Math.min(limit, await this.nextBoundary(pos));
        // Read no further than the data at pos goes: a hole after it must not be read as zeros.
        const runEnd = await this.dataRunEnd(pos, limit);
        if (runEnd > pos) limit = runEnd;
        // Regions that begin in this batch are part of the window; the next one bounds resyncs.
        reach(limit);
        const nextRegion = next < regions.length ? regions[next]!.start : Infinity;

        // Cutting may run ahead of storing by a few batches, no more: the memory in flight stays
        // bounded, and batches come from the free list (fresh shared memory costs a page fault
        // per page, and the collector counts it: a major collection every few of them).
        while (batchesStoring.length >= BATCHES_STORING) await batchesStoring.shift();
        const previous = batch;
        batch = borrowShared(carry.length + (limit - pos));
        copyBytes(batch, 0, carry);
        if (previous) batchesStoring.push(batchStored.finally(() => returnShared(previous)).catch(() => undefined));
        batchStored = Promise.resolve();
        await this.readInto(pos, limit, batch, carry.length, this.committing);
        // Old cut points the new ones may meet: past the change, before the next changed region.
        const boundaries = (await this.extentsIn(cutAt + 1, limit - cutAt))
          .map((e) => e.offset)
          .filter((o) => o > cutAt && o <= limit && o >= changedUntil && o < nextRegion)
          .map((o) => o - cutAt);
        const res = await this.parts.codec.chunk(batch, { from: changedUntil - cutAt, boundaries });
        const found: EncodedPiece[] = [];
        let inBatch = 0;
        for (const c of res.chunks) {
          const bytes = c.buffer ? Buffer.from(c.buffer) : [rawChunkHeader(c.length), batch.subarray(inBatch, inBatch + c.length)];
          found.push({ offset: cutAt, length: c.length, id: c.id, bytes, storedSize: c.buffer ? c.buffer.byteLength : RAW_HEADER + c.length, crc: c.crc });
          cutAt += c.length;
          inBatch += c.length;
        }
        if (found.length > 0) batchStored = store(found);
        carry = batch.subarray(res.used);
        pos = limit;
        if (res.resynced) end = cutAt; // from here the old extents stand
      }
      await Promise.all(encoding);
      await Promise.all(storing);
      if (batch) returnShared(batch);
      pieces.sort((a, b) => a.offset - b.offset);
      const infos = pieces.map(chunkInfo);
      const extents: Extent[] = pieces.map((c) => ({ offset: c.offset, length: c.length, chunk: c.id, chunkOffset: 0 }));
      await this.parts.meta.writeExtents(this.ino, start, end - start, extents, infos, end, now(), token);
    } catch (err) {
      // Nothing names these chunks: gc may have them now rather than when the pins lapse (on a
      // full disk, that is the space needed to go on).
      await Promise.allSettled(storing);
      await this.parts.meta.unpinChunks(token).catch(() => undefined);
      throw err;
    }
    this.forgetExtents();
    return next;
  }

  /** Pins the chunks against gc before they are stored (a chunk already in the pool may be on
   * its way out); waits out those gc is deleting at this moment, then pins them afresh. */
  private async pin(infos: ChunkInfo[], token: number): Promise<void> {
    const since = Date.now();
    for (let pending = infos; pending.length > 0; ) {
      const deleting = new Set(await this.parts.meta.pinChunks(pending, token, Date.now() + PIN_MS));
      pending = pending.filter((c) => deleting.has(c.id));
      if (pending.length === 0) break;
      // A gc that died midway never finishes its claims: after a while, finish them here.
      if (Date.now() - since > STALE_CLAIM_MS) await finishStaleClaims(this.parts.meta, this.parts.chunks);
      await new Promise((r) => setTimeout(r, GC_WAIT_MS));
    }
  }

  /** Where re-chunking for a change at `offset` starts: the cut point before it. */
  private async windowStart(offset: number): Promise<number> {
    if (offset === 0) return 0;
    const before = await this.extentsIn(offset - 1, 1);
    return before.length > 0 ? before[0]!.offset : offset;
  }

  /** Whether an existing extent starts at `offset` (so content there is cut as before). */
  private async isBoundary(offset: number): Promise<boolean> {
    if (offset >= this.horizon) return false;
    const at = await this.extentsIn(offset, 1);
    return at.length > 0 && at[0]!.offset === offset;
  }

  /** Where the data (dirty or committed) that runs on from `offset` ends, at most `limit`. */
  private async dataRunEnd(offset: number, limit: number): Promise<number> {
    let at = offset;
    while (at < limit) {
      const d = this.committing.find((r) => r.start <= at && r.start + r.data.length > at);
      if (d) {
        at = d.start + d.data.length;
        continue;
      }
      const e = (await this.extentsIn(at, 1))[0];
      if (!e) break;
      at = e.offset + e.length;
    }
    return Math.min(at, limit);
  }

  /** Whether no data, committed or dirty, lies at `offset`. */
  private async isHole(offset: number): Promise<boolean> {
    if (overlaps(this.committing, offset, offset + 1)) return false;
    return (await this.extentsIn(offset, 1)).length === 0;
  }

  /** The first extent boundary after `offset`, or the end of the file. */
  private async nextBoundary(offset: number): Promise<number> {
    const ahead = await this.extentsIn(offset, EXTENT_WINDOW);
    for (const e of ahead) if (e.offset > offset) return e.offset;
    const last = ahead.at(-1);
    return last && last.offset + last.length > offset ? Math.min(last.offset + last.length, this.horizon) : this.horizon;
  }

  private async extentsIn(offset: number, length: number, window: 'reader' | 'ahead' = 'reader'): Promise<Extent[]> {
    const end = offset + length;
    let c = this.extentWindows[window];
    if (!c || offset < c.start || end > c.end) {
      const windowEnd = offset + Math.max(length, EXTENT_WINDOW);
      c = { start: offset, end: windowEnd, extents: await this.parts.meta.extents(this.ino, offset, windowEnd - offset) };
      this.extentWindows[window] = c;
    }
    return c.extents.filter((e) => e.offset < end && e.offset + e.length > offset);
  }

  /** The file's committed extents changed: the windows are stale. */
  private forgetExtents(): void {
    this.extentWindows.reader = undefined;
    this.extentWindows.ahead = undefined;
  }

  /** Committed bytes of [offset, end): slices of chunks, zeros for holes; the chunks sliced are
   * held, for the caller to release once done with the parts. */
  private async committedBytes(offset: number, end: number): Promise<{ parts: Buffer[]; held: HeldChunk[] }> {
    const extents = await this.extentsIn(offset, end - offset);
    const parts: Buffer[] = [];
    const held: HeldChunk[] = [];
    let pos = offset;
    try {
      for (const e of extents) {
        if (e.offset > pos) parts.push(zeros(Math.min(e.offset, end) - pos));
        const from = Math.max(pos, e.offset);
        const to = Math.min(end, e.offset + e.length);
        if (to <= from) continue;
        const chunk = await this.parts.cache.hold(e.chunk);
        held.push(chunk);
        parts.push(chunk.bytes.subarray(e.chunkOffset + (from - e.offset), e.chunkOffset + (to - e.offset)));
        pos = to;
      }
    } catch (err) {
      releaseAll(held);
      throw err;
    }
    if (pos < end) parts.push(zeros(end - pos));
    return { parts, held };
  }
}

interface ExtentWindow {
  start: number;
  end: number;
  extents: Extent[];
}

function chunkInfo(c: EncodedPiece): ChunkInfo {
  return { id: c.id, size: c.length, storedSize: c.storedSize };
}

function now(): { sec: number; nsec: number } {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}

function releaseAll(held: readonly HeldChunk[]): void {
  for (const chunk of held) chunk.release();
}

function zeros(n: number): Buffer {
  return n <= ZEROS.length ? ZEROS.subarray(0, n) : Buffer.alloc(n);
}

/** Whether the ranges (each list sorted, lists possibly overlapping) cover [start, end) whole. */
function covers(ranges: Dirty[], start: number, end: number): boolean {
  const hits = ranges.filter((d) => d.start < end && d.start + d.data.length > start).sort((a, b) => a.start - b.start);
  let reached = start;
  for (const d of hits) {
    if (d.start > reached) return false;
    reached = Math.max(reached, d.start + d.data.length);
    if (reached >= end) return true;
  }
  return reached >= end;
}

function overlaps(ranges: Dirty[], start: number, end: number): boolean {
  return ranges.some((d) => d.start < end && d.start + d.data.length > start);
}

/** Adds a range on top of sorted, disjoint ranges: what it covers is replaced. */
function insertRange(ranges: Dirty[], add: Dirty): void {
  const end = add.start + add.data.length;
  const last = ranges.at(-1);
  if (!last || last.start + last.data.length <= add.start) {
    ranges.push(add); // appending: the common case, kept O(1)
    return;
  }
  const out: Dirty[] = [];
  for (const d of ranges) {
    const dEnd = d.start + d.data.length;
    if (dEnd <= add.start || d.start >= end) {
      out.push(d);
      continue;
    }
    if (d.start < add.start) out.push({ start: d.start, data: d.data.subarray(0, add.start - d.start) });
    if (dEnd > end) out.push({ start: end, data: d.data.subarray(end - d.start) });
  }
  out.push(add);
  out.sort((a, b) => a.start - b.start);
  ranges.splice(0, ranges.length, ...out);
}

/** Adds an older range beneath sorted, disjoint ranges: only what they do not cover is kept. */
function insertUnder(ranges: Dirty[], old: Dirty): void {
  let pieces: Dirty[] = [old];
  for (const d of ranges) {
    const dEnd = d.start + d.data.length;
    pieces = pieces.flatMap((p) => {
      const pEnd = p.start + p.data.length;
      if (dEnd <= p.start || d.start >= pEnd) return [p];
      const keep: Dirty[] = [];
      if (p.start < d.start) keep.push({ start: p.start, data: p.data.subarray(0, d.start - p.start) });
      if (pEnd > dEnd) keep.push({ start: dEnd, data: p.data.subarray(dEnd - p.start) });
      return keep;
    });
  }
  ranges.push(...pieces);
  ranges.sort((a, b) => a.start - b.start);
}

/** Runs fn on every item, at most `limit` at a time; after a failure, starts no more. */
async function forEachLimited<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  let failed = false;
  const worker = async (): Promise<void> => {
    while (next < items.length && !failed) {
      await fn(items[next++]!).catch((err: unknown) => {
        failed = true;
        throw err;
      });
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
