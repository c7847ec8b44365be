// Arguments the commands share: sizes, durations, policies. Each parser throws commander's
// InvalidArgumentError, which the command line turns into one line and exit code 2.
import { InvalidArgumentError } from 'commander';
import { formatPolicy, parsePolicy, PolicyError } from '../pool/policy.js';

const SIZE = /^(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?$/i;

/** "500G", "1.5T", "1048576": bytes (binary units). */
export function parseSize(text: string): number {
  const m = SIZE.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`expected a size such as 500G, 2T or 1048576, not ${JSON.stringify(text)}`);
  const bytes = Number(m[1]) * 1024 ** ' KMGTP'.indexOf((m[2] || ' ').toUpperCase());
  if (!Number.isFinite(bytes) || bytes < 1) throw new InvalidArgumentError(`${text} is not a usable size`);
  return Math.floor(bytes);
}

/** A policy argument, formatted; "default" passes as it is. */
export function policyOrDefault(text: string): string {
  return text === 'default' ? text : parsePolicyArgument(text);
}

/** A policy argument, formatted. */
export function parsePolicyArgument(text: string): string {
  try {
    return formatPolicy(parsePolicy(text));
  } catch (err) {
    if (err instanceof PolicyError) throw new InvalidArgumentError(err.message);
    throw err;
  }
}

const DURATION = /^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$/i;
const DURATION_MS: Record<string, number> = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** "30m", "12h", "7d", "2w": milliseconds. */
export function parseDuration(text: string): number {
  const m = DURATION.exec(text.trim());
  if (!m) throw new InvalidArgumentError(`expected a duration such as 30m, 12h, 7d or 2w, not ${JSON.stringify(text)}`);
  return Math.round(Number(m[1]) * DURATION_MS[m[2]!.toLowerCase()]!);
}

/** A duration as parseDuration reads it, in its largest whole unit. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of Object.entries(DURATION_MS).reverse()) if (ms % size === 0) return `${ms / size}${unit}`;
  return `${ms / 1000}s`;
}

/** "127.0.0.1:9464", ":9464" (all addresses), "[::1]:9464". */
export function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new InvalidArgumentError(`expected HOST:PORT such as 127.0.0.1:9464, not ${JSON.stringify(text)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}
