// Tiering applied lazily on read: a chunk read while hot but stored under another policy than
// tiering's hot one is moved to what its files now ask (store/policies.ts: the hot policy, unless
// a file asks for a stronger one) in the background, one chunk at a time, off the read's path.
// The cold side is the tier job's (jobs/tier-walk.ts): a chunk cools while nobody reads it.
//
// Only the process that runs the store's jobs moves chunks: a move ends by removing the old
// policy's fragments, which one process at a time may do (Pool.heal's `tidy`).
import type { Logger } from '../log.js';
import type { ChunkId } from '../pool/contract.js';
import { samePolicy } from '../pool/policy.js';
import { chunkPolicy } from './policies.js';
import type { Store } from './store.js';

/** Chunks waiting to move, at most (more are noticed again at their next read). */
const QUEUE_LIMIT = 10_000;
/** Chunks found where they belong (a file asks for their policy), remembered so that their
 * every read does not ask the metadata again; forgotten all at once past this many. */
const SETTLED_LIMIT = 100_000;

export class TierMover {
  private readonly queue = new Set<ChunkId>();
  private readonly settled = new Set<ChunkId>();
  private moving: Promise<void> | undefined;
  private closed = false;
  /** Chunks moved since this started (for metrics and tests). */
  moved = 0;

  constructor(
    private readonly store: Store,
    /** Whether this process runs the store's jobs now. */
    private readonly runsJobs: () => boolean,
    private readonly log: Logger,
  ) {}

  /** Starts listening to the pool's hot reads. */
  attach(): void {
    this.store.chunks.onHotRead = (id) => this.note(id);
  }

  private note(id: ChunkId): void {
    if (this.closed || this.queue.has(id) || this.settled.has(id) || this.queue.size >= QUEUE_LIMIT || !this.runsJobs()) return;
    this.queue.add(id);
    this.moving ??= this.moveQueued().finally(() => {
      this.moving = undefined;
    });
  }

  private async moveQueued(): Promise<void> {
    const pool = this.store.chunks;
    // A Set iterates over what is added while it runs: one loop drains the queue.
    for (const id of this.queue) {
      this.queue.delete(id);
      if (this.closed || !this.runsJobs()) {
        this.queue.clear();
        break;
      }
      try {
        const stored = await pool.policyOf(id);
        const target = await chunkPolicy(this.store.meta, pool, id, pool.heat, stored);
        if (stored === undefined || samePolicy(stored, target)) {
          if (this.settled.size >= SETTLED_LIMIT) this.settled.clear();
          this.settled.add(id);
          continue;
        }
        const r = await pool.heal(id, target, true);
        if (r.written > 0) this.moved++;
      } catch (err) {
        this.log.warn({ err, chunk: id }, 'tiering: cannot move a hot chunk');
      }
    }
  }

  /** Stops listening; resolves once the chunk being moved is done. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.store.chunks.onHotRead) this.store.chunks.onHotRead = undefined;
    await this.moving;
  }
}
