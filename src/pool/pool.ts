// The pool: a store's disks, as one ChunkStore. Each chunk is cut into fragments under a
// redundancy policy (policy.ts) and the fragments go to distinct disks (placement.ts); reads take
// the fewest fragments that rebuild the chunk, check each (fragment.ts), and fall back to the
// others; anything missing or corrupt found on the way is repaired in the background.
//
// Fragments are found by looking: the disks are tried in the chunk's placement order, which is
// where they were put unless a disk was skipped. No table of locations exists to lose or to keep
// in step with the disks; a disk's own files are the truth.
import type { Logger } from '../log.js';
import type { ChunkId, ChunkStat, ChunkStore, StoreCapacity } from './contract.js';
import { assertChunkId, ChunkNotFoundError, ChunkStoreClosedError } from './contract.js';
import { Disk, DiskUnavailableError, type DiskConfig } from './disk.js';
import { encodeShards, joinData, restoreShards } from './erasure.js';
import { crc32c, decodeFragment, encodeHeader, type FragmentHeader } from './fragment.js';
import { rank, seedOf } from './placement.js';
import { configuredPolicy, poolConfigVersion, readPoolConfig, type PoolConfig } from './pool-config.js';
import { defaultPolicy, formatPolicy, fragmentCount, fragmentsNeeded, samePolicy, type Policy } from './policy.js';

/** A chunk whose fragments cannot rebuild it: fewer than a read needs are left. */
export class ChunkUnreadableError extends Error {
  readonly code = 'EIO';
  constructor(
    readonly id: ChunkId,
    reason: string,
  ) {
    super(`chunk ${id} is unreadable: ${reason}`);
    this.name = 'ChunkUnreadableError';
  }
}

/** A disk of the pool as this process sees it. */
interface Member {
  config: DiskConfig;
  seed: number;
  weight: number;
  /** Open, or why not. */
  disk?: Disk;
  unavailable?: string;
  /** When the label was last seen (a put checks again past a second). */
  checkedAt: number;
}

/** One fragment read back and checked. */
interface Found {
  member: Member;
  header: FragmentHeader;
  payload: Buffer;
}

/** What a heal did to one chunk. */
export interface HealResult {
  /** Fragment bytes read and checked. */
  bytes: number;
  /** Fragments written (missing or corrupt ones rebuilt, or moved off a draining disk). */
  written: number;
  /** Corrupt fragments found (and, when written, replaced). */
  corrupt: number;
  /** The chunk could not be rebuilt: fewer fragments are left than it needs. */
  lost: boolean;
}

/** How often a long-running process looks for a changed pool.json. */
const REFRESH_MS = 1000;
/** A disk's label is re-read this often, so a wiped disk is noticed and not filled again. */
const LABEL_CHECK_MS = 1000;
/** Chunks waiting for a background repair, at most (more are found again by the next read). */
const HEAL_QUEUE_LIMIT = 10_000;

export class Pool implements ChunkStore {
  private members: Member[] = [];
  private config!: PoolConfig;
  private configVersion = 0;
  private refreshedAt = 0;
  private refreshing: Promise<void> | undefined;
  private closed = false;
  private readonly healQueue = new Set<ChunkId>();
  private healing: Promise<void> | undefined;

  private constructor(
    readonly home: string,
    private readonly log?: Logger,
  ) {}

  /** Opens the pool that `<home>/pool.json` describes. Disks that are gone are noted, not fatal:
   * the pool serves what the others hold. */
  static async open(home: string, log?: Logger): Promise<Pool> {
    const pool = new Pool(home, log);
    await pool.load();
    return pool;
  }

  get id(): string {
    return this.config.id;
  }

  /** The policy new chunks get. */
  get policy(): Policy {
    return configuredPolicy(this.config) ?? defaultPolicy(this.writable().length);
  }

  /** The disks as configured, with whether this process could open them. */
  disks(): Array<{ config: DiskConfig; available: boolean; reason?: string; disk?: Disk }> {
    return this.members.map((m) => ({ config: m.config, available: m.disk !== undefined, reason: m.unavailable, disk: m.disk }));
  }

  // ---- ChunkStore ----

  async put(id: ChunkId, bytes: Uint8Array, policy: Policy = this.policy): Promise<'stored' | 'existed'> {
    this.assertOpen();
    assertChunkId(id);
    await this.refresh();
    if (await this.has(id)) return 'existed';
    const fragments = await this.fragmentsOf(bytes, policy);
    await this.place(id, policy, fragments, rank(id, this.writable()));
    return 'stored';
  }

