// `npm run bench`: Orbit's speed, always as ratios against a baseline measured in the same run.
// Needs root (it mounts filesystems). Options: --rounds N (default 5), --size MiB (default 1024).
import { benchBinding } from './fuse/binding.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isInteger(v) || v <= 0) {
    console.error(`bench: ${name} takes a positive whole number`);
    process.exit(2);
  }
  return v;
}

const known = new Set(['--rounds', '--size']);
const unknown = process.argv.slice(2).filter((a, i, all) => a.startsWith('--') ? !known.has(a) : !known.has(all[i - 1] ?? ''));
if (unknown.length > 0) {
  console.error(`bench: unknown argument ${unknown[0]}`);
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('bench: run as root (it mounts filesystems and drops the page cache)');
  process.exit(1);
}

await benchBinding(option('--rounds', 5), option('--size', 1024));
