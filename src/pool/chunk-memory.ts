// Memory that chunks are read into on their way to a reader, and that large writes wait in until
// they are committed (vfs/open-file.ts), reused once they are done with.
//
// A sequential read of a large file reads a fresh 1–4 MiB buffer per chunk. Fresh buffers cost
// twice: every page faults in on first touch, and V8 counts them as external memory, which sets
// off a full mark-compact about every 50 MiB read (about 20 per GiB, measured). Memory lent from
// here and given back is neither: a GiB read with it ran no mark-compacts and used about a fifth
// less CPU. Writes were the same: a GiB written in 1 MiB writes ran 19 mark-compacts when each
// was kept in a buffer of its own, none in lent memory, with a quarter less CPU.
//
// It is shared memory (SharedArrayBuffer) so that the codec workers check a chunk in place and the
// plaintext of a raw chunk comes back as a view of it: nothing is copied or transferred. (Plain
// ArrayBuffers handed to a worker and back were measured slower than fresh ones: each transfer
// counts as new external memory again.)
//
// Lending is safe only when the borrower holds the sole views of what it gives back: a chunk
// store reads into lent memory only for a caller that asks (ChunkStore.get's `memory`), and that
// caller decides when every view is gone. A loan that several go on using independently (a chunk
// fetched from a peer: its reader, and the cache writing it to disk) is shared: each holder gives
// it back once, and it is reused after the last.

/** Buffers up to this size all come from the smallest size class. */
export const SMALLEST_CLASS = 64 * 1024;

export class ChunkMemory {
  /** Idle buffers by size class. */
  private readonly idle = new Map<number, SharedArrayBuffer[]>();
  /** What is out on loan, with how many hold it: giving back anything else (a foreign buffer,
   * or one given back more often than held) is ignored rather than corrupting a later loan. */
  private readonly onLoan = new WeakMap<SharedArrayBuffer, number>();
  private idleBytes = 0;
  private lentBytes = 0;
  private lastLentAt = 0;
  private trimTimer: NodeJS.Timeout | undefined;

  /** maxIdleBytes: memory kept for reuse beyond it is dropped (and freed by the collector).
   * idleMs: after this long with nothing lent, all idle memory is dropped: it is kept for the
   * next burst of reads or writes, not for ever. */
  constructor(
    private readonly maxIdleBytes = 64 * 1024 * 1024,
    private readonly idleMs = 10_000,
  ) {}

  /** `length` bytes of shared memory, contents undefined; give them back with giveBack(). */
  lend(length: number): Buffer {
    // Its own size class, else one of the next two up (chunk sizes vary: a lender that only
    // matched exactly would allocate more often).
    const size = sizeClass(length);
    this.lastLentAt = Date.now();
    let backing: SharedArrayBuffer | undefined;
    for (let c = size, tries = 0; backing === undefined && tries < 3; c = sizeClass(c + 1), tries++) backing = this.idle.get(c)?.pop();
    if (backing) this.idleBytes -= backing.byteLength;
    else backing = new SharedArrayBuffer(size);
    this.onLoan.set(backing, 1);
    this.lentBytes += backing.byteLength;
    return Buffer.from(backing, 0, length);
  }

  /** `holders` more hold the loan behind `view`, each to give it back once. Memory not lent from
   * here is left alone. */
  share(view: Uint8Array, holders = 1): void {
    const backing = view.buffer;
    if (!(backing instanceof SharedArrayBuffer)) return;
    const held = this.onLoan.get(backing);
    if (held !== undefined) this.onLoan.set(backing, held + holders);
  }

  /** Gives back the memory behind `view` (any view of a loan): the caller and everyone it gave a
   * view to are done with it. It is reused once every holder gave it back. Memory not lent from
   * here is left alone. */
  giveBack(view: Uint8Array): void {
    const backing = view.buffer;
    if (!(backing instanceof SharedArrayBuffer)) return;
    const held = this.onLoan.get(backing);
    if (held === undefined) return;
    if (held > 1) {
      this.onLoan.set(backing, held - 1);
      return;
    }
    this.onLoan.delete(backing);
    this.lentBytes -= backing.byteLength;
    if (this.idleBytes + backing.byteLength > this.maxIdleBytes) return;
    let list = this.idle.get(backing.byteLength);
    if (!list) this.idle.set(backing.byteLength, (list = []));
    list.push(backing);
    this.idleBytes += backing.byteLength;
    this.trimAfter(this.idleMs);
  }

  /** Drops the idle memory once nothing has been lent for idleMs. */
  private trimAfter(delay: number): void {
    if (this.trimTimer) return;
    this.trimTimer = setTimeout(() => {
      this.trimTimer = undefined;
      const quiet = Date.now() - this.lastLentAt;
      if (quiet < this.idleMs) return this.trimAfter(this.idleMs - quiet);
      this.idle.clear();
      this.idleBytes = 0;
    }, delay);
    this.trimTimer.unref(); // idle memory must not keep the process alive
  }

  /** Bytes kept for reuse. */
  get idleSize(): number {
    return this.idleBytes;
  }

  /** Bytes out on loan (whole size classes). */
  get lentSize(): number {
    return this.lentBytes;
  }
}

/** The size class of a length: rounded up to a quarter of its power of two (at most 25 % more
 * than asked), so that chunks of similar sizes reuse each other's memory. */
export function sizeClass(length: number): number {
  if (length <= SMALLEST_CLASS) return SMALLEST_CLASS;
  const step = 2 ** (Math.floor(Math.log2(length - 1)) - 2);
  return Math.ceil(length / step) * step;
}
