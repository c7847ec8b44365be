// Chunk heat: the classifier's behaviour over windows (busy chunks turn hot and stay so through a
// quiet window, idle ones drift to cold, one burst does not make a chunk hot), its filter checked
// against a plain step-by-step forward pass, the counts record() keeps, and the files of several
// processes merged, with a dead process's folded into the base exactly once.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { EMISSION, Heat, heatDir, TRANSITION, type HeatClass, type HeatEntry } from '../../src/pool/heat.js';
import { tempDir } from '../helpers.js';

const W = 1000;
const at = (window: number, fraction = 0.5): number => Math.floor((window + fraction) * W);
const newId = (): string => randomBytes(32).toString('hex');
const HEAT: Record<HeatClass, number> = { cold: 0, warm: 1, hot: 2 };

/** Reads `id` `n` times in `window`. */
function readIn(heat: Heat, id: string, window: number, n: number): void {
  for (let i = 0; i < n; i++) heat.record(id, at(window, 0.1 + (0.3 * i) / n));
}

/** A chunk's classes filtered one window at a time, as the model says, sharing nothing with the
 * implementation but its parameters: cold for certain before its first window; in the window
 * still open, its reads count only once they are 3 or more. */
class ForwardPass {
  private p = [0, 0, 1];
  private readonly counts = new Map<number, number>();

  constructor(private closedUpTo: number) {}

  read(window: number, n: number): void {
    this.counts.set(window, (this.counts.get(window) ?? 0) + n);
  }

  /** The classes in window `now`, its reads so far included. */
  at(now: number): number[] {
    for (; this.closedUpTo < now; this.closedUpTo++) {
      const b = bin(this.counts.get(this.closedUpTo) ?? 0);
      this.p = normalize(predict(this.p).map((x, j) => x * EMISSION[j]![b]!));
    }
    const open = bin(this.counts.get(now) ?? 0);
    return normalize(predict(this.p).map((x, j) => (open === 2 ? x * EMISSION[j]![2]! : x)));
  }
}
const bin = (n: number): number => (n === 0 ? 0 : n <= 2 ? 1 : 2);
const normalize = (v: number[]): number[] => {
  const sum = v.reduce((a, b) => a + b, 0);
  return v.map((x) => x / sum);
};
const predict = (p: number[]): number[] => [0, 1, 2].map((j) => p.reduce((sum, pi, i) => sum + pi * TRANSITION[i]![j]!, 0));

function assertClose(actual: readonly number[], expected: readonly number[], what: string, tolerance = 1e-9): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs(actual[i]! - expected[i]!) <= tolerance, `${what}: [${actual.join(', ')}] differs from [${expected.join(', ')}] at ${i}`);
  }
}

/** P(hot) and P(warm or hot) of `hotter` are at least those of `than`. */
function assertAtLeastAsHot(hotter: readonly number[], than: readonly number[], what: string): void {
  assert.ok(hotter[0]! >= than[0]! - 1e-12, `${what}: P(hot) ${hotter[0]} < ${than[0]}`);
  assert.ok(hotter[0]! + hotter[1]! >= than[0]! + than[1]! - 1e-12, `${what}: P(warm or hot) ${hotter[0]! + hotter[1]!} < ${than[0]! + than[1]!}`);
}

function assertDistribution(p: readonly number[], what: string): void {
  assert.ok(p.every((x) => x >= 0 && x <= 1), `${what}: ${p.join(', ')}`);
  assert.ok(Math.abs(p[0]! + p[1]! + p[2]! - 1) < 1e-12, `${what}: sums to ${p[0]! + p[1]! + p[2]!}`);
}

