// `orbit fsck` and `orbit gc`: checking the store and reclaiming space. Both are safe while
// volumes are mounted (fsck --repair deletes stray chunks only when nothing is mounted).
import type { Command } from 'commander';
import { fsck, type FsckProblem } from '../store/fsck.js';
import { gc } from '../store/gc.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { formatBytes, printJson } from './output.js';

type JsonOptions = HomeOptions & { json?: boolean };

function describe(p: FsckProblem): string {
  switch (p.kind) {
    case 'missing-chunk':
      return `missing chunk ${p.chunk}, used by ${p.files.join(', ') || 'no file'}`;
    case 'corrupt-chunk':
      return `corrupt chunk ${p.chunk}, used by ${p.files.join(', ') || 'no file'} (${p.detail})`;
    case 'refcount':
      return `chunk ${p.chunk}: ${p.recorded} references recorded, ${p.actual} found${p.repaired ? ' (repaired)' : ''}`;
    case 'orphan-chunk':
      return `chunk ${p.chunk} (${formatBytes(p.storedBytes)}) is stored but unknown to the metadata${p.repaired ? ' (deleted)' : ''}`;
  }
}

export function addMaintenanceCommands(program: Command): void {
  program
    .command('fsck')
    .description('check that metadata and chunks agree and that every chunk holds what its name says')
    .option('--repair', 'fix reference counts, and delete stray chunks when nothing is mounted')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions & { repair?: boolean }) =>
      withStore(opts.home, async (store) => {
        const report = await fsck(store, { repair: opts.repair === true });
        if (opts.json) printJson(report);
        else {
          console.log(`checked ${report.chunksVerified} chunks (${formatBytes(report.bytesVerified)})`);
          for (const p of report.problems) console.log(describe(p));
          console.log(report.problems.length === 0 ? 'no problems found' : `${report.problems.length} problem(s) found`);
        }
        // Damage that repair cannot fix leaves a non-zero status for scripts.
        if (report.problems.some((p) => p.kind === 'missing-chunk' || p.kind === 'corrupt-chunk' || !p.repaired)) process.exitCode = 1;
      }),
    );

  program
    .command('gc')
    .description('delete chunks no file refers to any more (safe while mounted)')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: JsonOptions) =>
      withStore(opts.home, async (store) => {
        const report = await gc(store);
        if (opts.json) printJson(report);
        else console.log(`deleted ${report.chunks} unreferenced chunks (${formatBytes(report.storedBytes)})${report.orphans > 0 ? `, ${report.orphans} of them orphans the metadata did not know` : ''}`);
      }),
    );
}
