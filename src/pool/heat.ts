// How hot each chunk is: hot, warm or cold, from how often and how lately it is read, for tiering
// (hot chunks on fast disks, cold ones on slow or erasure-coded ones).
//
// Time is cut into windows (an hour by default), the same for every process: window n runs from
// n * windowMs. A chunk's reads in a window are binned (none, 1-2, 3 or more) and fed to a small
// hidden Markov model whose hidden state is the chunk's class. Forward filtering keeps, per
// chunk, the probability of each class given every window seen so far. The transitions are
// sticky, so the class follows a chunk's habits rather than its last window: one quiet hour does
// not cool a hot chunk, and one burst does not make a cold chunk hot (it takes a second busy
// window). The stickiness is the hysteresis: a class changes only once the evidence of several
// windows outweighs it, and no per-process "last class" is kept that readers could disagree on.
//
// record() is on the path of every chunk read: a map lookup and a few numbers updated in typed
// arrays. When a chunk's first read of a new window comes, the windows since its last read are
// closed: the last one with its reads, the quiet ones after it in closed form (the precomputed
// powers of "a window passes with no read", one product per bit of their number).
//
// Each process of a store (each mounted volume, each CLI command) records its own reads, and
// saves them whole to <home>/heat/<pid>-<token>.heat (written to a temporary file, then renamed).
// A reader merges every file: reads add up, the last read is the latest, and the classes join:
// a chunk is as hot as in its hottest reader. Reads add up, so the chunk is at least that hot;
// the join (P(hot) and P(warm or hot) are the largest of the readers') is the least distribution
// that says so (the distribution of the hottest class if the readers' classes moved together),
// and unlike a product of independent classes it does not heat up when merged again: joining a
// state with itself changes nothing, so folding merged states into merged states is safe. A
// process that never read a chunk holds it cold for certain, which the join leaves unchanged. The
// reads of a window still open add up too: the window's evidence is all of them.
//
// Files of dead processes are folded into <home>/heat/base.heat by whoever reads, under
// <home>/heat/fold.lock (a reader that finds it taken just reads). The base names the files it
// holds, so a crash between writing it and deleting them counts no read twice.
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../log.js';
import { isAlive } from '../processes.js';
import type { ChunkId } from './contract.js';

export type HeatClass = 'hot' | 'warm' | 'cold';

/** The classes, in the order of every probability vector here. */
export const HEAT_CLASSES: readonly HeatClass[] = ['hot', 'warm', 'cold'];

/** What is known of one chunk's reads. */
export interface HeatEntry {
  id: ChunkId;
  class: HeatClass;
  reads: number;
  lastReadMs: number;
  /** P(hot), P(warm), P(cold) now. */
  p: [number, number, number];
}

export const DEFAULT_WINDOW_MS = 3_600_000;

// ---- the model ----

/**
 * P(class in the next window | class in this one); rows from, columns to, hot, warm, cold. A
 * class lasts: hot stays hot from one window to the next 95 times in 100, warm stays warm 97,
 * cold stays cold 99, and moves go mostly to the neighbouring class. Each row is hotter than the
 * one below it (P(to hot) and P(to warm or hot) fall down the rows): a hotter past predicts a
 * hotter future, so merged states (the join, below) stay ordered through every window.
 */
export const TRANSITION: readonly (readonly [number, number, number])[] = [
  [0.95, 0.048, 0.002],
  [0.02, 0.97, 0.01],
  [0.001, 0.009, 0.99],
];

/**
 * P(a window's reads fall in a bin | class); bins: no read, 1-2, 3 or more. Hot: 3+ reads in
 * most windows, none in a quarter. Warm: none in most, 1-2 in a quarter (more often than a hot
 * chunk has exactly 1-2, so steady light reads make a chunk warm, not hot). Cold: none. The
 * likelihood ratios grow with the reads between any two classes (more reads never cool a chunk),
 * and set the pace with the transitions: a window of 3+ reads is 200 times likelier from a hot
 * chunk than a cold one, against odds of 1000 to 1 that a cold chunk turns hot in a window, so
 * one such window leaves a cold chunk cold and a second makes it hot; a quiet window is 3.9 times
 * likelier cold than hot, so a hot chunk stays hot through two quiet windows, is warm after the
 * third and cold after the tenth (with hour windows: after a night). Steady reads settle: 3+ a
 * window hot, 1-2 a window (or one every few windows) warm, one a day cold.
 */
