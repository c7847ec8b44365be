// Two Orbit stores of one household on this machine, as the remote-read bench reads through them:
// A holds the file in its volume "media" and shares it with B; B attaches it and mounts it through
// its daemon, so every byte B reads crosses the peer connection (mutual TLS over loopback) the
// first time. Both daemons run as `orbit up` in their own processes, on the bench's loopback.
//
// A cold read on B: B's mount and daemon are stopped, B's cache of fetched chunks
// (<home>/cache) deleted, the daemon started again and, once it is connected to A, the volume
// mounted again. A keeps running: what it reads is its pool's files, which the page-cache drop
// before each read makes cold (on tmpfs they stay in memory, as does the plain file the other
// sides read).
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { PeerState } from '../../src/peer/household.js';
import { ORBIT_NODE_ARGS, run, start, waitFor } from '../../test/helpers.js';
import { down, type Up } from '../../test/peer/daemons.js';
import { PHASE_TIMEOUT_MS, type Workload } from '../lib.js';
import { readThroughMount, type ReadFigures, type RemoteReader } from './cold-read.js';
import type { Loopback } from './private-loopback.js';

const VOLUME = 'media';
const FILE = 'file';
/** How long B may take to connect to A after starting (its first dial is at once), and a daemon
 * to start: generous, for a machine busy with other work. */
const CONNECT_TIMEOUT_MS = 60_000;

async function orbit(...args: string[]): Promise<string> {
  const res = await run(process.execPath, [...ORBIT_NODE_ARGS, ...args], { timeoutMs: PHASE_TIMEOUT_MS });
  if (res.code !== 0) throw new Error(`orbit ${args.join(' ')}: ${res.stderr.trim() || `exit ${res.code}`}`);
  return res.stdout;
}

export class OrbitPair implements RemoteReader {
  readonly name = 'orbit';
  private a: Up | undefined;
  private b: Up | undefined;
  private mounted = false;

  private constructor(
    private readonly work: Workload,
    private readonly net: Loopback,
    private readonly homeA: string,
    private readonly homeB: string,
    private readonly mountB: string,
    private readonly size: number,
  ) {}

  /** A and B under `dir`, A's volume holding the first `sizeMiB` MiB of the workload's source as
   * its file, shared with and attached by B. */
  static async start(dir: string, work: Workload, net: Loopback, sizeMiB: number): Promise<OrbitPair> {
    const pair = new OrbitPair(work, net, path.join(dir, 'a'), path.join(dir, 'b'), path.join(dir, 'mnt-b'), sizeMiB * 1024 * 1024);
    try {
      await pair.setUp(dir, sizeMiB);
      return pair;
    } catch (err) {
      await pair.close();
      throw err;
    }
  }

  private async setUp(dir: string, sizeMiB: number): Promise<void> {
    const ids: string[] = [];
    for (const home of [this.homeA, this.homeB]) {
      await orbit('init', '--home', home);
      ids.push((JSON.parse(await orbit('id', '--json', '--home', home)) as { id: string }).id);
    }
    const [idA, idB] = ids as [string, string];
    // A's file goes in through its own mount, before its daemon starts, as a user would put it.
    const mountA = path.join(dir, 'mnt-a');
    await mkdir(mountA);
    await mkdir(this.mountB);
    await orbit('volume', 'create', VOLUME, '--home', this.homeA);
    await orbit('mount', '--volume', VOLUME, '--background', '--home', this.homeA, mountA);
    try {
      await this.work.run('seqwrite', this.work.source, path.join(mountA, FILE), sizeMiB);
    } finally {
      await orbit('umount', mountA);
    }

    this.a = await this.up(this.homeA, ['--listen', '127.0.0.1:0']);
    await orbit('peer', 'add', idB, '--name', 'b', '--home', this.homeA);
    await orbit('peer', 'add', idA, '--name', 'a', '--address', this.a.listen!, '--home', this.homeB);
    await this.startB();
    await orbit('share', VOLUME, '--with', 'b', '--home', this.homeA);
    await waitFor(async () => (JSON.parse(await orbit('volume', 'offers', '--json', '--home', this.homeB)) as Array<{ volumes: Array<{ name: string }> }>)
      .some((o) => o.volumes.some((v) => v.name === VOLUME)), `A's offer of ${VOLUME} to reach B`, CONNECT_TIMEOUT_MS);
    await orbit('volume', 'attach', `a:${VOLUME}`, '--home', this.homeB);
  }

  read(): Promise<ReadFigures> {
    return readThroughMount(this.work, this.net, {
      file: path.join(this.mountB, FILE),
      size: this.size,
      cold: () => this.coldB(),
      countedIn: async () => (await this.peerA()).bytesIn,
    });
  }

  async close(): Promise<void> {
    try {
      await this.unmountB();
    } finally {
      // Even when the unmount failed: a daemon that ends unmounts what it serves.
      try {
        if (this.b) await down(this.b);
      } finally {
        if (this.a) await down(this.a);
        this.a = this.b = undefined;
      }
    }
  }

  /** B with nothing of A's file: no mount, no daemon (its cache of fetched chunks and its
   * in-memory chunk cache go with it), then all three back. */
  private async coldB(): Promise<void> {
    await this.unmountB();
    if (this.b) await down(this.b);
    this.b = undefined;
    await rm(path.join(this.homeB, 'cache'), { recursive: true, force: true });
    await this.startB();
    await orbit('mount', '--volume', VOLUME, '--home', this.homeB, this.mountB);
    this.mounted = true;
  }

  private async startB(): Promise<void> {
    this.b = await this.up(this.homeB);
    await waitFor(async () => (await this.peerA()).connected, 'B to connect to A', CONNECT_TIMEOUT_MS);
  }

  /** `orbit up --home HOME ARGS…` on the bench's loopback, once it says it is up. */
  private async up(home: string, args: readonly string[] = []): Promise<Up> {
    const [cmd, cmdArgs] = this.net.command(process.execPath, [...ORBIT_NODE_ARGS, 'up', '--home', home, ...args]);
    const daemon = start(cmd, cmdArgs);
    await waitFor(() => /orbit daemon for/.test(daemon.output()) || daemon.child.exitCode !== null, `the daemon of ${home} to start`, CONNECT_TIMEOUT_MS);
    if (daemon.child.exitCode !== null) throw new Error(`the daemon of ${home} did not start: ${daemon.output().trim()}`);
    const listen = /listening at (\S+)/.exec(daemon.output());
    return { ...daemon, ...(listen ? { listen: listen[1]! } : {}) };
  }

  private async unmountB(): Promise<void> {
    if (!this.mounted) return;
    await orbit('umount', this.mountB);
    this.mounted = false;
  }

  /** A as B's daemon sees it. */
  private async peerA(): Promise<PeerState> {
    const { peers } = JSON.parse(await orbit('peer', 'list', '--json', '--home', this.homeB)) as { peers: PeerState[] };
    const a = peers.find((p) => p.name === 'a');
    if (!a) throw new Error(`B does not know A: ${JSON.stringify(peers)}`);
    return a;
  }
}
