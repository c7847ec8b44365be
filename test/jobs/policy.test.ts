// Policies per volume, directory and file, as users set them (orbit policy, the user.orbit.policy
// xattr), and the re-encode jobs that follow: chunks end under the new policy with nothing left
// of the old, files read back identical, and a runner killed (-9) midway is finished by the next.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { decodeHeader } from '../../src/pool/fragment.js';
import { formatPolicy } from '../../src/pool/policy.js';
import { orbit, orbitOk, run, storeWithDisks, tempDir, waitFor } from '../helpers.js';

const MiB = 1024 * 1024;

const ok = orbitOk;

interface JobView {
  id: string;
  kind: string;
  state: string;
  progress: { done: number; total: number };
  counts: Record<string, number>;
}

/** Per chunk id, the policies of its fragment files on all disks ("replicate:3" once per copy). */
async function fragmentPolicies(disks: readonly string[]): Promise<Map<string, string[]>> {
  const found = new Map<string, string[]>();
  for (const d of disks) {
    const entries = await readdir(path.join(d, 'chunks'), { recursive: true, withFileTypes: true }).catch(() => []);
    for (const e of entries) {
      if (!e.isFile()) continue;
      const header = decodeHeader(await readFile(path.join(e.parentPath, e.name)));
      found.set(e.name, [...(found.get(e.name) ?? []), formatPolicy(header.policy)]);
    }
  }
  return found;
}

function md5(b: Buffer): string {
  return createHash('md5').update(b).digest('hex');
}

