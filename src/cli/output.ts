// What the command line prints: sizes and ratios for people, JSON for programs, and errors as
// one line each.
import { LockedError } from '../file-lock.js';
import { JobError } from '../jobs/contract.js';
import { MetaError } from '../meta/contract.js';
import { MountError } from '../fuse/errors.js';
import { DiskUnavailableError } from '../pool/disk.js';
import { PoolConfigError } from '../pool/pool-config.js';
import { PolicyError } from '../pool/policy.js';
import { StoreError } from '../store/store.js';

/** A failure whose message is written for the user: printed as it is, without a stack. */
export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

const UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];

/** Bytes in binary units, e.g. "512 B", "1.5 MiB". */
export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes;
  let unit = 'B';
  for (const next of UNITS) {
    if (value < 1024) break;
    value /= 1024;
    unit = next;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${unit}`;
}

/** `part` / `whole`, or null when there is nothing to divide (an empty volume has no ratio). */
export function ratio(whole: number, part: number): number | null {
  return part === 0 ? null : whole / part;
}

export function formatRatio(value: number | null): string {
  return value === null ? 'n/a' : `${value.toFixed(2)}x`;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** Rows of cells, each column as wide as its widest cell (the last one left ragged). */
export function printTable(rows: string[][]): void {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  for (const row of rows) {
    const line = row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ');
    process.stdout.write(line.trimEnd() + '\n');
  }
}

function isSystemError(err: Error): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return typeof code === 'string' && /^E[A-Z]+$/.test(code);
}

/** Whether `err`'s message is meant for the user, rather than a bug's description. */
export function isUserError(err: unknown): err is Error {
  const known = [CliError, StoreError, MountError, MetaError, PoolConfigError, PolicyError, DiskUnavailableError, JobError, LockedError];
  return known.some((type) => err instanceof type) || (err instanceof Error && isSystemError(err));
}

/** `err` as one line, without the "orbit: " prefix. */
export function errorLine(err: unknown): string {
  const text = isUserError(err) ? err.message : `unexpected error: ${err instanceof Error ? err.message : String(err)} (ORBIT_DEBUG=1 shows where)`;
  return text.replace(/\s*\n\s*/g, ' ');
}

/** Prints `err` on stderr: one line, and with ORBIT_DEBUG=1 its stack too. */
export function reportError(err: unknown): void {
  process.stderr.write(`orbit: ${errorLine(err)}\n`);
  if (process.env.ORBIT_DEBUG === '1' && err instanceof Error && err.stack) process.stderr.write(err.stack + '\n');
}
