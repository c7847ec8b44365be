// The fragment format, version 1: one replica or one erasure-coded shard of a chunk, as a disk
// stores it. A disk holds at most one fragment of a chunk (placement never puts two on one disk),
// so the file is named by the chunk id alone and the header says which fragment it is.
//
//   offset size  field
//        0    4  magic "ORBF"
//        4    1  format version (1)
//        5    1  kind: 0 replica, 1 erasure-coded shard
//        6    1  index: the shard's number (0..K-1 data, K..K+M-1 parity); 0 for a replica
//        7    1  K: copies for a replica, data shards for a shard
//        8    1  M: parity shards (0 for a replica)
//        9    3  reserved, 0
//       12    4  chunk length: the stored chunk's bytes (u32 LE), before it was cut into shards
//       16    4  payload length (u32 LE)
//       20    4  CRC-32C of the payload
//       24    4  CRC-32C of bytes 0..24
//       28    4  reserved, 0
//       32       payload
//
// The CRCs let reads and scrub check a fragment by itself, below the content layer: a bad one
// is known before it is used, and rebuilt from the others.
import { createRequire } from 'node:module';
import type { Policy } from './policy.js';

export const FRAGMENT_HEADER = 32;
const MAGIC = 0x4642524f; // "ORBF" read as u32 LE
const VERSION = 1;

interface NativePool {
  crc32c(bytes: Uint8Array, seed?: number): number;
}
/** The pool's addon (src/pool/native/crc32c.c), built at `npm ci`. */
const native = createRequire(import.meta.url)('../../build/Release/orbit_pool.node') as NativePool;

/** The CRC-32C of bytes; of `before` followed by bytes when given the CRC of `before` as seed. */
export const crc32c = (bytes: Uint8Array, seed = 0): number => native.crc32c(bytes, seed);

export interface FragmentHeader {
  policy: Policy;
  index: number;
  chunkLength: number;
  payloadLength: number;
  payloadCrc: number;
}

/** A fragment that fails its checks. */
export class FragmentCorruptError extends Error {
  readonly code = 'EIO';
  constructor(reason: string) {
    super(`fragment is corrupt: ${reason}`);
    this.name = 'FragmentCorruptError';
  }
}

export function encodeHeader(h: FragmentHeader): Buffer {
  const b = Buffer.alloc(FRAGMENT_HEADER);
  b.writeUInt32LE(MAGIC, 0);
  b[4] = VERSION;
  if (h.policy.kind === 'replicate') {
    b[5] = 0;
    b[7] = h.policy.copies;
  } else {
    b[5] = 1;
    b[7] = h.policy.data;
    b[8] = h.policy.parity;
  }
  b[6] = h.index;
  b.writeUInt32LE(h.chunkLength, 12);
  b.writeUInt32LE(h.payloadLength, 16);
  b.writeUInt32LE(h.payloadCrc >>> 0, 20);
  b.writeUInt32LE(native.crc32c(b.subarray(0, 24)), 24);
  return b;
}

/** Parses and checks a fragment's header (its first FRAGMENT_HEADER bytes, or more). */
export function decodeHeader(file: Buffer): FragmentHeader {
  if (file.length < FRAGMENT_HEADER) throw new FragmentCorruptError(`${file.length} bytes, shorter than a header`);
  if (file.readUInt32LE(0) !== MAGIC) throw new FragmentCorruptError('bad magic');
  if (file.readUInt32LE(24) !== native.crc32c(file.subarray(0, 24))) throw new FragmentCorruptError('header checksum mismatch');
  if (file[4] !== VERSION) throw new FragmentCorruptError(`format version ${file[4]} is not supported (this Orbit reads ${VERSION})`);
  const kind = file[5];
  const k = file[7]!;
  const m = file[8]!;
  let policy: Policy;
  if (kind === 0 && k >= 1 && m === 0) policy = { kind: 'replicate', copies: k };
  else if (kind === 1 && k >= 1 && m >= 1) policy = { kind: 'ec', data: k, parity: m };
  else throw new FragmentCorruptError(`bad kind ${kind} (${k}+${m})`);
  const index = file[6]!;
  if (policy.kind === 'ec' ? index >= k + m : index !== 0) throw new FragmentCorruptError(`bad index ${index}`);
  return {
    policy,
    index,
    chunkLength: file.readUInt32LE(12),
    payloadLength: file.readUInt32LE(16),
    payloadCrc: file.readUInt32LE(20),
  };
}

/** Parses and checks a whole fragment file; returns its header and its payload (a view). */
export function decodeFragment(file: Buffer): { header: FragmentHeader; payload: Buffer } {
  const header = decodeHeader(file);
  if (file.length !== FRAGMENT_HEADER + header.payloadLength) throw new FragmentCorruptError(`${file.length - FRAGMENT_HEADER} payload bytes, header says ${header.payloadLength}`);
  const payload = file.subarray(FRAGMENT_HEADER);
  if (native.crc32c(payload) !== header.payloadCrc) throw new FragmentCorruptError('payload checksum mismatch');
  return { header, payload };
}
