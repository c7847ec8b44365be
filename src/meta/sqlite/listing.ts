// A directory listing with attributes as it crosses from the engine's thread to the host: one
// Float64Array of numbers, the names in one string, and the few extended attributes there are.
// Cloned between threads, a page of entries as objects (each with its attributes and three times)
// costs some 8 µs an entry on each side, most of a cold readdirplus; packed, well under 1 µs.
import type { DirEntry, Ino } from '../contract.js';

/** Numbers per entry: ino, type, cookie, then mode, nlink, uid, gid, rdev, size, the three times
 * (seconds, nanoseconds) and the generation. */
const FIELDS = 16;

export interface PackedListing {
  numbers: Float64Array;
  /** The entries' names joined by "/" (which no name holds). */
  names: string;
  /** The extended attributes of the entries that have any: entry index, name, value. */
  xattrs: Array<[number, string, Uint8Array]>;
}

export function packListing(entries: readonly DirEntry[]): PackedListing {
  const numbers = new Float64Array(entries.length * FIELDS);
  const xattrs: PackedListing['xattrs'] = [];
  entries.forEach((e, i) => {
    const a = e.attr;
    if (!a) throw new Error('packListing: entries must come with attributes');
    numbers.set([e.ino, e.type, e.cookie, a.mode, a.nlink, a.uid, a.gid, a.rdev, a.size,
      a.atime.sec, a.atime.nsec, a.mtime.sec, a.mtime.nsec, a.ctime.sec, a.ctime.nsec, a.generation], i * FIELDS);
    for (const [name, value] of e.xattrs ?? []) xattrs.push([i, name, value]);
  });
  return { numbers, names: entries.map((e) => e.name).join('/'), xattrs };
}

export function unpackListing(p: PackedListing): DirEntry[] {
  const n = p.numbers.length / FIELDS;
  if (n === 0) return [];
  const names = p.names.split('/');
  const out: DirEntry[] = new Array<DirEntry>(n);
  const v = p.numbers;
  for (let i = 0, o = 0; i < n; i++, o += FIELDS) {
    const ino: Ino = v[o]!;
    out[i] = {
      name: names[i]!, ino, type: v[o + 1]!, cookie: v[o + 2]!,
      attr: {
        ino, mode: v[o + 3]!, nlink: v[o + 4]!, uid: v[o + 5]!, gid: v[o + 6]!, rdev: v[o + 7]!, size: v[o + 8]!,
        atime: { sec: v[o + 9]!, nsec: v[o + 10]! }, mtime: { sec: v[o + 11]!, nsec: v[o + 12]! }, ctime: { sec: v[o + 13]!, nsec: v[o + 14]! },
        generation: v[o + 15]!,
      },
      xattrs: [],
    };
  }
  for (const [i, name, value] of p.xattrs) out[i]!.xattrs!.push([name, value]);
  return out;
}
