// Runs content-defined chunking and the chunk codec (BLAKE3, zstd) on worker threads: every chunk
// written or read goes through them, and all are CPU work that would stall the event loop serving
// FUSE requests. Bytes being written travel in shared memory (see borrowShared): no copies.
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { startWorker } from '../threads.js';
import { ChunkCorruptError, type Codec } from './codec.js';
import type { ChunkId } from './hash.js';

export type CodecRequest =
  /** bytes: a view of shared memory (read in place) or of a buffer handed over with the message. */
  | { seq: number; op: 'encode'; bytes: Uint8Array }
  /** keep: the stored bytes come back too (they were handed over), as `stored` when the plaintext
   * is not a view of them. */
  | { seq: number; op: 'decode'; id: ChunkId; bytes: Uint8Array; keep?: boolean }
  | ({ seq: number; op: 'chunk'; bytes: Uint8Array } & ResyncPoints);

export type CodecResponse =
  /** The bytes are buffer[offset, offset + length) (all of it when absent); shared memory only
   * as the plaintext of shared bytes decoded in place. */
  | { seq: number; ok: true; id: ChunkId; codec?: Codec; crc?: number; buffer: ArrayBuffer | SharedArrayBuffer; offset?: number; length?: number; stored?: ArrayBuffer }
  | ({ seq: number; ok: true } & ChunkedBytes)
  | { seq: number; ok: false; error: { name: string; message: string; code?: string; id?: string } };

type Answer = CodecResponse & { ok: true };

interface Pending {
  resolve: (res: Answer) => void;
  reject: (err: Error) => void;
}

interface Slot {
  worker: Worker;
  pending: Map<number, Pending>;
}

export interface EncodeResult {
  id: ChunkId;
  bytes: Buffer;
  codec: Codec;
  /** CRC-32C of `bytes` (see ChunkStore.put). */
  crc: number;
}

/** Where chunking may stop early: at a cut at or after `from` that is one of `boundaries` (both
 * relative to the bytes given), the chunks after it are those already stored. */
export interface ResyncPoints {
  from: number;
  /** Sorted. */
  boundaries: number[];
}

export interface ChunkedBytes {
  /** The chunks found, in order; their lengths are plaintext lengths. `buffer` holds a chunk's
   * stored form when it is compressed; without it the chunk is stored raw, as rawChunkHeader()
   * followed by its plaintext (the bytes given, which the caller still has). `crc`: the CRC-32C
   * of the stored form (see ChunkStore.put). */
  chunks: Array<{ length: number; id: ChunkId; crc: number; buffer?: ArrayBuffer }>;
  /** Bytes the chunks cover, from the start; the rest is not a chunk yet. */
  used: number;
  /** Whether chunking stopped at a resync point. */
  resynced: boolean;
}

export class CodecPool {
  private readonly slots: Slot[] = [];
  private seq = 0;
  private closed = false;

  /** Default: one worker per core beyond the main thread's, at most four, and at least two, so
   * that reads decode while a commit cuts. */
  constructor(readonly size = Math.max(2, Math.min(4, availableParallelism() - 1))) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /** Names and encodes a chunk's plaintext. Shared bytes (borrowShared) are read in place and
   * must not change until this settles; others are copied, so the caller keeps its buffer. */
  encode(plain: Uint8Array): Promise<EncodeResult> {
    return this.send({ seq: 0, op: 'encode', bytes: plain }).then((res) => {
      if (!('id' in res)) throw new Error('codec worker answered encode without a chunk');
      return { id: res.id, bytes: Buffer.from(res.buffer), codec: res.codec!, crc: res.crc! };
    });
  }

  /** The verified plaintext of a stored chunk; rejects with ChunkCorruptError when it fails its
   * checks. The stored bytes are handed over with the buffer they are a view of (a fragment's
   * payload goes with its header): it goes to the worker and back uncopied (the plaintext of a
   * raw chunk is a view of it), so the caller must use neither the bytes nor another view of
   * that buffer after. Shared bytes (pool/chunk-memory.ts) are read in place and stay the
   * caller's; a raw chunk's plaintext is then a view of them. */
  decode(id: ChunkId, stored: Uint8Array): Promise<Buffer> {
    return this.send({ seq: 0, op: 'decode', id, bytes: stored }, true).then((res) => {
      if (!('buffer' in res)) throw new Error('codec worker answered decode without bytes');
      // Shared memory comes back as another object over the same memory: the plaintext is made
      // a view of the caller's own, which is what it knows the memory by (ChunkMemory does).
      const backing = res.buffer instanceof SharedArrayBuffer && stored.buffer instanceof SharedArrayBuffer ? stored.buffer : res.buffer;
      return Buffer.from(backing, res.offset ?? 0, res.length ?? backing.byteLength);
    });
  }

  /** decode() for a caller that keeps the stored bytes too (to cache them): shared memory is read
   * in place, as decode() does; a buffer of their own (byteOffset 0, the whole ArrayBuffer) goes
   * to the worker and comes back with the plaintext, neither copied; another view is copied for
   * the worker and stays the caller's. */
  decodeKeeping(id: ChunkId, stored: Uint8Array): Promise<{ plain: Buffer; stored: Buffer }> {
    const backing = stored.buffer;
    const kept = (): Buffer => Buffer.from(backing, stored.byteOffset, stored.byteLength);
    if (backing instanceof SharedArrayBuffer) return this.decode(id, stored).then((plain) => ({ plain, stored: kept() }));
    const own = backing instanceof ArrayBuffer && stored.byteOffset === 0 && stored.byteLength === backing.byteLength;
    if (!own) return this.decode(id, new Uint8Array(stored)).then((plain) => ({ plain, stored: kept() }));
    return this.send({ seq: 0, op: 'decode', id, bytes: stored, keep: true }, true).then((res) => {
      if (!('buffer' in res)) throw new Error('codec worker answered decode without bytes');
      const plain = Buffer.from(res.buffer, res.offset ?? 0, res.length ?? res.buffer.byteLength);
      return { plain, stored: Buffer.from(res.stored ?? res.buffer) };
    });
  }

