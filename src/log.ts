// Structured logging for every layer: one pino logger per process, children per component.
import { pino, type Logger } from 'pino';

export type { Logger };

let root: Logger | undefined;

/** The process's logger: JSON lines on stderr, level from ORBIT_LOG (default 'info'). */
export function rootLogger(): Logger {
  root ??= pino(
    { name: 'orbit', level: process.env.ORBIT_LOG ?? 'info', base: { pid: process.pid } },
    // Asynchronous, so a slow reader of stderr never stalls a filesystem. minLength 1 still writes
    // each line at once, but makes flush(cb) wait for writes in flight (with 0 it returns at
    // once), which a process about to die of a signal relies on.
    pino.destination({ fd: 2, sync: false, minLength: 1 }),
  );
  return root;
}

export function componentLogger(component: string): Logger {
  return rootLogger().child({ component });
}
