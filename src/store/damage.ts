// What is lost: chunks found beyond repair (fewer fragments left than their policy needs to read
// them), with the files they belong to, in <home>/damage.json. Walks (scrub, rebuild) add what
// they find; `orbit status` reads it back, checking each entry again, so a chunk mended since (a
// disk that came back) or no longer used drops out. Only the affected files return EIO.
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { replaceFile } from '../durable-file.js';
import { withFileLock } from '../file-lock.js';
import type { ChunkId } from '../pool/contract.js';
import type { Store } from './store.js';

/** Files named per lost chunk, at most. */
const FILES_NAMED = 20;

export interface LostChunk {
  id: ChunkId;
  /** "volume:/path" of the files whose contents use it. */
  files: string[];
  foundAt: string;
}

function damageFile(store: Store): string {
  return path.join(store.home, 'damage.json');
}

async function read(store: Store): Promise<LostChunk[]> {
  try {
    return (JSON.parse(await readFile(damageFile(store), 'utf8')) as { chunks: LostChunk[] }).chunks;
  } catch {
    return [];
  }
}

async function write(store: Store, chunks: LostChunk[]): Promise<void> {
  await replaceFile(damageFile(store), JSON.stringify({ chunks }, null, 2) + '\n');
}

/** The chunks recorded as lost, as last recorded (without checking them again). */
export function recordedDamage(store: Store): Promise<LostChunk[]> {
  return read(store);
}

export async function recordDamage(store: Store, ids: readonly ChunkId[]): Promise<void> {
  const found = await Promise.all(ids.map(async (id) => ({ id, files: await store.meta.filesUsing(id, FILES_NAMED), foundAt: new Date().toISOString() })));
  await withFileLock(path.join(store.home, 'damage.lock'), 'the damage list', async () => {
    const known = new Map((await read(store)).map((c) => [c.id, c]));
    for (const c of found) if (!known.has(c.id)) known.set(c.id, c);
    await write(store, [...known.values()]);
  });
}

/** The chunks still lost (each looked at again), with their files as they are named now. */
export async function currentDamage(store: Store): Promise<LostChunk[]> {
  const recorded = await read(store);
  if (recorded.length === 0) return [];
  const still: LostChunk[] = [];
  for (const c of recorded) {
    const files = await store.meta.filesUsing(c.id, FILES_NAMED);
    if (files.length === 0) continue;
    const state = await store.chunks.inspect(c.id);
    if (state.lost || state.bytes === 0) still.push({ ...c, files });
  }
  if (still.length !== recorded.length) {
    await withFileLock(path.join(store.home, 'damage.lock'), 'the damage list', () => write(store, still));
  }
  return still;
}
