// Worker threads for Orbit's TypeScript modules. Orbit runs its sources through tsx, but on Node 20
// the loader that `--import tsx` installs does not apply to a worker's entry module, so a worker
// starts from a small bootstrap that registers tsx itself and then imports the module.
import { Worker } from 'node:worker_threads';

const tsxApi = import.meta.resolve('tsx/esm/api');

export function startWorker(module: URL, workerData?: unknown): Worker {
  if (!module.pathname.endsWith('.ts')) return new Worker(module, { workerData });
  const boot = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(module.href)}); });`;
  return new Worker(new URL(`data:text/javascript,${encodeURIComponent(boot)}`), { workerData });
}