describe('heat: classes', () => {
  it('a chunk read many times a window becomes hot, and stays hot through a quiet window', () => {
    const heat = Heat.open('/nonexistent', { windowMs: W });
    const id = newId();
    for (let w = 0; w < 6; w++) readIn(heat, id, w, 5);
    assert.equal(heat.classify(id, at(5, 0.9)), 'hot', 'after six busy windows');
    // Window 6 passes without a read: during it, at its end, and into the next.
    for (const t of [at(6, 0.01), at(6, 0.5), at(6, 0.99), at(7, 0.01), at(7, 0.5)]) {
      assert.equal(heat.classify(id, t), 'hot', `one quiet window, at ${t / W} windows`);
    }
    readIn(heat, id, 7, 5);
    assert.equal(heat.classify(id, at(7, 0.9)), 'hot', 'busy again');
    assert.equal(heat.classify(id, at(8, 0.5)), 'hot');
  });

  it('one burst of reads does not make a cold chunk hot; a second busy window does', () => {
    const heat = Heat.open('/nonexistent', { windowMs: W });
    const fresh = newId();
    const old = newId();
    heat.record(old, at(0));
    assert.equal(heat.classify(old, at(100)), 'cold', 'read once, 100 windows ago');
    for (const id of [fresh, old]) {
      readIn(heat, id, 100, 50);
      for (const t of [at(100, 0.9), at(101, 0), at(101, 0.05)]) {
        assert.notEqual(heat.classify(id, t), 'hot', `${id === fresh ? 'a new chunk' : 'a cold chunk'} after one burst, at ${t / W} windows`);
      }
      readIn(heat, id, 101, 5);
      assert.equal(heat.classify(id, at(102, 0)), 'hot', 'after a second busy window');
    }
  });

  it('a chunk never read again drifts to cold, never warming on the way, and stays cold', () => {
    const heat = Heat.open('/nonexistent', { windowMs: W });
    const id = newId();
    for (let w = 0; w < 6; w++) readIn(heat, id, w, 5);
    const seen: HeatClass[] = [];
    for (let w = 6; w <= 60; w++) {
      const c = heat.classify(id, at(w, 0));
      if (seen.length > 0) assert.ok(HEAT[c] <= HEAT[seen.at(-1)!], `heated up to ${c} at window ${w} without a read`);
      seen.push(c);
    }
    assert.deepEqual([...new Set(seen)], ['hot', 'warm', 'cold'], 'hot, then warm, then cold');
    assert.ok(seen.indexOf('cold') <= 20, `cold only after ${seen.indexOf('cold')} quiet windows`);
    // Far later (the closed form for many quiet windows): still cold, still a distribution.
    for (const later of [1e3, 1e6, 1e9, 1e12]) {
      const e = heat.entry(id, at(6 + later))!;
      assert.equal(e.class, 'cold', `${later} windows later`);
      assertDistribution(e.p, `${later} windows later`);
    }
    assert.equal(heat.entry(id, at(1e12))!.reads, 30);
  });

  it('a chunk read once or twice a window is warm, without turning hot within a window', () => {
    const heat = Heat.open('/nonexistent', { windowMs: W });
    const id = newId();
    for (let w = 0; w < 30; w++) {
      readIn(heat, id, w, 1 + (w % 2));
      if (w >= 5) {
        for (const f of [0.05, 0.5, 0.95]) assert.equal(heat.classify(id, at(w, f)), 'warm', `window ${w} at ${f}`);
      }
    }
  });

  it('filters exactly as a step-by-step forward pass, during windows and over gaps of up to a million', () => {
    for (let trial = 0; trial < 20; trial++) {
      const heat = Heat.open('/nonexistent', { windowMs: W });
      const id = newId();
      let w = 1000 + trial;
      const reference = new ForwardPass(w);
      const check = (now: number, fraction: number): void => {
        assertClose(heat.entry(id, at(now, fraction))!.p, reference.at(now), `trial ${trial}, window ${now} at ${fraction}`);
      };
      for (let k = 0; k < 30; k++) {
        const n = [1, 1, 2, 3, 4, 7][(trial * 7 + k * 3) % 6]!;
        readIn(heat, id, w, n);
        reference.read(w, n);
        check(w, 0.9);
        w += [0, 1, 1, 2, 5, 40][(trial + k) % 6]!;
        if (k === 15) w += trial === 0 ? 1_000_000 : 300 * trial;
        check(w, 0);
      }
      for (const later of [1, 17, 2000]) check(w + later, 0.5);
    }
  });

  it('a chunk never read is cold and has no entry', () => {
    const heat = Heat.open('/nonexistent', { windowMs: W });
    assert.equal(heat.classify(newId(), at(5)), 'cold');
    assert.equal(heat.entry(newId(), at(5)), undefined);
    assert.equal(heat.size, 0);
  });
});

