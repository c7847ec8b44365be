// `orbit policy …`: the redundancy of a volume, a directory (its whole tree) or a file. Setting
// one records it and queues a re-encode job; the existing chunks follow in the background, and
// stay readable throughout.
import type { Command } from 'commander';
import { FileType } from '../meta/contract.js';
import { JobStore, finished } from '../jobs/job-store.js';
import { queuePolicyChange } from '../jobs/policy-change.js';
import { formatPolicy } from '../pool/policy.js';
import { ownPolicy } from '../store/policies.js';
import { resolveStorePath } from '../store/paths.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { parseSize, policyOrDefault } from './arguments.js';
import { ensureRunner, followJob, progressText } from './job-commands.js';
import { CliError, formatBytes, printJson, printTable } from './output.js';

const S_IFMT = 0o170000;
/** Chunks whose fragments `policy show` looks at, at most. */
const CENSUS_LIMIT = 10_000;

export function addPolicyCommands(program: Command): void {
  const policy = program.command('policy').description('redundancy per volume, directory or file (none, replicate:N, ec:K+M)');

  policy
    .command('set')
    .description('set the policy of a file, or of a directory and everything in it ("default": the pool\'s); existing data is re-encoded in the background')
    .argument('<path>', 'a path in a mounted volume, or VOLUME:/path (VOLUME:/ for a whole volume)')
    .argument('<policy>', 'none, replicate:N, ec:K+M or default', policyOrDefault)
    .option('--wait', 'wait for the re-encoding to finish, showing progress')
    .option('--rate <size>', 'read at most this many bytes a second while re-encoding (50M); default: as fast as the disks go', parseSize)
    .addOption(homeOption())
    .action((target: string, wanted: string, opts: HomeOptions & { wait?: boolean; rate?: number }) =>
      withStore(opts.home, async (store) => {
        const where = await resolveStorePath(store, target);
        const job = await queuePolicyChange(store, { volume: where.volume, ino: where.ino, path: where.display }, wanted, true, undefined, opts.rate);
        if (!opts.wait) {
          await ensureRunner(store);
          console.log(`${where.display}: policy ${wanted}; re-encoding existing data in the background (job ${job.id}: orbit jobs)`);
          return;
        }
        const done = await followJob(store, job.id, 're-encoding');
        if (done.state !== 'done') throw new CliError(`job ${job.id} ${done.state}${done.error ? `: ${done.error}` : ''}`);
        console.log(done.summary);
      }),
    );

  policy
    .command('show')
    .description('the policy of a file or directory, where it comes from, and what its chunks are stored under')
    .argument('<path>', 'a path in a mounted volume, or VOLUME:/path')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((target: string, opts: HomeOptions & { json?: boolean }) =>
      withStore(opts.home, async (store) => {
        const where = await resolveStorePath(store, target);
        const own = await ownPolicy(store.meta, where.ino);
        const attr = await store.meta.getattr(where.ino);
        const tiering = store.chunks.tiering;
        const effective = own ?? store.chunks.policy;
        // What the file's chunks are stored under now (a change in progress shows as a mix).
        const census = new Map<string, number>();
        let looked = 0;
        if ((attr.mode & S_IFMT) === FileType.Regular) {
          const seen = new Set<string>();
          for (const e of await store.meta.extents(where.ino, 0, attr.size)) {
            if (seen.has(e.chunk) || looked >= CENSUS_LIMIT) continue;
            seen.add(e.chunk);
            looked++;
            const p = await store.chunks.policyOf(e.chunk);
            const key = p ? formatPolicy(p) : 'missing';
            census.set(key, (census.get(key) ?? 0) + 1);
          }
        }
        const pending = (await new JobStore(store.home).list()).filter((j) => j.kind === 'reencode' && !finished(j) && j.params.volume === where.volume);
        const result = {
          path: where.display,
          policy: own || !tiering ? formatPolicy(effective) : `tiering: hot ${formatPolicy(tiering.hot)}, cold ${formatPolicy(tiering.cold)}`,
          source: own ? 'set' : tiering ? 'tiering' : 'pool default',
          chunks: Object.fromEntries(census),
          jobs: pending.map((j) => ({ id: j.id, path: j.params.path, policy: j.params.policy, state: j.state, progress: j.progress })),
        };
        if (opts.json) return printJson(result);
        console.log(`${where.display}: ${result.policy} (${own ? 'set here or inherited when made' : tiering ? 'none set: by heat' : "none set: the pool's default"})`);
        if (census.size > 0) console.log(`chunks: ${[...census].map(([p, n]) => `${n} under ${p}`).join(', ')}${looked >= CENSUS_LIMIT ? ` (the first ${CENSUS_LIMIT})` : ''}`);
        for (const j of pending) console.log(`re-encoding ${String(j.params.path)} to ${String(j.params.policy)}: ${j.state}, ${progressText(j)} (job ${j.id})`);
      }),
    );

  policy
    .command('history')
    .description('the changes of policy, and the re-encodings that followed them (the audit log)')
    .option('--json', 'print JSON')
    .addOption(homeOption())
    .action((opts: HomeOptions & { json?: boolean }) =>
      withStore(opts.home, async (store) => {
        const jobs = new JobStore(store.home);
        const reencodes = new Set((await jobs.list()).filter((j) => j.kind === 'reencode').map((j) => j.id));
        const events = (await jobs.auditLog()).filter((e) => e.event === 'policy-set' || reencodes.has(String(e.job)));
        if (opts.json) return printJson(events);
        if (events.length === 0) return console.log('no changes of policy');
        printTable([
          ['TIME', 'EVENT', 'WHAT'],
          ...events.map((e) => [
            e.time,
            e.event,
            e.event === 'policy-set'
              ? `${String(e.path)}: ${String(e.from)} → ${String(e.to)}`
              : `job ${String(e.job)}${e.summary ? `: ${String(e.summary)}` : e.progress ? `: ${formatBytes((e.progress as { done: number }).done)} done` : ''}`,
          ]),
        ]);
      }),
    );
}