export const EMISSION: readonly (readonly [number, number, number])[] = [
  [0.25, 0.15, 0.6],
  [0.72, 0.25, 0.03],
  [0.97, 0.027, 0.003],
];

/** The observation bin of `reads` reads in a window. */
export function readsBin(reads: number): 0 | 1 | 2 {
  return reads === 0 ? 0 : reads < 3 ? 1 : 2;
}

/** Windows after which a cold chunk's entry is dropped from the base file (30 days of hours):
 * by then it is what a chunk never read is, cold for certain. */
const RETAIN_WINDOWS = 24 * 30;

const A = Float64Array.from(TRANSITION.flat());
const E = Float64Array.from(EMISSION.flat());
/** Weights that leave a step a prediction (a window not yet closed, without evidence). */
const NONE = new Float64Array(9).fill(1);
/** The top bin: a window still open is evidence once its reads reach it, since more cannot
 * change it. Before, it is only predicted: its bin is not known yet, and counting "at least 1-2
 * reads" would favour hot more than the window closed with 1-2 does, so the class of a chunk read
 * once a window would rise during each window and fall back at its end. */
const TOP_BIN = 2;
/** QUIET_POWERS[k]: (A · diag(P(no read | class)))^(2^k), scaled so its largest entry is 1: 2^k
 * windows without a read, in one product. Scale does not matter: vectors are normalized after. */
const QUIET_POWERS: Float64Array[] = [];
{
  let m = new Float64Array(9);
  for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) m[i * 3 + j] = A[i * 3 + j]! * E[j * 3]!;
  for (let k = 0; k < 53; k++) {
    const max = Math.max(...m);
    for (let i = 0; i < 9; i++) m[i]! /= max;
    QUIET_POWERS.push(m);
    const sq = new Float64Array(9);
    for (let i = 0; i < 3; i++) for (let j = 0; j < 3; j++) sq[i * 3 + j] = m[i * 3]! * m[j]! + m[i * 3 + 1]! * m[3 + j]! + m[i * 3 + 2]! * m[6 + j]!;
    m = sq;
  }
}

/** One window passes: `v[o..o+2]` (the classes in the window before) becomes the classes in the
 * window after it, given `weights` (E, or NONE for an open window) at the bin of its reads. */
function step(v: Float64Array, o: number, weights: Float64Array, bin: number): void {
  const h = v[o]!;
  const w = v[o + 1]!;
  const c = v[o + 2]!;
  const nh = (h * A[0]! + w * A[3]! + c * A[6]!) * weights[bin]!;
  const nw = (h * A[1]! + w * A[4]! + c * A[7]!) * weights[3 + bin]!;
  const nc = (h * A[2]! + w * A[5]! + c * A[8]!) * weights[6 + bin]!;
  const sum = nh + nw + nc;
  v[o] = nh / sum;
  v[o + 1] = nw / sum;
  v[o + 2] = nc / sum;
}

/** `n` windows without a read pass over `v[o..o+2]`. */
function quiet(v: Float64Array, o: number, n: number): void {
  for (let k = 0; n > 0 && k < QUIET_POWERS.length; k++, n = Math.floor(n / 2)) {
    if (n % 2 === 0) continue;
    const m = QUIET_POWERS[k]!;
    const h = v[o]!;
    const w = v[o + 1]!;
    const c = v[o + 2]!;
    const nh = h * m[0]! + w * m[3]! + c * m[6]!;
    const nw = h * m[1]! + w * m[4]! + c * m[7]!;
    const nc = h * m[2]! + w * m[5]! + c * m[8]!;
    const sum = nh + nw + nc;
    v[o] = nh / sum;
    v[o + 1] = nw / sum;
    v[o + 2] = nc / sum;
  }
}

