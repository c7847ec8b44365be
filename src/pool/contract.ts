// The pool layer's contract: stores of opaque, already-encoded chunks named by their ids, the
// errors every implementation reports the same way, and the check that keeps ids safe as names.
import type { ChunkMemory } from './chunk-memory.js';
import type { Policy } from './policy.js';

/** 64 lowercase hex characters: the BLAKE3-256 of the chunk's plaintext. */
export type ChunkId = string;

export interface ChunkStat {
  id: ChunkId;
  storedBytes: number;
}

export interface StoreCapacity {
  totalBytes: number;
  freeBytes: number;
  usedBytes: number;
}

export interface ChunkStore {
  /** Stores bytes under id, with the redundancy `policy` asks (the store's default without it;
   * a store of one copy ignores it). Resolves 'existed' without writing when the id is already
   * present (a pool raises a present chunk to a stronger policy asked of it). Not durable until sync().
   * The bytes may come in parts, stored one after another (a raw chunk's header, then its
   * plaintext, which a write holds in memory shared with the codec workers). `crc`, when the
   * caller has it: the CRC-32C of the bytes (all parts, in order), which a store that checksums
   * what it keeps takes instead of reading them again (the codec workers compute it as they name
   * a chunk, off the event loop). */
  put(id: ChunkId, bytes: Uint8Array | readonly Uint8Array[], policy?: Policy, crc?: number): Promise<'stored' | 'existed'>;
  /** The stored bytes; rejects with a ChunkNotFoundError (code 'ENOENT') when absent. With
   * `memory`, they may be read into memory lent from it: the caller then holds the only views of
   * that memory and gives it back (ChunkMemory.giveBack) when done. */
  get(id: ChunkId, memory?: ChunkMemory): Promise<Buffer>;
  has(id: ChunkId): Promise<boolean>;
  /** Resolves false when it was not there. */
  delete(id: ChunkId): Promise<boolean>;
  stat(id: ChunkId): Promise<ChunkStat | undefined>;
  /** Every stored chunk, in no particular order; chunks added or removed meanwhile may or may not appear. */
  iterate(): AsyncIterable<ChunkStat>;
  capacity(): Promise<StoreCapacity>;
  /** Makes every put and delete so far durable (survives power loss): one group commit. */
  sync(): Promise<void>;
  /** Syncs, then releases the store: every later call but close() rejects with a ChunkStoreClosedError. */
  close(): Promise<void>;
}

export class ChunkNotFoundError extends Error {
  readonly code = 'ENOENT';
  readonly id: ChunkId;

  constructor(id: ChunkId) {
    super(`chunk ${id} not found`);
    this.name = 'ChunkNotFoundError';
    this.id = id;
  }
}

export class InvalidChunkIdError extends Error {
  readonly code = 'EINVAL';

  constructor(id: unknown) {
    // Cut short: a caller's bad id may be arbitrarily long.
    const shown = typeof id === 'string' ? JSON.stringify(id.length > 80 ? `${id.slice(0, 80)}...` : id) : typeof id;
    super(`invalid chunk id ${shown}: expected 64 lowercase hex characters`);
    this.name = 'InvalidChunkIdError';
  }
}

/** A call after close(): a bug in the caller. */
export class ChunkStoreClosedError extends Error {
  constructor(where: string) {
    super(`chunk store ${where} is closed`);
    this.name = 'ChunkStoreClosedError';
  }
}

const CHUNK_ID = /^[0-9a-f]{64}$/;

export function isChunkId(id: unknown): id is ChunkId {
  return typeof id === 'string' && CHUNK_ID.test(id);
}

/** Ids become file names (and keys elsewhere), so anything else, '../x' above all, is refused. */
export function assertChunkId(id: unknown): asserts id is ChunkId {
  if (!isChunkId(id)) throw new InvalidChunkIdError(id);
}
