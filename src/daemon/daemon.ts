// The daemon: the one long-running process of a store (`orbit up`). It holds the store open,
// keeps the household connected (peer/household.ts), serves the store's mounts (`orbit mount`
// asks it to while it runs; a volume attached from a peer is mounted only here, where its chunks
// can be fetched), runs the store's jobs, and answers commands on its control socket
// (control.ts). <home>/run/daemon.json says which process it is and where it listens.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { componentLogger, type Logger } from '../log.js';
import { ChunkFetcher } from '../peer/chunk-fetcher.js';
import { RealFiles } from '../peer/real-files.js';
import { RemoteChunks } from '../peer/remote-chunks.js';
import { RemoteCache } from '../pool/remote-cache.js';
import { mountVolume, startStoreServices, type MountedVolume, type StoreServices } from '../vfs/mount.js';
import { loadOrCreateIdentity } from '../peer/identity.js';
import type { PeerId } from '../peer/peer-id.js';
import { Household } from '../peer/household.js';
import { IndexSync } from '../peer/index-sync.js';
import { findPeer, readPeers } from '../peer/peers.js';
import { Sharing } from '../peer/sharing.js';
import { isAlive } from '../processes.js';
import type { Store } from '../store/store.js';
import { serveControl, type ControlServer } from './control.js';

export const SOFTWARE = 'orbit/0.1';

/** <home>/run/daemon.json. */
export interface DaemonRecord {
  pid: number;
  peerId: PeerId;
  /** Where it listens for peers: HOST:PORT; absent when deaf. */
  listen?: string;
  since: string;
}

export interface DaemonOptions {
  listen?: { host: string; port: number };
  /** The bound of the cache of chunks fetched from peers (default DEFAULT_CACHE_BYTES). */
  cacheBytes?: number;
  /** How long a read may wait for a chunk from peers before it fails with EIO (default DEFAULT_FETCH_TIMEOUT_MS). */
  fetchTimeoutMs?: number;
}

export const DEFAULT_CACHE_BYTES = 4 * 1024 ** 3;
export const DEFAULT_FETCH_TIMEOUT_MS = 30_000;

/** What `orbit mount` asks of the daemon. */
export interface MountRequest {
  volume: string;
  mountpoint: string;
  allowOther?: boolean;
}

export class Daemon {
  private stopping: Promise<void> | undefined;
  private markStopped!: () => void;
  /** Settles once stop() has finished (asked by a signal, or by `orbit down`). */
  readonly stopped = new Promise<void>((resolve) => {
    this.markStopped = resolve;
  });

  /** The volumes this daemon has mounted, by volume name. */
  private readonly mounts = new Map<string, MountedVolume>();

  private constructor(
    readonly store: Store,
    readonly household: Household,
    private readonly sharing: Sharing,
    private readonly services: StoreServices,
    readonly cache: RemoteCache,
    readonly fetcher: ChunkFetcher,
    readonly real: RealFiles,
    private readonly control: ControlServer,
    readonly record: DaemonRecord,
    private readonly log: Logger,
  ) {}