/** Brings a state (`v[o..o+2]` filtered through the window before `win`, with `winReads` reads
 * in window `win`) to `window` >= win: closes window `win`, then the quiet ones up to `window`. */
function close(v: Float64Array, o: number, win: number, winReads: number, window: number): void {
  if (window <= win) return;
  step(v, o, E, readsBin(winReads));
  quiet(v, o, window - win - 1);
}

/** The most probable class; a tie goes to the colder (promotion wants clear evidence). */
function classOf(v: Float64Array, o: number): HeatClass {
  let best = 2;
  for (let s = 1; s >= 0; s--) if (v[o + s]! > v[o + best]!) best = s;
  return HEAT_CLASSES[best]!;
}

/** Scratch vector of the calls that compute a state without keeping it. */
const scratch = new Float64Array(3);

// ---- the table of chunks ----

const MAX_COUNT = 0xffff_ffff;
const CHUNK_ID = /^[0-9a-f]{64}$/;

/**
 * Every chunk's state, column by column in typed arrays: `p` the classes filtered through the
 * window before `win`, `winReads` the reads in window `win` (still open, or not yet closed
 * because no read came since), `reads` all reads, `last` the latest. 52 bytes a chunk, about 170
 * with the map's entry and the id: 170 MB for a million chunks (a terabyte of 1 MiB chunks).
 */
class Table {
  private readonly slots = new Map<ChunkId, number>();
  ids: ChunkId[] = [];
  p = new Float64Array(3 * 64);
  win = new Float64Array(64);
  winReads = new Uint32Array(64);
  reads = new Float64Array(64);
  last = new Float64Array(64);

  get size(): number {
    return this.ids.length;
  }

  slot(id: ChunkId): number | undefined {
    return this.slots.get(id);
  }

  /** A new chunk, never read before `window`: cold for certain, as one this process never saw. */
  add(id: ChunkId, window: number): number {
    const s = this.ids.length;
    if (s === this.win.length) this.grow();
    this.slots.set(id, s);
    this.ids.push(id);
    this.p[3 * s] = 0;
    this.p[3 * s + 1] = 0;
    this.p[3 * s + 2] = 1;
    this.win[s] = window;
    this.winReads[s] = 0;
    this.reads[s] = 0;
    this.last[s] = 0;
    return s;
  }

  /** Closes slot `s`'s windows before `window`. */
  advance(s: number, window: number): void {
    const win = this.win[s]!;
    if (window <= win) return;
    close(this.p, 3 * s, win, this.winReads[s]!, window);
    this.win[s] = window;
    this.winReads[s] = 0;
  }

  /** The classes of slot `s` in `window`, a window still open (its reads so far count once they
   * reach the top bin), into `out`. */
  view(s: number, window: number, out: Float64Array): void {
    out[0] = this.p[3 * s]!;
    out[1] = this.p[3 * s + 1]!;
    out[2] = this.p[3 * s + 2]!;
    const win = this.win[s]!;
    close(out, 0, win, this.winReads[s]!, window);
    const sofar = window > win ? 0 : readsBin(this.winReads[s]!);
    if (sofar === TOP_BIN) step(out, 0, E, TOP_BIN);
    else step(out, 0, NONE, 0);
  }

  entry(s: number, window: number): HeatEntry {
    this.view(s, window, scratch);
    return { id: this.ids[s]!, class: classOf(scratch, 0), reads: this.reads[s]!, lastReadMs: this.last[s]!, p: [scratch[0]!, scratch[1]!, scratch[2]!] };
  }

