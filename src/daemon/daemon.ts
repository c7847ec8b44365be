// The daemon: the one long-running process of a store (`orbit up`). It holds the store open,
// keeps the household connected (peer/household.ts), runs the store's jobs, and answers commands
// on its control socket (control.ts). <home>/run/daemon.json says which process it is and where
// it listens.
import { readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { JOB_HANDLERS } from '../jobs/handlers.js';
import { JobRunner } from '../jobs/runner.js';
import { componentLogger, type Logger } from '../log.js';
import { loadOrCreateIdentity } from '../peer/identity.js';
import type { PeerId } from '../peer/peer-id.js';
import { Household } from '../peer/household.js';
import { IndexSync } from '../peer/index-sync.js';
import { findPeer, readPeers } from '../peer/peers.js';
import { Sharing } from '../peer/sharing.js';
import { isAlive } from '../processes.js';
import type { Store } from '../store/store.js';
import { serveControl, type ControlServer } from './control.js';

export const SOFTWARE = 'orbit/0.1';

/** <home>/run/daemon.json. */
export interface DaemonRecord {
  pid: number;
  peerId: PeerId;
  /** Where it listens for peers: HOST:PORT; absent when deaf. */
  listen?: string;
  since: string;
}

export interface DaemonOptions {
  listen?: { host: string; port: number };
}

export class Daemon {
  private stopping: Promise<void> | undefined;
  private markStopped!: () => void;
  /** Settles once stop() has finished (asked by a signal, or by `orbit down`). */
  readonly stopped = new Promise<void>((resolve) => {
    this.markStopped = resolve;
  });

  private constructor(
    readonly store: Store,
    readonly household: Household,
    private readonly sharing: Sharing,
    private readonly runner: JobRunner,
    private readonly control: ControlServer,
    readonly record: DaemonRecord,
    private readonly log: Logger,
  ) {}

  static async start(store: Store, options: DaemonOptions): Promise<Daemon> {
    const log = componentLogger('daemon');
    const identity = await loadOrCreateIdentity(store.home);
    const household = new Household(store.home, identity, componentLogger('peers'), { listen: options.listen, software: SOFTWARE });
    const sharing = new Sharing(household, store, componentLogger('sharing'));
    sharing.install();
    const indexes = new IndexSync(household, store, componentLogger('index'));
    indexes.install();
    // The control socket first: it refuses to start a second daemon for the store.
    // The handlers are in place before the daemon they answer for is made.
    const made: { daemon?: Daemon } = {};
    const control = await serveControl(store.home, {
      status: async () => ({ header: { ...made.daemon?.record, peers: household.states() } }),
      peers: async () => ({ header: { peers: household.states() } }),
      offers: async () => ({ header: { offers: sharing.offers() } }),
      attach: async (req) => {
        const peer = findPeer(await readPeers(store.home), String(req.header.peer));
        const volume = String(req.header.volume);
        const offered = sharing.offers().find((o) => o.peer === peer.id);
        if (!offered) throw Object.assign(new Error(`peer ${peer.name} is not connected: its offers are not known`), { code: 'EHOSTDOWN' });
        if (!offered.volumes.some((v) => v.name === volume)) throw Object.assign(new Error(`peer ${peer.name} does not offer a volume ${volume} to this store`), { code: 'ENOENT' });
        const name = String(req.header.name ?? volume);
        const owner = { uid: Number(req.header.uid ?? 0), gid: Number(req.header.gid ?? 0), umask: 0o022 };
        const attached = await indexes.attach(peer.id, volume, name, owner);
        const usage = await store.meta.usage(name);
        return { header: { name: attached.name, peer: peer.id, inodes: usage.inodes } };
      },
      stop: async () => {
        setImmediate(() => void made.daemon?.stop());
        return { header: {} };
      },
    }, SOFTWARE, log);
    try {
      await household.start();
    } catch (err) {
      await control.close();
      throw err;
    }
    const address = household.address;
    const record: DaemonRecord = {
      pid: process.pid,
      peerId: identity.peerId,
      ...(address ? { listen: formatAddress(address) } : {}),
      since: new Date().toISOString(),
    };
    await writeFile(recordFile(store.home), JSON.stringify(record) + '\n');
    const runner = new JobRunner(store, JOB_HANDLERS, componentLogger('jobs'));
    runner.start();
    made.daemon = new Daemon(store, household, sharing, runner, control, record, log);
    log.info({ peer: identity.peerId, listen: record.listen ?? 'deaf' }, 'daemon up');
    return made.daemon;
  }

  /** Stops serving: peers, commands and jobs; the store stays open for the caller to close. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.log.info('daemon stopping');
      // Every step is taken whatever fails before it; failures are logged, not thrown at a
      // signal handler that cannot act on them.
      const steps: Array<[string, () => unknown]> = [
        ['the control socket', () => this.control.close()],
        ['sharing', () => this.sharing.stop()],
        ['the peers', () => this.household.stop()],
        ['the jobs', () => this.runner.stop()],
        ['the daemon record', () => rm(recordFile(this.store.home), { force: true })],
      ];
      for (const [what, step] of steps) {
        try {
          await step();
        } catch (err) {
          this.log.error({ err }, `stopping ${what} failed`);
        }
      }
    })().finally(() => this.markStopped());
    return this.stopping;
  }

}

function recordFile(home: string): string {
  return path.join(home, 'run', 'daemon.json');
}

/** The daemon serving the store now, if one does. */
export async function runningDaemon(home: string): Promise<DaemonRecord | undefined> {
  try {
    const rec = JSON.parse(await readFile(recordFile(home), 'utf8')) as DaemonRecord;
    return isAlive(rec.pid) ? rec : undefined;
  } catch {
    return undefined;
  }
}

export function formatAddress(a: { host: string; port: number }): string {
  return a.host.includes(':') ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}
