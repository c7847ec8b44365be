// Redundancy policies of files. A file's policy is its user.orbit.policy extended attribute, set
// on it or taken at creation from its directory (the meta layer copies it to what is made in a
// directory: INHERITED_XATTRS); a volume's policy is its root directory's. A file without one has
// the pool's default, or with tiering on, the policy of the chunk's heat (store/tiering.ts). A
// chunk is stored once however many files hold it, so it keeps the strongest policy any of them
// asks for.
import { MetaError, type Ino, type MetaEngine } from '../meta/contract.js';
import type { ChunkId } from '../pool/contract.js';
import type { Heat } from '../pool/heat.js';
import type { Pool } from '../pool/pool.js';
import { parsePolicy, strongerPolicy, type Policy } from '../pool/policy.js';
import { tieredPolicy } from '../pool/tiering.js';

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

/** The policy a chunk must be stored under: the strongest its files ask for. Files without a
 * policy ask for the pool's default, or with tiering, for the policy of the chunk's class in
 * `heat` (without `heat`, for the one it has). `stored`: the policy it is stored under, when the
 * caller has looked already (tiering needs it; read from the disks otherwise). */
export async function chunkPolicy(meta: MetaEngine, pool: Pool, id: ChunkId, heat?: Heat, stored?: Policy): Promise<Policy> {
  const asked = await meta.xattrOfFilesUsing(id, POLICY_XATTR);
  const tiering = pool.tiering;
  let unset: Policy | undefined;
  let target: Policy | undefined;
  for (const value of asked) {
    // A value set before values were checked (or by hand in the database) counts as none.
    const p = (value === null ? undefined : parsedOrUndefined(value)) ??
      (unset ??= tiering ? tieredPolicy(tiering, heat?.classify(id), stored ?? (await pool.policyOf(id))) : pool.policy);
    target = target === undefined ? p : strongerPolicy(target, p);
  }
  return target ?? pool.policy;
}

function parsedOrUndefined(value: Buffer): Policy | undefined {
  try {
    return parsePolicy(value.toString('utf8'));
  } catch {
    return undefined;
  }
}
