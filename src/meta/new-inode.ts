// What a new name's inode looks like, from its directory and its caller: the rule every engine
// applies when it creates one, and what a client that answers a create before the engine has
// made it (client.ts) tells the kernel. One function for both, so that the two never differ.
import { FileType, MetaError, NAME_MAX, type Caller, type InodeAttr, type Ino, type NewNode, type Time } from './contract.js';

const S_ISGID = 0o2000;

/** Why a new name cannot be made (EINVAL, ENAMETOOLONG), or undefined when it can. */
export function nameError(name: string): MetaError | undefined {
  if (name === '' || name === '.' || name === '..' || name.includes('/')) return new MetaError('EINVAL', `bad name ${JSON.stringify(name)}`);
  if (Buffer.byteLength(name) > NAME_MAX) return new MetaError('ENAMETOOLONG');
  return undefined;
}

/** The directory's bits the rule reads. */
export interface ParentBits {
  mode: number;
  gid: number;
}

/** The attributes of inode `ino` made in `dir` at `t`. */
export function newInodeAttr(dir: ParentBits, node: NewNode, caller: Caller, ino: Ino, t: Time): InodeAttr {
  const directory = node.type === FileType.Directory;
  // BSD group semantics under a set-group-ID directory; new directories inherit the bit.
  const inherit = (dir.mode & S_ISGID) !== 0;
  const perm = inherit && directory ? node.perm | S_ISGID : node.perm;
  return {
    ino,
    mode: node.type | (perm & 0o7777),
    nlink: directory ? 2 : 1,
    uid: caller.uid,
    gid: inherit ? dir.gid : caller.gid,
    rdev: node.rdev ?? 0,
    size: node.target === undefined ? 0 : Buffer.byteLength(node.target),
    atime: t,
    mtime: t,
    ctime: t,
    generation: 0,
  };
}

/** The directory's attributes once `node` is made in it at `t`: modified and changed then, with
 * one more link for a new subdirectory's "..". */
export function dirAfterCreate(dir: InodeAttr, node: NewNode, t: Time): InodeAttr {
  return { ...dir, nlink: dir.nlink + (node.type === FileType.Directory ? 1 : 0), mtime: t, ctime: t };
}

/** Now, as engines stamp times: milliseconds (Date.now), in a Time. */
export function clockTime(): Time {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1_000_000 };
}
