// `orbit pin` and `orbit unpin`: Real and Unreal files of attached volumes. The mark goes into the
// store's metadata here; the daemon, told at once (and looking every few seconds anyway), fetches
// a Real file's chunks into the pool, or moves an Unreal one's to the cache.
import type { Command } from 'commander';
import { connectDaemon } from '../daemon/control.js';
import { SOFTWARE } from '../daemon/daemon.js';
import type { Realness } from '../peer/real-files.js';
import { resolveStorePath } from '../store/paths.js';
import type { Store } from '../store/store.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { CliError, formatBytes } from './output.js';

/** How often --wait looks at the progress. */
const WAIT_POLL_MS = 500;

async function mark(store: Store, target: string, real: boolean): Promise<string> {
  const where = await resolveStorePath(store, target);
  const volume = (await store.meta.volumes()).find((v) => v.name === where.volume)!;
  if (!volume.origin) throw new CliError(`${where.display} is in a volume of this store: its files are all local (Real) already`);
  await store.meta.setReal(where.ino, real);
  return where.volume;
}

/** Asks the daemon what it knows of attached volumes; undefined when none runs. */
export async function askRealness(home: string, kick = false): Promise<Realness[] | undefined> {
  const daemon = await connectDaemon(home, SOFTWARE);
  if (!daemon) return undefined;
  try {
    if (kick) await daemon.request('real.changed', {});
    return (await daemon.request('realness', {})).header.volumes as Realness[];
  } finally {
    await daemon.close();
  }
}

export function realText(r: Realness): string {
  const pinned = r.pinnedBytes > 0 ? `; Real files ${formatBytes(r.pinnedRealBytes)} of ${formatBytes(r.pinnedBytes)} here${r.failed ? ` (${r.failed} chunk(s) waiting for a peer)` : ''}` : '';
  return `${formatBytes(r.realBytes)} Real, ${formatBytes(r.cachedBytes)} cached, ${formatBytes(r.remoteBytes)} only on peers${pinned}`;
}

export function addRealCommands(program: Command): void {
  program
    .command('pin')
    .description('make a file or directory of an attached volume Real: fetched completely, kept here, readable with its peers offline (new files in a directory follow it)')
    .argument('<path>', 'a path in a mounted volume, or VOLUME:/path')
    .option('--wait', 'wait until every Real file of the volume is here, showing progress')
    .addOption(homeOption())
    .action((target: string, opts: HomeOptions & { wait?: boolean }) =>
      withStore(opts.home, async (store) => {
        const volume = await mark(store, target, true);
        let state = (await askRealness(store.home, true))?.find((r) => r.volume === volume);
        if (!state) {
          console.log(`${target}: Real; the daemon fetches it once it runs ('orbit up')`);
          return;
        }
        if (!opts.wait) {
          console.log(`${target}: Real; ${realText(state)}`);
          return;
        }
        while (state.pinnedRealBytes < state.pinnedBytes) {
          if (state.failed > 0) throw new CliError(`${target}: Real, but ${state.failed} chunk(s) cannot be fetched now (no peer that holds them is connected); the daemon goes on trying`);
          process.stderr.write(`\r${formatBytes(state.pinnedRealBytes)} of ${formatBytes(state.pinnedBytes)} here`);
          await new Promise((r) => setTimeout(r, WAIT_POLL_MS));
          state = (await askRealness(store.home))?.find((r) => r.volume === volume);
          if (!state) throw new CliError('the daemon stopped');
        }
        process.stderr.write('\n');
        console.log(`${target}: Real; ${realText(state)}`);
      }),
    );

  program
    .command('unpin')
    .description('make a file or directory of an attached volume Unreal: fetched on demand into the bounded cache, evictable')
    .argument('<path>', 'a path in a mounted volume, or VOLUME:/path')
    .addOption(homeOption())
    .action((target: string, opts: HomeOptions) =>
      withStore(opts.home, async (store) => {
        const volume = await mark(store, target, false);
        const state = (await askRealness(store.home, true))?.find((r) => r.volume === volume);
        console.log(`${target}: Unreal${state ? `; ${realText(state)}` : ''}`);
      }),
    );
}
