// Mounting a volume of a store: the FUSE session for it, its entry in the store's registry of
// mounts, and an orderly end: on unmount (or SIGINT/SIGTERM, when the mount is the process's
// only work), the session ends, the store is synced and the entry removed.
//
// A process that serves mounts also runs the store's background services (StoreServices): the
// job runner, the heat of chunks read, the tier mover, the collection of unreferenced chunks.
// `orbit mount` starts them for its one mount; the daemon starts them once for all it serves.
import { FuseSession } from '../fuse/session.js';
import { JOB_HANDLERS } from '../jobs/handlers.js';
import { JobRunner } from '../jobs/runner.js';
import { componentLogger } from '../log.js';
import { Heat } from '../pool/heat.js';
import { BackgroundGc } from '../store/gc.js';
import { StoreError, type Store } from '../store/store.js';
import { TierMover } from '../store/tier-mover.js';
import type { ChunkSource } from '../content/chunk-source.js';
import { ORBIT_XATTRS, type Ino } from '../meta/contract.js';
import { VolumeFs, XATTR_NAMESPACES } from './volume-fs.js';

/** How often the heat of chunks read is saved (a crash loses at most this much of it). */
const HEAT_SAVE_MS = 60_000;

export interface VolumeMountOptions {
  volume: string;
  mountpoint: string;
  allowOther?: boolean;
  debug?: boolean;
  /** The store's services when the process runs them for more than this mount (the daemon);
   * else the mount starts its own, stops them when it ends, and unmounts on SIGINT/SIGTERM. */
  services?: StoreServices;
  /** How the mount's own services run (when it starts them). */
  serviceOptions?: StoreServicesOptions;
  /** Where the volume's content comes from (default: the pool). */
  source?: ChunkSource;
  /** Told when a file of an attached volume is made Real or Unreal through the mount. */
  onRealChanged?: () => void;
}

export interface MountedVolume {
  readonly mountpoint: string;
  readonly volume: string;
  /** Settles once the volume is unmounted (by us, by umount, or on a signal) and synced. */
  readonly closed: Promise<void>;
  unmount(opts?: { lazy?: boolean }): Promise<void>;
  /** Drops what the kernel caches of these inodes (attributes, pages): they changed under it. */
  invalidate(inos: readonly Ino[]): Promise<void>;
}

/** What runs beside the mounts of a store in the process serving them. */
export interface StoreServices {
  readonly runner: JobRunner;
  close(): Promise<void>;
}

export interface StoreServicesOptions {
  /** How often unreferenced chunks are collected (default: gc.ts's COLLECT_EVERY_MS). */
  collectEveryMs?: number;
}

/** Starts the store's job runner, the heat of reads, the tier mover and the background gc in
 * this process. */
export function startStoreServices(store: Store, opts: StoreServicesOptions = {}): StoreServices {
  // Jobs of the store (changes of policy, scrubs) run here: one process of the store at a time
  // runs them, and another takes over when it goes.
  const runner = new JobRunner(store, JOB_HANDLERS, componentLogger('jobs'));
  runner.start();
  // Reads count towards chunks' heat (orbit tier list).
  const heat = store.chunks.heat ?? Heat.open(store.home, { windowMs: store.chunks.heatWindowMs, log: componentLogger('heat') });
  const ownHeat = !store.chunks.heat;
  if (ownHeat) {
    store.chunks.heat = heat;
    heat.startSaving(HEAT_SAVE_MS);
  }
  // With tiering on, chunks read while hot move to its hot policy (while this runs the jobs).
  const mover = new TierMover(store, () => runner.holding, componentLogger('tiering'));
  mover.attach();
  // Chunks that deletes and overwrites leave are collected while this runs the jobs.
  const gc = new BackgroundGc(store, () => runner.holding, componentLogger('gc'), opts.collectEveryMs);
  gc.start();
  return {
    runner,
    async close() {
      await gc.close();
      await mover.close();
      await runner.stop();
      if (ownHeat) await heat.close().catch((err: unknown) => componentLogger('heat').warn({ err }, 'cannot save the heat of chunks'));
    },
  };
}

