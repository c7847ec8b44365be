// The SQLite engine's thread: runs each request of the host (host.ts) in turn, synchronously.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteEngine } from './engine.js';
import type { EngineLog, EngineRequest, EngineResponse, WorkerOptions } from './host.js';
import { MirroredEngine, poolMirrorSites } from './mirror.js';

const { path, mirrorPool } = workerData as WorkerOptions;
const port = parentPort!;
let run: (method: string, args: unknown[]) => unknown;
try {
  if (mirrorPool === undefined) {
    const engine = new SqliteEngine(path);
    run = (method, args) => (engine[method as keyof SqliteEngine] as (...a: unknown[]) => unknown).apply(engine, args);
  } else {
    // Mirrored on the pool's disks; its log lines go to the host, which logs them with its own.
    const log = (level: EngineLog['log'], fields: Record<string, unknown>, msg: string): void => port.postMessage({ log: level, fields, msg } satisfies EngineLog);
    const engine = new MirroredEngine(path, { sites: poolMirrorSites(mirrorPool), log });
    run = (method, args) => engine.run(method, args);
  }
} catch (err) {
  // Errors thrown here reach the host structurally cloned: a plain Error keeps its message.
  throw new Error(`cannot open the metadata database ${path}: ${(err as Error).message}`, { cause: err });
}

port.on('message', (req: EngineRequest) => {
  let res: EngineResponse;
  try {
    res = { seq: req.seq, ok: true, value: run(req.method, req.args) };
  } catch (err) {
    const e = err as Error & { code?: string };
    // A full disk is the caller's ENOSPC, not an unknown error (which FUSE would answer as EIO).
    res = e.code === 'SQLITE_FULL'
      ? { seq: req.seq, ok: false, name: 'MetaError', message: `metadata: ${e.message}`, code: 'ENOSPC' }
      : { seq: req.seq, ok: false, name: e.name, message: e.message, code: e.code };
  }
  port.postMessage(res);
  if (req.method === 'close') process.exit(0);
});
