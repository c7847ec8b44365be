// The fetch scheduler: chunks of attached volumes that are not here, fetched from the peers that
// hold them. What a reader waits for goes first: reads are sent at once, in the session's 'user'
// lane; prefetches and background fills wait for one of a few slots (prefetches first) and go in
// the lanes behind. Everyone asking for one chunk waits on one fetch, and a reader joining a
// queued prefetch moves it to the front.
//
// A chunk may come from any connected peer that offers a volume holding it: the fastest first
// (by the throughput its recent fetches had; a peer not yet measured is tried first, so that it
// gets measured), the next on failure. Every fetched chunk is decoded, which checks it against
// its BLAKE3 name, before anyone sees it: a peer that sends wrong bytes is marked (tried last for
// a while) and logged, and the chunk comes from another. A fetch that no peer can serve before
// its deadline fails with ChunkUnavailableError (the reader's EIO) instead of hanging. While no
// peer that could serve it is connected, it waits for one to come back, but only until the
// timeout has passed since the last of them went: after that, reads fail at once (the kernel
// retries a failed page, and a reader should not wait a timeout for every chunk of a file whose
// peers are all gone) until one connects again.
//
// A chunk arrives in memory lent by the fetcher (`memory`) and reused once everyone is done with
// it: its callers, and the cache writing it to disk. A sequential read of a remote file would
// otherwise allocate a fresh buffer per chunk, which V8 counts as external memory: a full
// mark-compact about every 60 MiB read (measured: 9 for 512 MiB).
import { ChunkUnavailableError, type Urgency } from '../content/chunk-source.js';
import type { CodecPool } from '../content/codec-pool.js';
import type { Logger } from '../log.js';
import { ChunkMemory } from '../pool/chunk-memory.js';
import type { ChunkId } from '../pool/contract.js';
import type { RemoteCache } from '../pool/remote-cache.js';
import type { Household } from './household.js';
import { shortPeerId, type PeerId } from './peer-id.js';
import type { Priority } from './session.js';

/** A peer that may hold a chunk, and the name it knows the volume by (its share check is by it). */
export interface FetchSource {
  peer: PeerId;
  volume: string;
}

export interface FetcherOptions {
  /** How long a fetch may take, waits for a peer included, before it fails (the reader's EIO). */
  timeoutMs: number;
  /** Prefetches and fills in flight at once (reads are never held back). */
  backgroundSlots?: number;
}

/** What this store knows of each peer as a source of chunks. */
export interface SourceStats {
  chunks: number;
  bytes: number;
  /** Chunks that failed their check: the peer sent wrong bytes. */
  corrupt: number;
  failures: number;
  /** Throughput of its recent fetches, bytes per millisecond (smoothed). */
  speed?: number;
  /** Until when it is tried last (ms since 1970), after sending wrong bytes. */
  markedUntil?: number;
}

const LANE: Record<Urgency, Priority> = { read: 'user', prefetch: 'normal', fill: 'background' };
/** How long a peer that sent a corrupt chunk is tried last. */
const MARK_MS = 10 * 60_000;
/** Weight of the newest fetch in a peer's smoothed throughput. */
const SPEED_WEIGHT = 0.2;

/** A fetched chunk: its plaintext, and its bytes as stored (what the cache and the pool keep).
 * The stored bytes are lent from the fetcher's memory, and so is the plaintext when it is a view
 * of them (a raw chunk): each caller of fetchChunk gives `stored` back to `fetcher.memory` once,
 * when done with both. */
export interface Fetched {
  plain: Buffer;
  stored: Buffer;
}

interface Fetch {
  id: ChunkId;
  urgency: Urgency;
  sources: () => FetchSource[];
  started: boolean;
  /** Callers waiting for it: each holds the chunk's memory once it is there. */
  holders: number;
  promise: Promise<Fetched>;
  begin: () => void;
}

export class ChunkFetcher {
  private readonly fetches = new Map<ChunkId, Fetch>();
  private readonly queued: Record<'prefetch' | 'fill', Fetch[]> = { prefetch: [], fill: [] };
  private backgroundInFlight = 0;
  private readonly stats = new Map<PeerId, SourceStats>();
  private readonly backgroundSlots: number;
  /** When each peer's connection went (peers connected now are not here). */
  private readonly goneSince = new Map<PeerId, number>();
  private readonly startedAt = Date.now();
  /** Settles at the next connection of any peer (one promise for every waiting fetch). */
  private nextConnection: { promise: Promise<void>; resolve: () => void } | undefined;
  /** What fetched chunks are gathered into (Fetched). */
  readonly memory = new ChunkMemory();

