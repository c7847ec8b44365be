// The pool: a store's disks, as one ChunkStore. Each chunk is cut into fragments under a
// redundancy policy (policy.ts) and the fragments go to distinct disks (placement.ts); reads take
// the fewest fragments that rebuild the chunk, check each (fragment.ts), and fall back to the
// others; anything missing or corrupt found on the way is repaired in the background.
//
// Fragments are found by looking: the disks are tried in the chunk's placement order, which is
// where they were put unless a disk was skipped. No table of locations exists to lose or to keep
// in step with the disks; a disk's own files are the truth.
import type { Logger } from '../log.js';
import type { ChunkMemory } from './chunk-memory.js';
import type { ChunkId, ChunkStat, ChunkStore, StoreCapacity } from './contract.js';
import { assertChunkId, ChunkNotFoundError, ChunkStoreClosedError } from './contract.js';
import { Disk, DiskUnavailableError, type DiskConfig } from './disk.js';
import { encodeShards, joinData, restoreShards } from './erasure.js';
import { crc32c, decodeFragment, decodeHeader, encodeHeader, FRAGMENT_HEADER, type FragmentHeader } from './fragment.js';
import { DEFAULT_WINDOW_MS, type Heat } from './heat.js';
import { rank, seedOf } from './placement.js';
import { configuredPolicy, configuredTiering, poolConfigVersion, readPoolConfig, type PoolConfig, type Tiering } from './pool-config.js';
import { defaultPolicy, formatPolicy, fragmentCount, fragmentsNeeded, samePolicy, tolerance, type Policy } from './policy.js';

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
  /** Fragments it did not need, removed (heal's `tidy`). */
  removed?: number;
}

/** How often a long-running process looks for a changed pool.json. */
const REFRESH_MS = 1000;
/** A fragment's first part up to this size is joined to the fragment header rather than written
 * by itself (a chunk's header): one write call less per fragment. */
