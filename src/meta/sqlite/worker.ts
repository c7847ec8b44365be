// The SQLite engine's thread: runs each request of the host (host.ts) in turn, synchronously.
import { parentPort, workerData } from 'node:worker_threads';
import { SqliteEngine } from './engine.js';
import type { EngineRequest, EngineResponse } from './host.js';

const { path } = workerData as { path: string };
let engine: SqliteEngine;
try {
  engine = new SqliteEngine(path);
} catch (err) {
  // Errors thrown here reach the host structurally cloned: a plain Error keeps its message.
  throw new Error(`cannot open the metadata database ${path}: ${(err as Error).message}`, { cause: err });
}
const port = parentPort!;

port.on('message', (req: EngineRequest) => {
  let res: EngineResponse;
  try {
    const method = engine[req.method] as (...args: unknown[]) => unknown;
    res = { seq: req.seq, ok: true, value: method.apply(engine, req.args) };
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
