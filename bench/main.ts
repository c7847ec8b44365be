// `npm run bench`: Orbit's speed, always as ratios against a baseline measured in the same run.
// Needs root (it mounts filesystems and drops the page cache). Options:
//   --rounds N (default 5), --size MiB (default 1024): for every part (the pool's erasure-coding
//     figures go through a fixed 256 MiB of chunks per round; --size is the file it reads);
//   --only binding|fs|pool|peer: one part (the FUSE binding against C; Orbit as a filesystem; the
//     pool's erasure coding, and a read through a mount with two of six disks lost; a peer's file
//     read through another store's mount, against a plain TLS stream, sshfs and rclone);
//   --on DIR: where the filesystem, pool and peer parts put their backing stores (default
//     os.tmpdir());
//   --passthrough PATH (or $ORBIT_BENCH_PASSTHROUGH): libfuse's passthrough_ll, built by hand, for
//     the filesystem part's reference column.
import path from 'node:path';
import { benchBinding } from './fuse/binding.js';
import { benchRemoteRead } from './peer/remote-read.js';
import { benchDegradedRead } from './pool/degraded.js';
import { benchErasure } from './pool/erasure.js';
import { benchFilesystem } from './vfs/filesystem.js';

function fail(message: string): never {
  console.error(`bench: ${message}`);
  process.exit(2);
}

function stringOption(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  if (i < 0) return undefined;
  const v = process.argv[i + 1];
  if (v === undefined || v.startsWith('--')) fail(`${name} takes a value`);
  return v;
}

function option(name: string, fallback: number): number {
  const raw = stringOption(name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isInteger(v) || v <= 0) fail(`${name} takes a positive whole number`);
  return v;
}

const known = new Set(['--rounds', '--size', '--only', '--on', '--passthrough']);
const unknown = process.argv.slice(2).filter((a, i, all) => a.startsWith('--') ? !known.has(a) : !known.has(all[i - 1] ?? ''));
if (unknown.length > 0) fail(`unknown argument ${unknown[0]}`);
const only = stringOption('--only');
const parts = ['binding', 'fs', 'pool', 'peer'];
if (only !== undefined && !parts.includes(only)) fail('--only takes binding, fs, pool or peer');
const rounds = option('--rounds', 5);
const sizeMiB = option('--size', 1024);
const onArg = stringOption('--on');
const on = onArg === undefined ? undefined : path.resolve(onArg);
const passthrough = stringOption('--passthrough') ?? (process.env.ORBIT_BENCH_PASSTHROUGH || undefined);
if (process.getuid?.() !== 0) {
  console.error('bench: run as root (it mounts filesystems and drops the page cache)');
  process.exit(1);
}

try {
  if (only === undefined || only === 'binding') await benchBinding(rounds, sizeMiB);
  if (only === undefined || only === 'fs') await benchFilesystem({ rounds, sizeMiB, on, passthrough });
  if (only === undefined || only === 'pool') {
    await benchErasure(rounds);
    await benchDegradedRead({ rounds, sizeMiB, on });
  }
  if (only === undefined || only === 'peer') await benchRemoteRead({ rounds, sizeMiB, on });
} catch (err) {
  console.error(`bench: ${(err as Error).message}`);
  process.exitCode = 1;
}
