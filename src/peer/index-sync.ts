// The index of an attached volume: this store's copy of a peer's file list (paths, sizes, modes,
// times, content maps), kept in its own metadata so that lookups, stats and listings never wait
// on the network. While the peer is connected, the index follows its changes: the peer says when
// something changed ('index.changed', once its writes have paused), and this store asks for the
// pages of changes after the number its copy is complete up to, applying each in one
// transaction. Disconnected, the last copy serves as it is.
import type { Logger } from '../log.js';
import type { Caller, Ino, VolumeInfo } from '../meta/contract.js';
import type { Store } from '../store/store.js';
import type { Household } from './household.js';
import { shortPeerId, type PeerId } from './peer-id.js';
import { fromWire, type WireChanges } from './sharing.js';

/** Inodes asked for per page. */
const PAGE = 2000;


export class IndexSync {
  /** Syncs under way by local volume name, and whether another was asked meanwhile. */
  private readonly syncing = new Map<string, { done: Promise<void>; again: boolean }>();

  constructor(
    private readonly household: Household,
    private readonly store: Store,
    private readonly log: Logger,
    /** Told the inodes of a volume each page changed or removed (a mount drops the kernel's caches of them). */
    private readonly onApplied: (volume: string, inos: Ino[]) => void = () => undefined,
  ) {}

  /** Follows peers' changes; call before the household starts. */
  install(): void {
    // sync() has logged what failed; an event has nobody to tell.
    this.household.on('connected', (id) => void this.syncFrom(id).catch(() => undefined));
    this.household.onNotify('index.changed', (n) => void this.syncFrom(n.peer).catch(() => undefined));
  }

  /** Makes `name` a local volume attached from the peer's `volume`, with its whole index. */
  async attach(peer: PeerId, volume: string, name: string, owner: Caller): Promise<VolumeInfo> {
    const attached = await this.store.meta.attachVolume(name, owner, { peer, volume });
    await this.sync(name);
    return attached;
  }

  /** Brings every volume attached from `peer` up to date. */
  async syncFrom(peer: PeerId): Promise<void> {
    const volumes = (await this.store.meta.volumes()).filter((v) => v.origin?.peer === peer);
    await Promise.all(volumes.map((v) => this.sync(v.name)));
  }

  /** Brings one attached volume up to date; one sync at a time per volume, and one more after it
   * when asked meanwhile (a change it may have missed). */
  sync(name: string): Promise<void> {
    const running = this.syncing.get(name);
    if (running) {
      running.again = true;
      return running.done;
    }
    const entry = { done: Promise.resolve(), again: false };
    entry.done = (async () => {
      try {
        do {
          entry.again = false;
          await this.pull(name);
        } while (entry.again);
      } catch (err) {
        this.log.warn({ volume: name, err }, 'cannot bring the index of an attached volume up to date');
        throw err;
      } finally {
        this.syncing.delete(name);
      }
    })();
    this.syncing.set(name, entry);
    return entry.done;
  }

  private async pull(name: string): Promise<void> {
    const v = (await this.store.meta.volumes()).find((x) => x.name === name);
    if (!v?.origin) throw new Error(`volume ${name} is not attached from a peer`);
    const session = this.household.session(v.origin.peer);
    if (!session) throw new Error(`peer ${shortPeerId(v.origin.peer)} is not connected: the index of ${name} stays as it was`);
    let after = v.origin.syncedTo;
    let applied = 0;
    for (;;) {
      const reply = await session.request('index', { volume: v.origin.volume, after, limit: PAGE });
      const page = fromWire(JSON.parse(reply.body.toString('utf8')) as WireChanges);
      const touched = await this.store.meta.applyChanges(name, page);
      if (touched.length > 0) this.onApplied(name, touched);
      applied += page.inodes.length + page.removed.length;
      after = page.upTo;
      if (!page.more) break;
    }
    if (applied > 0) this.log.info({ volume: name, peer: shortPeerId(v.origin.peer), inodes: applied, upTo: after }, 'index of an attached volume updated');
  }
}
