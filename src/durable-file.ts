// Small files that are replaced whole (pool.json, a job's state): written to a temp file, synced,
// renamed over the old one and the directory synced, so that a reader, or a crash at any moment,
// finds the old file or the new, never half of one.
import { randomUUID } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import path from 'node:path';

export async function replaceFile(file: string, data: string | Uint8Array, mode = 0o600): Promise<void> {
  const temp = `${file}.${randomUUID()}.tmp`;
  const handle = await open(temp, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } catch (err) {
    await handle.close();
    await rm(temp, { force: true });
    throw err;
  } finally {
    await handle.close().catch(() => undefined);
  }
  await rename(temp, file);
  const dir = await open(path.dirname(file), 'r');
  try {
    await dir.sync();
  } finally {
    await dir.close();
  }
}
