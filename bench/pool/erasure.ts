// The pool's erasure coding (src/pool/erasure.ts, src/pool/fragment.ts) under ec:4+2, in this
// process, one chunk at a time, next to a copy of the same bytes measured in the same rounds.
// Each operation is what the pool does to a chunk (src/pool/pool.ts), with the disk left out:
//  - encode: encodeShards (Reed-Solomon on libuv's thread pool), then the CRC-32C of each shard
//    and its fragment header (Pool.fragmentsOf, on a put);
//  - decode, healthy: the four data-shard fragments checked (decodeFragment: header and payload
//    CRC-32C), then joined (joinData) into a new buffer (Pool.get when no data shard is missing);
//  - decode, two data shards lost: the fragments of shards 2, 3 and both parity shards checked,
//    shards 0 and 1 rebuilt (restoreShards), the data joined: the worst a read meets under ec:4+2;
//  - crc32c alone over the chunk, for scale (the CRC's share of the rows above).
// The baseline is the least any of these does to a chunk: copying its bytes once into a new buffer
// (Buffer.allocUnsafe + Buffer.copy, on this thread), as joinData does. Throughput is counted in
// the chunk's bytes (not the 1.5 times as many in its fragments), in MB/s (10^6 bytes a second).
// Chunks are random and distinct, 64 MiB of them per size, so that caches do not hold them all;
// each figure is the median over the rounds of the time to go through MEASURED_BYTES of them, the
// operations in alternating order from round to round, after one pass to warm up.
import { randomFillSync } from 'node:crypto';
import { encodeShards, joinData, restoreShards } from '../../src/pool/erasure.js';
import { crc32c, decodeFragment, encodeHeader } from '../../src/pool/fragment.js';
import type { Policy } from '../../src/pool/policy.js';
import { median, MiB, printTable, type Row } from '../lib.js';

const POLICY: Policy = { kind: 'ec', data: 4, parity: 2 };
const K = POLICY.data;
const M = POLICY.parity;
const CHUNK_SIZES = [1 * MiB, 4 * MiB];
/** Distinct chunks per size (bytes): more than this machine's caches. */
const SET_BYTES = 64 * MiB;
/** Chunk bytes gone through per measurement. */
const MEASURED_BYTES = 256 * MiB;

interface Op {
  name: string;
  /** Works on one chunk (`i`: its index in the set). */
  run: (i: number) => unknown;
}

/** What a disk gives back for each fragment of `chunk`: header then payload, in one buffer. */
async function fragmentFiles(chunk: Buffer): Promise<Buffer[]> {
  const shards = await encodeShards(chunk, K, M);
  return shards.map((payload, index) =>
    Buffer.concat([encodeHeader({ policy: POLICY, index, chunkLength: chunk.length, payloadLength: payload.length, payloadCrc: crc32c(payload) }), payload]),
  );
}

function opsFor(chunks: Buffer[], files: Buffer[][]): Op[] {
  return [
    {
      name: 'copy into a new buffer (baseline)',
      run: (i) => {
        const chunk = chunks[i]!;
        const out = Buffer.allocUnsafe(chunk.length);
        chunk.copy(out);
        return out;
      },
    },
    {
      name: 'encode + CRC-32C per shard',
      run: async (i) => {
        const chunk = chunks[i]!;
        const shards = await encodeShards(chunk, K, M);
        return shards.map((payload, index) => [
          encodeHeader({ policy: POLICY, index, chunkLength: chunk.length, payloadLength: payload.length, payloadCrc: crc32c(payload) }),
          payload,
        ]);
      },
    },
    {
      name: 'decode, healthy (check + join)',
      run: (i) => {
        const data = files[i]!.slice(0, K).map((f) => decodeFragment(f).payload);
        return joinData(data, chunks[i]!.length);
      },
    },
    {
      name: 'decode, 2 data shards lost (check + restore + join)',
      run: async (i) => {
        const shards: Array<Buffer | undefined> = new Array(K + M).fill(undefined);
        for (const f of files[i]!.slice(2)) {
          const { header, payload } = decodeFragment(f);
          shards[header.index] = payload;
        }
        return joinData((await restoreShards(shards, K, M)).slice(0, K), chunks[i]!.length);
      },
    },
    { name: 'crc32c of the chunk alone', run: (i) => crc32c(chunks[i]!) },
  ];
}

/** MB/s of chunk bytes through `op` over `bytes` of the set, one chunk at a time. */
async function measure(op: Op, chunkSize: number, setLength: number, bytes: number): Promise<number> {
  const count = Math.max(1, Math.round(bytes / chunkSize));
  const start = process.hrtime.bigint();
  for (let n = 0; n < count; n++) await op.run(n % setLength);
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  return (count * chunkSize) / seconds / 1e6;
}

export async function benchErasure(rounds: number): Promise<void> {
  const rows: Row[] = [];
  for (const chunkSize of CHUNK_SIZES) {
    const chunks = Array.from({ length: SET_BYTES / chunkSize }, () => randomFillSync(Buffer.allocUnsafe(chunkSize)));
    const files: Buffer[][] = [];
    for (const chunk of chunks) files.push(await fragmentFiles(chunk));
    // Each fragment file reads back as the chunk it came from, by both decode paths.
    const ops = opsFor(chunks, files);
    for (const op of ops.slice(2, 4)) {
      const back = (await op.run(0)) as Buffer;
      if (!back.equals(chunks[0]!)) throw new Error(`${op.name} does not give the chunk back`);
    }
    const results = new Map<Op, number[]>(ops.map((op) => [op, []]));
    for (const op of ops) await measure(op, chunkSize, chunks.length, SET_BYTES);
    for (let r = 0; r < rounds; r++) {
      for (const op of r % 2 === 0 ? ops : [...ops].reverse()) results.get(op)!.push(await measure(op, chunkSize, chunks.length, MEASURED_BYTES));
    }
    console.error(`pool bench: erasure coding of ${chunkSize / MiB} MiB chunks done`);
    const baseline = median(results.get(ops[0]!)!);
    for (const op of ops.slice(1)) {
      rows.push({ what: `${chunkSize / MiB} MiB chunk: ${op.name}`, ours: median(results.get(op)!), theirs: baseline, unit: 'MB/s' });
    }
  }
  printTable(
    `Erasure coding ec:${K}+${M}, one chunk at a time, MB/s of chunk bytes, median of ${rounds} interleaved rounds`,
    `ec:${K}+${M}`, 'copy (baseline)', rows,
  );
  console.log('baseline: the same chunks copied once into a new buffer (Buffer.allocUnsafe + copy), as joinData does');
}