describe('heat: record', () => {
  it('counts every read and keeps the latest, for many chunks, in any order of time', () => {
    const heat = Heat.open('/nonexistent', { windowMs: W });
    const ids = Array.from({ length: 3000 }, newId);
    const want = new Map<string, { reads: number; last: number }>();
    let t = 5_000_000;
    for (let i = 0; i < 100_000; i++) {
      // Skewed: a few chunks take most reads; time mostly moves on, sometimes back a little.
      const id = ids[Math.floor(ids.length * Math.random() ** 3)]!;
      t += Math.floor(Math.random() * 40) - 5;
      heat.record(id, t);
      const w = want.get(id) ?? { reads: 0, last: 0 };
      w.reads++;
      w.last = Math.max(w.last, t);
      want.set(id, w);
    }
    heat.record('not a chunk id', t);
    assert.equal(heat.size, want.size);
    const seen = new Set<string>();
    for (const e of heat.entries(t)) {
      seen.add(e.id);
      assert.equal(e.reads, want.get(e.id)?.reads, `reads of ${e.id}`);
      assert.equal(e.lastReadMs, want.get(e.id)?.last, `last read of ${e.id}`);
      assertDistribution(e.p, e.id);
    }
    assert.equal(seen.size, want.size);
  });
});

describe('heat: files of several processes', () => {
  let home: string;
  let remove: () => Promise<void>;
  before(async () => ({ dir: home, remove } = await tempDir('heat')));
  after(() => remove());

  const freshHome = (name: string): string => path.join(home, name);
  const files = async (h: string): Promise<string[]> => (await readdir(heatDir(h)).catch(() => [] as string[])).sort();
  const byId = (heat: Heat, now: number): Map<string, HeatEntry> => new Map([...heat.entries(now)].map((e) => [e.id, e]));

  /** The pid of a process that has ended. */
  async function deadPid(): Promise<number> {
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((resolve) => child.once('exit', resolve));
    return child.pid!;
  }

  it('merges two processes: reads add up, the latest read wins, the hotter class wins', async () => {
    const h = freshHome('two');
    const a = Heat.open(h, { windowMs: W, pid: process.pid });
    const b = Heat.open(h, { windowMs: W, pid: process.ppid });
    const shared = newId();
    const onlyA = newId();
    const onlyB = newId();
    for (let w = 0; w < 6; w++) readIn(a, shared, w, 5);
    b.record(shared, at(6, 0.2));
    readIn(a, onlyA, 3, 1);
    readIn(b, onlyB, 2, 4);
    await a.save();
    await b.save();
    // More reads after a save: the next save replaces the process's file, it adds no other.
    a.record(onlyA, at(4));
    await a.save();
    const names = await files(h);
    assert.equal(names.length, 2, `one file per process: ${names.join(', ')}`);
    assert.ok(names.every((n) => n.endsWith('.heat')), `no temporary file left: ${names.join(', ')}`);

    const now = at(6, 0.5);
    const merged = await Heat.load(h, { windowMs: W, nowMs: now });
    const m = byId(merged, now);
    assert.equal(m.size, 3);
    const s = m.get(shared)!;
    const sa = a.entry(shared, now)!;
    const sb = b.entry(shared, now)!;
    assert.equal(s.reads, 31);
    assert.equal(s.lastReadMs, at(6, 0.2));
    assert.equal(sa.class, 'hot');
    assert.equal(sb.class, 'cold');
    assert.equal(s.class, 'hot', 'as hot as in its hottest reader');
    assertAtLeastAsHot(s.p, sa.p, 'merged against a');
    assertAtLeastAsHot(s.p, sb.p, 'merged against b');
    assertDistribution(s.p, 'merged');
    // A chunk one process never read: that process holds it cold for certain, which changes nothing.
    for (const [id, source] of [[onlyA, a], [onlyB, b]] as const) {
      const e = m.get(id)!;
      const want = source.entry(id, now)!;
      assert.equal(e.reads, want.reads);
      assert.equal(e.lastReadMs, want.lastReadMs);
      assert.equal(e.class, want.class);
      assertClose(e.p, want.p, 'a chunk of one process', 1e-12);
    }
    // Reading again (nothing folded: both processes live) gives the same.
    const again = byId(await Heat.load(h, { windowMs: W, nowMs: now }), now);
    assert.deepEqual(again, m);
    assert.deepEqual(await files(h), names);
    await assert.rejects(merged.save(), /not saved/);
  });

  it('folds a dead process into the base once, even when its file is met again', async () => {
    const h = freshHome('fold');
    const live = Heat.open(h, { windowMs: W, pid: process.pid });
    const dead = Heat.open(h, { windowMs: W, pid: await deadPid() });
    const shared = newId();
    const deadOnly = newId();
    readIn(live, shared, 1, 2);
    readIn(dead, shared, 2, 3);
    readIn(dead, deadOnly, 2, 1);
    await live.save();
    await dead.save();
    const before = await files(h);
    const deadFile = before.find((n) => n.startsWith(`${dead.pid}-`))!;
    assert.ok(deadFile, `the dead process's file among ${before.join(', ')}`);
    const kept = path.join(home, 'kept.heat');
    await copyFile(path.join(heatDir(h), deadFile), kept);

    const now = at(3);
    const first = byId(await Heat.load(h, { windowMs: W, nowMs: now }), now);
    assert.equal(first.get(shared)?.reads, 5);
    assert.equal(first.get(deadOnly)?.reads, 1);
    const after = await files(h);
    assert.ok(after.includes('base.heat'), `a base: ${after.join(', ')}`);
    assert.ok(!after.includes(deadFile), 'the dead process file is deleted once folded');
    assert.equal(after.length, 2, `base and the live process: ${after.join(', ')}`);

    // Loading again changes nothing: nothing is counted twice.
    assert.deepEqual(byId(await Heat.load(h, { windowMs: W, nowMs: now }), now), first);
    // A crash between writing the base and deleting the folded file leaves the file: the base
    // names it, so it is not counted again, and the next fold deletes it.
    await copyFile(kept, path.join(heatDir(h), deadFile));
    assert.deepEqual(byId(await Heat.load(h, { windowMs: W, nowMs: now, fold: false }), now), first, 'read without folding');
    assert.deepEqual(byId(await Heat.load(h, { windowMs: W, nowMs: now }), now), first, 'read with folding');
    assert.ok(!(await files(h)).includes(deadFile));
  });

  it('drops from the base the chunks a dead process read long ago and that are cold', async () => {
    const h = freshHome('retain');
    const dead = Heat.open(h, { windowMs: W, pid: await deadPid() });
    const longAgo = newId();
    const lately = newId();
    dead.record(longAgo, at(0));
    for (let w = 990; w < 1000; w++) readIn(dead, lately, w, 4);
    await dead.save();
    const now = at(1000);
    const view = byId(await Heat.load(h, { windowMs: W, nowMs: now }), now);
    assert.equal(view.get(lately)?.class, 'hot');
    assert.equal(view.get(lately)?.reads, 40);
    assert.equal(view.get(longAgo), undefined, 'read once, a thousand windows ago');
    assert.deepEqual(await files(h), ['base.heat']);
  });

  it('skips a file that is not a heat file', async () => {
    const h = freshHome('garbage');
    const a = Heat.open(h, { windowMs: W, pid: process.pid });
    const id = newId();
    a.record(id, at(1));
    await a.save();
    await writeFile(path.join(heatDir(h), `${process.ppid}-deadbeef.heat`), 'not a heat file');
    const view = byId(await Heat.load(h, { windowMs: W, nowMs: at(2) }), at(2));
    assert.equal(view.size, 1);
    assert.equal(view.get(id)?.reads, 1);
  });

  it('saves on a timer, and at close', async () => {
    const h = freshHome('timer');
    const a = Heat.open(h, { windowMs: W });
    const id = newId();
    a.record(id, at(1));
    a.startSaving(10);
    const deadline = Date.now() + 5000;
    while ((await files(h)).length === 0) {
      assert.ok(Date.now() < deadline, 'no file saved by the timer within 5 s');
      await new Promise((r) => setTimeout(r, 10));
    }
    a.record(id, at(2));
    await a.close();
    const view = await Heat.load(h, { windowMs: W, nowMs: at(3) });
    assert.equal(view.entry(id, at(3))?.reads, 2, 'the read after the timer saved is saved by close');
    assert.equal((await files(h)).length, 1);
  });
});
