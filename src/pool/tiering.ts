// Tiering: with it on (pool.json's tiering), a chunk no file asks a policy of is stored under the
// hot policy while it is read often and under the cold one otherwise (typically replicate:N for
// hot: any one disk serves a read, and a lost disk costs no decoding; ec:K+M for cold: a fraction
// of the space). Its class comes from its heat (heat.ts), whose model already smooths reads over
// windows; warm is the band between, where a chunk stays where it is, so a class that wavers
// between warm and one side moves nothing.
import type { HeatClass } from './heat.js';
import type { Tiering } from './pool-config.js';
import { samePolicy, type Policy } from './policy.js';

/** The policy tiering gives a chunk of class `heat` (undefined: not known) stored now under
 * `stored` (undefined: not stored yet). */
export function tieredPolicy(tiering: Tiering, heat: HeatClass | undefined, stored: Policy | undefined): Policy {
  if (heat === 'hot') return tiering.hot;
  if (heat === 'cold') return tiering.cold;
  if (stored !== undefined && (samePolicy(stored, tiering.hot) || samePolicy(stored, tiering.cold))) return stored;
  return tiering.cold;
}
