// Reading a peer's file, as a user on B sees it (issue 5, check 3): a file of --size MiB of random
// data in store A's volume, shared with store B and read through B's mount, so that every byte
// crosses Orbit's peer connection (mutual TLS 1.3 over loopback, both daemons on this machine).
// Next to it, in the same run, a plain TLS 1.3 stream of the same bytes over loopback, between two
// processes of their own (the goal: Orbit at least 0.6 of its throughput); and, where Debian's
// packages are installed, sshfs and rclone's mount (--vfs-cache-mode full) reading the same bytes
// over SFTP from a local sshd. Everything they store or serve (A's and B's homes, the plain copy of
// the file the others read, rclone's cache) is under a scratch directory in os.tmpdir() or
// --on DIR.
//
// Each round reads once per side, the sides in alternating order; the table quotes medians. A
// read is two, each from cold (nothing of the file on the reading side: Orbit's B restarted with
// its cache deleted, the others remounted, and the page cache dropped): the time to the first
// 4 KiB (open and one read(2), in C), and the whole file in 1 MiB reads. The stream, which cannot
// stop at 4 KiB, gives both from one connection: from asking to the first 4 KiB, and to the end.
// Bytes moved are what crossed the loopback interface meanwhile, which counts every side alike,
// headers and protocol included; for Orbit, also what B's daemon counted in from A.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describeFs, median, MiB, printSides, scratchDir, settle, Workload, type SidesRow } from '../lib.js';
import type { ReadFigures, RemoteReader } from './cold-read.js';
import { OrbitPair } from './orbit-pair.js';
import { Loopback } from './private-loopback.js';
import { startSshSides } from './ssh-mounts.js';
import { TlsStream } from './tls-stream.js';

export interface RemoteReadBenchOptions {
  rounds: number;
  sizeMiB: number;
  /** The directory under which the stores and the plain file go (default os.tmpdir()). */
  on?: string;
}

async function loadAverage(): Promise<string> {
  return (await readFile('/proc/loadavg', 'utf8')).split(' ').slice(0, 3).join(' ');
}

export async function benchRemoteRead(opts: RemoteReadBenchOptions): Promise<void> {
  const scratch = await scratchDir('peer', opts.on);
  // Stopped in reverse order of starting, each whatever became of the others.
  const closers: Array<() => Promise<void>> = [];
  const loadBefore = await loadAverage();
  try {
    const plainDir = path.join(scratch.dir, 'plain');
    await mkdir(plainDir);
    const work = new Workload(await Workload.build(scratch.dir), path.join(plainDir, 'file'));
    await work.run('fill', work.source, opts.sizeMiB);
    const size = opts.sizeMiB * MiB;

    const net = await Loopback.open();
    closers.push(() => net.close());
    if (net.shared) console.log(`loopback bytes are the machine's, other traffic included: ${net.shared}`);
    const orbit = await OrbitPair.start(path.join(scratch.dir, 'orbit'), work, net, opts.sizeMiB);
    closers.push(() => orbit.close());
    const stream = await TlsStream.start(path.join(scratch.dir, 'tls'), net, work.source, size);
    closers.push(() => stream.close());
    const ssh = await startSshSides(path.join(scratch.dir, 'ssh'), plainDir, size, work, net);
    closers.push(() => ssh.close());
    for (const line of ssh.leftOut) console.log(line);
    const readers: RemoteReader[] = [orbit, stream, ...ssh.readers];
    // What was written reaches the backing store's disk before anything is timed.
    await settle(scratch.dir);

    const results = new Map<RemoteReader, ReadFigures[]>(readers.map((r) => [r, []]));
    for (let i = 0; i < opts.rounds; i++) {
      for (const reader of i % 2 === 0 ? readers : [...readers].reverse()) {
        results.get(reader)!.push(await reader.read());
        console.error(`peer bench: round ${i + 1}/${opts.rounds}, ${reader.name} done`);
      }
    }

    const row = (what: string, unit: string, figure: (f: ReadFigures) => number | undefined, goal?: number): SidesRow => ({
      what,
      unit,
      values: readers.map((r) => {
        const xs = results.get(r)!.map(figure).filter((x): x is number => x !== undefined);
        return xs.length > 0 ? median(xs) : undefined;
      }),
      goal,
    });
    printSides(
      `Remote read: ${opts.sizeMiB} MiB of random data on A, read on B over loopback, stores and files on ${await describeFs(scratch.dir)}, cold, median of ${opts.rounds} interleaved rounds`,
      readers.map((r) => r.name),
      [
        row('sequential read, 1 MiB I/O', 'MB/s', (f) => f.throughput, 0.6),
        row('time to the first 4 KiB', 'ms', (f) => f.firstByteSeconds * 1000),
        row('loopback bytes, first 4 KiB read', 'MiB', (f) => (f.firstByteMoved === undefined ? undefined : f.firstByteMoved / MiB)),
        row('loopback bytes, whole read', 'MiB', (f) => f.moved / MiB),
        row('bytes B counted in from A, whole read', 'MiB', (f) => (f.countedIn === undefined ? undefined : f.countedIn / MiB)),
      ],
    );
    console.log(`TLS stream: ${stream.negotiated}, one connection a read, server and client in processes of their own`);
    console.log(`load average (1, 5, 15 min) when the part began: ${loadBefore}; when it ended: ${await loadAverage()}`);
  } finally {
    for (const close of closers.reverse()) {
      await close().catch((err: unknown) => console.error(`peer bench: cleaning up: ${(err as Error).message}`));
    }
    await scratch.remove();
  }
}
