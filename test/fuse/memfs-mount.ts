// Mounts the example memory filesystem in the test process, with a captured log.
import { chmod, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { MemFs } from '../../examples/memfs/memfs.js';
import type { FuseOperations, SessionOptions } from '../../src/fuse/contract.js';
import { FuseSession } from '../../src/fuse/session.js';
import { capturedLogger, tempDir } from '../helpers.js';

export interface MountedMemFs {
  fs: MemFs;
  session: FuseSession;
  dir: string;
  logs: () => Array<Record<string, unknown>>;
  close: () => Promise<void>;
}

/** Every handler, typed by the contract: tests replace them with slower, failing or async ones. */
export type Handlers = { [K in keyof FuseOperations]-?: NonNullable<FuseOperations[K]> };

/** `customize` may replace handlers on the MemFs before the session is made (tests of failures). */
export async function mountMemFs(options: SessionOptions = {}, customize?: (handlers: Handlers, fs: MemFs) => void): Promise<MountedMemFs> {
  const tmp = await tempDir('fuse');
  const dir = path.join(tmp.dir, 'mnt');
  await mkdir(dir);
  await chmod(tmp.dir, 0o755); // other users' processes must reach the mount
  const fs = new MemFs();
  customize?.(fs as unknown as Handlers, fs);
  const { log, lines } = capturedLogger();
  const session = new FuseSession(fs, { fsName: 'memfs-test', subtype: 'memfs', allowOther: true, defaultPermissions: true, ...options }, log);
  await session.mount(dir);
  return {
    fs,
    session,
    dir,
    logs: lines,
    close: async () => {
      await session.unmount().catch(() => session.unmount({ lazy: true }));
      await tmp.remove();
    },
  };
}
