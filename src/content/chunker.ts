// Content-defined chunking: a streaming FastCDC (Gear hash, normalized chunking level 2) that turns
// a byte stream into chunk lengths whose boundaries follow the content, so edits move few chunks.
//
// FORMAT: the GEAR table (its PRNG and seed), the mask construction and the cut rule below decide
// every cut point. Changing any of them changes the chunks of every file, which breaks
// deduplication against existing stores and peers: treat them as part of the on-disk/on-wire format.
// native/gear_cdc.c cuts the same way, faster, with this file's table and masks.
import { nativeContent } from './native.js';

export interface ChunkingParams {
  /** No chunk is shorter, except the last of a stream. */
  minSize: number;
  /** The normalization point; a power of two. Chunks average somewhat above it. */
  avgSize: number;
  /** Chunks are cut here when the content offers no boundary earlier. */
  maxSize: number;
}

export const DEFAULT_CHUNKING: ChunkingParams = { minSize: 256 * 1024, avgSize: 1024 * 1024, maxSize: 4 * 1024 * 1024 };

// Bounds that keep both masks between 4 and 30 bits and every length a small integer.
const MIN_AVG_SIZE = 64;
const MAX_AVG_SIZE = 1 << 28;
const MAX_MAX_SIZE = 1 << 30;

// FastCDC's NC level 2: a mask two bits harder than log2(avgSize) before avgSize, two bits easier
// after, which narrows the chunk-size distribution around avgSize.
const NORMALIZATION_LEVEL = 2;

const GEAR_SEED = 0x4f524254; // "ORBT"
const PUSH_SLICE = 1024 * 1024;

/** 256 pseudo-random 32-bit values from splitmix32: a Weyl sequence (step 0x9e3779b9, the 32-bit
 * golden ratio) passed through MurmurHash3's fmix32 finalizer, starting from GEAR_SEED. Stored as
 * Int32Array so the hash stays in V8's int32 representation on the hot path. */
const GEAR: Int32Array = (() => {
  const table = new Int32Array(256);
  let state = GEAR_SEED;
  for (let i = 0; i < table.length; i++) {
    state = (state + 0x9e3779b9) | 0;
    let z = state;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    table[i] = z ^ (z >>> 16);
  }
  return table;
})();

/** A mask with `bits` one-bits spread evenly over the 32-bit word, always including bit 31: bit
 * 31 - floor(i * 32 / bits) for i in [0, bits). Why spread: with the Gear hash's left shift, bit j
 * of the hash depends only on the last j + 1 bytes, so a mask of low bits would look at a window of
 * just `bits` bytes; FastCDC's padded masks spread their bits for the same reason. */
function spreadMask(bits: number): number {
  let mask = 0;
  for (let i = 0; i < bits; i++) mask |= 1 << (31 - Math.floor((i * 32) / bits));
  return mask;
}

function checkParams(p: ChunkingParams): void {
  const { minSize, avgSize, maxSize } = p;
  for (const [name, v] of [['minSize', minSize], ['avgSize', avgSize], ['maxSize', maxSize]] as const) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`chunking ${name} must be a positive integer, got ${v}`);
  }
  if ((avgSize & (avgSize - 1)) !== 0 || avgSize < MIN_AVG_SIZE || avgSize > MAX_AVG_SIZE) {
    throw new RangeError(`chunking avgSize must be a power of two in [${MIN_AVG_SIZE}, ${MAX_AVG_SIZE}], got ${avgSize}`);
  }
  if (minSize > avgSize || avgSize > maxSize) {
    throw new RangeError(`chunking sizes must satisfy minSize <= avgSize <= maxSize, got ${minSize}, ${avgSize}, ${maxSize}`);
  }
  if (maxSize > MAX_MAX_SIZE) throw new RangeError(`chunking maxSize must be at most ${MAX_MAX_SIZE}, got ${maxSize}`);
}

/** Finds chunk boundaries in one stream at a time. It never copies or keeps the bytes it is given:
 * the caller buffers them and slices chunks by the returned lengths. Boundaries do not depend on
 * how the stream is split across push() calls. */
export class Chunker {
  private readonly minSize: number;
  private readonly avgSize: number;
  private readonly maxSize: number;
  /** Used while the chunk is shorter than avgSize. */
  private readonly hardMask: number;
  /** Used from avgSize on. */
  private readonly easyMask: number;
  /** Bytes of the current chunk seen so far. */
  private chunkLength = 0;
  /** Gear hash over the current chunk's bytes from minSize on. */
  private hash = 0;

  constructor(params: ChunkingParams = DEFAULT_CHUNKING) {
    checkParams(params);
    this.minSize = params.minSize;
    this.avgSize = params.avgSize;
    this.maxSize = params.maxSize;
    const avgBits = Math.log2(params.avgSize);
    this.hardMask = spreadMask(avgBits + NORMALIZATION_LEVEL);
    this.easyMask = spreadMask(avgBits - NORMALIZATION_LEVEL);
  }

  /** Consumes the next bytes of the stream; returns the lengths of the chunks it completed, in order.
   * The first may have begun in earlier input. */
  push(data: Uint8Array): number[] {
    const cuts: number[] = [];
    const n = data.length;
    const { minSize, avgSize, maxSize, hardMask, easyMask } = this;
    // The current chunk's start as an index into data: negative when it began in earlier input.
    let start = -this.chunkLength;
    let h = this.hash;
    let i = 0;
    while (true) {
      // No cut can fall before minSize, so those bytes are not even hashed.
      if (i < start + minSize) i = start + minSize;
      if (i >= n) break;
      let cut = -1;
      const hardEnd = Math.min(n, start + avgSize);
      while (i < hardEnd) {
        h = ((h << 1) + GEAR[data[i]!]!) | 0;
        i++;
        if ((h & hardMask) === 0) {
          cut = i;
          break;
        }
      }
      if (cut < 0) {
        const easyEnd = Math.min(n, start + maxSize);
        while (i < easyEnd) {
          h = ((h << 1) + GEAR[data[i]!]!) | 0;
          i++;
          if ((h & easyMask) === 0) {
            cut = i;
            break;
          }
        }
        if (cut < 0) {
          if (i !== start + maxSize) break; // input ran out mid-chunk
          cut = i;
        }
      }
      cuts.push(cut - start);
      start = cut;
      h = 0;
    }
    this.chunkLength = n - start;
    this.hash = h;
    return cuts;
  }

  /** The lengths of the complete chunks of `data`, a whole stream or the rest of one from a cut
   * point on (the bytes after the last cut are not a chunk yet); the chunker is left ready for a
   * new stream. The native cutter (see native.ts) does it when built: it cuts at the same points. */
  cutAll(data: Uint8Array): number[] {
    this.reset();
    const native = nativeContent();
    if (native) return native.cuts(data, GEAR, this.minSize, this.avgSize, this.maxSize, this.hardMask >>> 0, this.easyMask >>> 0);
    // Fed a slice at a time: many short calls get push() optimized sooner than one long call.
    const lengths: number[] = [];
    for (let at = 0; at < data.length; at += PUSH_SLICE) lengths.push(...this.push(data.subarray(at, at + PUSH_SLICE)));
    this.reset();
    return lengths;
  }

  /** Ends the stream: returns the length of its last, possibly short, chunk (0 when the stream
   * ended on a boundary) and readies the chunker for a new stream. */
  finish(): number {
    const last = this.chunkLength;
    this.reset();
    return last;
  }

  /** Forgets the current stream. */
  reset(): void {
    this.chunkLength = 0;
    this.hash = 0;
  }
}