describe('policies and their re-encoding', () => {
  let tmp: { dir: string; remove: () => Promise<void> };
  let home: string;
  let mnt: string;
  const disks: string[] = [];
  const sums = new Map<string, string>();

  before(async () => {
    tmp = await tempDir('policy');
    mnt = path.join(tmp.dir, 'mnt');
    const made = await storeWithDisks(tmp.dir, 6);
    home = made.home;
    disks.push(...made.disks);
    await ok('pool', 'policy', 'replicate:3', '--home', home);
    await run('mkdir', [mnt]);
  });

  after(async () => {
    await orbit('umount', mnt);
    await tmp.remove();
  });

  it('takes a policy from the xattr, refuses a bad one, and gives new files their directory\'s', async () => {
    await ok('mount', '--home', home, '--background', mnt);
    await run('mkdir', [path.join(mnt, 'docs')]);
    const set = await run('setfattr', ['-n', 'user.orbit.policy', '-v', 'replicate:2', path.join(mnt, 'docs')]);
    assert.equal(set.code, 0, set.stderr);
    const bad = await run('setfattr', ['-n', 'user.orbit.policy', '-v', 'raid5', path.join(mnt, 'docs')]);
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /Invalid argument/);
    const data = randomBytes(3 * MiB);
    await writeFile(path.join(mnt, 'docs', 'a'), data);
    const got = await run('getfattr', ['--only-values', '-n', 'user.orbit.policy', path.join(mnt, 'docs', 'a')]);
    assert.equal(got.stdout, 'replicate:2');
    await run('sync', []);
    const shown = JSON.parse(await ok('policy', 'show', path.join(mnt, 'docs', 'a'), '--json', '--home', home)) as { policy: string; source: string; chunks: Record<string, number> };
    assert.equal(shown.policy, 'replicate:2');
    assert.equal(shown.source, 'set');
    assert.deepEqual(Object.keys(shown.chunks), ['replicate:2']);

    // A file's own xattr re-encodes its chunks in the background (the mount runs the job).
    assert.equal((await run('setfattr', ['-n', 'user.orbit.policy', '-v', 'ec:3+2', path.join(mnt, 'docs', 'a')])).code, 0);
    await waitFor(async () => {
      const s = JSON.parse(await ok('policy', 'show', 'default:/docs/a', '--json', '--home', home)) as { chunks: Record<string, number> };
      return Object.keys(s.chunks).join() === 'ec:3+2';
    }, 'the chunks of docs/a under ec:3+2', 30_000);
    assert.ok((await readFile(path.join(mnt, 'docs', 'a'))).equals(data));
    await ok('umount', mnt);
  });

  it('re-encodes a whole volume from replicate:3 to ec:4+2, finishing after kill -9 of its runner', async () => {
    await ok('mount', '--home', home, '--background', mnt);
    for (let i = 0; i < 12; i++) {
      const data = randomBytes(8 * MiB + i * 4099);
      await writeFile(path.join(mnt, `f${i}`), data);
      sums.set(`f${i}`, md5(data));
    }
    await ok('umount', mnt);
    const before = await fragmentPolicies(disks);
    assert.ok(before.size > 80, `${before.size} chunks`);

    // No volume is mounted: the command starts a runner in the background. It is killed while
    // it works (the rate keeps the job going for seconds), a new runner takes the job up and is
    // killed in turn, and a third finishes it.
    const out = await ok('policy', 'set', 'default:/', 'ec:4+2', '--rate', '24M', '--home', home);
    const jobId = /job (\w+)/.exec(out)![1]!;
    const jobFile = path.join(home, 'jobs', `${jobId}.json`);
    const job = async (): Promise<JobView> => JSON.parse(await readFile(jobFile, 'utf8')) as JobView;
    const progress: number[] = [];
    for (let round = 0; round < 2; round++) {
      const runner = round === 0 ? undefined : orbit('jobs', 'run', '--home', home);
      const startedAt = (await job()).progress.done;
      await waitFor(async () => (await job()).progress.done > startedAt, 'the re-encoding under way', 60_000).catch(async (err: Error) => {
        const log = await readFile(path.join(home, 'jobs', 'runner.log'), 'utf8').catch(() => '(no runner log)');
        throw new Error(`${err.message}; job: ${JSON.stringify(await job())}; runner log: ${log.slice(-2000)}`);
      });
      const pid = Number(await readFile(path.join(home, 'jobs', 'runner.pid'), 'utf8'));
      process.kill(pid, 'SIGKILL');
      await runner;
      const j = await job();
      assert.equal(j.state, 'running', 'a killed runner leaves its job running, for the next to take up');
      assert.ok(j.progress.done < j.progress.total, `killed midway: ${j.progress.done} of ${j.progress.total}`);
      progress.push(j.progress.done);
    }
    assert.ok(progress[1]! > progress[0]!, `the second runner went on from the first's checkpoint: ${progress.join(' then ')}`);
    await ok('jobs', 'run', '--home', home);
    const done = await job();
    assert.equal(done.state, 'done', JSON.stringify(done));

    // Every chunk is under ec:4+2, each shard once, and nothing of replicate:3 is left.
    const now = await fragmentPolicies(disks);
    assert.deepEqual([...now.keys()].sort(), [...before.keys()].sort(), 'the same chunks');
    for (const [id, policies] of now) assert.deepEqual(policies, new Array(6).fill('ec:4+2'), `fragments of ${id}`);
    const gc = JSON.parse(await ok('gc', '--json', '--home', home)) as { chunks: number; orphans: number };
    assert.equal(gc.orphans, 0);

    await ok('mount', '--home', home, '--background', mnt);
    for (const [name, sum] of sums) assert.equal(md5(await readFile(path.join(mnt, name))), sum, `${name} differs`);
    const history = JSON.parse(await ok('policy', 'history', '--json', '--home', home)) as Array<{ event: string; to?: string; job?: string }>;
    assert.ok(history.some((e) => e.event === 'policy-set' && e.to === 'ec:4+2'));
    assert.ok(history.some((e) => e.event === 'job-finished' && e.job === jobId));
    await ok('umount', mnt);
  });

  it('scrubs in the background, with pause and resume, and shows it in the metrics', async () => {
    const mounted = await ok('mount', '--home', home, '--background', '--metrics', '127.0.0.1:0', mnt);
    const metricsUrl = /metrics at (http:\S+\/metrics)/.exec(mounted)![1]!;
    const scrape = async (): Promise<string> => (await fetch(metricsUrl)).text();
    // About 25 s for a round: a loaded machine takes seconds for each command below, and the round
    // must not end between seeing it under way and pausing it.
    await ok('scrub', '--schedule', '1h', '--rate', '6M', '--home', home);
    const scrub = async (): Promise<JobView & { notBefore?: string }> =>
      (JSON.parse(await ok('jobs', '--json', '--home', home)) as Array<JobView & { everyMs?: number }>).find((j) => j.kind === 'scrub' && j.everyMs !== undefined && j.state !== 'cancelled')!;
    await waitFor(async () => (await scrub()).progress.done > 0, 'the scrub under way', 30_000);
    const { id } = await scrub();
    await ok('jobs', 'pause', id, '--home', home);
    await new Promise((r) => setTimeout(r, 1500)); // the runner stops it at its next round
    const paused = await scrub();
    assert.equal(paused.state, 'paused');
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal((await scrub()).progress.done, paused.progress.done, 'a paused scrub reads nothing');
    assert.ok(paused.progress.done > 0 && paused.progress.done < paused.progress.total, `paused midway: ${paused.progress.done} of ${paused.progress.total}`);
    const metrics = await scrape();
    const ratio = new RegExp(`^orbit_job_progress_ratio\\{job="${id}",kind="scrub",state="paused"\\} (\\S+)$`, 'm').exec(metrics);
    assert.ok(ratio && Number(ratio[1]) > 0 && Number(ratio[1]) < 1, `the paused scrub's progress in the metrics:\n${metrics}`);
    assert.equal(metrics.match(/^orbit_pool_disk_up\{.*\} 1$/gm)?.length, 6, 'six disks up');
    assert.match(metrics, /^orbit_pool_disk_bytes\{disk="home",path="[^"]+",kind="used"\} [1-9]\d*$/m);
    await ok('jobs', 'resume', id, '--home', home);
    // Once through, the scrubber waits for its next time; what it found is in its counts.
    await waitFor(async () => (await scrub()).notBefore !== undefined && (await scrub()).state === 'queued', 'the scrub to finish its round', 120_000);
    const done = await scrub();
    assert.equal(done.counts.corrupt ?? 0, 0);
    assert.ok((done.counts.chunks ?? 0) > 80, `scrubbed ${done.counts.chunks} chunks`);
    await ok('scrub', '--schedule', 'off', '--home', home);
    await ok('umount', mnt);
  });

  it('gc removes chunks the pool holds and no metadata knows', async () => {
    const [id, policies] = [...(await fragmentPolicies(disks))][0]!;
    assert.equal(policies.length, 6);
    // A disk that comes back after its chunks were collected brings fragments like this one.
    const orphan = 'f'.repeat(64);
    const source = path.join(disks[1]!, 'chunks', id.slice(0, 2), id.slice(2, 4), id);
    const target = path.join(disks[1]!, 'chunks', 'ff', 'ff', orphan);
    await run('mkdir', ['-p', path.dirname(target)]);
    await writeFile(target, await readFile(source));
    const gc = JSON.parse(await ok('gc', '--json', '--home', home)) as { chunks: number; orphans: number };
    assert.equal(gc.orphans, 1);
    assert.equal((await fragmentPolicies(disks)).has(orphan), false);
    assert.equal((await fragmentPolicies(disks)).get(id)?.length, 6, 'the chunks in use stay');
  });
});
