// Asking for a change of policy, from the command line or through the user.orbit.policy xattr:
// recorded in the audit log and queued as a re-encode job (reencode.ts), which sets the policy
// and brings the existing chunks to it in the background.
import type { Ino } from '../meta/contract.js';
import { formatPolicy } from '../pool/policy.js';
import { ownPolicy } from '../store/policies.js';
import type { Store } from '../store/store.js';
import type { Job } from './contract.js';
import { JobStore } from './job-store.js';

export interface PolicyTarget {
  volume: string;
  ino: Ino;
  /** As users name it: "volume:/a/b". */
  path: string;
}

/** `policy`: formatted (formatPolicy), or 'default' to drop the set policy. With `recursive`, a
 * directory's whole tree gets it; without, only the inode itself. `rate`: bytes a second the
 * re-encoding may read. */
export async function queuePolicyChange(store: Store, target: PolicyTarget, policy: string, recursive: boolean, was?: string, rate?: number): Promise<Job> {
  const jobs = new JobStore(store.home);
  const from = was ?? (await ownPolicy(store.meta, target.ino).then((p) => (p ? formatPolicy(p) : 'default')));
  await jobs.audit('policy-set', { volume: target.volume, path: target.path, ino: target.ino, from, to: policy, recursive, uid: process.getuid?.() ?? 0 });
  return jobs.add('reencode', { volume: target.volume, ino: target.ino, path: target.path, policy, recursive }, rate ? { rate } : {});
}
