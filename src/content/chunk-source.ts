// Where a volume's chunks come from, as verified plaintext: the local pool for the store's own
// volumes; for a volume attached from a peer, the pool (pinned files), the cache of fetched chunks,
// and the peers (peer/remote-chunks.ts). The vfs reads through this and nothing else.
import { ChunkMemory } from '../pool/chunk-memory.js';
import type { ChunkId, ChunkStore } from '../pool/contract.js';
import type { CodecPool } from './codec-pool.js';

/** Who waits for a chunk, most urgent first: a reader, a prefetch ahead of one, a background fill
 * (a pinned file being made Real). Sources that queue serve them in this order. */
export type Urgency = 'read' | 'prefetch' | 'fill';

export interface ChunkSource {
  /** The chunk's verified plaintext; rejects with ChunkCorruptError, ChunkNotFoundError or (from
   * peers) ChunkUnavailableError when it cannot be had. */
  plain(id: ChunkId, urgency: Urgency): Promise<Buffer>;
  /** A reader now waits for a chunk asked for with less urgency: serve it as a read. */
  hurry?(id: ChunkId): void;
  /** The caller is done with plaintext this source gave it, and holds no view of it any more:
   * its memory may be reused. */
  release?(plain: Buffer): void;
}

/** The store's own chunks: read from the pool into reused memory and decoded there on the codec
 * workers (a raw chunk's plaintext is a view of what was read: nothing is copied). */
export function poolChunks(chunks: ChunkStore, codec: CodecPool, memory = new ChunkMemory()): ChunkSource {
  return {
    plain: async (id) => {
      const stored = await chunks.get(id, memory);
      try {
        const plain = await codec.decode(id, stored);
        // A compressed chunk's plaintext is new memory: what was read is done with.
        if (plain.buffer !== stored.buffer) memory.giveBack(stored);
        return plain;
      } catch (err) {
        memory.giveBack(stored);
        throw err;
      }
    },
    release: (plain) => memory.giveBack(plain),
  };
}

/** No peer could serve the chunk within the fetch timeout (the reader gets EIO). */
export class ChunkUnavailableError extends Error {
  readonly code = 'EIO';
  constructor(readonly id: ChunkId, why: string) {
    super(`chunk ${id} could not be fetched from any peer: ${why}`);
    this.name = 'ChunkUnavailableError';
  }
}
