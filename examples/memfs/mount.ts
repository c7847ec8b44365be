// Mounts the example in-memory filesystem: `node --import tsx examples/memfs/mount.ts MOUNTPOINT`.
// Stays in the foreground until unmounted (umount, fusermount3 -u) or interrupted.
import { mkdir } from 'node:fs/promises';
import { FuseSession } from '../../src/fuse/session.js';
import { MountError } from '../../src/fuse/errors.js';
import { MemFs } from './memfs.js';

const [mountpoint, ...flags] = process.argv.slice(2);
if (!mountpoint || flags.some((f) => !['--allow-other', '--writeback', '--debug'].includes(f))) {
  console.error('usage: mount.ts MOUNTPOINT [--allow-other] [--writeback] [--debug]');
  process.exit(2);
}
const session = new FuseSession(new MemFs(), {
  fsName: 'memfs',
  subtype: 'memfs',
  allowOther: flags.includes('--allow-other'),
  defaultPermissions: true,
  writebackCache: flags.includes('--writeback'),
  debug: flags.includes('--debug'),
});
try {
  await mkdir(mountpoint, { recursive: true });
  await session.mount(mountpoint);
} catch (err) {
  console.error(`memfs: ${err instanceof MountError ? err.message : String(err)}`);
  process.exit(1);
}
console.log(`memfs mounted at ${session.mountpoint} (in memory: gone when unmounted); Ctrl-C unmounts`);
await session.closed;
