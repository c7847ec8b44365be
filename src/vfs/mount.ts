// Mounting a volume of a store: the FUSE session for it, its entry in the store's registry of
// mounts, and an orderly end: on unmount or SIGINT/SIGTERM, the session ends, the store is synced
// and the entry removed, and the process then ends as a process with nothing left to do.
import { FuseSession } from '../fuse/session.js';
import { JOB_HANDLERS } from '../jobs/handlers.js';
import { JobRunner } from '../jobs/runner.js';
import { componentLogger } from '../log.js';
import { Heat } from '../pool/heat.js';
import { StoreError, type Store } from '../store/store.js';
import { TierMover } from '../store/tier-mover.js';
import { VolumeFs } from './volume-fs.js';

/** How often the heat of chunks read is saved (a crash loses at most this much of it). */
const HEAT_SAVE_MS = 60_000;

export interface VolumeMountOptions {
  volume: string;
  mountpoint: string;
  allowOther?: boolean;
  debug?: boolean;
}

export interface MountedVolume {
  readonly mountpoint: string;
  /** Settles once the volume is unmounted (by us, by umount, or on a signal) and synced. */
  readonly closed: Promise<void>;
  unmount(opts?: { lazy?: boolean }): Promise<void>;
}

export async function mountVolume(store: Store, opts: VolumeMountOptions): Promise<MountedVolume> {
  const volume = (await store.meta.volumes()).find((v) => v.name === opts.volume);
  if (!volume) throw new StoreError(`no volume ${opts.volume} in the store at ${store.home}`);
  const log = componentLogger('vfs').child({ volume: opts.volume });
  await store.claimMount(opts.volume, opts.mountpoint);
  // Nobody else serves the volume now: holds left by a crashed process can go.
  const recovered = await store.meta.recoverVolume(opts.volume);
  if (recovered > 0) log.info({ inodes: recovered }, 'removed files unlinked while open before a crash');
  const fs = new VolumeFs(store, opts.volume, volume.root, log);
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
      // The session would unmount and die of the signal; a volume must also sync: see below.
      handleSignals: false,
      // A volume attached from a peer is the peer's to change: the kernel refuses writes (EROFS).
      mountOptions: volume.origin ? ['ro'] : [],
    },
    componentLogger('fuse').child({ volume: opts.volume }),
  );
  try {
    await session.mount(opts.mountpoint);
  } catch (err) {
    await store.releaseMount(opts.volume);
    throw err;
  }
  // Jobs of the store (changes of policy, scrubs) run here while it is mounted: one process of
  // the store at a time runs them, and another takes over when it goes.
  const runner = new JobRunner(store, JOB_HANDLERS, componentLogger('jobs'));
  runner.start();
  // Reads of this volume count towards chunks' heat (orbit tier list).
  const heat = store.chunks.heat ?? Heat.open(store.home, { windowMs: store.chunks.heatWindowMs, log: componentLogger('heat') });
  if (!store.chunks.heat) {
    store.chunks.heat = heat;
    heat.startSaving(HEAT_SAVE_MS);
  }
  // With tiering on, chunks read while hot move to its hot policy (while this runs the jobs).
  const mover = new TierMover(store, () => runner.holding, componentLogger('tiering'));
  mover.attach();
  const onSignal = (): void => {
    log.info('signal: unmounting');
    session.unmount().catch(() => session.unmount({ lazy: true })).catch((err: unknown) => log.error({ err }, 'cannot unmount'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const closed = session.closed.then(async () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    try {
      await mover.close();
      await runner.stop();
      await heat.close().catch((err: unknown) => log.warn({ err }, 'cannot save the heat of chunks'));
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
    closed,
    unmount: async (o = {}) => {
      await session.unmount(o);
      if (!o.lazy) await closed;
    },
  };
}
