// How the session carries requests: many in flight and answered in any order, failures turned
// into errnos, unanswered requests timed out, late answers ignored.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { FuseError } from '../../src/fuse/errors.js';
import { run } from '../helpers.js';
import { mountMemFs, type MountedMemFs } from './memfs-mount.js';

/** Long enough that nothing but the handlers made to hang ever meets it, even on a loaded machine. */
const TIMEOUT_MS = 3000;

describe('requests in flight', () => {
  let m: MountedMemFs;
  let inFlight = 0;
  let maxInFlight = 0;
  const arrivals: number[] = [];
  const completions: number[] = [];
  let seq = 0;
  let kept: Buffer | undefined;

  before(async () => {
    m = await mountMemFs({ requestTimeoutMs: TIMEOUT_MS }, (fs, memfs) => {
      const inoOf = (name: string): number => {
        try {
          return memfs.inoOf(name);
        } catch {
          return -1;
        }
      };
      const read = fs.read.bind(fs);
      // Reads answer after a random delay, so that many overlap and finish out of order.
      fs.read = async (ctx, ino, fh, offset, size) => {
        const mine = seq++;
        arrivals.push(mine);
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        if (inoOf('hang') === ino) return new Promise<never>(() => {});
        if (inoOf('late') === ino) await sleep(TIMEOUT_MS + 1000);
        else await sleep(Math.random() * 4);
        inFlight--;
        completions.push(mine);
        return read(ctx, ino, fh, offset, size);
      };
      const getxattr = fs.getxattr.bind(fs);
      fs.getxattr = (ctx, ino, name) => {
        if (name === 'user.boom') throw new Error('boom: a bug in the handler');
        if (name === 'user.full') return Promise.reject(new FuseError('ENOSPC'));
        return getxattr(ctx, ino, name);
      };
      const write = fs.write.bind(fs);
      fs.write = (ctx, ino, fh, offset, data, info) => {
        if (ino === inoOf('lent')) kept = data; // wrong: the payload is only lent
        return write(ctx, ino, fh, offset, data, info);
      };
      const lookup = fs.lookup.bind(fs);
      fs.lookup = (ctx, parent, name) => {
        if (name === 'garbage') return { attr: null } as never;
        return lookup(ctx, parent, name);
      };
    });
    await writeFile(path.join(m.dir, 'hang'), 'never read');
    await writeFile(path.join(m.dir, 'late'), 'read too late');
  });
  after(() => m.close());

  it('serves 64 concurrent readers, many requests in flight, answered out of order', async () => {
    const files = await Promise.all(
      Array.from({ length: 8 }, async (_, i) => {
        const data = randomBytes(2 * 1024 * 1024 + i * 4099);
        const file = path.join(m.dir, `r${i}`);
        await writeFile(file, data);
        return { file, sum: createHash('sha256').update(data).digest('hex') };
      }),
    );
    await writeFile('/proc/sys/vm/drop_caches', '1'); // make the readers go to the filesystem
    arrivals.length = completions.length = 0;
    const readers = Array.from({ length: 64 }, (_, i) => files[i % files.length]!);
    const results = await Promise.all(readers.map((f) => run('sha256sum', [f.file])));
    results.forEach((res, i) => {
      assert.equal(res.code, 0, res.stderr);
      assert.equal(res.stdout.split(' ')[0], readers[i]!.sum);
    });
    assert.ok(maxInFlight >= 8, `at most ${maxInFlight} reads were in flight at once`);
    assert.notDeepEqual(completions, arrivals.slice(0, completions.length), 'replies came strictly in arrival order');
  });

  it('answers EIO with a log line when a handler throws, and keeps serving', async () => {
    const file = path.join(m.dir, 'hang');
    const res = await run('getfattr', ['-n', 'user.boom', file]);
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /Input\/output error/);
    const line = m.logs().find((l) => l.msg === 'handler failed; answered EIO' && l.op === 'getxattr');
    assert.ok(line, 'no log line for the failed handler');
    assert.match(JSON.stringify(line.err), /boom: a bug in the handler/);
    assert.equal((await stat(file)).size, 'never read'.length);
  });

  it('answers the errno of a FuseError rejection without logging it as a failure', async () => {
    const before = m.logs().length;
    const res = await run('getfattr', ['-n', 'user.full', path.join(m.dir, 'hang')]);
    assert.match(res.stderr, /No space left on device/);
    assert.equal(m.logs().slice(before).filter((l) => l.level === 50).length, 0);
  });

  it('answers EIO when a handler returns something unusable', async () => {
    await assert.rejects(stat(path.join(m.dir, 'garbage')), { code: 'EIO' });
    assert.ok(m.logs().some((l) => l.msg === 'handler returned an unusable result; answered EIO'));
  });

  it('answers EIO when a handler never answers, within the request timeout', async () => {
    const started = Date.now();
    await assert.rejects(readFile(path.join(m.dir, 'hang')), { code: 'EIO' });
    assert.ok(Date.now() - started < TIMEOUT_MS + 10_000);
    assert.ok(m.logs().some((l) => l.msg === 'request not answered in time; answered EIO' && l.op === 'read'));
  });

  it('ignores an answer that comes after the timeout', async () => {
    await assert.rejects(readFile(path.join(m.dir, 'late')), { code: 'EIO' });
    await sleep(1500); // the handler answers now, into a request already answered
    assert.equal(await readFile(path.join(m.dir, 'r0')).then((b) => b.length > 0), true);
  });

  it('takes a write payload back when its handler settles: a kept Buffer reads empty', async () => {
    await writeFile(path.join(m.dir, 'lent'), '');
    await writeFile(path.join(m.dir, 'lent'), Buffer.alloc(256 * 1024, 1));
    assert.equal(await readFile(path.join(m.dir, 'lent')).then((b) => b.length), 256 * 1024);
    assert.ok(kept, 'the write handler was not called');
    assert.equal(kept.length, 0);
  });
});
