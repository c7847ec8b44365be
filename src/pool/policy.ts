// Redundancy policies: how many fragments a chunk becomes, and how many of them it can lose.
//
//   replicate:N   N whole copies on N disks; any one serves a read; survives N-1 lost disks.
//   ec:K+M        K data shards and M Reed-Solomon parity shards on K+M disks; any K rebuild the
//                 chunk; survives M lost disks, for (K+M)/K times the space instead of N times.
//   none          replicate:1.

export type Policy = { kind: 'replicate'; copies: number } | { kind: 'ec'; data: number; parity: number };

/** What the Reed-Solomon addon accepts (K <= 24, M <= 6), and a sane bound on copies. */
export const MAX_COPIES = 16;
export const MAX_DATA_SHARDS = 24;
export const MAX_PARITY_SHARDS = 6;

export class PolicyError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PolicyError';
  }
}

/** Parses "none", "replicate:N" or "ec:K+M"; throws a PolicyError saying what is accepted. */
export function parsePolicy(text: string): Policy {
  const s = text.trim().toLowerCase();
  if (s === 'none') return { kind: 'replicate', copies: 1 };
  let m = /^replicate:(\d+)$/.exec(s);
  if (m) {
    const copies = Number(m[1]);
    if (copies < 1 || copies > MAX_COPIES) throw new PolicyError(`bad policy ${JSON.stringify(text)}: replicate:N takes N from 1 to ${MAX_COPIES}`);
    return { kind: 'replicate', copies };
  }
  m = /^ec:(\d+)\+(\d+)$/.exec(s);
  if (m) {
    const data = Number(m[1]);
    const parity = Number(m[2]);
    if (data < 1 || data > MAX_DATA_SHARDS || parity < 1 || parity > MAX_PARITY_SHARDS) {
      throw new PolicyError(`bad policy ${JSON.stringify(text)}: ec:K+M takes K from 1 to ${MAX_DATA_SHARDS} and M from 1 to ${MAX_PARITY_SHARDS}`);
    }
    return { kind: 'ec', data, parity };
  }
  throw new PolicyError(`bad policy ${JSON.stringify(text)}: expected none, replicate:N or ec:K+M (for example ec:4+2)`);
}

export function formatPolicy(p: Policy): string {
  return p.kind === 'replicate' ? (p.copies === 1 ? 'none' : `replicate:${p.copies}`) : `ec:${p.data}+${p.parity}`;
}

/** Fragments a chunk becomes: each on its own disk. */
export function fragmentCount(p: Policy): number {
  return p.kind === 'replicate' ? p.copies : p.data + p.parity;
}

/** Fragments a read needs. */
export function fragmentsNeeded(p: Policy): number {
  return p.kind === 'replicate' ? 1 : p.data;
}

/** Disks a chunk can lose and still be read. */
export function tolerance(p: Policy): number {
  return fragmentCount(p) - fragmentsNeeded(p);
}

/** Of two policies asked of one chunk (by files that share it), the one it keeps: the one that
 * survives more lost disks; on a tie, `a` (the one asked now). */
export function strongerPolicy(a: Policy, b: Policy): Policy {
  return tolerance(b) > tolerance(a) ? b : a;
}

export function samePolicy(a: Policy, b: Policy): boolean {
  return formatPolicy(a) === formatPolicy(b);
}

/**
 * The policy a pool of `disks` healthy disks gets unless told otherwise. As MinIO does, parity
 * grows with the number of disks; and the stripe leaves one disk spare, so that with a disk gone
 * writes go on and a rebuild has somewhere to go:
 *   1 disk: none;  2-3: replicate:2;  4: ec:2+1;  5: ec:3+1;  6: ec:3+2;  7: ec:4+2;
 *   parity 3 from 10 disks, 4 from 14; at most 12 data shards.
 */
export function defaultPolicy(disks: number): Policy {
  if (disks <= 1) return { kind: 'replicate', copies: 1 };
  if (disks <= 3) return { kind: 'replicate', copies: 2 };
  const parity = disks >= 14 ? 4 : disks >= 10 ? 3 : disks >= 6 ? 2 : 1;
  const data = Math.min(12, disks - parity - 1);
  return { kind: 'ec', data, parity };
}
