// The commands that work on a store without mounting it: init, volume create/list/remove,
// status and stats.
import { access } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { MetaError, type Time } from '../meta/contract.js';
import { DEFAULT_VOLUME, Store } from '../store/store.js';
import { loadOrCreateIdentity } from '../peer/identity.js';
import { runningDaemon, SOFTWARE } from '../daemon/daemon.js';
import { connectDaemon } from '../daemon/control.js';
import { shortPeerId } from '../peer/peer-id.js';
import { readPeers } from '../peer/peers.js';
import { realnessOf } from '../peer/real-files.js';
import { cachedChunkFile } from '../pool/remote-cache.js';
import { finished, JobStore } from '../jobs/job-store.js';
import { formatPolicy } from '../pool/policy.js';
import { currentDamage } from '../store/damage.js';
import { progressText } from './job-commands.js';
import { askRealness, realText } from './real-commands.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { CliError, formatBytes, formatRatio, printJson, printTable, ratio } from './output.js';

interface JsonOptions extends HomeOptions {
  json?: boolean;
}

/** What connected peers offer, from the daemon; undefined when no daemon runs. */
async function peerOffers(home: string): Promise<Array<{ peer: string; name: string; volumes: Array<{ name: string }> }> | undefined> {
  const daemon = await connectDaemon(home, SOFTWARE);
  if (!daemon) return undefined;
  try {
    const [offers, peers] = await Promise.all([daemon.request('offers', {}), readPeers(home)]);
    return (offers.header.offers as Array<{ peer: string; volumes: Array<{ name: string }> }>).map((o) => ({
      ...o,
      name: peers.peers.find((p) => p.id === o.peer)?.name ?? o.peer.slice(0, 7),
    }));
  } finally {
    await daemon.close();
  }
}

/** "PEERNAME:VOLUME", peer ID: how `orbit volume attach` will name them. */
function offerRows(offers: Array<{ peer: string; name: string; volumes: Array<{ name: string }> }>): string[][] {
  return offers.flatMap((o) => o.volumes.map((v) => [`${o.name}:${v.name}`, o.peer]));
}

function isoTime(t: Time): string {
  return new Date(t.sec * 1000 + Math.floor(t.nsec / 1e6)).toISOString();
}

