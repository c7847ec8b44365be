// A lock between the processes of one store, as a file holding the holder's pid: made with
// O_EXCL, so of two racing processes one wins; taken over when its holder is dead (a crash must
// not lock the store for good). For short critical sections (rewriting a small file), not for
// holding while a long job runs.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { isAlive } from './processes.js';

/** Waits for the lock this long before giving up. */
const WAIT_MS = 30_000;
const RETRY_MS = 50;

export class LockedError extends Error {
  constructor(readonly what: string, readonly holder: number) {
    super(`${what} is locked by process ${holder}`);
    this.name = 'LockedError';
  }
}

/** Runs `fn` holding the lock file `file`; `what` names the thing locked in the error. */
export async function withFileLock<T>(file: string, what: string, fn: () => Promise<T> | T): Promise<T> {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(file, 'utf8').catch(() => ''));
      // An empty file is a holder between creating and writing it: wait, unless it stays so.
      if (holder > 0 && !isAlive(holder)) {
        await rm(file, { force: true });
        continue;
      }
      if (Date.now() > deadline) {
        if (!(holder > 0)) {
          await rm(file, { force: true });
          continue;
        }
        throw new LockedError(what, holder);
      }
      await new Promise((r) => setTimeout(r, RETRY_MS));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(file, { force: true });
  }
}
