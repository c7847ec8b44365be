// How failures cross the FUSE boundary: handlers throw errno-carrying errors, the session turns
// them into replies; mount problems become one-line MountErrors.
import { constants } from 'node:os';

const ERRNO: Readonly<Record<string, number>> = constants.errno;

/** A handler's answer that is an error: the caller's syscall fails with this errno. */
export class FuseError extends Error {
  readonly errno: number;
  readonly code: string;

  constructor(code: keyof typeof constants.errno, message?: string) {
    // An errno answer, not a fault: no stack trace to capture.
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? code);
    Error.stackTraceLimit = limit;
    this.name = 'FuseError';
    this.code = code;
    this.errno = ERRNO[code] ?? constants.errno.EIO;
  }
}

/** The errno an error stands for, or undefined when it is unexpected (a bug: EIO and a log line). */
export function errnoOf(err: unknown): number | undefined {
  if (err instanceof FuseError) return err.errno;
  if (typeof err === 'object' && err !== null) {
    const { code, errno } = err as { code?: unknown; errno?: unknown };
    if (typeof code === 'string' && code in ERRNO) return ERRNO[code];
    // Node system errors carry negative errno numbers (libuv's convention).
    if (typeof errno === 'number' && errno < 0) return -errno;
  }
  return undefined;
}

/** A mount or unmount that cannot go ahead, with a message a user can act on. */
export class MountError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MountError';
  }
}
