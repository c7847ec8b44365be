// A codec worker: encodes and decodes chunks off the main thread (see codec-pool.ts).
import { parentPort } from 'node:worker_threads';
import { decodeChunk, encodeChunk } from './codec.js';
import type { CodecRequest, CodecResponse } from './codec-pool.js';

const port = parentPort!;

port.on('message', (req: CodecRequest) => {
  let res: CodecResponse;
  try {
    if (req.op === 'encode') {
      const { id, bytes, codec } = encodeChunk(new Uint8Array(req.buffer));
      const out = exactBuffer(bytes);
      res = { seq: req.seq, ok: true, id, codec, buffer: out };
    } else {
      const plain = exactBuffer(decodeChunk(req.id, new Uint8Array(req.buffer)));
      res = { seq: req.seq, ok: true, id: req.id, buffer: plain };
    }
  } catch (err) {
    const e = err as Error & { code?: string; id?: string };
    res = { seq: req.seq, ok: false, error: { name: e.name, message: e.message, code: e.code, id: e.id } };
  }
  port.postMessage(res, 'buffer' in res ? [res.buffer] : []);
});

/** An ArrayBuffer holding exactly these bytes, that can be transferred back without a copy. */
function exactBuffer(bytes: Buffer): ArrayBuffer {
  if (bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength && bytes.buffer instanceof ArrayBuffer) return bytes.buffer;
  const copy = new ArrayBuffer(bytes.length);
  new Uint8Array(copy).set(bytes);
  return copy;
}
