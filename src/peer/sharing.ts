// Sharing volumes with peers: what this store offers each peer (peers.json's shares, changed by
// `orbit share` and `orbit unshare`), and what each connected peer offers this store.
//
// On the wire: a peer asks 'offers' and gets the volumes shared with it; when the shares change,
// every connected peer it concerns is told ('offers' notification) so an offer appears at once.
// 'index' pages through a shared volume's changes (meta's changesSince) for the peer's index of
// it; a volume not shared with the asker is EACCES, exactly as if it were private, whatever the
// asker claims: the session's peer is the key the TLS handshake proved. Peers with shares are
// told 'index.changed' when the metadata changed and then stood still for a second.
//
// 'chunk' serves a chunk's stored bytes (as the pool or the cache of fetched chunks holds them:
// the asker checks them against the chunk's name) under the same rule: the asker names a volume
// shared with it, and a file of that volume has content in the chunk. A volume attached from a
// peer can be shared on (an offer says where it comes from): then this store serves what it holds
// of it, and the askers take it as one more source of the origin's chunks. The pool reads a chunk
// into reused memory (pool/chunk-memory.ts), which goes back once TLS has taken its bytes.
import type { Logger } from '../log.js';
import { ChunkMemory } from '../pool/chunk-memory.js';
import { ChunkNotFoundError, isChunkId } from '../pool/contract.js';
import type { RemoteCache } from '../pool/remote-cache.js';
import type { FetchSource } from './chunk-fetcher.js';
import type { VolumeChanges } from '../meta/contract.js';
import type { Store } from '../store/store.js';
import type { Household } from './household.js';
import { shortPeerId, type PeerId } from './peer-id.js';
import { MAX_BODY_BYTES } from './frames.js';
import type { PeersFile } from './peers.js';
import type { PeerSession } from './session.js';

/** A volume as it is offered: its name on the offering store, and where it comes from when the
 * offering store attached it from a peer. */
export interface OfferedVolume {
  name: string;
  origin?: { peer: PeerId; volume: string };
}

/** Inodes of an index page, at most (the asker may ask for fewer). */
const INDEX_PAGE_LIMIT = 5000;
/** How often the metadata's change count is looked at: peers hear of changes once it has stood
 * still for one look (a file being written is sent once it is stable, not at every write). */
const WATCH_MS = 1000;

/** What travels for an 'index' answer: VolumeChanges with xattr values in base64 (JSON header). */
export type WireChanges = Omit<VolumeChanges, 'inodes'> & { inodes: Array<Omit<VolumeChanges['inodes'][number], 'xattrs'> & { xattrs?: Array<[string, string]> }> };

export class Sharing {
  private shares: Record<string, PeerId[]> = {};
  /** What each connected peer offers this store, as it last said. */
  private readonly offered = new Map<PeerId, OfferedVolume[]>();
  private watch: NodeJS.Timeout | undefined;
  private seenCount = -1;
  private unannounced = false;
  private readonly memory = new ChunkMemory();

  constructor(
    private readonly household: Household,
    private readonly store: Store,
    private readonly log: Logger,
    /** Chunks fetched for attached volumes: served too, when such a volume is shared on. */
    private readonly cache?: RemoteCache,
  ) {}

  /** Registers the handlers; call before the household starts. */
  install(): void {
    const h = this.household;
    h.handle('offers', async (req) => ({ header: { volumes: await this.described(this.offersTo(req.peer)) } }));
    h.handle('chunk', async (req) => {
      const volume = String(req.header.volume);
      const id = String(req.header.id);
      if (!isChunkId(id)) throw Object.assign(new Error('not a chunk id'), { code: 'EINVAL' });
      // One answer for "not shared" and "not in it": the asker learns nothing of other volumes.
      if (!this.sharedWith(volume, req.peer) || !(await this.store.meta.volumeHoldsChunk(volume, id))) {
        throw Object.assign(new Error(`no chunk ${id} in a volume ${volume} shared with this peer`), { code: 'EACCES' });
      }
      const body = await this.storedChunk(id);
      return body ? { header: {}, body, sent: () => this.memory.giveBack(body) } : { header: { absent: true } };
    });
    h.handle('index', async (req) => {
      const volume = String(req.header.volume);
      if (!this.sharedWith(volume, req.peer)) throw Object.assign(new Error(`volume ${volume} is not shared with this peer`), { code: 'EACCES' });
      const after = Number(req.header.after ?? 0);
      // The page goes as JSON in the body (headers are small by design); a page too large for a
      // body (huge directories) is asked again at half the size.
      for (let limit = Math.min(INDEX_PAGE_LIMIT, Math.max(1, Number(req.header.limit ?? INDEX_PAGE_LIMIT))); ; limit = Math.ceil(limit / 2)) {
        const body = Buffer.from(JSON.stringify(toWire(await this.store.meta.changesSince(volume, after, limit))));
        if (body.length <= MAX_BODY_BYTES || limit === 1) return { header: {}, body };
      }
    });
    h.onNotify('offers', (n) => {
      this.offered.set(n.peer, (n.header.volumes as OfferedVolume[] | undefined) ?? []);
      this.log.info({ peer: shortPeerId(n.peer), volumes: this.offered.get(n.peer)!.map((v) => v.name) }, 'a peer\'s offers changed');
    });
    h.on('connected', (id, session) => void this.askOffers(id, session));
    h.on('disconnected', (id) => this.offered.delete(id));
    h.on('reloaded', (file) => this.sharesChanged(file));
    this.watch = setInterval(() => void this.watchChanges().catch((err: unknown) => this.log.warn({ err }, 'cannot read the change count')), WATCH_MS);
    this.watch.unref();
  }

