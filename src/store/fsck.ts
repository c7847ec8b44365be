// fsck: checks that the metadata and the chunk pool agree and that every chunk still holds what
// its name says, naming the files any problem touches. With repair, fixes what is safe to fix:
// reference counts always, chunks nothing refers to only while no volume is mounted (a chunk
// just stored by a commit in flight is not referred to yet).
import type { ChunkId } from '../pool/contract.js';
import type { Store } from './store.js';

export type FsckProblem =
  | { kind: 'missing-chunk'; chunk: ChunkId; files: string[] }
  | { kind: 'corrupt-chunk'; chunk: ChunkId; files: string[]; detail: string }
  | { kind: 'refcount'; chunk: ChunkId; recorded: number; actual: number; repaired: boolean }
  | { kind: 'orphan-chunk'; chunk: ChunkId; storedBytes: number; repaired: boolean };

export interface FsckReport {
  chunksVerified: number;
  bytesVerified: number;
  problems: FsckProblem[];
}

/** How many chunks are read and verified at once. */
const VERIFY_CONCURRENCY = 4;
const FILES_NAMED = 10;

export async function fsck(store: Store, opts: { repair?: boolean } = {}): Promise<FsckReport> {
  const repair = opts.repair ?? false;
  const { chunks, refMismatches } = await store.meta.checkChunks();
  const problems: FsckProblem[] = [];
  let bytesVerified = 0;
  let chunksVerified = 0;

  // A chunk stored with no bytes here is a peer's (a file of an attached volume not made Real):
  // the pool has nothing of it to check.
  const referenced = chunks.filter((c) => c.refs > 0 && c.storedSize > 0);
  let next = 0;
  const verifier = async (): Promise<void> => {
    while (next < referenced.length) {
      const c = referenced[next++]!;
      let stored: Buffer;
      try {
        stored = await store.chunks.get(c.id);
      } catch (err) {
        // The pool found fragments, but too few good ones to rebuild the chunk from.
        if ((err as Error).name === 'ChunkUnreadableError') {
          problems.push({ kind: 'corrupt-chunk', chunk: c.id, files: await store.meta.filesUsing(c.id, FILES_NAMED), detail: (err as Error).message });
          continue;
        }
        if ((err as { code?: string }).code !== 'ENOENT') throw err;
        problems.push({ kind: 'missing-chunk', chunk: c.id, files: await store.meta.filesUsing(c.id, FILES_NAMED) });
        continue;
      }
      try {
        const plain = await store.codec.decode(c.id, stored); // read the total after the wait, not before
        bytesVerified += plain.length;
        chunksVerified++;
      } catch (err) {
        if ((err as Error).name !== 'ChunkCorruptError') throw err;
        problems.push({ kind: 'corrupt-chunk', chunk: c.id, files: await store.meta.filesUsing(c.id, FILES_NAMED), detail: (err as Error).message });
      }
    }
  };
  await Promise.all(Array.from({ length: VERIFY_CONCURRENCY }, verifier));

  if (repair && refMismatches.length > 0) await store.meta.repairRefcounts();
  for (const m of refMismatches) problems.push({ kind: 'refcount', chunk: m.id, recorded: m.recorded, actual: m.actual, repaired: repair });

  const known = new Set(chunks.map((c) => c.id));
  const mayDelete = repair && (await store.mounts()).length === 0;
  for await (const s of store.chunks.iterate()) {
    if (known.has(s.id)) continue;
    if (mayDelete) await store.chunks.delete(s.id);
    problems.push({ kind: 'orphan-chunk', chunk: s.id, storedBytes: s.storedBytes, repaired: mayDelete });
  }
  if (mayDelete) await store.sync();
  return { chunksVerified, bytesVerified, problems };
}