  constructor(
    private readonly household: Household,
    private readonly codec: CodecPool,
    private readonly cache: RemoteCache,
    private readonly log: Logger,
    private readonly options: FetcherOptions,
  ) {
    this.backgroundSlots = options.backgroundSlots ?? 8;
    household.on('connected', (id) => {
      this.goneSince.delete(id);
      this.nextConnection?.resolve();
      this.nextConnection = undefined;
    });
    household.on('disconnected', (id) => this.goneSince.set(id, Date.now()));
  }

  /** The chunk's verified plaintext and stored bytes, fetched from one of `sources` (asked again
   * at each try: peers come and go); the stored bytes go into the cache. The caller gives the
   * memory back (Fetched). */
  fetchChunk(id: ChunkId, sources: () => FetchSource[], urgency: Urgency): Promise<Fetched> {
    const running = this.fetches.get(id);
    if (running) {
      if (urgency === 'read') this.hurry(id);
      else if (urgency === 'prefetch' && running.urgency === 'fill' && !running.started) this.requeue(running, 'prefetch');
      running.holders++;
      return running.promise;
    }
    let begin!: () => void;
    const started = new Promise<void>((resolve) => (begin = resolve));
    const f: Fetch = { id, urgency, sources, started: false, holders: 1, begin, promise: Promise.resolve({ plain: Buffer.alloc(0), stored: Buffer.alloc(0) }) };
    f.promise = started
      .then(() => this.run(f))
      .then(
        (got) => {
          // In the same step as it leaves `fetches`: no caller can join after the count.
          this.fetches.delete(id);
          this.memory.share(got.stored, f.holders - 1);
          return got;
        },
        (err: unknown) => {
          this.fetches.delete(id);
          throw err;
        },
      )
      .finally(() => {
        if (f.urgency !== 'read') {
          this.backgroundInFlight--;
          this.pump();
        }
      });
    this.fetches.set(id, f);
    if (urgency === 'read') this.start(f);
    else {
      this.queued[urgency].push(f);
      this.pump();
    }
    return f.promise;
  }

  /** A reader waits for `id` now: if its fetch is still queued, it goes at once. */
  hurry(id: ChunkId): void {
    const f = this.fetches.get(id);
    if (!f || f.started) return;
    this.dequeue(f);
    f.urgency = 'read';
    this.start(f);
  }

  /** What is known of each peer as a source. */
  sourceStats(): Map<PeerId, SourceStats> {
    return new Map([...this.stats].map(([k, v]) => [k, { ...v }]));
  }

  private requeue(f: Fetch, urgency: 'prefetch' | 'fill'): void {
    this.dequeue(f);
    f.urgency = urgency;
    this.queued[urgency].push(f);
  }

  /** Takes a fetch that waits for a slot out of its queue. */
  private dequeue(f: Fetch): void {
    const q = this.queued[f.urgency as 'prefetch' | 'fill'];
    q.splice(q.indexOf(f), 1);
  }

  private start(f: Fetch): void {
    f.started = true;
    if (f.urgency !== 'read') this.backgroundInFlight++;
    f.begin();
  }

  private pump(): void {
    while (this.backgroundInFlight < this.backgroundSlots) {
      const next = this.queued.prefetch.shift() ?? this.queued.fill.shift();
      if (!next) return;
      this.start(next);
    }
  }

  private statsOf(peer: PeerId): SourceStats {
    let s = this.stats.get(peer);
    if (!s) this.stats.set(peer, (s = { chunks: 0, bytes: 0, corrupt: 0, failures: 0 }));
    return s;
  }

