// `orbit tier …`: which chunks are hot, warm or cold, from the reads every process of the store
// recorded (pool/heat.ts), with a file that uses each (chunks never read are cold and not
// listed); and tiering: hot chunks under one policy, cold ones under another (pool/tiering.ts),
// moved lazily when read hot (store/tier-mover.ts) and by a repeating tier job (jobs/tier-walk.ts).
import { InvalidArgumentError, Option, type Command } from 'commander';
import { JobStore } from '../jobs/job-store.js';
import { DEFAULT_WINDOW_MS, Heat, HEAT_CLASSES, type HeatClass, type HeatEntry } from '../pool/heat.js';
import { readPoolConfig, setConfiguredTiering, updatePoolConfig, type Tiering } from '../pool/pool-config.js';
import { formatPolicy, fragmentCount, parsePolicy, type Policy } from '../pool/policy.js';
import type { Store } from '../store/store.js';
import { formatDuration, parseDuration, parsePolicyArgument, parseSize } from './arguments.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { ensureRunner, followJob } from './job-commands.js';
import { CliError, formatBytes, printJson, printTable } from './output.js';

interface ListOptions extends HomeOptions {
  hot?: boolean;
  warm?: boolean;
  cold?: boolean;
  json?: boolean;
  limit: number;
}

const DEFAULT_LIMIT = 100;
/** How often the tier job walks the chunks unless told. */
const DEFAULT_EVERY_MS = 3_600_000;

interface PolicyOptions extends HomeOptions {
  hot?: string;
  cold?: string;
  off?: boolean;
  every?: number;
  window?: number;
  rate?: number;
  json?: boolean;
}

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
        const heat = await Heat.load(store.home, { windowMs: store.chunks.heatWindowMs });
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

  tier
    .command('policy')
    .description('show or set tiering: chunks no file asks a policy of go under --hot while read often and --cold otherwise')
    .option('--hot <policy>', 'the policy of hot chunks (replicate:3, say)', parsePolicyArgument)
    .option('--cold <policy>', 'the policy of cold chunks, and of new ones (ec:4+2, say)', parsePolicyArgument)
    .option('--off', 'turn tiering off (chunks stay where they are; new ones get the pool\'s policy)')
    .option('--every <duration>', `how often the tier job moves chunks whose class changed (default ${formatDuration(DEFAULT_EVERY_MS)})`, parseDuration)
    .option('--window <duration>', `the heat window: reads are counted per window, and a class follows them over a few (default ${formatDuration(DEFAULT_WINDOW_MS)})`, parseDuration)
    .option('--rate <size>', 'the tier job reads at most this many bytes a second (50M); default: as fast as the disks go', parseSize)
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: PolicyOptions) =>
      withStore(opts.home, async (store) => {
        const setting = opts.hot !== undefined || opts.cold !== undefined;
        if (opts.off && (setting || opts.every !== undefined || opts.window !== undefined)) throw new CliError('--off takes no other option');
        if (setting && (opts.hot === undefined || opts.cold === undefined)) throw new CliError('tiering needs both --hot and --cold');
        if (!setting && !opts.off && (opts.every !== undefined || opts.window !== undefined || opts.rate !== undefined)) {
          throw new CliError('--every, --window and --rate go with --hot and --cold');
        }
        if (opts.off) await setTiering(store, undefined);
        else if (setting) {
          const tiering = { hot: parsePolicy(opts.hot!), cold: parsePolicy(opts.cold!), windowMs: opts.window ?? DEFAULT_WINDOW_MS };
          for (const p of [tiering.hot, tiering.cold]) checkPlaceable(store, p);
          await setTiering(store, tiering, opts.every ?? DEFAULT_EVERY_MS, opts.rate);
        }
        await showTiering(store, opts.json === true);
      }),
    );

  tier
    .command('apply')
    .description('move every chunk whose class changed to its policy now, and wait (tiering must be on)')
    .option('--rate <size>', 'read at most this many bytes a second (50M); default: as fast as the disks go', parseSize)
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: HomeOptions & { rate?: number; json?: boolean }) =>
      withStore(opts.home, async (store) => {
        if (!store.chunks.tiering) throw new CliError("tiering is off: turn it on with 'orbit tier policy --hot POLICY --cold POLICY'");
        const queued = await new JobStore(store.home).add('tier', {}, opts.rate ? { rate: opts.rate } : {});
        const job = await followJob(store, queued.id, 'tiering');
        if (job.state !== 'done') throw new CliError(`tiering ${job.state}${job.error ? `: ${job.error}` : ''} (job ${job.id})`);
        if (opts.json) return printJson({ job: job.id, counts: job.counts });
        console.log(job.summary);
      }),
    );
}

/** A policy the pool's disks can take now (one fragment a disk). */
function checkPlaceable(store: Store, policy: Policy): void {
  const disks = store.chunks.disks().filter((d) => d.available && d.config.state === 'active').length;
  if (fragmentCount(policy) > disks) {
    throw new CliError(`${formatPolicy(policy)} needs ${fragmentCount(policy)} disks, one a fragment; the pool has ${disks} that take data ('orbit pool add-disk')`);
  }
}

/** Records the tiering (undefined: off) in pool.json and in the audit log, and replaces the
 * repeating tier job: the first pass runs now. */
async function setTiering(store: Store, tiering: Tiering | undefined, everyMs?: number, rate?: number): Promise<void> {
  const jobs = new JobStore(store.home);
  const before = (await readPoolConfig(store.home)).tiering ?? null;
  await updatePoolConfig(store.home, (config) => setConfiguredTiering(config, tiering));
  await store.chunks.refresh(true);
  await jobs.cancelRepeating('tier');
  const after = (await readPoolConfig(store.home)).tiering ?? null;
  await jobs.audit('tiering-set', { from: before, to: after, everyMs: everyMs ?? null, uid: process.getuid?.() ?? 0 });
  if (tiering === undefined) return;
  await jobs.add('tier', {}, { everyMs, ...(rate ? { rate } : {}) });
  await ensureRunner(store);
}

async function showTiering(store: Store, json: boolean): Promise<void> {
  const tiering = store.chunks.tiering;
  const job = await new JobStore(store.home).repeating('tier');
  if (json) {
    return printJson(tiering
      ? { hot: formatPolicy(tiering.hot), cold: formatPolicy(tiering.cold), windowMs: tiering.windowMs, everyMs: job?.everyMs ?? null, rate: job?.rate ?? null, job: job?.id ?? null }
      : { off: true, policy: formatPolicy(store.chunks.policy) });
  }
  if (!tiering) return console.log(`tiering is off: new chunks are stored under ${formatPolicy(store.chunks.policy)}`);
  console.log(`hot chunks under ${formatPolicy(tiering.hot)}, cold ones (and new ones) under ${formatPolicy(tiering.cold)}; heat window ${formatDuration(tiering.windowMs)}`);
  if (job) console.log(`the tier job moves chunks every ${formatDuration(job.everyMs!)}${job.rate ? ` at up to ${formatBytes(job.rate)}/s` : ''} (job ${job.id}, ${job.state}${job.summary ? `; last: ${job.summary}` : ''})`);
}