  stop(): void {
    clearInterval(this.watch);
  }

  /** Tells the peers that have shares that something changed, once changes have paused. */
  private async watchChanges(): Promise<void> {
    const count = await this.store.meta.changeCount();
    if (this.seenCount === -1) this.seenCount = count;
    if (count !== this.seenCount) {
      this.seenCount = count;
      this.unannounced = true;
      return;
    }
    if (!this.unannounced) return;
    this.unannounced = false;
    for (const id of this.household.connectedPeers()) {
      if (this.offersTo(id).length > 0) this.household.session(id)?.notify('index.changed', {});
    }
  }

  /** Where the chunks of a volume attached from `origin` can come from: the origin, and every
   * connected peer that offers the same volume (shared on). */
  sourcesFor(origin: { peer: PeerId; volume: string }): FetchSource[] {
    const sources: FetchSource[] = [{ peer: origin.peer, volume: origin.volume }];
    for (const [peer, volumes] of this.offered) {
      if (peer === origin.peer) continue;
      const same = volumes.find((v) => v.origin?.peer === origin.peer && v.origin.volume === origin.volume);
      if (same) sources.push({ peer, volume: same.name });
    }
    return sources;
  }

  /** A chunk's stored bytes as this store holds them: in the pool, or fetched into the cache. */
  private async storedChunk(id: string): Promise<Buffer | undefined> {
    try {
      return await this.store.chunks.get(id, this.memory);
    } catch (err) {
      if (!(err instanceof ChunkNotFoundError)) throw err;
    }
    return this.cache?.get(id);
  }

  /** Offers with where each volume comes from. */
  private async described(offers: OfferedVolume[]): Promise<OfferedVolume[]> {
    if (offers.length === 0) return offers;
    const volumes = new Map((await this.store.meta.volumes()).map((v) => [v.name, v]));
    return offers.map((o) => {
      const origin = volumes.get(o.name)?.origin;
      return origin ? { name: o.name, origin: { peer: origin.peer, volume: origin.volume } } : o;
    });
  }

  /** Every connected peer's offers. */
  offers(): Array<{ peer: PeerId; volumes: OfferedVolume[] }> {
    return [...this.offered].map(([peer, volumes]) => ({ peer, volumes }));
  }

  sharedWith(volume: string, peer: PeerId, shares = this.shares): boolean {
    return shares[volume]?.includes(peer) ?? false;
  }

  private offersTo(peer: PeerId, shares = this.shares): OfferedVolume[] {
    return Object.keys(shares).filter((v) => this.sharedWith(v, peer, shares)).sort().map((name) => ({ name }));
  }

  private async askOffers(id: PeerId, session: PeerSession): Promise<void> {
    try {
      const reply = await session.request('offers', {});
      this.offered.set(id, (reply.header.volumes as OfferedVolume[] | undefined) ?? []);
    } catch (err) {
      this.log.warn({ peer: shortPeerId(id), err }, 'cannot ask a peer what it offers');
    }
  }

  /** Tells each connected peer whose offers changed what it is offered now. */
  private sharesChanged(file: PeersFile): void {
    const before = this.shares;
    this.shares = structuredClone(file.shares);
    for (const id of this.household.connectedPeers()) {
      const now = this.offersTo(id);
      if (JSON.stringify(now) === JSON.stringify(this.offersTo(id, before))) continue;
      void this.described(now).then(
        (volumes) => this.household.session(id)?.notify('offers', { volumes }),
        (err: unknown) => this.log.warn({ err }, 'cannot tell a peer what it is offered'),
      );
    }
  }
}

function toWire(c: VolumeChanges): WireChanges {
  return {
    ...c,
    inodes: c.inodes.map(({ xattrs, ...rest }) => (xattrs ? { ...rest, xattrs: xattrs.map(([n, v]): [string, string] => [n, v.toString('base64')]) } : rest)),
  };
}

export function fromWire(w: WireChanges): VolumeChanges {
  return {
    ...w,
    inodes: w.inodes.map(({ xattrs, ...rest }) => (xattrs ? { ...rest, xattrs: xattrs.map(([n, v]): [string, Buffer] => [n, Buffer.from(v, 'base64')]) } : rest)),
  };
}