  /** Merges another process's state of chunk `id` (`p` at `o`, not kept) into this table, both
   * brought to the same window (at least `window`): the classes joined, reads added. */
  join(id: ChunkId, p: Float64Array, o: number, win: number, winReads: number, reads: number, last: number, window: number): void {
    const s = this.slots.get(id) ?? this.add(id, window);
    const target = Math.max(window, win, this.win[s]!);
    this.advance(s, target);
    close(p, o, win, winReads, target);
    const q = 3 * s;
    const hot = Math.max(this.p[q]!, p[o]!);
    const warmOrHotter = Math.min(1, Math.max(this.p[q]! + this.p[q + 1]!, p[o]! + p[o + 1]!));
    this.p[q] = hot;
    this.p[q + 1] = warmOrHotter - hot;
    this.p[q + 2] = 1 - warmOrHotter;
    // Reads add up: the window's evidence is every process's reads together.
    this.winReads[s] = Math.min(MAX_COUNT, this.winReads[s]! + (target === win ? winReads : 0));
    this.reads[s] = this.reads[s]! + reads;
    this.last[s] = Math.max(this.last[s]!, last);
  }

  private grow(): void {
    const n = this.win.length * 2;
    const p = new Float64Array(3 * n);
    p.set(this.p);
    this.p = p;
    for (const k of ['win', 'reads', 'last'] as const) {
      const a = new Float64Array(n);
      a.set(this[k]);
      this[k] = a;
    }
    const winReads = new Uint32Array(n);
    winReads.set(this.winReads);
    this.winReads = winReads;
  }
}

// ---- files ----

// A file: MAGIC, the header's length (u32 LE), the header (JSON), then `entries` records of
// RECORD bytes: the id (32 bytes), p (3 f64), win (f64), winReads (u32), reads (f64), last (f64), LE.
const MAGIC = Buffer.from('ORBITHT1');
const FORMAT = 1;
const RECORD = 32 + 24 + 8 + 4 + 8 + 8;
/** Records encoded per write. */
const BATCH = 1024;
const BASE = 'base.heat';
const LOCK = 'fold.lock';
const PROCESS_FILE = /^(\d+)-[0-9a-f]+\.heat$/;
const TEMP_FILE = /^tmp-(\d+)-[0-9a-f]+$/;

interface FileHeader {
  format: number;
  windowMs: number;
  /** The process that wrote it. */
  pid: number;
  savedAtMs: number;
  entries: number;
  /** In the base: the process files it holds (deleted after it is written). */
  folded?: string[];
}

/** A heat file that cannot be read as one: skipped (and, a dead process's, deleted). */
class HeatFileError extends Error {
  constructor(file: string, reason: string) {
    super(`heat file ${file} is unreadable: ${reason}`);
    this.name = 'HeatFileError';
  }
}

export function heatDir(home: string): string {
  return path.join(home, 'heat');
}

/** Writes the slots `only` (all when absent) of `table` as `name` in `dir`, atomically. */
async function writeHeatFile(dir: string, name: string, header: Omit<FileHeader, 'entries' | 'format'>, table: Table, only?: number[]): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  // Slots added while this writes are left for the next save.
  const count = only?.length ?? table.size;
  const head = Buffer.from(JSON.stringify({ format: FORMAT, ...header, entries: count } satisfies FileHeader));
  const prefix = Buffer.alloc(MAGIC.length + 4);
  MAGIC.copy(prefix);
  prefix.writeUInt32LE(head.length, MAGIC.length);
  const temp = path.join(dir, `tmp-${process.pid}-${randomBytes(6).toString('hex')}`);
  const handle = await open(temp, 'wx', 0o600);
  try {
    await handle.write(Buffer.concat([prefix, head]));
    const buf = Buffer.alloc(Math.min(BATCH, Math.max(1, count)) * RECORD);
    for (let i = 0; i < count; ) {
      const n = Math.min(BATCH, count - i);
      // Encoded without a pause, so each record is one moment's state even while reads go on.
      for (let r = 0; r < n; r++, i++) {
        const s = only ? only[i]! : i;
        let at = r * RECORD;
        buf.write(table.ids[s]!, at, 32, 'hex');
        at += 32;
        for (let k = 0; k < 3; k++, at += 8) buf.writeDoubleLE(table.p[3 * s + k]!, at);
        at = buf.writeDoubleLE(table.win[s]!, at);
        at = buf.writeUInt32LE(table.winReads[s]!, at);
        at = buf.writeDoubleLE(table.reads[s]!, at);
        buf.writeDoubleLE(table.last[s]!, at);
      }
      await handle.write(buf, 0, n * RECORD);
    }
    await handle.sync();
  } catch (err) {
    await handle.close().catch(() => undefined);
    await rm(temp, { force: true });
    throw err;
  }
  await handle.close();
  await rename(temp, path.join(dir, name));
}