export async function mountVolume(store: Store, opts: VolumeMountOptions): Promise<MountedVolume> {
  const volume = (await store.meta.volumes()).find((v) => v.name === opts.volume);
  if (!volume) throw new StoreError(`no volume ${opts.volume} in the store at ${store.home}`);
  const log = componentLogger('vfs').child({ volume: opts.volume });
  await store.claimMount(opts.volume, opts.mountpoint);
  // Nobody else serves the volume now: holds left by a crashed process can go.
  const recovered = await store.meta.recoverVolume(opts.volume);
  if (recovered > 0) log.info({ inodes: recovered }, 'removed files unlinked while open before a crash');
  const fs = new VolumeFs(store, opts.volume, volume.root, log, opts.source, volume.origin ? { onRealChanged: opts.onRealChanged ?? (() => undefined) } : undefined);
  const session = new FuseSession(
    fs,
    {
      fsName: `orbit:${opts.volume}`,
      subtype: 'orbit',
      defaultPermissions: true,
      allowOther: opts.allowOther ?? false,
      debug: opts.debug ?? false,
      // Orbit serves its own caches; the kernel's entry and attribute caches save round trips.
      entryTimeout: 1,
      attrTimeout: 1,
      // Orbit's own attributes (a file's pin, say) are answered by VolumeFs whatever is stored.
      computedXattrs: ORBIT_XATTRS,
      xattrNamespaces: XATTR_NAMESPACES,
      // A flush commits the file's dirty writes (VolumeFs.flush); a handle that wrote nothing
      // has none of its own to wait for (another handle's are committed at its own close).
      flushWrittenOnly: true,
      // The session would unmount and die of the signal; a volume must also sync: see below.
      handleSignals: false,
      // A volume attached from a peer is the peer's to change: VolumeFs refuses writes (EROFS),
      // all but the user.orbit.pin attribute (which a read-only mount would refuse too).
    },
    componentLogger('fuse').child({ volume: opts.volume }),
  );
  try {
    await session.mount(opts.mountpoint);
  } catch (err) {
    await store.releaseMount(opts.volume);
    throw err;
  }
  // A create answered before the engine made it, and then failed there (a full disk): the kernel
  // forgets the name and the directory's attributes (a mount of another volume is told too, and
  // finds nothing of it to drop).
  const stopLost = store.meta.onLostCreate(({ parent, name }) => {
    const dir = fs.toFuse(parent);
    Promise.all([session.notifyInvalEntry(dir, name), session.notifyInvalInode(dir)]).catch((err: unknown) => log.warn({ err }, 'cannot drop a lost create from the kernel\'s caches'));
  });
  const ownServices = opts.services ? undefined : startStoreServices(store, opts.serviceOptions);
  const onSignal = (): void => {
    log.info('signal: unmounting');
    session.unmount().catch(() => session.unmount({ lazy: true })).catch((err: unknown) => log.error({ err }, 'cannot unmount'));
  };
  if (ownServices) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  const closed = session.closed.then(async () => {
    stopLost();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    try {
      await ownServices?.close();
      await store.sync();
    } catch (err) {
      // A full disk, say: what was synced before stands, and the next mount recovers the rest.
      log.error({ err }, 'cannot sync the store after unmounting');
    } finally {
      await store.releaseMount(opts.volume);
    }
  });
  return {
    mountpoint: session.mountpoint ?? opts.mountpoint,
    volume: opts.volume,
    closed,
    invalidate: async (inos) => {
      for (const ino of inos) {
        // An inode the kernel never looked up is nothing to drop (ENOENT): not an error.
        session.xattrsChanged(fs.toFuse(ino));
        await session.notifyInvalInode(fs.toFuse(ino)).catch(() => undefined);
      }
    },
    unmount: async (o = {}) => {
      await session.unmount(o);
      if (!o.lazy) await closed;
    },
  };
}
