// A directory listing with attributes as it crosses from the engine's thread to the host: one
// Float64Array of numbers, the names in one string, and the few extended attributes there are.
// Cloned between threads, a page of entries as objects (each with its attributes and three times)
// costs some 8 µs an entry on each side, most of a cold readdirplus; packed, well under 1 µs.
import type { DirEntry, Ino } from '../contract.js';

/** An entry as the engine lists it (and as its query reads it, a row as an array): the cookie,
 * type, ino, mode, nlink, uid, gid, rdev, size, the three times (seconds, nanoseconds), the name. */
export type ListedRow = [number, number, Ino, number, number, number, number, number, number, number, number, number, number, number, number, string];

/** The numbers of a ListedRow: all but the name. */
const FIELDS = 15;

export interface PackedListing {
  numbers: Float64Array;
  /** The entries' names joined by "/" (which no name holds). */
  names: string;
  /** The extended attributes of the entries' inodes: inode, name, value. */
  xattrs: Array<[Ino, string, Uint8Array]>;
}

export function packListing(rows: readonly ListedRow[], xattrs: PackedListing['xattrs']): PackedListing {
  const numbers = new Float64Array(rows.length * FIELDS);
  const names: string[] = [];
  rows.forEach((r, i) => {
    for (let k = 0; k < FIELDS; k++) numbers[i * FIELDS + k] = r[k] as number;
    names.push(r[FIELDS]);
  });
  return { numbers, names: names.join('/'), xattrs };
}

export function unpackListing(p: PackedListing): DirEntry[] {
  const n = p.numbers.length / FIELDS;
  if (n === 0) return [];
  const names = p.names.split('/');
  const out: DirEntry[] = new Array<DirEntry>(n);
  const v = p.numbers;
  for (let i = 0, o = 0; i < n; i++, o += FIELDS) {
    const ino: Ino = v[o + 2]!;
    out[i] = {
      name: names[i]!, ino, type: v[o + 1]!, cookie: v[o]!,
      attr: {
        ino, mode: v[o + 3]!, nlink: v[o + 4]!, uid: v[o + 5]!, gid: v[o + 6]!, rdev: v[o + 7]!, size: v[o + 8]!,
        atime: { sec: v[o + 9]!, nsec: v[o + 10]! }, mtime: { sec: v[o + 11]!, nsec: v[o + 12]! }, ctime: { sec: v[o + 13]!, nsec: v[o + 14]! },
        generation: 0, // inode numbers are never reused
      },
      xattrs: [],
    };
  }
  if (p.xattrs.length > 0) {
    // An inode may be listed twice ("." and ".." of the root are one).
    for (const [ino, name, value] of p.xattrs) for (const e of out) if (e.ino === ino) e.xattrs!.push([name, value]);
  }
  return out;
}
