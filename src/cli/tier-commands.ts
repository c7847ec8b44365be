// `orbit tier list`: which chunks are hot, warm or cold, from the reads every process of the store
// recorded (pool/heat.ts), with a file that uses each. Chunks never read are cold and not listed.
import { InvalidArgumentError, Option, type Command } from 'commander';
import { Heat, HEAT_CLASSES, type HeatClass, type HeatEntry } from '../pool/heat.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { printJson, printTable } from './output.js';

interface ListOptions extends HomeOptions {
  hot?: boolean;
  warm?: boolean;
  cold?: boolean;
  json?: boolean;
  limit: number;
}

const DEFAULT_LIMIT = 100;

function parseLimit(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1) throw new InvalidArgumentError(`expected a whole number from 1, not ${JSON.stringify(text)}`);
  return Number(text);
}

/** One of --hot, --warm, --cold (commander refuses two), or undefined for all. */
function classOption(cls: HeatClass): Option {
  return new Option(`--${cls}`, `only ${cls} chunks`).conflicts(HEAT_CLASSES.filter((c) => c !== cls));
}

/** Hot first; in a class, the surest first, then the most read. */
function byHeat(a: HeatEntry, b: HeatEntry): number {
  const c = HEAT_CLASSES.indexOf(a.class);
  return c - HEAT_CLASSES.indexOf(b.class) || b.p[c]! - a.p[c]! || b.reads - a.reads;
}

const isoTime = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');

export function addTierCommands(program: Command): void {
  const tier = program.command('tier').description('hot, warm and cold chunks, by how often and how lately they are read');

  tier
    .command('list')
    .description('the chunks of a class (all read chunks without one), hottest first, with a file using each')
    .addOption(classOption('hot'))
    .addOption(classOption('warm'))
    .addOption(classOption('cold'))
    .option('--limit <n>', `at most this many chunks (default ${DEFAULT_LIMIT})`, parseLimit, DEFAULT_LIMIT)
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: ListOptions) =>
      withStore(opts.home, async (store) => {
        const wanted = HEAT_CLASSES.find((c) => opts[c] === true);
        const heat = await Heat.load(store.home);
        const now = Date.now();
        const all = [...heat.entries(now)].filter((e) => wanted === undefined || e.class === wanted).sort(byHeat);
        const shown = all.slice(0, opts.limit);
        const files = await Promise.all(shown.map((e) => store.meta.filesUsing(e.id, 1)));
        const rows = shown.map((e, i) => ({
          id: e.id,
          class: e.class,
          reads: e.reads,
          lastRead: isoTime(e.lastReadMs),
          p: { hot: e.p[0], warm: e.p[1], cold: e.p[2] },
          file: files[i]![0] ?? null,
        }));
        if (opts.json) {
          printJson({ windowMs: heat.windowMs, total: all.length, chunks: rows });
          return;
        }
        printTable([
          ['CHUNK', 'CLASS', 'P(HOT)', 'P(WARM)', 'P(COLD)', 'READS', 'LAST READ', 'FILE'],
          ...rows.map((r) => [
            r.id.slice(0, 16), r.class, r.p.hot.toFixed(2), r.p.warm.toFixed(2), r.p.cold.toFixed(2),
            String(r.reads), r.lastRead, r.file ?? '- (no file uses it)',
          ]),
        ]);
        const what = wanted ?? 'read';
        if (all.length > shown.length) console.log(`${shown.length} of ${all.length} ${what} chunks shown; --limit shows more`);
        else if (all.length === 0) console.log(`no ${what} chunks`);
      }),
    );
}
