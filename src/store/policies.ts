// Redundancy policies of files. A file's policy is its user.orbit.policy extended attribute, set
// on it or taken at creation from its directory (the meta layer copies it to what is made in a
// directory: INHERITED_XATTRS); a volume's policy is its root directory's. A file without one has
// the pool's default. A chunk is stored once however many files hold it, so it keeps the
// strongest policy any of them asks for.
import { MetaError, type Ino, type MetaEngine } from '../meta/contract.js';
import type { ChunkId } from '../pool/contract.js';
import type { Pool } from '../pool/pool.js';
import { parsePolicy, strongerPolicy, type Policy } from '../pool/policy.js';

export const POLICY_XATTR = 'user.orbit.policy';

/** The policy set on the inode (or inherited when it was made); undefined: none. */
export async function ownPolicy(meta: MetaEngine, ino: Ino): Promise<Policy | undefined> {
  try {
    return parsePolicy((await meta.getxattr(ino, POLICY_XATTR)).toString('utf8'));
  } catch (err) {
    if (err instanceof MetaError && err.code === 'ENODATA') return undefined;
    throw err;
  }
}

/** The policy a chunk must be stored under: the strongest its files ask for (files without a
 * policy ask for the pool's default). */
export async function chunkPolicy(meta: MetaEngine, pool: Pool, id: ChunkId): Promise<Policy> {
  const asked = await meta.xattrOfFilesUsing(id, POLICY_XATTR);
  let target: Policy | undefined;
  for (const value of asked) {
    let p = pool.policy;
    if (value !== null) {
      try {
        p = parsePolicy(value.toString('utf8'));
      } catch {
        // A value set before it was checked (or by hand in the database): the default holds.
      }
    }
    target = target === undefined ? p : strongerPolicy(target, p);
  }
  return target ?? pool.policy;
}