  async get(id: ChunkId): Promise<Buffer> {
    this.assertOpen();
    assertChunkId(id);
    await this.refresh();
    const order = rank(id, this.readable());
    let policy: Policy | undefined;
    const found: Found[] = [];
    // Missing fragments alone say little (a disk added since ranks first for old chunks); a
    // corrupt one, or a data shard that had to be rebuilt, is worth a repair.
    let corrupt = false;
    let next = 0;
    // The first fragment says the policy (and for a replica, is the chunk).
    while (policy === undefined && next < order.length) {
      const f = await this.readFragment(order[next++]!, id);
      if (f === 'missing') continue;
      if (f === 'corrupt') {
        corrupt = true;
        continue;
      }
      policy = f.header.policy;
      found.push(f);
    }
    if (policy === undefined) {
      if (corrupt) this.scheduleHeal(id);
      throw (corrupt ? new ChunkUnreadableError(id, 'no readable fragment is left') : new ChunkNotFoundError(id));
    }
    if (policy.kind === 'replicate') {
      if (corrupt) this.scheduleHeal(id);
      return found[0]!.payload;
    }
    // Erasure-coded: K shards, read together from the next disks in order (the data shards,
    // unless something was skipped), more while some fail.
    const k = policy.data;
    while (found.length < k && next < order.length) {
      const batch = order.slice(next, next + (k - found.length));
      next += batch.length;
      for (const f of await Promise.all(batch.map((m) => this.readFragment(m, id)))) {
        if (f === 'corrupt') corrupt = true;
        else if (f !== 'missing' && samePolicy(f.header.policy, policy)) found.push(f);
      }
    }
    if (found.length < k) {
      this.scheduleHeal(id);
      throw new ChunkUnreadableError(id, `${found.length} of the ${k} fragments it needs are readable`);
    }
    if (corrupt || found.some((f) => f.header.index >= k)) this.scheduleHeal(id);
    return this.assemble(found, policy);
  }

  async has(id: ChunkId): Promise<boolean> {
    assertChunkId(id);
    // Asked before every put, where the answer is mostly no: all disks at once, not in turn.
    const found = await Promise.all(this.readable().map((m) => m.disk!.has(id).catch(() => false)));
    return found.includes(true);
  }

  async delete(id: ChunkId): Promise<boolean> {
    this.assertOpen();
    assertChunkId(id);
    const gone = await Promise.all(this.readable().map((m) => m.disk!.delete(id)));
    return gone.some(Boolean);
  }

  /** storedBytes: all its fragments together. */
  async stat(id: ChunkId): Promise<ChunkStat | undefined> {
    this.assertOpen();
    assertChunkId(id);
    const stats = await Promise.all(this.readable().map((m) => m.disk!.stat(id).catch(() => undefined)));
    const present = stats.filter((s) => s !== undefined);
    if (present.length === 0) return undefined;
    return { id, storedBytes: present.reduce((n, s) => n + s.storedBytes, 0) };
  }

  /** Every chunk with a fragment on a readable disk, once; storedBytes as stat() gives it. */
  async *iterate(): AsyncGenerator<ChunkStat> {
    this.assertOpen();
    const disks = this.readable().map((m) => m.disk!);
    const prefixes = new Set<string>();
    for (const d of disks) for await (const p of d.prefixes()) prefixes.add(p);
    for (const prefix of [...prefixes].sort()) {
      const sizes = new Map<ChunkId, number>();
      for (const d of disks) for (const c of await d.chunksUnder(prefix)) sizes.set(c.id, (sizes.get(c.id) ?? 0) + c.storedBytes);
      for (const [id, storedBytes] of sizes) yield { id, storedBytes };
    }
  }

  /** Raw bytes over the disks that take new fragments (a policy's overhead is not taken off). */
  async capacity(): Promise<StoreCapacity> {
    this.assertOpen();
    const spaces = await Promise.all(this.readable().map(async (m) => ({ m, s: await m.disk!.space() })));
    let totalBytes = 0;
    let freeBytes = 0;
    let usedBytes = 0;
    for (const { m, s } of spaces) {
      usedBytes += s.usedBytes;
      if (m.config.state !== 'active') continue;
      totalBytes += s.totalBytes;
      freeBytes += s.freeBytes;
    }
    return { totalBytes, freeBytes, usedBytes };
  }

  async sync(): Promise<void> {
    this.assertOpen();
    await Promise.all(this.readable().map((m) => m.disk!.sync()));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.healing?.catch(() => undefined);
    await this.sync();
    this.closed = true;
    await Promise.all(this.readable().map((m) => m.disk!.close()));
  }