/** The file's header and records; undefined when it does not exist. */
async function readHeatFile(file: string): Promise<{ header: FileHeader; records: Buffer } | undefined> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (bytes.length < MAGIC.length + 4 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw new HeatFileError(file, 'not a heat file');
  const headLength = bytes.readUInt32LE(MAGIC.length);
  const start = MAGIC.length + 4 + headLength;
  let header: FileHeader;
  try {
    header = JSON.parse(bytes.subarray(MAGIC.length + 4, start).toString('utf8')) as FileHeader;
  } catch {
    throw new HeatFileError(file, 'its header is not JSON');
  }
  if (header.format !== FORMAT) throw new HeatFileError(file, `format ${header.format}; this Orbit reads ${FORMAT}`);
  if (!(header.windowMs > 0) || bytes.length !== start + header.entries * RECORD) throw new HeatFileError(file, 'truncated');
  return { header, records: bytes.subarray(start) };
}

/** Joins every record of a file into `table`, at `window` of `windowMs`. */
function joinRecords(table: Table, file: { header: FileHeader; records: Buffer }, windowMs: number, window: number): void {
  const { records, header } = file;
  // A file written with windows of another length: its windows are mapped onto ours by time.
  const scale = header.windowMs / windowMs;
  const p = new Float64Array(3);
  for (let at = 0; at < records.length; at += RECORD) {
    const id = records.toString('hex', at, at + 32);
    let o = at + 32;
    for (let k = 0; k < 3; k++, o += 8) p[k] = records.readDoubleLE(o);
    const win = records.readDoubleLE(o);
    const winReads = records.readUInt32LE(o + 8);
    const reads = records.readDoubleLE(o + 12);
    const last = records.readDoubleLE(o + 20);
    table.join(id, p, 0, scale === 1 ? win : Math.floor(win * scale), winReads, reads, last, window);
  }
}

/** Takes the fold lock if it is free (or held by a dead process); false when another holds it. */
async function tryLock(file: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx', mode: 0o600 });
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(file, 'utf8').catch(() => ''));
      // An empty file is a holder between creating and writing it.
      if (!(holder > 0) || isAlive(holder)) return false;
      await rm(file, { force: true });
    }
  }
  return false;
}

function processPid(name: string): number | undefined {
  const m = PROCESS_FILE.exec(name) ?? TEMP_FILE.exec(name);
  return m ? Number(m[1]) : undefined;
}