  /** Cuts `stream` (the start of a stream, or its rest after a cut) into content-defined chunks
   * and encodes them, stopping early at a resync point. Shared bytes are read in place. */
  chunk(stream: Uint8Array, resync: ResyncPoints): Promise<ChunkedBytes> {
    return this.send({ seq: 0, op: 'chunk', bytes: stream, ...resync }).then((res) => {
      if (!('chunks' in res)) throw new Error('codec worker answered chunk without chunks');
      return res;
    });
  }

  /** Resolves once every worker has loaded and answered. A worker still loading its modules
   * when the first write arrives could otherwise leave that write waiting on the loader (seen
   * when the process serving a mount is also the one writing to it, as tests are). */
  async ready(): Promise<void> {
    await Promise.all(this.slots.map(() => this.chunk(new Uint8Array(0), { from: 0, boundaries: [] })));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private send(req: CodecRequest, handOver = false): Promise<Answer> {
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    req.seq = ++this.seq;
    // The least busy worker: chunks vary in size, so round robin would queue behind big ones.
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    // Shared memory crosses as it is; bytes handed over go with their buffer (the view keeps its
    // offset on the other side); other bytes go as a copy the worker may keep.
    const transfer: ArrayBuffer[] = [];
    const backing = req.bytes.buffer;
    if (handOver && mayTakeBuffer(req.bytes)) {
      transfer.push(backing as ArrayBuffer);
    } else if (!(backing instanceof SharedArrayBuffer)) {
      const copy = ownCopy(req.bytes);
      transfer.push(copy);
      req.bytes = new Uint8Array(copy);
    }
    return new Promise((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref(); // busy: keep the process alive for the answer
      slot.pending.set(req.seq, { resolve, reject });
      slot.worker.postMessage(req, transfer);
    });
  }

  private spawn(): Slot {
    const worker = startWorker(new URL('./codec-worker.ts', import.meta.url));
    const slot: Slot = { worker, pending: new Map() };
    worker.unref(); // an idle pool must not keep the process alive
    worker.on('message', (res: CodecResponse) => {
      const p = slot.pending.get(res.seq);
      if (!p) return;
      slot.pending.delete(res.seq);
      if (slot.pending.size === 0) worker.unref();
      if (res.ok) p.resolve(res);
      else p.reject(toError(res.error));
    });
    worker.on('error', (err) => this.replace(slot, err));
    worker.on('exit', (code) => {
      if (!this.closed) this.replace(slot, new Error(`codec worker exited with code ${code}`));
    });
    return slot;
  }

  /** A worker died: its requests fail, a fresh worker takes its place. */
  private replace(slot: Slot, err: Error): void {
    for (const p of slot.pending.values()) p.reject(err);
    slot.pending.clear();
    const i = this.slots.indexOf(slot);
    if (i >= 0 && !this.closed) this.slots[i] = this.spawn();
  }
}

/** Memory shared with the codec workers: filled once by the caller, then read in place by chunk()
 * and encode() (no copy per chunk), and left unchanged while those run. Batches are lent from a
 * free list: a fresh buffer would cost a page fault per page on every batch. */
export const SHARED_BATCH = 12 * 1024 * 1024;
/** Batches kept for reuse: as many as one commit holds at once (open-file.ts: BATCHES_STORING). */
const SPARE_BATCHES = 4;
const spareBatches: SharedArrayBuffer[] = [];

/** A view of `length` bytes of shared memory, contents undefined; give it back with returnShared. */
export function borrowShared(length: number): Buffer {
  const backing = length <= SHARED_BATCH ? spareBatches.pop() ?? new SharedArrayBuffer(SHARED_BATCH) : new SharedArrayBuffer(length);
  return Buffer.from(backing, 0, length);
}

/** Gives back what borrowShared lent, once no worker reads it any more. */
export function returnShared(bytes: Buffer): void {
  const backing = bytes.buffer;
  if (backing instanceof SharedArrayBuffer && backing.byteLength === SHARED_BATCH && spareBatches.length < SPARE_BATCHES) spareBatches.push(backing);
}

/** Whether a view handed over may take its whole buffer to a worker: not one of the pool slabs
 * that small Buffers share (Buffer.poolSize), and mostly the view itself (a fragment's payload
 * behind its header), not a small part of something larger that would cross with it. */
function mayTakeBuffer(view: Uint8Array): boolean {
  const backing = view.buffer;
  return backing instanceof ArrayBuffer && backing.byteLength > Buffer.poolSize && view.byteLength * 2 >= backing.byteLength;
}

/** A transferable copy of a view: posting a view would clone its whole backing buffer. */
function ownCopy(view: Uint8Array): ArrayBuffer {
  const copy = new ArrayBuffer(view.length);
  new Uint8Array(copy).set(view);
  return copy;
}

function toError(e: { name: string; message: string; code?: string; id?: string }): Error {
  if (e.name === 'ChunkCorruptError' && e.id) {
    const err = new ChunkCorruptError(e.id, '');
    err.message = e.message;
    return err;
  }
  return Object.assign(new Error(e.message), { name: e.name, code: e.code });
}