  // ---- health ----

  /**
   * Brings one chunk back to full redundancy: reads every fragment there is, drops corrupt ones,
   * rebuilds the missing from the rest, and writes them to disks that hold none of the chunk;
   * fragments on draining disks are copied off them, then deleted. With `policy` (a change of
   * policy), the chunk is re-encoded under it.
   */
  async heal(id: ChunkId, policy?: Policy): Promise<HealResult> {
    this.assertOpen();
    assertChunkId(id);
    await this.refresh();
    const survey = await this.survey(id);
    const { good, current, usable } = survey;
    const result: HealResult = { bytes: survey.bytes, written: 0, corrupt: survey.corrupt.length, lost: survey.lost };
    // A chunk that cannot be rebuilt keeps even its corrupt fragments: they are all there is.
    if (current === undefined || survey.lost) return result;
    for (const m of survey.corrupt) await m.disk?.delete(id);
    const target = policy ?? current;
    if (!samePolicy(target, current)) return this.reencode(id, usable, current, target, good, result);

    const missing = missingFragments(usable, current);
    const draining = good.filter((f) => f.member.config.state !== 'active');
    if (missing.length > 0) {
      const chunk = await this.assemble(usable, current);
      const all = await this.fragmentsOf(chunk, current);
      const holders = new Set(good.map((f) => f.member));
      const free = rank(id, this.writable()).filter((m) => !holders.has(m));
      const placed = await this.placeSome(id, missing.map((i) => all[i]!), free);
      result.written += placed;
      if (placed < missing.length) return result; // not enough room: draining copies stay
    }
    for (const f of draining) await f.member.disk!.delete(id);
    return result;
  }

  /** What a scrub without repair reports of one chunk; writes nothing. */
  async inspect(id: ChunkId): Promise<{ bytes: number; corrupt: number; degraded: boolean; lost: boolean }> {
    this.assertOpen();
    assertChunkId(id);
    await this.refresh();
    const s = await this.survey(id);
    const incomplete = s.current !== undefined && missingFragments(s.usable, s.current).length > 0;
    return { bytes: s.bytes, corrupt: s.corrupt.length, degraded: s.corrupt.length > 0 || incomplete, lost: s.lost };
  }

  /** Every fragment of a chunk on the readable disks, read and checked: the good ones, the disks
   * with a corrupt one, and the policy the chunk is under (the one most good fragments have: a
   * crash during a change of policy can leave fragments of two). */
  private async survey(id: ChunkId): Promise<{ good: Found[]; usable: Found[]; corrupt: Member[]; current?: Policy; lost: boolean; bytes: number }> {
    const reads = await Promise.all(this.readable().map(async (m) => ({ m, f: await this.readFragment(m, id) })));
    const good: Found[] = [];
    const corrupt: Member[] = [];
    let bytes = 0;
    for (const { m, f } of reads) {
      if (f === 'corrupt') corrupt.push(m);
      else if (f !== 'missing') {
        good.push(f);
        bytes += f.payload.length;
      }
    }
    if (good.length === 0) return { good, usable: [], corrupt, lost: corrupt.length > 0, bytes };
    const count = (p: Policy): number => good.filter((g) => samePolicy(g.header.policy, p)).length;
    const current = good.map((f) => f.header.policy).reduce((best, p) => (count(p) > count(best) ? p : best));
    const usable = good.filter((f) => samePolicy(f.header.policy, current));
    const distinct = current.kind === 'replicate' ? usable.length : new Set(usable.map((f) => f.header.index)).size;
    return { good, usable, corrupt, current, lost: distinct < fragmentsNeeded(current), bytes };
  }

  /** Repairs chunks found damaged by reads, one at a time, in the background. */
  private scheduleHeal(id: ChunkId): void {
    if (this.closed || this.healQueue.size >= HEAL_QUEUE_LIMIT) return;
    this.healQueue.add(id);
    this.healing ??= (async () => {
      for (const next of this.healQueue) {
        this.healQueue.delete(next);
        if (this.closed) break;
        try {
          const r = await this.heal(next);
          this.log?.info({ chunk: next, ...r }, r.lost ? 'chunk cannot be repaired: too few fragments left' : 'chunk repaired');
        } catch (err) {
          this.log?.warn({ chunk: next, err }, 'chunk repair failed');
        }
      }
    })().finally(() => {
      this.healing = undefined;
    });
  }

  // ---- configuration ----