/** Folds the files of dead processes into the base, unless another process is folding. */
async function foldDead(dir: string, windowMs: number, nowMs: number, log?: Logger): Promise<void> {
  const dead = (names: string[]): string[] => names.filter((n) => {
    const pid = processPid(n);
    return pid !== undefined && pid !== process.pid && !isAlive(pid);
  });
  if (dead(await listDir(dir)).length === 0) return;
  const lock = path.join(dir, LOCK);
  if (!(await tryLock(lock))) return;
  try {
    const names = await listDir(dir);
    const gone = dead(names);
    const window = Math.floor(nowMs / windowMs);
    const table = new Table();
    // A base that is not one is started again; one that cannot be read now (EIO, EACCES) is kept.
    const base = await readHeatFile(path.join(dir, BASE)).catch((err: unknown) => {
      if (!(err instanceof HeatFileError)) throw err;
      log?.warn({ err }, 'heat: the base file is unreadable; it is started again');
      return undefined;
    });
    const folded = new Set(base?.header.folded ?? []);
    if (base) joinRecords(table, base, windowMs, window);
    for (const name of gone) {
      if (folded.has(name) || !PROCESS_FILE.test(name)) continue;
      try {
        const file = await readHeatFile(path.join(dir, name));
        if (file) joinRecords(table, file, windowMs, window);
      } catch (err) {
        if (!(err instanceof HeatFileError)) throw err;
        log?.warn({ err }, 'heat: a dead process left an unreadable file; it is deleted');
      }
    }
    const kept: number[] = [];
    const retainedSince = nowMs - RETAIN_WINDOWS * windowMs;
    for (let s = 0; s < table.size; s++) {
      table.view(s, window, scratch);
      if (table.last[s]! >= retainedSince || classOf(scratch, 0) !== 'cold') kept.push(s);
    }
    // Files folded before and not deleted yet are still named, so they are not read twice.
    const holds = [...new Set([...gone, ...[...folded].filter((n) => names.includes(n))])].filter((n) => PROCESS_FILE.test(n));
    await writeHeatFile(dir, BASE, { windowMs, pid: process.pid, savedAtMs: nowMs, folded: holds }, table, kept);
    await Promise.all(gone.map((n) => rm(path.join(dir, n), { force: true })));
  } finally {
    await rm(lock, { force: true });
  }
}

