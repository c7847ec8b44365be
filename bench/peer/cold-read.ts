// A cold read of the remote file, as every side of the remote-read bench is measured: the time to
// the first 4 KiB, and a sequential read of the whole file, each after the side was made cold, with
// the bytes that crossed the loopback interface meanwhile (the bench's own: private-loopback.ts).
// Counting loopback bytes, rather than asking each program, gives every side the same meter:
// Orbit's frames, TLS records, SSH packets, with their TCP/IP headers, whoever sent them.
import { setTimeout as sleep } from 'node:timers/promises';
import { dropCaches, type Workload } from '../lib.js';
import type { Loopback } from './private-loopback.js';

/** One round of one side. */
export interface ReadFigures {
  /** From asking (open(2), or a request on an open connection) to holding the first 4 KiB. */
  firstByteSeconds: number;
  /** Loopback bytes the 4 KiB read set moving, until the link went quiet; undefined for a
   * stream, which cannot stop at 4 KiB. */
  firstByteMoved?: number;
  /** The whole file, sequentially: MB/s (10^6 bytes a second). */
  throughput: number;
  /** Loopback bytes during the whole read. */
  moved: number;
  /** Bytes the reading side counted in from the serving side, when it counts them. */
  countedIn?: number;
}

/** A way to read the remote file on this machine: a filesystem mounted over the network, or the
 * plain stream the others are held to. */
export interface RemoteReader {
  readonly name: string;
  /** One cold read (the 4 KiB one and the whole one). */
  read(): Promise<ReadFigures>;
  /** Ends what it started (mounts, processes); safe to call twice, and after a failed start. */
  close(): Promise<void>;
}

/** Below this many loopback bytes in QUIET_MS the link is quiet (keepalives and pings are far
 * smaller than a chunk or a read-ahead window). */
const QUIET_BYTES = 64 * 1024;
const QUIET_MS = 500;
const QUIET_AT_MOST_MS = 15_000;

/** Waits until loopback traffic stops (a read-ahead that goes on after the read returned counts
 * against the read that started it); returns the counter then. */
async function bytesWhenQuiet(net: Loopback): Promise<number> {
  const deadline = Date.now() + QUIET_AT_MOST_MS;
  let last = await net.bytes();
  for (;;) {
    await sleep(QUIET_MS);
    const now = await net.bytes();
    if (now - last < QUIET_BYTES || Date.now() > deadline) return now;
    last = now;
  }
}

export interface ColdMount {
  /** Leaves the file at `file` with nothing of it cached on the reading side (remounted, caches
   * emptied); the page cache is dropped after it. */
  cold(): Promise<void>;
  /** The file through the mount. */
  file: string;
  /** The bytes expected. */
  size: number;
  /** The reading side's own count of bytes in from the serving side, when it keeps one. */
  countedIn?: () => Promise<number>;
}

/** The 4 KiB read and the whole read of a file through a mount, each from cold. */
export async function readThroughMount(work: Workload, net: Loopback, mount: ColdMount): Promise<ReadFigures> {
  await mount.cold();
  await dropCaches();
  const beforeFirst = await net.bytes();
  const first = await work.run('firstbyte', mount.file);
  if (first.bytes !== 4096) throw new Error(`the first read of ${mount.file} returned ${first.bytes} bytes`);
  const firstByteMoved = (await bytesWhenQuiet(net)) - beforeFirst;

  await mount.cold();
  await dropCaches();
  const countedBefore = await mount.countedIn?.();
  const before = await net.bytes();
  const whole = await work.run('seqread', mount.file);
  const moved = (await net.bytes()) - before;
  const countedAfter = await mount.countedIn?.();
  if (whole.bytes !== mount.size) throw new Error(`read ${whole.bytes} bytes of ${mount.file}, not ${mount.size}`);
  return {
    firstByteSeconds: first.seconds!,
    firstByteMoved,
    throughput: whole.bytes / whole.seconds! / 1e6,
    moved,
    ...(countedBefore !== undefined && countedAfter !== undefined ? { countedIn: countedAfter - countedBefore } : {}),
  };
}