  /** Re-reads pool.json when another process changed it (at most once a second). */
  async refresh(force = false): Promise<void> {
    if (!force && Date.now() - this.refreshedAt < REFRESH_MS) return;
    this.refreshing ??= (async () => {
      try {
        const version = await poolConfigVersion(this.home);
        if (version !== this.configVersion) await this.load();
      } finally {
        this.refreshedAt = Date.now();
        this.refreshing = undefined;
      }
    })();
    await this.refreshing;
  }

  private async load(): Promise<void> {
    const version = await poolConfigVersion(this.home);
    const config = await readPoolConfig(this.home);
    const old = new Map(this.members.map((m) => [m.config.id, m]));
    const members: Member[] = [];
    for (const c of config.disks) {
      const prev = old.get(c.id);
      old.delete(c.id);
      if (c.state === 'failed') {
        await prev?.disk?.close().catch(() => undefined);
        members.push({ config: c, seed: seedOf(c.id), weight: 1, unavailable: 'marked failed', checkedAt: 0 });
        continue;
      }
      if (prev?.disk && prev.config.path === c.path) {
        prev.config = c;
        members.push(prev);
        continue;
      }
      members.push(await this.openMember(c, config.id));
    }
    for (const gone of old.values()) await gone.disk?.close().catch(() => undefined);
    this.config = config;
    this.members = members;
    this.configVersion = version;
    this.refreshedAt = Date.now();
  }

  private async openMember(c: DiskConfig, poolId: string): Promise<Member> {
    const member: Member = { config: c, seed: seedOf(c.id), weight: 1, checkedAt: Date.now() };
    try {
      member.disk = await Disk.open(c, poolId);
      member.weight = Math.max(1, (await member.disk.space()).totalBytes / 2 ** 30);
    } catch (err) {
      if (!(err instanceof DiskUnavailableError)) throw err;
      member.unavailable = err.message;
      this.log?.error({ disk: c.path, reason: err.message }, 'disk unavailable: its fragments are read from the others');
    }
    return member;
  }

  // ---- internals ----

  private assertOpen(): void {
    if (this.closed) throw new ChunkStoreClosedError(this.home);
  }

  private readable(): Member[] {
    return this.members.filter((m) => m.disk !== undefined);
  }

  private writable(): Member[] {
    return this.members.filter((m) => m.disk !== undefined && m.config.state === 'active');
  }

  /** Whether the disk still has its label (re-read at most once a second, or now when `now`: a
   * fragment found missing may be the first sign of a wiped disk). One that lost it (wiped, or
   * its filesystem unmounted) gets no more reads or writes from this process: its directories
   * would otherwise be made again, on the wrong filesystem. */
  private async stillThere(m: Member, checkNow = false): Promise<boolean> {
    if (!m.disk) return false;
    const now = Date.now();
    if (!checkNow && now - m.checkedAt <= LABEL_CHECK_MS) return true;
    const present = await m.disk.present(this.config.id);
    if (present) m.checkedAt = now;
    if (present || !m.disk) return present; // (or lost meanwhile, by another caller)
    const reason = 'its label is gone (wiped, or its filesystem is not mounted)';
    this.log?.error({ disk: m.config.path, reason }, 'disk unavailable: its fragments are read from the others');
    void m.disk.close().catch(() => undefined);
    m.disk = undefined;
    m.unavailable = reason;
    return false;
  }

  private async readFragment(m: Member, id: ChunkId): Promise<Found | 'missing' | 'corrupt'> {
    let file: Buffer;
    try {
      file = await m.disk!.get(id);
    } catch (err) {
      if ((err as { code?: string }).code === 'ENOENT') {
        await this.stillThere(m, true);
        return 'missing';
      }
      this.log?.error({ disk: m.config.path, chunk: id, err }, 'fragment unreadable');
      return 'corrupt';
    }
    try {
      const { header, payload } = decodeFragment(file);
      return { member: m, header, payload };
    } catch (err) {
      this.log?.error({ disk: m.config.path, chunk: id, reason: (err as Error).message }, 'corrupt fragment: the chunk is read from the others');
      return 'corrupt';
    }
  }

  /** The chunk from fragments of one policy (enough of them). */
  private async assemble(found: Found[], policy: Policy): Promise<Buffer> {
    if (policy.kind === 'replicate') return found[0]!.payload;
    const k = policy.data;
    const shards: Array<Buffer | undefined> = new Array(k + policy.parity).fill(undefined);
    for (const f of found) shards[f.header.index] ??= f.payload;
    const chunkLength = found[0]!.header.chunkLength;
    const data = shards.slice(0, k);
    if (data.every((s) => s !== undefined)) return joinData(data as Buffer[], chunkLength);
    return joinData((await restoreShards(shards, k, policy.parity)).slice(0, k), chunkLength);
  }