const SMALL_PART = 4096;
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
  /** Where reads are counted for hot/cold tiering (heat.ts): set by processes that serve
   * applications (a mount), not by maintenance that reads everything once. */
  heat: Heat | undefined;
  /** Told of a chunk read while hot but stored under another policy than tiering's hot one
   * (set where someone acts on it: a mount's tiering, store/tiering.ts). */
  onHotRead: ((id: ChunkId) => void) | undefined;
  private tieringNow: Tiering | undefined;
  /** Heals under way, by chunk: one at a time for a chunk (a lazy move by heat and a job's walk
   * may meet on one). */
  private readonly healsUnderWay = new Map<ChunkId, Promise<unknown>>();
  /** What this process's reads and background repairs met, since it started (for metrics). */
  readonly counters = { degradedReads: 0, unreadableReads: 0, corruptFragments: 0, repairs: 0, repairsFailed: 0 };
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

  /** The policy new chunks get: with tiering, its cold one (a chunk is cold until it is read). */
  get policy(): Policy {
    return this.tieringNow?.cold ?? configuredPolicy(this.config) ?? defaultPolicy(this.writable().length);
  }

  /** Automatic policies by heat (pool.json's tiering), if on. */
  get tiering(): Tiering | undefined {
    return this.tieringNow;
  }

  /** The heat window every process of the store uses. */
  get heatWindowMs(): number {
    return this.tieringNow?.windowMs ?? DEFAULT_WINDOW_MS;
  }

  /** The disks as configured, with whether this process could open them. */
  disks(): Array<{ config: DiskConfig; available: boolean; reason?: string; disk?: Disk }> {
    return this.members.map((m) => ({ config: m.config, available: m.disk !== undefined, reason: m.unavailable, disk: m.disk }));
  }

  // ---- ChunkStore ----

  async put(id: ChunkId, bytes: Uint8Array | readonly Uint8Array[], policy?: Policy, crc?: number): Promise<'stored' | 'existed'> {
    this.assertOpen();
    assertChunkId(id);
    await this.refresh();
    if (await this.has(id)) {
      // A file that asks more of a chunk it shares with files under a weaker policy raises it.
      if (policy) {
        const have = await this.policyOf(id);
        if (have && tolerance(have) < tolerance(policy)) await this.heal(id, policy);
      }
      return 'existed';
    }
    const p = policy ?? this.policy;
    const fragments = await this.fragmentsOf(bytes, p, crc);
    await this.place(id, p, fragments, rank(id, this.writable()));
    return 'stored';
  }

  /** The policy a chunk is stored under, by the first fragment header that reads back whole;
   * undefined when no fragment is found. (A chunk caught in a change of policy may have
   * fragments of two: this is one of them.) */
  async policyOf(id: ChunkId): Promise<Policy | undefined> {
    this.assertOpen();
    assertChunkId(id);
    await this.refresh();
    for (const m of rank(id, this.readable())) {
      try {
        return decodeHeader(await m.disk!.head(id, FRAGMENT_HEADER)).policy;
      } catch {
        continue; // missing or corrupt here: the next disk
      }
    }
    return undefined;
  }

  async get(id: ChunkId, memory?: ChunkMemory): Promise<Buffer> {
    this.assertOpen();
    assertChunkId(id);
    this.heat?.record(id);
    await this.refresh();
    const order = rank(id, this.readable());
    let policy: Policy | undefined;
    const found: Found[] = [];
    // Missing fragments alone say little (a disk added since ranks first for old chunks), and so
    // does a parity shard where a data shard would rank (a change of policy places shards where
    // it safely can, not in rank order); a corrupt fragment, or a data shard missing so that
    // parity had to stand in, is worth a repair.
    let corrupt = false;
    let missing = false;
    let next = 0;
    // The first fragment says the policy (and for a replica, is the chunk).
    while (policy === undefined && next < order.length) {
      const f = await this.readFragment(order[next++]!, id, memory);
      if (f === 'missing') {
        missing = true;
        continue;
      }
      if (f === 'corrupt') {
        corrupt = true;
        continue;
      }
      policy = f.header.policy;
      found.push(f);
    }
    if (policy !== undefined && this.onHotRead && this.tieringNow && !samePolicy(policy, this.tieringNow.hot) && this.heat?.classify(id) === 'hot') {
      this.onHotRead(id);
    }
    if (policy === undefined) {
      const staged = await this.readStaged(id);
      if (staged) return staged.payload;
      if (corrupt) {
        this.scheduleHeal(id);
        this.counters.unreadableReads++;
      }
      throw (corrupt ? new ChunkUnreadableError(id, 'no readable fragment is left') : new ChunkNotFoundError(id));
    }
    if (policy.kind === 'replicate') {
      if (corrupt) this.degraded(id);
      return found[0]!.payload;
    }
    // Erasure-coded: K shards, read together from the next disks in order (the data shards,
    // unless something was skipped), more while some fail.
    const k = policy.data;
    while (found.length < k && next < order.length) {
      const batch = order.slice(next, next + (k - found.length));
      next += batch.length;
      for (const f of await Promise.all(batch.map((m) => this.readFragment(m, id, memory)))) {
        if (f === 'corrupt') corrupt = true;
        else if (f === 'missing') missing = true;
        else if (samePolicy(f.header.policy, policy)) found.push(f);
        else memory?.giveBack(f.payload);
      }
    }
    if (found.length < k) {
      // Caught in a change of policy, the chunk may be whole under the other one.
      const s = await this.survey(id);
      if (s.whole && s.current !== undefined) {
        this.degraded(id);
        return this.assemble(s.usable, s.current);
      }
      if (s.staged) return s.staged.payload;
      this.scheduleHeal(id);
      this.counters.unreadableReads++;
      throw new ChunkUnreadableError(id, `${found.length} of the ${k} fragments it needs are readable`);
    }
    if (corrupt || (missing && found.some((f) => f.header.index >= k))) this.degraded(id);
    // The shards are copied into the chunk: their memory goes back.
    try {
      return await this.assemble(found, policy, memory);
    } finally {
      for (const f of found) memory?.giveBack(f.payload);
    }
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
    for await (const c of this.iterateFrom()) yield c;
  }

  /** iterate(), in order of fan-out prefix (the first four hex digits of the id), from the
   * prefix after `after`: a walk stopped midway goes on where it was. */
  async *iterateFrom(after = ''): AsyncGenerator<ChunkStat & { prefix: string }> {
    this.assertOpen();
    const disks = this.readable().map((m) => m.disk!);
    const prefixes = new Set<string>();
    for (const d of disks) for await (const p of d.prefixes()) if (p > after) prefixes.add(p);
    for (const prefix of [...prefixes].sort()) {
      const sizes = new Map<ChunkId, number>();
      for (const d of disks) for (const c of await d.chunksUnder(prefix)) sizes.set(c.id, (sizes.get(c.id) ?? 0) + c.storedBytes);
      for (const [id, storedBytes] of sizes) yield { id, storedBytes, prefix };
    }
  }

  /** Bytes of fragments on the readable disks (what a scrub reads). */
  storedBytes(): number {
    return this.readable().reduce((n, m) => n + m.disk!.storedBytes, 0);
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
   *
   * With `tidy`, fragments the chunk does not need are removed once it is whole: those of another
   * policy (left by a change of policy that stopped midway) and surplus copies (rebuilt while a
   * disk was away, and found again when it came back). Only one process may tidy at a time (the
   * store's job runner): two could each take the other's new fragments for leftovers.
   */
  async heal(id: ChunkId, policy?: Policy, tidy = false): Promise<HealResult> {
    this.assertOpen();
    assertChunkId(id);
    const before = this.healsUnderWay.get(id);
    const run = (before ?? Promise.resolve()).catch(() => undefined).then(() => this.healNow(id, policy, tidy));
    this.healsUnderWay.set(id, run);
    try {
      return await run;
    } finally {
      if (this.healsUnderWay.get(id) === run) this.healsUnderWay.delete(id);
    }
  }

  private async healNow(id: ChunkId, policy: Policy | undefined, tidy: boolean): Promise<HealResult> {
    await this.refresh();
    const survey = await this.survey(id);
    const { good, current, usable, staged } = survey;
    const result: HealResult = { bytes: survey.bytes, written: 0, corrupt: survey.corrupt.length, lost: survey.lost };
    // A chunk that cannot be rebuilt keeps even its corrupt fragments: they are all there is.
    if (survey.lost) return result;
    if (!survey.whole || current === undefined) {
      // Only a staged copy is left readable: a change of policy stopped midway, which only a
      // change of policy (the job's heal, with its policy) finishes.
      if (!policy || !staged) return result;
      for (const m of survey.corrupt) await m.disk?.delete(id);
      return this.reencode(id, staged.payload, [], undefined, policy, good, result, staged.member);
    }
    for (const m of survey.corrupt) await m.disk?.delete(id);
    const target = policy ?? current;
    if (!samePolicy(target, current)) return this.reencode(id, await this.assemble(usable, current), usable, current, target, good, result, staged?.member);

    const missing = missingFragments(usable, current);
    const draining = good.filter((f) => f.member.config.state !== 'active');
    let holding = good;
    if (tidy && missing.length > 0) {
      // Fragments of another policy (a change stopped midway) are not needed by a chunk readable
      // under this one, and their disks may be the only ones left to take what it lacks.
      const stale = good.filter((f) => !samePolicy(f.header.policy, current));
      for (const f of stale) if (f.member.disk) await f.member.disk.delete(id);
      if (stale.length > 0) result.removed = stale.length;
      holding = usable;
    }
    if (missing.length > 0) {
      const holders = new Set(holding.map((f) => f.member));
      const free = rank(id, this.writable()).filter((m) => !holders.has(m));
      // Too few disks left to take what is missing (a pool degraded below its policy's width):
      // rebuilding the chunk only to find nowhere to put it would cost every read of it.
      if (free.length === 0) return result;
      const chunk = await this.assemble(usable, current);
      const all = await this.fragmentsOf(chunk, current);
      const placed = await this.placeSome(id, missing.map((i) => all[i]!), free);
      result.written += placed;
      if (placed < missing.length) return result; // not enough room: draining copies stay
    }
    for (const f of draining) await f.member.disk!.delete(id);
    if (tidy) {
      result.removed = (result.removed ?? 0) + (await this.removeSurplus(id, holding, usable, current));
      if (staged) await this.dropStaged(id);
    }
    return result;
  }

  /** Deletes the fragments a whole chunk does not need (see heal's `tidy`); returns how many. */
  private async removeSurplus(id: ChunkId, good: Found[], usable: Found[], current: Policy): Promise<number> {
    const keep = new Set<Found>();
    const order = rank(id, this.readable());
    const byRank = [...usable].sort((a, b) => order.indexOf(a.member) - order.indexOf(b.member));
    if (current.kind === 'replicate') for (const f of byRank.slice(0, current.copies)) keep.add(f);
    else {
      const seen = new Set<number>();
      for (const f of byRank) if (!seen.has(f.header.index)) {
        seen.add(f.header.index);
        keep.add(f);
      }
    }
    let removed = 0;
    for (const f of good) if (!keep.has(f) && f.member.config.state === 'active' && (await f.member.disk!.delete(id))) removed++;
    return removed;
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
   * with a corrupt one, and the policy the chunk is under (a crash during a change of policy can
   * leave fragments of two, and a staged copy). */
  private async survey(id: ChunkId): Promise<Survey> {
    const [reads, staged] = await Promise.all([
      Promise.all(this.readable().map(async (m) => ({ m, f: await this.readFragment(m, id) }))),
      this.readStaged(id),
    ]);
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
    if (good.length === 0) return { good, usable: [], corrupt, whole: false, lost: corrupt.length > 0 && !staged, bytes, staged };
    // Per policy found, its fragments and whether they read; the chunk is under the policy it can
    // be read under (when both can, the one with more fragments).
    const sets = new Map<string, { policy: Policy; fragments: Found[]; whole: boolean }>();
    for (const f of good) {
      const key = formatPolicy(f.header.policy);
      const set = sets.get(key) ?? { policy: f.header.policy, fragments: [], whole: false };
      set.fragments.push(f);
      sets.set(key, set);
    }
    for (const set of sets.values()) set.whole = distinctCount(set.fragments, set.policy) >= fragmentsNeeded(set.policy);
    const best = [...sets.values()].reduce((a, b) => {
      if (a.whole !== b.whole) return a.whole ? a : b;
      return b.fragments.length > a.fragments.length ? b : a;
    });
    return { good, usable: best.fragments, corrupt, current: best.policy, whole: best.whole, lost: !best.whole && !staged, bytes, staged };
  }

  /** A staged copy of the chunk (see Disk.putStaged), checked; undefined when there is none. */
  private async readStaged(id: ChunkId): Promise<Found | undefined> {
    for (const m of this.readable()) {
      const file = await m.disk!.getStaged(id).catch(() => undefined);
      if (!file) continue;
      try {
        const { header, payload } = decodeFragment(file);
        return { member: m, header, payload };
      } catch {
        continue;
      }
    }
    return undefined;
  }

  /** A read that passed over a missing or corrupt fragment, or rebuilt a data shard: counted,
   * and the chunk queued for repair. */
  private degraded(id: ChunkId): void {
    this.counters.degradedReads++;
    this.scheduleHeal(id);
  }

  /** Chunks waiting for a background repair. */
  get healQueueLength(): number {
    return this.healQueue.size;
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
          if (r.lost) this.log?.warn({ chunk: next, ...r }, 'chunk cannot be repaired: too few fragments left');
          else if (r.written > 0) this.log?.info({ chunk: next, ...r }, 'chunk repaired');
          if (r.lost) this.counters.repairsFailed++;
          else if (r.written > 0) this.counters.repairs++;
        } catch (err) {
          this.counters.repairsFailed++;
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
    this.tieringNow = configuredTiering(config);
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

  private async readFragment(m: Member, id: ChunkId, memory?: ChunkMemory): Promise<Found | 'missing' | 'corrupt'> {
    let file: Buffer;
    try {
      file = await m.disk!.get(id, memory);
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
      memory?.giveBack(file);
      this.log?.error({ disk: m.config.path, chunk: id, reason: (err as Error).message }, 'corrupt fragment: the chunk is read from the others');
      this.counters.corruptFragments++;
      return 'corrupt';
    }
  }

  /** The chunk from fragments of one policy (enough of them); an erasure-coded one is joined
   * into memory lent from `memory` when given. */
  private async assemble(found: Found[], policy: Policy, memory?: ChunkMemory): Promise<Buffer> {
    if (policy.kind === 'replicate') return found[0]!.payload;
    const k = policy.data;
    const shards: Array<Buffer | undefined> = new Array(k + policy.parity).fill(undefined);
    for (const f of found) shards[f.header.index] ??= f.payload;
    const chunkLength = found[0]!.header.chunkLength;
    let data = shards.slice(0, k);
    if (!data.every((s) => s !== undefined)) data = (await restoreShards(shards, k, policy.parity)).slice(0, k);
    return joinData(data as Buffer[], chunkLength, memory?.lend(chunkLength));
  }

  /** Header and payload of every fragment of `chunk` under `policy`, in index order. */
  private async fragmentsOf(bytes: Uint8Array | readonly Uint8Array[], policy: Policy, crc?: number): Promise<Uint8Array[][]> {
    const parts = bytes instanceof Uint8Array ? [bytes] : bytes;
    if (policy.kind === 'replicate') {
      const length = parts.reduce((n, p) => n + p.byteLength, 0);
      // A replica's payload is the chunk: its CRC is the one the caller may have.
      const payloadCrc = crc ?? parts.reduce((sum, p) => crc32c(p, sum), 0);
      const header = encodeHeader({ policy, index: 0, chunkLength: length, payloadLength: length, payloadCrc });
      // A small first part (a chunk's header) joins the fragment's: one write for both.
      const [first, ...rest] = parts;
      const head = first && first.byteLength <= SMALL_PART ? [Buffer.concat([header, first]), ...rest] : [header, ...parts];
      return Array.from({ length: policy.copies }, () => head);
    }
    const chunk = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
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

  /** Writes the chunk under `target` and removes its fragments under other policies. Fragments
   * of `target` already there (a change stopped midway) are kept; the missing ones go to disks
   * holding none of the chunk first, then in place of old fragments, but only where the chunk
   * stays readable without the old one (under the old policy, or under the new with what is
   * written so far): a crash at any moment leaves a chunk the next heal can read and finish. */
  private async reencode(id: ChunkId, chunk: Buffer, usable: Found[], current: Policy | undefined, target: Policy, good: Found[], result: HealResult, stagedOn?: Member): Promise<HealResult> {
    const fragments = await this.fragmentsOf(chunk, target);
    let staged = stagedOn;
    const kept = good.filter((f) => samePolicy(f.header.policy, target) && f.member.config.state === 'active');
    const newIndices = new Set(kept.map((f) => f.header.index));
    let newCount = target.kind === 'replicate' ? kept.length : newIndices.size;
    const todo = target.kind === 'replicate'
      ? new Array<number>(Math.max(0, target.copies - kept.length)).fill(0)
      : fragments.map((_, i) => i).filter((i) => !newIndices.has(i));
    // The old fragments that still make the chunk readable under `current`, by disk.
    const oldOn = new Map(usable.map((f) => [f.member, f]));
    const oldReadable = (): boolean => current !== undefined && distinctCount([...oldOn.values()], current) >= fragmentsNeeded(current);
    const holders = new Set(good.map((f) => f.member));
    const order = rank(id, this.writable()).filter((m) => !kept.some((f) => f.member === m));
    const queue = [...order.filter((m) => !holders.has(m)), ...order.filter((m) => holders.has(m))];
    const took = new Set<Member>();
    let unsynced = false;
    for (const index of todo) {
      for (let i = 0; i < queue.length; i++) {
        const m = queue[i]!;
        const old = oldOn.get(m);
        if (old) {
          oldOn.delete(m);
          const safe = staged !== undefined || oldReadable() || newCount >= fragmentsNeeded(target);
          if (!safe && i + 1 < queue.length) {
            oldOn.set(m, old);
            continue; // not yet: maybe once more of the new fragments are written
          }
          if (!safe) {
            // Every disk holds a fragment the chunk needs: a whole copy goes beside them first.
            staged = await this.stage(id, chunk);
            if (!staged) {
              oldOn.set(m, old);
              break;
            }
          }
        }
        try {
          if (holders.has(m)) {
            // What the chunk is read from once this one goes must be on disk first (power loss).
            if (unsynced) await this.sync();
            unsynced = false;
            await m.disk!.delete(id);
          }
          await m.disk!.put(id, fragments[index]!);
          unsynced = true;
        } catch {
          if (old) oldOn.set(m, old); // (its delete may not have happened)
          queue.splice(i--, 1);
          continue;
        }
        queue.splice(i, 1);
        took.add(m);
        newCount++;
        break;
      }
    }
    result.written += took.size;
    if (took.size < todo.length) return result; // too few disks with room: the old fragments stay
    await this.sync();
    for (const f of good) if (!took.has(f.member) && !kept.includes(f) && f.member.disk) await f.member.disk.delete(id);
    if (staged) await this.dropStaged(id);
    return result;
  }

  /** Writes a whole copy of the chunk beside its fragments, on the first disk that takes it. */
  private async stage(id: ChunkId, chunk: Buffer): Promise<Member | undefined> {
    const [parts] = await this.fragmentsOf(chunk, { kind: 'replicate', copies: 1 });
    for (const m of rank(id, this.writable())) {
      try {
        await m.disk!.putStaged(id, parts!);
        return m;
      } catch (err) {
        this.log?.warn({ disk: m.config.path, chunk: id, err }, 'cannot stage a copy here; trying another disk');
      }
    }
    return undefined;
  }

  private async dropStaged(id: ChunkId): Promise<void> {
    await Promise.all(this.readable().map((m) => m.disk!.deleteStaged(id).catch(() => undefined)));
  }
}

/** What heal and scrub find of a chunk on the disks. */
interface Survey {
  /** Fragments that read back whole. */
  good: Found[];
  /** Those of `current`. */
  usable: Found[];
  /** Disks whose fragment is corrupt. */
  corrupt: Member[];
  /** The policy the chunk is under (see survey). */
  current?: Policy;
  /** Its fragments under `current` are enough to read it. */
  whole: boolean;
  /** Nothing can rebuild it. */
  lost: boolean;
  bytes: number;
  /** A whole copy staged during a change of policy. */
  staged?: Found;
}

/** Distinct fragments among `found` of `policy` (copies, or shard indices). */
function distinctCount(found: readonly Found[], policy: Policy): number {
  const of = found.filter((f) => samePolicy(f.header.policy, policy));
  return policy.kind === 'replicate' ? of.length : new Set(of.map((f) => f.header.index)).size;
}

/** The fragments a chunk lacks on active disks, by index (a replica's is 0, once per missing copy). */
function missingFragments(usable: readonly Found[], policy: Policy): number[] {
  const active = usable.filter((f) => f.member.config.state === 'active');
  if (policy.kind === 'replicate') return new Array<number>(Math.max(0, policy.copies - active.length)).fill(0);
  const have = new Set(active.map((f) => f.header.index));
  return Array.from({ length: fragmentCount(policy) }, (_, i) => i).filter((i) => !have.has(i));
}
