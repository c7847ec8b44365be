// Where a chunk's fragments go: weighted rendezvous hashing (highest random weight). Every disk
// gets a score from the chunk id and its own id, scaled by its size; fragments go to the disks
// with the highest scores, in order, skipping those that cannot take them (full, failed).
//
// Why this and not a table: the ranking is computed, not stored, so a read knows where to look
// first without asking anything (the first-ranked disks hold the fragments unless one was
// skipped, and then the next ones do); adding a disk moves no existing fragment and takes new
// ones in proportion to its size; and disks of any size fill at the same rate.
import type { ChunkId } from './contract.js';

export interface Candidate {
  /** seedOf(the disk's id). */
  seed: number;
  /** Relative share of fragments: the disk's size. */
  weight: number;
}

/** 32-bit FNV-1a of a string: a disk id's seed, computed once per disk. */
export function seedOf(diskId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < diskId.length; i++) h = Math.imul(h ^ diskId.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** A uniform number in (0, 1) from a chunk and a disk seed (murmur3's finaliser mixes them). */
function unit(chunkBits: number, seed: number): number {
  let h = (chunkBits ^ seed) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  h = (h ^ (h >>> 16)) >>> 0;
  return (h + 0.5) / 4294967296;
}

/** The candidates in the order a chunk's fragments go to them (and are looked for). */
export function rank<T extends Candidate>(id: ChunkId, disks: readonly T[]): T[] {
  if (disks.length <= 1) return [...disks];
  // The id is a BLAKE3 hash already: its first 32 bits are as good as any.
  const bits = parseInt(id.slice(0, 8), 16);
  const scored = disks.map((d) => ({ d, score: d.weight / -Math.log(unit(bits, d.seed)) }));
  scored.sort((a, b) => b.score - a.score);
  return scored.map((s) => s.d);
}
