// Mounts a volume of a fresh store in the test process; remounting reopens the store from disk.
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Store } from '../../src/store/store.js';
import { mountVolume, type MountedVolume, type VolumeMountOptions } from '../../src/vfs/mount.js';
import { tempDir } from '../helpers.js';

export interface MountedStore {
  home: string;
  dir: string;
  store: Store;
  mounted: MountedVolume;
  /** Unmounts and closes the store, then opens it again and mounts: what a restart does. */
  remount: () => Promise<void>;
  close: () => Promise<void>;
}

/** `opts`: more of mountVolume's options (the store's services, say). */
export async function mountFreshStore(opts: Pick<VolumeMountOptions, 'serviceOptions'> = {}): Promise<MountedStore> {
  const tmp = await tempDir('vfs');
  await chmod(tmp.dir, 0o755);
  const home = path.join(tmp.dir, 'home');
  const dir = path.join(tmp.dir, 'mnt');
  await mkdir(dir);
  const m: MountedStore = {
    home,
    dir,
    store: (await Store.init(home)).store,
    mounted: undefined as unknown as MountedVolume,
    remount: async () => {
      await m.mounted.unmount();
      await m.store.close();
      m.store = await Store.open(home);
      m.mounted = await mountVolume(m.store, { ...opts, volume: 'default', mountpoint: dir, allowOther: true });
    },
    close: async () => {
      await m.mounted.unmount().catch(() => m.mounted.unmount({ lazy: true }));
      await m.store.close();
      await tmp.remove();
    },
  };
  m.mounted = await mountVolume(m.store, { ...opts, volume: 'default', mountpoint: dir, allowOther: true });
  return m;
}
