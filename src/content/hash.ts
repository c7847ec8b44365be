// Chunk names: a chunk is named by the BLAKE3-256 digest of its plaintext bytes, written as 64
// lowercase hex characters, so equal content gets one name on every machine. (The name's form,
// ChunkId, belongs to the pool below, which stores chunks under it.)
import { blake3 } from '@napi-rs/blake-hash';
import type { ChunkId } from '../pool/contract.js';

export type { ChunkId } from '../pool/contract.js';
export { isChunkId } from '../pool/contract.js';

export function chunkId(bytes: Uint8Array): ChunkId {
  // The binding takes Buffers: view the same bytes as one, uncopied.
  const view = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  return blake3(view).toString('hex');
}
