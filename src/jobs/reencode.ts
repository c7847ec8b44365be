// A change of policy: sets the policy on a file, or on a directory and everything in it, then
// brings the chunks of those files to what their files now ask (store/policies.ts), one chunk at
// a time (Pool.heal with a policy: the new fragments are written before the old go, so each chunk
// stays readable throughout, and one caught midway by a crash is finished by the next heal).
//
// params: { volume, ino, path, policy }. The files are listed once, into a scratch file; the
// cursor is then { index, offset }: the file being done and how far into it.
import { readFile, rm } from 'node:fs/promises';
import { FileType, MetaError, type Ino, type MetaEngine } from '../meta/contract.js';
import { replaceFile } from '../durable-file.js';
import { formatPolicy, parsePolicy } from '../pool/policy.js';
import { chunkPolicy, POLICY_XATTR } from '../store/policies.js';
import type { JobContext, JobHandler } from './contract.js';
import { JobStore } from './job-store.js';

const S_IFMT = 0o170000;
const READDIR_PAGE = 1024;
/** Extents are asked for this much of a file at a time. */
const EXTENT_WINDOW = 64 * 1024 * 1024;

interface Listed {
  ino: Ino;
  size: number;
}

interface Cursor {
  index: number;
  offset: number;
}

export const reencodeHandler: JobHandler = {
  kind: 'reencode',
  async run(ctx: JobContext): Promise<string> {
    const { store, job } = ctx;
    // 'default': the set policy goes, and the pool's default applies again.
    const asked = String(job.params.policy);
    const policy = asked === 'default' ? undefined : formatPolicy(parsePolicy(asked));
    const scratch = new JobStore(store.home).scratch(job.id, 'files.json');
    let files: Listed[];
    let cursor = job.cursor as Cursor | undefined;
    if (cursor === undefined) {
      files = await setPolicyUnder(store.meta, Number(job.params.ino), policy, job.params.recursive === true, ctx.signal);
      if (ctx.signal.aborted) return '';
      await replaceFile(scratch, JSON.stringify(files));
      cursor = { index: 0, offset: 0 };
      ctx.checkpoint(cursor);
    } else {
      files = JSON.parse(await readFile(scratch, 'utf8')) as Listed[];
    }
    const total = files.reduce((n, f) => n + f.size, 0);
    let before = files.slice(0, cursor.index).reduce((n, f) => n + f.size, 0);
    ctx.progress(before + cursor.offset, total);
    for (let i = cursor.index; i < files.length; i++) {
      const file = files[i]!;
      const seen = new Set<string>();
      let offset = i === cursor.index ? cursor.offset : 0;
      while (offset < file.size) {
        const extents = await store.meta.extents(file.ino, offset, Math.min(EXTENT_WINDOW, file.size - offset)).catch((err: unknown) => {
          if (err instanceof MetaError && err.code === 'ENOENT') return null; // removed meanwhile
          throw err;
        });
        if (extents === null) break;
        if (extents.length === 0) {
          offset += EXTENT_WINDOW;
          continue;
        }
        for (const e of extents) {
          if (e.offset + e.length <= offset) continue;
          if (!seen.has(e.chunk)) {
            seen.add(e.chunk);
            const r = await store.chunks.heal(e.chunk, await chunkPolicy(store.meta, store.chunks, e.chunk), true);
            await ctx.throttle(r.bytes);
            ctx.count('chunks');
            if (r.written > 0) ctx.count('rewritten');
            if (r.lost) ctx.count('lost');
          }
          offset = e.offset + e.length;
          ctx.checkpoint({ index: i, offset } satisfies Cursor);
          ctx.progress(before + Math.min(offset, file.size));
          if (ctx.signal.aborted) return '';
        }
      }
      before += file.size;
      ctx.checkpoint({ index: i + 1, offset: 0 } satisfies Cursor);
      ctx.progress(before);
    }
    await store.chunks.sync();
    await rm(scratch, { force: true });
    return `${String(job.params.path)} is under ${policy ?? `the pool's default (${formatPolicy(store.chunks.policy)})`}: ${files.length} file(s), ${ctx.counts.chunks ?? 0} chunk(s) checked, ${ctx.counts.rewritten ?? 0} re-encoded`;
  },
};

/** Sets the policy (undefined: removes it) on `top` and, if `recursive` and a directory, on
 * everything beneath it; returns the regular files among them (each once, however many names). */
async function setPolicyUnder(meta: MetaEngine, top: Ino, policy: string | undefined, recursive: boolean, signal: AbortSignal): Promise<Listed[]> {
  const value = policy === undefined ? undefined : Buffer.from(policy);
  const files = new Map<Ino, Listed>();
  const dirs: Ino[] = [];
  const visit = async (ino: Ino, type: number, size: number): Promise<void> => {
    if (type !== FileType.Regular && type !== FileType.Directory) return; // no contents, no user xattrs
    const current = await meta.getxattr(ino, POLICY_XATTR).catch(() => undefined);
    if (value === undefined) {
      if (current !== undefined) await meta.removexattr(ino, POLICY_XATTR).catch(() => undefined);
    } else if (!current?.equals(value)) await meta.setxattr(ino, POLICY_XATTR, value, 0);
    if (type === FileType.Directory) {
      if (recursive || ino === top) dirs.push(ino);
    } else files.set(ino, { ino, size });
  };
  const topAttr = await meta.getattr(top);
  await visit(top, topAttr.mode & S_IFMT, topAttr.size);
  if (!recursive) return [...files.values()];
  while (dirs.length > 0 && !signal.aborted) {
    const dir = dirs.pop()!;
    for (let cookie = 0; ;) {
      const page = await meta.readdir(dir, cookie, READDIR_PAGE, true).catch(() => []);
      for (const e of page) {
        if (e.name !== '.' && e.name !== '..' && e.attr) await visit(e.ino, e.type & S_IFMT, e.attr.size);
      }
      if (page.length < READDIR_PAGE) break;
      cookie = page[page.length - 1]!.cookie;
    }
  }
  return [...files.values()];
}