  /** Connected sources, best first: unmarked before marked; unmeasured, then fastest. */
  private ranked(sources: FetchSource[], tried: ReadonlySet<PeerId>): FetchSource[] {
    const now = Date.now();
    const key = (s: FetchSource): [number, number] => {
      const st = this.stats.get(s.peer);
      return [(st?.markedUntil ?? 0) > now ? 1 : 0, -(st?.speed ?? Infinity)];
    };
    return sources
      .filter((s) => !tried.has(s.peer) && this.household.session(s.peer) !== undefined)
      .sort((a, b) => {
        const [ka, kb] = [key(a), key(b)];
        return ka[0] - kb[0] || ka[1] - kb[1];
      });
  }

  private async run(f: Fetch): Promise<Fetched> {
    const deadline = Date.now() + this.options.timeoutMs;
    const tried = new Set<PeerId>();
    let why = 'no peer that offers it is connected';
    for (;;) {
      const sources = f.sources();
      const [source] = this.ranked(sources, tried);
      if (!source) {
        // Every connected source failed or lacks the chunk. Worth waiting only for one that went
        // and may come back: until a timeout after it went (and the fetch's own deadline).
        const away = sources.filter((s) => this.household.session(s.peer) === undefined);
        const waitUntil = Math.min(deadline, this.graceEnd(away));
        if (Date.now() >= waitUntil) throw new ChunkUnavailableError(f.id, why);
        await this.waitForPeer(waitUntil);
        tried.clear();
        continue;
      }
      tried.add(source.peer);
      const got = await this.fetchFrom(source, f, deadline).catch((err: Error) => {
        why = `${shortPeerId(source.peer)}: ${err.message}`;
        return undefined;
      });
      if (got) return got;
    }
  }

  /** One try at one peer. */
  private async fetchFrom(source: FetchSource, f: Fetch, deadline: number): Promise<Fetched | undefined> {
    const session = this.household.session(source.peer);
    if (!session) return undefined;
    const stats = this.statsOf(source.peer);
    const began = performance.now();
    let reply;
    try {
      reply = await session.request('chunk', { volume: source.volume, id: f.id }, undefined, {
        priority: LANE[f.urgency],
        timeoutMs: Math.max(1, deadline - Date.now()),
        bodyMemory: this.memory,
      });
    } catch (err) {
      stats.failures++;
      throw err;
    }
    if (reply.header.absent === true) {
      this.memory.giveBack(reply.body);
      throw new Error('it does not hold the chunk');
    }
    // A chunk's body is lent memory (or, when small, a buffer of its own: frames.ts): the codec
    // worker checks it in place, and a raw chunk's plaintext is a view of it.
    let plain: Buffer;
    let kept: Buffer;
    try {
      ({ plain, stored: kept } = await this.codec.decodeKeeping(f.id, reply.body));
    } catch (err) {
      this.memory.giveBack(reply.body);
      if ((err as Error).name !== 'ChunkCorruptError') throw err;
      stats.corrupt++;
      stats.markedUntil = Date.now() + MARK_MS;
      this.log.warn({ peer: shortPeerId(source.peer), chunk: f.id, err: (err as Error).message }, 'a peer sent a chunk that fails its check: dropped; the peer is tried last for a while');
      throw err;
    }
    const ms = Math.max(0.05, performance.now() - began);
    stats.chunks++;
    stats.bytes += kept.length;
    const speed = kept.length / ms;
    stats.speed = stats.speed === undefined ? speed : stats.speed + SPEED_WEIGHT * (speed - stats.speed);
    // Into the cache in the background: the reader has its bytes either way. The cache's write
    // holds the memory until it ends.
    this.memory.share(kept);
    this.cache
      .put(f.id, kept)
      .catch((err: unknown) => this.log.warn({ chunk: f.id, err }, 'cannot keep a fetched chunk in the cache'))
      .finally(() => this.memory.giveBack(kept));
    return { plain, stored: kept };
  }

  /** Until when a fetch waits for one of `sources` to come back: a timeout after the last went
   * (one not connected yet in this run counts as gone when the fetcher started: the daemon is
   * still dialing it). */
  private graceEnd(sources: FetchSource[]): number {
    return Math.max(-Infinity, ...sources.map((s) => (this.goneSince.get(s.peer) ?? this.startedAt) + this.options.timeoutMs));
  }

  private waitForPeer(until: number): Promise<void> {
    if (!this.nextConnection) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.nextConnection = { promise, resolve };
    }
    const next = this.nextConnection.promise;
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, Math.max(0, until - Date.now()));
      void next.then(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}