  /** Header and payload of every fragment of `chunk` under `policy`, in index order. */
  private async fragmentsOf(chunk: Uint8Array, policy: Policy): Promise<Uint8Array[][]> {
    if (policy.kind === 'replicate') {
      const header = encodeHeader({ policy, index: 0, chunkLength: chunk.length, payloadLength: chunk.length, payloadCrc: crc32c(chunk) });
      return Array.from({ length: policy.copies }, () => [header, chunk]);
    }
    const shards = await encodeShards(chunk, policy.data, policy.parity);
    return shards.map((payload, index) => [
      encodeHeader({ policy, index, chunkLength: chunk.length, payloadLength: payload.length, payloadCrc: crc32c(payload) }),
      payload,
    ]);
  }

  /** Writes every fragment to its own disk, trying the candidates in order; all or nothing. */
  private async place(id: ChunkId, policy: Policy, fragments: Uint8Array[][], candidates: Member[]): Promise<void> {
    const placed = await this.placeSome(id, fragments, candidates);
    if (placed === fragments.length) return;
    // Not all: what went is taken back, so no chunk is stored with less than its policy.
    await Promise.all(candidates.map((m) => m.disk?.delete(id).catch(() => false)));
    throw Object.assign(
      new Error(`ENOSPC: the pool cannot place chunk ${id} under ${formatPolicy(policy)}: ${fragments.length} disks with room are needed, ${placed} took a fragment`),
      { code: 'ENOSPC', errno: -28 },
    );
  }

  /** Writes fragments to distinct candidates, in order, each taking the next candidate left when
   * one fails; returns how many were written. */
  private async placeSome(id: ChunkId, fragments: Uint8Array[][], candidates: Member[]): Promise<number> {
    const queue = [...candidates];
    let placed = 0;
    await Promise.all(fragments.map(async (parts) => {
      for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
        if (!m.disk) continue;
        try {
          if (!(await this.stillThere(m))) continue;
          await m.disk!.put(id, parts);
          placed++;
          return;
        } catch (err) {
          if ((err as { code?: string }).code !== 'ENOSPC') this.log?.warn({ disk: m.config.path, chunk: id, err }, 'fragment not written; trying another disk');
        }
      }
    }));
    return placed;
  }

  /** Writes the chunk under `target` and removes its fragments under `current`. New fragments
   * go to disks holding none of the chunk first; a disk holding an old fragment gets its new one
   * in place of it only when no other is left. A crash in between leaves both sets, each whole
   * or not: the next heal keeps the one that can be read and finishes the change. */
  private async reencode(id: ChunkId, usable: Found[], current: Policy, target: Policy, good: Found[], result: HealResult): Promise<HealResult> {
    const chunk = await this.assemble(usable, current);
    const fragments = await this.fragmentsOf(chunk, target);
    const holders = new Set(good.map((f) => f.member));
    const order = rank(id, this.writable());
    const candidates = [...order.filter((m) => !holders.has(m)), ...order.filter((m) => holders.has(m))];
    // Disks that hold an old fragment must let it go before taking a new one (one file per chunk).
    const queue = [...candidates];
    const took = new Set<Member>();
    for (const parts of fragments) {
      for (let m = queue.shift(); m !== undefined; m = queue.shift()) {
        try {
          if (holders.has(m)) await m.disk!.delete(id);
          await m.disk!.put(id, parts);
          took.add(m);
          break;
        } catch {
          continue;
        }
      }
    }
    const written = took.size;
    if (written < fragments.length) {
      result.written += written;
      return result;
    }
    await this.sync();
    for (const f of good) if (!took.has(f.member) && f.member.disk) await f.member.disk.delete(id);
    result.written += written;
    return result;
  }
}

/** The fragments a chunk lacks on active disks, by index (a replica's is 0, once per missing copy). */
function missingFragments(usable: readonly Found[], policy: Policy): number[] {
  const active = usable.filter((f) => f.member.config.state === 'active');
  if (policy.kind === 'replicate') return new Array<number>(Math.max(0, policy.copies - active.length)).fill(0);
  const have = new Set(active.map((f) => f.header.index));
  return Array.from({ length: fragmentCount(policy) }, (_, i) => i).filter((i) => !have.has(i));
}
