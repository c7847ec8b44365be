// Runs the chunk codec (BLAKE3, zstd) on worker threads: every chunk written or read goes through
// it, and both are CPU work that would stall the event loop serving FUSE requests.
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { startWorker } from '../threads.js';
import { ChunkCorruptError, type Codec } from './codec.js';
import type { ChunkId } from './hash.js';

export type CodecRequest =
  | { seq: number; op: 'encode'; buffer: ArrayBuffer }
  | { seq: number; op: 'decode'; id: ChunkId; buffer: ArrayBuffer };

export type CodecResponse =
  | { seq: number; ok: true; id: ChunkId; codec?: Codec; buffer: ArrayBuffer }
  | { seq: number; ok: false; error: { name: string; message: string; code?: string; id?: string } };

interface Pending {
  resolve: (res: CodecResponse & { ok: true }) => void;
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
}

export class CodecPool {
  private readonly slots: Slot[] = [];
  private seq = 0;
  private closed = false;

  /** Default: one worker per core beyond the main thread's, at least one, at most four. */
  constructor(readonly size = Math.max(1, Math.min(4, availableParallelism() - 1))) {
    for (let i = 0; i < size; i++) this.slots.push(this.spawn());
  }

  /** Names and encodes a chunk's plaintext. The bytes are copied, so the caller keeps its buffer. */
  encode(plain: Uint8Array): Promise<EncodeResult> {
    return this.send({ seq: 0, op: 'encode', buffer: ownCopy(plain) }).then((res) => ({
      id: res.id,
      bytes: Buffer.from(res.buffer),
      codec: res.codec!,
    }));
  }

  /** The verified plaintext of a stored chunk; rejects with ChunkCorruptError when it fails its checks. */
  decode(id: ChunkId, stored: Uint8Array): Promise<Buffer> {
    return this.send({ seq: 0, op: 'decode', id, buffer: ownCopy(stored) }).then((res) => Buffer.from(res.buffer));
  }

  async close(): Promise<void> {
    this.closed = true;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
  }

  private send(req: CodecRequest): Promise<CodecResponse & { ok: true }> {
    if (this.closed) return Promise.reject(new Error('codec pool is closed'));
    req.seq = ++this.seq;
    // The least busy worker: chunks vary in size, so round robin would queue behind big ones.
    let slot = this.slots[0]!;
    for (const s of this.slots) if (s.pending.size < slot.pending.size) slot = s;
    return new Promise((resolve, reject) => {
      if (slot.pending.size === 0) slot.worker.ref(); // busy: keep the process alive for the answer
      slot.pending.set(req.seq, { resolve, reject });
      slot.worker.postMessage(req, [req.buffer]);
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
