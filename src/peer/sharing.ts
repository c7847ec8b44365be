// Sharing volumes with peers: what this store offers each peer (peers.json's shares, changed by
// `orbit share` and `orbit unshare`), and what each connected peer offers this store.
//
// On the wire: a peer asks 'offers' and gets the volumes shared with it; when the shares change,
// every connected peer it concerns is told ('offers' notification) so an offer appears at once.
// 'index' pages through a shared volume's changes (meta's changesSince) for the peer's index of
// it; a volume not shared with the asker is EACCES, exactly as if it were private, whatever the
// asker claims: the session's peer is the key the TLS handshake proved.
import type { Logger } from '../log.js';
import type { VolumeChanges } from '../meta/contract.js';
import type { Store } from '../store/store.js';
import type { Household } from './household.js';
import { shortPeerId, type PeerId } from './peer-id.js';
import type { PeersFile } from './peers.js';
import type { PeerSession } from './session.js';

/** A volume as it is offered: its name on the offering store. */
export interface OfferedVolume {
  name: string;
}

/** Inodes of an index page, at most (the asker may ask for fewer). */
const INDEX_PAGE_LIMIT = 5000;

/** What travels for an 'index' answer: VolumeChanges with xattr values in base64 (JSON header). */
type WireChanges = Omit<VolumeChanges, 'inodes'> & { inodes: Array<Omit<VolumeChanges['inodes'][number], 'xattrs'> & { xattrs?: Array<[string, string]> }> };

export class Sharing {
  private shares: Record<string, PeerId[]> = {};
  /** What each connected peer offers this store, as it last said. */
  private readonly offered = new Map<PeerId, OfferedVolume[]>();

  constructor(
    private readonly household: Household,
    private readonly store: Store,
    private readonly log: Logger,
  ) {}

  /** Registers the handlers; call before the household starts. */
  install(): void {
    const h = this.household;
    h.handle('offers', async (req) => ({ header: { volumes: this.offersTo(req.peer) } }));
    h.handle('index', async (req) => {
      const volume = String(req.header.volume);
      if (!this.sharedWith(volume, req.peer)) throw Object.assign(new Error(`volume ${volume} is not shared with this peer`), { code: 'EACCES' });
      const after = Number(req.header.after ?? 0);
      const limit = Math.min(INDEX_PAGE_LIMIT, Math.max(1, Number(req.header.limit ?? INDEX_PAGE_LIMIT)));
      return { header: toWire(await this.store.meta.changesSince(volume, after, limit)) };
    });
    h.onNotify('offers', (n) => {
      this.offered.set(n.peer, (n.header.volumes as OfferedVolume[] | undefined) ?? []);
      this.log.info({ peer: shortPeerId(n.peer), volumes: this.offered.get(n.peer)!.map((v) => v.name) }, 'a peer\'s offers changed');
    });
    h.on('connected', (id, session) => void this.askOffers(id, session));
    h.on('disconnected', (id) => this.offered.delete(id));
    h.on('reloaded', (file) => this.sharesChanged(file));
  }

  /** Every connected peer's offers. */
  offers(): Array<{ peer: PeerId; volumes: OfferedVolume[] }> {
    return [...this.offered].map(([peer, volumes]) => ({ peer, volumes }));
  }

  private sharedWith(volume: string, peer: PeerId): boolean {
    return this.shares[volume]?.includes(peer) ?? false;
  }

  private offersTo(peer: PeerId): OfferedVolume[] {
    return Object.keys(this.shares).filter((v) => this.sharedWith(v, peer)).sort().map((name) => ({ name }));
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
      const was = Object.keys(before).filter((v) => before[v]!.includes(id)).sort().join('\n');
      const now = this.offersTo(id);
      if (was === now.map((v) => v.name).join('\n')) continue;
      this.household.session(id)?.notify('offers', { volumes: now });
    }
  }
}

function toWire(c: VolumeChanges): WireChanges {
  return {
    ...c,
    inodes: c.inodes.map(({ xattrs, ...rest }) => (xattrs ? { ...rest, xattrs: xattrs.map(([n, v]): [string, string] => [n, v.toString('base64')]) } : rest)),
  };
}
