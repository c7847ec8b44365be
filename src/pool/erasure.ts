// Reed-Solomon erasure coding of one stored chunk into K data shards and M parity shards, with
// @ronomon/reed-solomon (Cauchy matrices, native, runs on libuv's thread pool: the event loop
// never does the arithmetic). Its parity layout is its own, so shards written by it are read by
// it: the fragment header's format version pins the choice.
//
// Data shards are the chunk's bytes cut in K equal pieces (the last zero-padded; a shard's size
// is a multiple of 8, as the addon requires): when they are all present, a read only joins them.
import { createRequire } from 'node:module';

interface ReedSolomonAddon {
  create(k: number, m: number): unknown;
  encode(
    context: unknown, sources: number, targets: number,
    buffer: Buffer, bufferOffset: number, bufferSize: number,
    parity: Buffer, parityOffset: number, paritySize: number,
    callback: (error?: Error) => void,
  ): void;
}

const rs = createRequire(import.meta.url)('@ronomon/reed-solomon') as ReedSolomonAddon;

/** Encoding contexts hold the code's matrix: made once per K+M and shared (the addon allows it). */
const contexts = new Map<string, unknown>();

function context(k: number, m: number): unknown {
  const key = `${k}+${m}`;
  let c = contexts.get(key);
  if (c === undefined) contexts.set(key, (c = rs.create(k, m)));
  return c;
}

export function shardSize(chunkLength: number, k: number): number {
  return Math.max(8, Math.ceil(Math.ceil(chunkLength / k) / 8) * 8);
}

function run(k: number, m: number, sources: number, targets: number, data: Buffer, parity: Buffer): Promise<void> {
  return new Promise((resolve, reject) => {
    rs.encode(context(k, m), sources, targets, data, 0, data.length, parity, 0, parity.length, (error) => (error ? reject(error) : resolve()));
  });
}

/** The K + M shards of `chunk`: data shards first (views of one padded copy), then parity. */
export async function encodeShards(chunk: Uint8Array, k: number, m: number): Promise<Buffer[]> {
  const size = shardSize(chunk.length, k);
  const data = Buffer.alloc(size * k);
  data.set(chunk);
  const parity = Buffer.allocUnsafe(size * m);
  let sources = 0;
  for (let i = 0; i < k; i++) sources |= 1 << i;
  let targets = 0;
  for (let i = k; i < k + m; i++) targets |= 1 << i;
  await run(k, m, sources, targets, data, parity);
  const shards: Buffer[] = [];
  for (let i = 0; i < k; i++) shards.push(data.subarray(i * size, (i + 1) * size));
  for (let i = 0; i < m; i++) shards.push(parity.subarray(i * size, (i + 1) * size));
  return shards;
}

/**
 * Every shard, from any K of them (`shards[i]` undefined where missing; all present ones of one
 * size). Rejects when fewer than K are present.
 */
export async function restoreShards(shards: ReadonlyArray<Uint8Array | undefined>, k: number, m: number): Promise<Buffer[]> {
  const present = shards.flatMap((s, i) => (s ? [i] : []));
  if (present.length < k) throw new Error(`${present.length} of ${k + m} shards left; ${k} are needed`);
  const size = shards[present[0]!]!.length;
  const data = Buffer.alloc(size * k);
  const parity = Buffer.alloc(size * m);
  let sources = 0;
  let targets = 0;
  for (let i = 0; i < k + m; i++) {
    const s = shards[i];
    if (s) {
      if (s.length !== size) throw new Error(`shard ${i} has ${s.length} bytes, others ${size}`);
      (i < k ? data : parity).set(s, (i < k ? i : i - k) * size);
      sources |= 1 << i;
    } else {
      targets |= 1 << i;
    }
  }
  if (targets !== 0) await run(k, m, sources, targets, data, parity);
  const out: Buffer[] = [];
  for (let i = 0; i < k; i++) out.push(data.subarray(i * size, (i + 1) * size));
  for (let i = 0; i < m; i++) out.push(parity.subarray(i * size, (i + 1) * size));
  return out;
}

/** The chunk's bytes from its K data shards (written into `out` when given: chunkLength bytes). */
export function joinData(dataShards: ReadonlyArray<Uint8Array>, chunkLength: number, out: Buffer = Buffer.allocUnsafe(chunkLength)): Buffer {
  let at = 0;
  for (const s of dataShards) {
    if (at >= chunkLength) break;
    const n = Math.min(s.length, chunkLength - at);
    out.set(n === s.length ? s : s.subarray(0, n), at);
    at += n;
  }
  return out;
}