export function addStoreCommands(program: Command): void {
  program
    .command('init')
    .description(`create a store with a volume named '${DEFAULT_VOLUME}' (an existing store is left as it is)`)
    .addOption(homeOption())
    .action(async (opts: HomeOptions) => {
      const { store, created } = await Store.init(opts.home);
      try {
        // The key pair peers know the store by (a store made before there were peers gets one
        // when first asked: orbit id, orbit up).
        await loadOrCreateIdentity(store.home);
        console.log(created ? `created an Orbit store at ${store.home} with volume '${DEFAULT_VOLUME}'` : `an Orbit store already exists at ${store.home}`);
      } finally {
        await store.close();
      }
    });

  const volume = program.command('volume').description('create, list and remove volumes');

  volume
    .command('create')
    .description('create an empty volume')
    .argument('<name>', "the new volume's name: letters, digits, '.', '_', '-'")
    .addOption(homeOption())
    .action((name: string, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        await store.meta.createVolume(name, { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0, umask: 0o022 });
        console.log(`created volume ${name}`);
      }),
    );

  volume
    .command('list')
    .description("list the store's volumes")
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        const volumes = (await store.meta.volumes()).map((v) => ({ name: v.name, createdAt: isoTime(v.createdAt) }));
        if (opts.json) return printJson(volumes);
        printTable([['VOLUME', 'CREATED'], ...volumes.map((v) => [v.name, v.createdAt])]);
        const rows = offerRows((await peerOffers(store.home)) ?? []);
        if (rows.length > 0) printTable([['OFFERED BY A PEER', 'PEER ID'], ...rows]);
      }),
    );

  volume
    .command('attach')
    .description('make a volume a peer offers (orbit volume offers) a local volume: read-only, its file list kept here, its contents fetched when read')
    .argument('<peer:volume>', "the peer's name or ID, ':', the volume's name there")
    .argument('[name]', 'the local name (default: the same as on the peer)')
    .addOption(homeOption())
    .action((target: string, name: string | undefined, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        const at = target.lastIndexOf(':');
        if (at <= 0 || at === target.length - 1) throw new CliError(`expected PEER:VOLUME, such as laptop:photos, not ${JSON.stringify(target)}`);
        const daemon = await connectDaemon(store.home, SOFTWARE);
        if (!daemon) throw new CliError("no daemon runs for this store: 'orbit up' starts it (attaching needs the peer connected)");
        try {
          const reply = await daemon.request('attach', {
            peer: target.slice(0, at), volume: target.slice(at + 1), ...(name ? { name } : {}), uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0,
          }, undefined, { timeoutMs: 600_000 });
          console.log(`attached ${target} as volume ${String(reply.header.name)} (${Number(reply.header.inodes)} inodes in its index); mount it with 'orbit mount --volume ${String(reply.header.name)} DIR'`);
        } catch (err) {
          throw new CliError(`cannot attach ${target}: ${(err as Error).message}`);
        } finally {
          await daemon.close();
        }
      }),
    );

  volume
    .command('offers')
    .description('the volumes connected peers offer this store (orbit share on their side); needs the daemon')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        const offers = await peerOffers(store.home);
        if (offers === undefined) throw new CliError("no daemon runs for this store: 'orbit up' starts it, and it learns what peers offer");
        if (opts.json) return printJson(offers);
        const rows = offerRows(offers);
        if (rows.length === 0) return console.log('no connected peer offers a volume');
        printTable([['OFFERED BY A PEER', 'PEER ID'], ...rows]);
      }),
    );

  volume
    .command('remove')
    .description('remove a volume and everything in it')
    .argument('<name>', 'the volume')
    .option('--force', 'remove it even when it holds files')
    .addOption(homeOption())
    .action((name: string, opts: HomeOptions & { force?: boolean }) =>
      withStore(opts.home, async (store) => {
        const mount = (await store.mounts()).find((m) => m.volume === name);
        if (mount) throw new CliError(`volume ${name} is mounted at ${mount.mountpoint}: unmount it first`);
        try {
          await store.meta.removeVolume(name, opts.force === true);
        } catch (err) {
          if (err instanceof MetaError && err.code === 'ENOTEMPTY') throw new CliError(`volume ${name} is not empty: --force removes it with everything in it`);
          throw err;
        }
        console.log(`removed volume ${name}`);
      }),
    );

  program
    .command('status')
    .description("show the store, its volumes and where they are mounted")
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        const mounts = await store.mounts();
        // Attached volumes: what is here of them (live from the daemon, else from the disk).
        const chunksDir = path.join(store.home, 'cache', 'chunks');
        const realness = (await askRealness(store.home)) ?? (await realnessOf(store, (id) => access(cachedChunkFile(chunksDir, id)).then(() => true, () => false)));
        const volumes = (await store.meta.volumes()).map((v) => {
          const m = mounts.find((r) => r.volume === v.name);
          const real = realness.find((r) => r.volume === v.name);
          return {
            name: v.name, createdAt: isoTime(v.createdAt), mount: m ? { mountpoint: m.mountpoint, pid: m.pid, since: m.since } : null,
            ...(v.origin ? { origin: { peer: v.origin.peer, volume: v.origin.volume } } : {}),
            ...(real ? { real } : {}),
          };
        });
        const disks = store.chunks.disks();
        const pool = {
          policy: formatPolicy(store.chunks.policy),
          disks: disks.length,
          unavailable: disks.filter((d) => !d.available).map((d) => ({ path: d.config.path, reason: d.reason ?? d.config.state })),
        };
        const jobs = (await new JobStore(store.home).list()).filter((j) => !finished(j) && j.everyMs === undefined);
        // Files the pool cannot read any more (chunks beyond what their policy tolerates).
        const lost = await currentDamage(store);
        const daemon = (await runningDaemon(store.home)) ?? null;
        if (opts.json) {
          printJson({ home: store.home, id: store.id, daemon, volumes, pool, jobs: jobs.map((j) => ({ id: j.id, kind: j.kind, state: j.state, progress: j.progress })), lost });
          return;
        }
        console.log(`Orbit store at ${store.home}`);
        console.log(daemon
          ? `daemon: process ${daemon.pid}, peer ${daemon.peerId}, ${daemon.listen ? `listening at ${daemon.listen}` : 'deaf (dials out only)'} (orbit peer list)`
          : "daemon: not running ('orbit up' starts it)");
        printTable([
          ['VOLUME', 'MOUNTPOINT', 'PROCESS', 'SINCE'],
          ...volumes.map((v) => (v.mount ? [v.name, v.mount.mountpoint, String(v.mount.pid), v.mount.since] : [v.name, '-'])),
        ]);
        for (const v of volumes) if (v.origin && v.real) console.log(`${v.name}: attached from ${shortPeerId(v.origin.peer)}:${v.origin.volume}; ${realText(v.real)}`);
        console.log(`pool: ${pool.disks} disk(s)${pool.unavailable.length ? `, ${pool.unavailable.length} unavailable (${pool.unavailable.map((d) => d.path).join(', ')})` : ''}; new chunks under ${pool.policy}`);
        for (const j of jobs) console.log(`job ${j.id}: ${j.kind} ${j.state}, ${progressText(j)}`);
        if (lost.length > 0) {
          const files = [...new Set(lost.flatMap((c) => c.files))];
          console.log(`LOST: ${lost.length} chunk(s) have fewer fragments than a read needs; these files return EIO where they use them:`);
          for (const f of files) console.log(`  ${f}`);
          process.exitCode = 1;
        }
      }),
    );

  program
    .command('stats')
    .description('show how much is stored and what deduplication and compression save')
    .option('--volume <name>', 'one volume (default: the whole store)')
    .option('--json', 'print JSON (sizes in bytes)')
    .addOption(homeOption())
    .action((opts: JsonOptions & { volume?: string }) =>
      withStore(opts.home, async (store) => {
        const u = await store.meta.usage(opts.volume);
        const stats = {
          volume: opts.volume ?? null,
          logicalBytes: u.logicalBytes,
          uniqueBytes: u.uniqueBytes,
          storedBytes: u.storedBytes,
          dedupRatio: ratio(u.logicalBytes, u.uniqueBytes),
          compressionRatio: ratio(u.uniqueBytes, u.storedBytes),
          inodes: u.inodes,
        };
        if (opts.json) {
          printJson(stats);
          return;
        }
        printTable([
          ['volume', opts.volume ?? 'all volumes'],
          ['logical', formatBytes(stats.logicalBytes)],
          ['unique', `${formatBytes(stats.uniqueBytes)} (after deduplication)`],
          ['stored', `${formatBytes(stats.storedBytes)} (after compression)`],
          ['dedup', `${formatRatio(stats.dedupRatio)} (logical / unique)`],
          ['compression', `${formatRatio(stats.compressionRatio)} (unique / stored)`],
          ['inodes', String(stats.inodes)],
        ]);
      }),
    );
}
