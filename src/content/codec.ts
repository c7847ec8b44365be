// The chunk format, version 1: how a chunk's plaintext is stored. Pure functions, run on the
// codec workers (compression and hashing are too heavy for the event loop).
//
//   offset size  field
//        0    4  magic "ORBC"
//        4    1  format version (1)
//        5    1  codec: 0 raw, 1 zstd
//        6    2  reserved, 0
//        8    4  plaintext length, u32 LE (chunks are at most 4 MiB)
//       12    4  payload length, u32 LE
//       16       payload
//
// A chunk is named by the BLAKE3 of its plaintext, so decoding verifies the name: a flipped bit
// anywhere is caught, whatever the codec.
import { compress, decompress } from 'zstd-napi';
import { chunkId, type ChunkId } from './hash.js';
import { copyBytes } from './native.js';

export const FORMAT_VERSION = 1;
const MAGIC = 0x4342524f; // "ORBC" read as u32 LE
const HEADER = 16;
/** The bytes a chunk stored raw takes beyond its plaintext. */
export const RAW_HEADER = HEADER;
export const enum Codec {
  Raw = 0,
  Zstd = 1,
}
/** zstd level 1: ~300 MB/s in, ~1.4 GB/s out on these machines; higher levels cost more than
 * they save for a filesystem's write path. */
const ZSTD_LEVEL = 1;
/** Keep the compressed form only when it saves at least this fraction: decompressing costs time
 * on every read, so a few percent is not worth it. */
const MIN_SAVING = 0.03;

/** A stored chunk failed its checks: the bytes on disk are not what was written. */
export class ChunkCorruptError extends Error {
  readonly code = 'EIO';
  constructor(
    readonly id: ChunkId,
    reason: string,
  ) {
    super(`chunk ${id} is corrupt: ${reason}`);
    this.name = 'ChunkCorruptError';
  }
}

export interface EncodedChunk {
  id: ChunkId;
  /** Header and payload, as stored. */
  bytes: Buffer;
  codec: Codec;
}

/** Incompressible content (media, archives, encrypted files) is common, and zstd's attempt on it
 * costs as much time as on text: for a large chunk, samples spread over it decide first, as
 * btrfs's heuristic and ZFS's early abort do. Only the stored form depends on it, never the name. */
const SAMPLES = 4;
const SAMPLE_BYTES = 16 * 1024;

function worthCompressing(plain: Uint8Array): boolean {
  if (plain.length < 4 * SAMPLES * SAMPLE_BYTES) return true;
  const sample = Buffer.allocUnsafe(SAMPLES * SAMPLE_BYTES);
  const step = Math.floor((plain.length - SAMPLE_BYTES) / (SAMPLES - 1));
  for (let i = 0; i < SAMPLES; i++) copyBytes(sample, i * SAMPLE_BYTES, plain.subarray(i * step, i * step + SAMPLE_BYTES));
  return compress(sample, { compressionLevel: ZSTD_LEVEL }).length <= sample.length * (1 - MIN_SAVING);
}

/** Names a chunk and compresses it when that pays. Without `packed`, the chunk is stored raw:
 * rawChunkHeader(plain.length), then the plaintext itself, which the caller still holds (a write
 * stores it from there, with no copy made here). */
export function nameChunk(plain: Uint8Array): { id: ChunkId; packed?: Buffer } {
  const id = chunkId(plain);
  const packed = plain.length > 0 && worthCompressing(plain) ? compress(plain, { compressionLevel: ZSTD_LEVEL }) : undefined;
  return packed !== undefined && packed.length <= plain.length * (1 - MIN_SAVING) ? { id, packed } : { id };
}

/** The header of a chunk stored raw: its payload is the plaintext. */
export function rawChunkHeader(plainLength: number): Buffer {
  return writeHeader(Buffer.allocUnsafe(HEADER), Codec.Raw, plainLength, plainLength);
}

/** The stored form of a chunk whose zstd payload nameChunk gave. */
export function packedChunk(plainLength: number, packed: Uint8Array): Buffer {
  const bytes = writeHeader(Buffer.allocUnsafe(HEADER + packed.length), Codec.Zstd, plainLength, packed.length);
  bytes.set(packed, HEADER);
  return bytes;
}

export function encodeChunk(plain: Uint8Array): EncodedChunk {
  const { id, packed } = nameChunk(plain);
  if (packed) return { id, bytes: packedChunk(plain.length, packed), codec: Codec.Zstd };
  const bytes = writeHeader(Buffer.allocUnsafe(HEADER + plain.length), Codec.Raw, plain.length, plain.length);
  copyBytes(bytes, HEADER, plain); // the plaintext may be shared memory
  return { id, bytes, codec: Codec.Raw };
}

/** Writes the header at the start of `into`; returns `into`. */
function writeHeader(into: Buffer, codec: Codec, plainLength: number, payloadLength: number): Buffer {
  into.writeUInt32LE(MAGIC, 0);
  into.writeUInt8(FORMAT_VERSION, 4);
  into.writeUInt8(codec, 5);
  into.writeUInt16LE(0, 6);
  into.writeUInt32LE(plainLength, 8);
  into.writeUInt32LE(payloadLength, 12);
  return into;
}

/** The plaintext of a stored chunk, verified against its name. */
export function decodeChunk(id: ChunkId, stored: Uint8Array): Buffer {
  if (stored.length < HEADER) throw new ChunkCorruptError(id, `${stored.length} bytes is shorter than the header`);
  const view = Buffer.from(stored.buffer, stored.byteOffset, stored.length);
  if (view.readUInt32LE(0) !== MAGIC) throw new ChunkCorruptError(id, 'bad magic');
  const version = view.readUInt8(4);
  if (version !== FORMAT_VERSION) throw new ChunkCorruptError(id, `unknown format version ${version}`);
  const codec = view.readUInt8(5);
  const plainLength = view.readUInt32LE(8);
  const payloadLength = view.readUInt32LE(12);
  if (HEADER + payloadLength !== stored.length) throw new ChunkCorruptError(id, 'length does not match the header');
  const payload = view.subarray(HEADER);
  let plain: Buffer;
  if (codec === Codec.Raw) {
    plain = payload; // a view: the caller owns the stored bytes
  } else if (codec === Codec.Zstd) {
    try {
      plain = decompress(payload);
    } catch (err) {
      throw new ChunkCorruptError(id, `zstd: ${(err as Error).message}`);
    }
  } else {
    throw new ChunkCorruptError(id, `unknown codec ${codec}`);
  }
  if (plain.length !== plainLength) throw new ChunkCorruptError(id, 'plaintext length does not match the header');
  if (chunkId(plain) !== id) throw new ChunkCorruptError(id, 'BLAKE3 does not match its name');
  return plain;
}
