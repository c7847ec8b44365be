// Runs every test/**/*.test.ts file with node's test runner (Node 20 takes no globs), one file at
// a time: the filesystem tests mount real FUSE filesystems and share /proc/sys/vm/drop_caches.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? find(p) : e.name.endsWith('.test.ts') ? [p] : [];
  });
}

const only = process.argv.slice(2);
const files = find('test').filter((f) => only.length === 0 || only.some((o) => f.includes(o))).sort();
const res = spawnSync(process.execPath, ['--import', 'tsx', '--test', '--test-concurrency=1', ...files], { stdio: 'inherit' });
process.exit(res.status ?? 1);
