// Mounts the example in-memory filesystem: `node --import tsx examples/memfs/mount.ts MOUNTPOINT`.
// Stays in the foreground until unmounted (umount, fusermount3 -u) or interrupted.
// --stats: count read and write requests; SIGUSR1 prints the counts as one JSON line on stdout.
import { mkdir } from 'node:fs/promises';
import { FuseSession } from '../../src/fuse/session.js';
import { MountError } from '../../src/fuse/errors.js';
import { MemFs } from './memfs.js';

const FLAGS = ['--allow-other', '--writeback', '--auto-unmount', '--debug', '--stats'];
const [mountpoint, ...flags] = process.argv.slice(2);
const bad = flags.find((f) => !FLAGS.includes(f));
if (!mountpoint || mountpoint.startsWith('--') || bad) {
  console.error(bad ? `memfs: unknown flag ${bad}` : `usage: mount.ts MOUNTPOINT [${FLAGS.join('] [')}]`);
  process.exit(2);
}

const fs = new MemFs();
if (flags.includes('--stats')) {
  const stats = { reads: 0, readBytes: 0, writes: 0, writeBytes: 0 };
  const read = fs.read.bind(fs);
  const write = fs.write.bind(fs);
  fs.read = (ctx, ino, fh, offset, size) => {
    stats.reads++;
    stats.readBytes += size;
    return read(ctx, ino, fh, offset, size);
  };
  fs.write = (ctx, ino, fh, offset, data, info) => {
    stats.writes++;
    stats.writeBytes += data.length;
    return write(ctx, ino, fh, offset, data, info);
  };
  process.on('SIGUSR1', () => console.log(JSON.stringify(stats)));
}

let session: FuseSession;
try {
  session = new FuseSession(fs, {
    fsName: 'memfs',
    subtype: 'memfs',
    allowOther: flags.includes('--allow-other'),
    defaultPermissions: true,
    writebackCache: flags.includes('--writeback'),
    autoUnmount: flags.includes('--auto-unmount'),
    debug: flags.includes('--debug'),
  });
  await mkdir(mountpoint, { recursive: true });
  await session.mount(mountpoint);
} catch (err) {
  console.error(`memfs: ${err instanceof MountError ? err.message : String(err)}`);
  process.exit(1);
}
console.log(`memfs mounted at ${session.mountpoint} (in memory: gone when unmounted); Ctrl-C unmounts`);
await session.closed;