async function listDir(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

// ---- the API ----

export interface HeatOptions {
  /** The length of a window (default an hour); shorter in tests. Every process of a store should
   * use the same (files of another length are mapped onto it by time). */
  windowMs?: number;
  log?: Logger;
}

export class Heat {
  private readonly table = new Table();
  private dirty = false;
  private saving: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;

  private constructor(
    readonly dir: string,
    readonly windowMs: number,
    /** This process's file; none for a merged view. */
    private readonly file: string | undefined,
    /** The process whose reads these are (this one's, for a merged view). */
    readonly pid: number,
    private readonly log?: Logger,
  ) {
    if (!(windowMs >= 1)) throw new RangeError(`a heat window must be at least 1 ms, not ${windowMs}`);
  }

  /** This process's recorder of reads for the store at `home`, empty (touches no file until saved). */
  static open(home: string, options: HeatOptions & { /** In tests, another process's. */ pid?: number } = {}): Heat {
    const pid = options.pid ?? process.pid;
    return new Heat(heatDir(home), options.windowMs ?? DEFAULT_WINDOW_MS, `${pid}-${randomBytes(4).toString('hex')}.heat`, pid, options.log);
  }

  /**
   * Every process's reads of the store at `home` as they last saved them, merged; first folds
   * the files of dead processes into the base (unless `fold` is false, or another process is
   * folding). The view is not saved: it is made again from the files each time.
   */
  static async load(home: string, options: HeatOptions & { nowMs?: number; fold?: boolean } = {}): Promise<Heat> {
    const windowMs = options.windowMs ?? DEFAULT_WINDOW_MS;
    const nowMs = options.nowMs ?? Date.now();
    const dir = heatDir(home);
    if (options.fold !== false) {
      await foldDead(dir, windowMs, nowMs, options.log).catch((err: unknown) => options.log?.warn({ err }, 'heat: folding the files of dead processes failed'));
    }
    // A file deleted while this reads was folded into the base meanwhile: read again.
    for (let attempt = 0; ; attempt++) {
      const heat = new Heat(dir, windowMs, undefined, process.pid, options.log);
      if ((await heat.readFiles(nowMs)) || attempt === 2) return heat;
    }
  }

  /** Chunks known. */
  get size(): number {
    return this.table.size;
  }

  /** Counts one read of chunk `id` at `nowMs`. On every chunk read: no I/O, no allocation but a
   * new chunk's entry. */
  record(id: ChunkId, nowMs: number = Date.now()): void {
    const t = this.table;
    const window = Math.floor(nowMs / this.windowMs);
    let s = t.slot(id);
    if (s === undefined) {
      if (!CHUNK_ID.test(id)) return;
      s = t.add(id, window);
    } else if (window > t.win[s]!) t.advance(s, window);
    if (t.winReads[s]! < MAX_COUNT) t.winReads[s]!++;
    t.reads[s]!++;
    if (nowMs > t.last[s]!) t.last[s] = nowMs;
    this.dirty = true;
  }

  classify(id: ChunkId, nowMs: number = Date.now()): HeatClass {
    const s = this.table.slot(id);
    if (s === undefined) return 'cold';
    this.table.view(s, Math.floor(nowMs / this.windowMs), scratch);
    return classOf(scratch, 0);
  }

  /** What is known of chunk `id` at `nowMs`; undefined for a chunk never read (cold for certain). */
  entry(id: ChunkId, nowMs: number = Date.now()): HeatEntry | undefined {
    const s = this.table.slot(id);
    return s === undefined ? undefined : this.table.entry(s, Math.floor(nowMs / this.windowMs));
  }

  /** Every chunk read, as of `nowMs`, in the order first read. */
  *entries(nowMs: number = Date.now()): Generator<HeatEntry> {
    const window = Math.floor(nowMs / this.windowMs);
    for (let s = 0; s < this.table.size; s++) yield this.table.entry(s, window);
  }

  /** Writes this process's reads to its file (nothing when none came since the last save). Saves
   * run one at a time. */
  save(): Promise<void> {
    const file = this.file;
    if (file === undefined) return Promise.reject(new Error('a merged view of heat is not saved: each process saves its own reads'));
    const write = async (): Promise<void> => {
      if (!this.dirty) return;
      this.dirty = false;
      try {
        await writeHeatFile(this.dir, file, { windowMs: this.windowMs, pid: this.pid, savedAtMs: Date.now() }, this.table);
      } catch (err) {
        this.dirty = true;
        throw err;
      }
    };
    const next = (this.saving ?? Promise.resolve()).catch(() => undefined).then(write);
    this.saving = next;
    return next;
  }

  /** Saves every `intervalMs` until stopSaving() or close(); the timer keeps no process alive. */
  startSaving(intervalMs: number): void {
    this.stopSaving();
    this.timer = setInterval(() => {
      this.save().catch((err: unknown) => this.log?.warn({ err }, 'heat: saving the chunk reads failed'));
    }, intervalMs);
    this.timer.unref();
  }

  stopSaving(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Stops saving periodically, and saves. */
  async close(): Promise<void> {
    this.stopSaving();
    if (this.file !== undefined) await this.save();
  }

  /** Merges the base and every process file it does not hold; false if one vanished meanwhile. */
  private async readFiles(nowMs: number): Promise<boolean> {
    const window = Math.floor(nowMs / this.windowMs);
    const names = await listDir(this.dir);
    const read = async (name: string): Promise<{ header: FileHeader; records: Buffer } | 'gone' | undefined> => {
      try {
        return (await readHeatFile(path.join(this.dir, name))) ?? 'gone';
      } catch (err) {
        if (!(err instanceof HeatFileError)) throw err;
        this.log?.warn({ err }, 'heat: a file is skipped');
        return undefined;
      }
    };
    const base = names.includes(BASE) ? await read(BASE) : undefined;
    const folded = new Set(base !== undefined && base !== 'gone' ? (base.header.folded ?? []) : []);
    if (base !== undefined && base !== 'gone') joinRecords(this.table, base, this.windowMs, window);
    for (const name of names) {
      if (!PROCESS_FILE.test(name) || folded.has(name)) continue;
      const file = await read(name);
      if (file === 'gone') return false;
      if (file) joinRecords(this.table, file, this.windowMs, window);
    }
    return true;
  }
}
