// Checks a mountpoint before mounting so that each way it can be wrong gets one clear line, and
// cleans up a stale FUSE mount (its filesystem process died) instead of failing obscurely.
import { access, readdir, readFile, stat, statfs } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log.js';
import { MountError } from './errors.js';
import { loadBinding } from './native.js';

export interface MountInfo {
  mountpoint: string;
  fsType: string;
  source: string;
}

/** Mounts of this mount namespace at `mountpoint` (an absolute path), newest last. */
export async function mountsAt(mountpoint: string): Promise<MountInfo[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  const found: MountInfo[] = [];
  for (const line of table.split('\n')) {
    // id parent major:minor root mountpoint options [optional...] - fstype source superoptions
    const fields = line.split(' ');
    if (fields.length < 10) continue;
    const dash = fields.indexOf('-', 6);
    if (dash < 0) continue;
    const point = unescapeMountinfo(fields[4] ?? '');
    if (point === mountpoint) {
      found.push({ mountpoint: point, fsType: fields[dash + 1] ?? '', source: unescapeMountinfo(fields[dash + 2] ?? '') });
    }
  }
  return found;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Validates `mountpoint` for a new mount and returns its absolute path. */
export async function prepareMountpoint(mountpoint: string, nonEmpty: boolean, log: Logger): Promise<string> {
  const target = path.resolve(mountpoint);
  try {
    await access('/dev/fuse', constants.R_OK | constants.W_OK);
  } catch {
    throw new MountError('/dev/fuse is missing or not accessible: load the fuse module (modprobe fuse) or run where FUSE is available');
  }
  try {
    // statfs, not stat: the kernel may answer a stat of a dead FUSE mount from its attribute
    // cache for a while, but always asks the filesystem for statfs.
    await statfs(target);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new MountError(`mountpoint ${target} does not exist`);
    if (code !== 'ENOTCONN') throw new MountError(`mountpoint ${target}: ${(err as Error).message}`);
    // "Transport endpoint is not connected": a FUSE filesystem here died without unmounting.
    log.warn({ mountpoint: target }, 'stale FUSE mount found (its process is gone); detaching it');
    try {
      await loadBinding().native.unmount(target, true);
    } catch (unmountErr) {
      throw new MountError(`mountpoint ${target} is a stale FUSE mount and cannot be detached: ${(unmountErr as Error).message}`);
    }
  }
  const info = await stat(target);
  if (!info.isDirectory()) throw new MountError(`mountpoint ${target} is not a directory`);
  const mounts = await mountsAt(target);
  const top = mounts.at(-1);
  if (top && top.fsType.startsWith('fuse')) {
    throw new MountError(`mountpoint ${target} is already mounted (${top.fsType} from ${top.source})`);
  }
  if (!nonEmpty && (await readdir(target)).length > 0) {
    throw new MountError(`mountpoint ${target} is not empty`);
  }
  return target;
}

/** Unmounts the FUSE filesystem at `mountpoint` (lazily: even with files open). */
export async function unmountPath(mountpoint: string, lazy = false): Promise<void> {
  const target = path.resolve(mountpoint);
  const top = (await mountsAt(target)).at(-1);
  if (!top || !top.fsType.startsWith('fuse')) throw new MountError(`${target} is not a mounted Orbit filesystem`);
  try {
    await loadBinding().native.unmount(target, lazy);
  } catch (err) {
    const busy = (err as { errno?: number }).errno === 16; // EBUSY
    throw new MountError(busy ? `${target} is busy (files are open); try --lazy` : (err as Error).message);
  }
}