  static async start(store: Store, options: DaemonOptions): Promise<Daemon> {
    const log = componentLogger('daemon');
    const identity = await loadOrCreateIdentity(store.home);
    const household = new Household(store.home, identity, componentLogger('peers'), { listen: options.listen, software: SOFTWARE });
    const cache = await RemoteCache.open({ dir: path.join(store.home, 'cache'), maxBytes: options.cacheBytes ?? DEFAULT_CACHE_BYTES, log: componentLogger('cache') });
    const fetcher = new ChunkFetcher(household, store.codec, cache, componentLogger('fetch'), { timeoutMs: options.fetchTimeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS });
    const sharing = new Sharing(household, store, componentLogger('sharing'), cache);
    sharing.install();
    const made: { daemon?: Daemon } = {};
    const real = new RealFiles(store, store.codec, cache, fetcher, (origin) => sharing.sourcesFor(origin), componentLogger('real'));
    const indexes = new IndexSync(household, store, componentLogger('index'), (volume, inos) => {
      const mounted = made.daemon?.mounts.get(volume);
      if (mounted) void mounted.invalidate(inos);
      // New files under a Real directory are Real too: fetch them.
      void real.kick();
    });
    indexes.install();
    // The control socket first: it refuses to start a second daemon for the store.
    // The handlers are in place before the daemon they answer for is made.
    const control = await serveControl(store.home, {
      status: async () => ({ header: { ...made.daemon?.record, peers: household.states() } }),
      peers: async () => {
        // With what each peer served this store: chunks fetched, and those that failed their check.
        const sources = fetcher.sourceStats();
        const peers = household.states().map((p) => {
          const s = sources.get(p.id);
          return s ? { ...p, chunksFetched: s.chunks, corruptChunks: s.corrupt } : p;
        });
        return { header: { peers } };
      },
      offers: async () => ({ header: { offers: sharing.offers() } }),
      attach: async (req) => {
        const peer = findPeer(await readPeers(store.home), String(req.header.peer));
        const volume = String(req.header.volume);
        const offered = sharing.offers().find((o) => o.peer === peer.id);
        if (!offered) throw Object.assign(new Error(`peer ${peer.name} is not connected: its offers are not known`), { code: 'EHOSTDOWN' });
        if (!offered.volumes.some((v) => v.name === volume)) throw Object.assign(new Error(`peer ${peer.name} does not offer a volume ${volume} to this store`), { code: 'ENOENT' });
        const name = String(req.header.name ?? volume);
        const owner = { uid: Number(req.header.uid ?? 0), gid: Number(req.header.gid ?? 0), umask: 0o022 };
        const attached = await indexes.attach(peer.id, volume, name, owner);
        const usage = await store.meta.usage(name);
        return { header: { name: attached.name, peer: peer.id, inodes: usage.inodes } };
      },
      mount: async (req) => {
        if (!made.daemon) throw Object.assign(new Error('the daemon is starting: try again'), { code: 'EAGAIN' });
        const mounted = await made.daemon.mount(req.header as unknown as MountRequest);
        return { header: { mountpoint: mounted.mountpoint } };
      },
      realness: async () => ({ header: { volumes: made.daemon ? await made.daemon.real.realness() : [] } }),
      'real.changed': async () => {
        void made.daemon?.real.kick();
        return { header: {} };
      },
      stop: async () => {
        setImmediate(() => void made.daemon?.stop());
        return { header: {} };
      },
    }, SOFTWARE, log);
    try {
      await household.start();
    } catch (err) {
      await control.close();
      await cache.close();
      throw err;
    }
    const address = household.address;
    const record: DaemonRecord = {
      pid: process.pid,
      peerId: identity.peerId,
      ...(address ? { listen: formatAddress(address) } : {}),
      since: new Date().toISOString(),
    };
    await writeFile(recordFile(store.home), JSON.stringify(record) + '\n');
    const services = startStoreServices(store);
    made.daemon = new Daemon(store, household, sharing, services, cache, fetcher, real, control, record, log);
    real.start();
    log.info({ peer: identity.peerId, listen: record.listen ?? 'deaf' }, 'daemon up');
    return made.daemon;
  }

  /** Stops serving: peers, commands and jobs; the store stays open for the caller to close. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('daemon stopping');
      // Every step is taken whatever fails before it; failures are logged, not thrown at a
      // signal handler that cannot act on them.
      const steps: Array<[string, () => unknown]> = [
        ['the control socket', () => this.control.close()],
        ['the mounts', () => this.unmountAll()],
        ['keeping Real files', () => this.real.stop()],
        ['sharing', () => this.sharing.stop()],
        ['the peers', () => this.household.stop()],
        ['the jobs', () => this.services.close()],
        ['the cache', () => this.cache.close()],
        ['the daemon record', () => rm(recordFile(this.store.home), { force: true })],
      ];
      for (const [what, step] of steps) {
        try {
          await step();
        } catch (err) {
          this.log.error({ err }, `stopping ${what} failed`);
        }
      }
    })().finally(() => this.markStopped());
    return this.stopping;
  }

  /** Mounts a volume of the store, served by this process until it is unmounted. */
  async mount(req: MountRequest): Promise<MountedVolume> {
    const volume = (await this.store.meta.volumes()).find((v) => v.name === req.volume);
    const origin = volume?.origin;
    const source = origin
      ? new RemoteChunks(this.store.chunks, this.store.codec, this.cache, this.fetcher, () => this.sharing.sourcesFor(origin), (id) => this.real.holds(id), componentLogger('fetch').child({ volume: req.volume }))
      : undefined;
    const mounted = await mountVolume(this.store, {
      volume: req.volume,
      mountpoint: path.resolve(req.mountpoint),
      allowOther: req.allowOther === true,
      services: this.services,
      ...(source ? { source } : {}),
      onRealChanged: () => void this.real.kick(),
    });
    this.mounts.set(req.volume, mounted);
    void mounted.closed.finally(() => {
      if (this.mounts.get(req.volume) === mounted) this.mounts.delete(req.volume);
    });
    this.log.info({ volume: req.volume, mountpoint: mounted.mountpoint }, 'volume mounted');
    return mounted;
  }

  private async unmountAll(): Promise<void> {
    await Promise.all([...this.mounts.values()].map(async (m) => {
      // Files still open: detach now; the kernel finishes when they close.
      await m.unmount().catch(() => m.unmount({ lazy: true }));
    }));
  }

}

function recordFile(home: string): string {
  return path.join(home, 'run', 'daemon.json');
}

/** The daemon serving the store now, if one does. */
export async function runningDaemon(home: string): Promise<DaemonRecord | undefined> {
  try {
    const rec = JSON.parse(await readFile(recordFile(home), 'utf8')) as DaemonRecord;
    return isAlive(rec.pid) ? rec : undefined;
  } catch {
    return undefined;
  }
}

export function formatAddress(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
