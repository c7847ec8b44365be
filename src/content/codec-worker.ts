// A codec worker: cuts streams into chunks, encodes and decodes chunks, off the main thread (see
// codec-pool.ts).
import { parentPort } from 'node:worker_threads';
import { crc32c } from '../pool/fragment.js';
import { Chunker } from './chunker.js';
import { decodeChunk, encodeChunk, nameChunk, packedChunk, rawChunkHeader } from './codec.js';
import type { ChunkedBytes, CodecRequest, CodecResponse } from './codec-pool.js';

const port = parentPort!;

port.on('message', (req: CodecRequest) => {
  let res: CodecResponse;
  try {
    if (req.op === 'encode') {
      const { id, bytes, codec } = encodeChunk(req.bytes);
      res = { seq: req.seq, ok: true, id, codec, crc: crc32c(bytes), buffer: exactBuffer(bytes) };
    } else if (req.op === 'decode') {
      const plain = decodeChunk(req.id, req.bytes);
      const received = req.bytes.buffer;
      // A raw chunk's plaintext is a view of the bytes received: they go back whole, uncopied
      // (shared memory is never the worker's: only where the view lies goes back).
      res = plain.buffer === received
        ? { seq: req.seq, ok: true, id: req.id, buffer: received, offset: plain.byteOffset, length: plain.length }
        : { seq: req.seq, ok: true, id: req.id, buffer: exactBuffer(plain), ...(req.keep && received instanceof ArrayBuffer ? { stored: received } : {}) };
    } else {
      res = { seq: req.seq, ok: true, ...chunk(req.bytes, req.from, req.boundaries) };
    }
  } catch (err) {
    const e = err as Error & { code?: string; id?: string };
    res = { seq: req.seq, ok: false, error: { name: e.name, message: e.message, code: e.code, id: e.id } };
  }
  port.postMessage(res, transferable(res));
});

/** What an answer hands over: its own buffers, not shared memory (which crosses as it is). */
function transferable(res: CodecResponse): ArrayBuffer[] {
  if ('buffer' in res) return [res.buffer, res.stored].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
  return 'chunks' in res ? res.chunks.flatMap((c) => (c.buffer ? [c.buffer] : [])) : [];
}

function chunk(bytes: Uint8Array, from: number, boundaries: number[]): ChunkedBytes {
  const chunks: ChunkedBytes['chunks'] = [];
  let used = 0;
  let b = 0;
  for (const length of new Chunker().cutAll(bytes)) {
    // A chunk stored raw is its plaintext behind a header: the caller has the plaintext (in the
    // shared bytes), so nothing is copied or sent back but its name and the CRC of its stored form.
    const plain = bytes.subarray(used, used + length);
    const { id, packed } = nameChunk(plain);
    if (packed) {
      const stored = packedChunk(length, packed);
      chunks.push({ length, id, crc: crc32c(stored), buffer: exactBuffer(stored) });
    } else {
      chunks.push({ length, id, crc: crc32c(plain, crc32c(rawChunkHeader(length))) });
    }
    used += length;
    while (b < boundaries.length && boundaries[b]! < used) b++;
    if (used >= from && boundaries[b] === used) return { chunks, used, resynced: true };
  }
  return { chunks, used, resynced: false };
}

/** An ArrayBuffer holding exactly these bytes, that can be transferred back without a copy. */
function exactBuffer(bytes: Buffer): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return copy;
}
