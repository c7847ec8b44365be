// Structured logging for every layer: one pino logger per process, children per component.
import { pino, type Logger } from 'pino';

export type { Logger };

let root: Logger | undefined;

/** The process's logger: JSON lines on stderr, level from ORBIT_LOG (default 'info'). */
export function rootLogger(): Logger {
  root ??= pino(
    { name: 'orbit', level: process.env.ORBIT_LOG ?? 'info', base: { pid: process.pid } },
    pino.destination({ fd: 2, sync: false }),
  );
  return root;
}

export function componentLogger(component: string): Logger {
  return rootLogger().child({ component });
}
