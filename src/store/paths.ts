// Naming a file of a store from the command line: "VOLUME:/a/b", or a path inside a volume
// mounted from the store (found through the registry of mounts), walked name by name in the
// metadata: no request goes through the mount.
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { Ino } from '../meta/contract.js';
import { StoreError, type Store } from './store.js';

export interface StorePath {
  volume: string;
  ino: Ino;
  /** "volume:/a/b". */
  display: string;
}

const VOLUME_PATH = /^([^/:]+):(\/.*)?$/;

export async function resolveStorePath(store: Store, target: string): Promise<StorePath> {
  const volumes = await store.meta.volumes();
  const named = VOLUME_PATH.exec(target);
  let volume: string;
  let rel: string;
  if (named && volumes.some((v) => v.name === named[1])) {
    volume = named[1]!;
    rel = named[2] ?? '/';
  } else {
    const abs = await realpath(target).catch(() => path.resolve(target));
    const mount = (await store.mounts())
      .filter((m) => abs === m.mountpoint || abs.startsWith(m.mountpoint.endsWith('/') ? m.mountpoint : `${m.mountpoint}/`))
      .sort((a, b) => b.mountpoint.length - a.mountpoint.length)[0];
    if (!mount) throw new StoreError(`${target} is not in a volume of the store at ${store.home} mounted here; name it as VOLUME:/path`);
    volume = mount.volume;
    rel = '/' + path.relative(mount.mountpoint, abs);
  }
  const info = volumes.find((v) => v.name === volume);
  if (!info) throw new StoreError(`no volume ${volume} in the store at ${store.home}`);
  let ino = info.root;
  const names = rel.split('/').filter((n) => n !== '' && n !== '.');
  for (const name of names) {
    try {
      ino = (await store.meta.lookup(ino, name)).ino;
    } catch {
      throw new StoreError(`${volume}:${rel}: no such file or directory`);
    }
  }
  return { volume, ino, display: `${volume}:/${names.join('/')}` };
}
