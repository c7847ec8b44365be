// Where the remote-read bench's sides talk: a network namespace of the bench's own, whose
// loopback interface carries their traffic and nothing else, so that the bytes it counts are
// theirs however busy the machine's own loopback is (other jobs, other daemons). A `sleep` that
// unshare started in it holds it open; programs join it through nsenter (which then execs them:
// the process the bench started is the program itself), and its counters are read through the
// holder's /proc/PID/net/dev. Mounts and files are the machine's as usual: only the network
// is apart.
//
// Without unshare, nsenter or ip (util-linux, iproute2), the sides run on the machine's loopback,
// and its counters count whatever else moves there.
import type { ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { start } from '../../test/helpers.js';
import { installed, stopProcess } from '../lib.js';

const START_TIMEOUT_MS = 10_000;

export class Loopback {
  private constructor(
    /** The process holding the namespace; none when the machine's loopback is used. */
    private readonly holder: ChildProcess | undefined,
    /** Why the machine's loopback is used, when it is. */
    readonly shared?: string,
  ) {}

  /** A private loopback when this machine can make one, else the machine's. */
  static async open(): Promise<Loopback> {
    for (const program of ['unshare', 'nsenter', 'ip']) {
      if (!(await installed(program))) return new Loopback(undefined, `no ${program} here`);
    }
    // unshare execs the shell in the new namespace, which execs sleep: the child is the holder.
    const { child: holder, output } = start('unshare', ['--net', '--', 'sh', '-c', 'ip link set lo up && echo up && exec sleep infinity']);
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!/^up$/m.test(output())) {
      if (holder.exitCode !== null || Date.now() > deadline) {
        await stopProcess(holder);
        return new Loopback(undefined, `no network namespace: ${output().trim() || `unshare exited ${holder.exitCode}`}`);
      }
      await sleep(20);
    }
    return new Loopback(holder);
  }

  /** The command line that runs `cmd args` on this loopback. */
  command(cmd: string, args: readonly string[]): [string, string[]] {
    if (!this.holder) return [cmd, [...args]];
    return ['nsenter', [`--net=/proc/${this.holder.pid}/ns/net`, '--', cmd, ...args]];
  }

  /** Bytes the loopback interface has received: every byte sent over it, once. */
  async bytes(): Promise<number> {
    const dev = await readFile(this.holder ? `/proc/${this.holder.pid}/net/dev` : '/proc/net/dev', 'utf8');
    const lo = /^\s*lo:\s*(\d+)/m.exec(dev);
    if (!lo) throw new Error('no lo in /proc/net/dev');
    return Number(lo[1]);
  }

  close(): Promise<void> {
    return this.holder ? stopProcess(this.holder) : Promise.resolve();
  }
}
