// The pool's configuration, <home>/pool.json: its disks, its default policy and its tiering. Every process of
// the store reads it (each mount, gc, fsck, the CLI); the CLI changes it under a lock, by writing
// a new file and renaming it into place, so readers see the old or the new one, never half.
// Processes that run long re-read it when it changes (Pool.refresh), which is how a disk added
// while volumes are mounted is used at once.
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import type { DiskConfig } from './disk.js';
import { replaceFile } from '../durable-file.js';
import { LockedError, withFileLock } from '../file-lock.js';
import { DEFAULT_WINDOW_MS } from './heat.js';
import { formatPolicy, parsePolicy, type Policy } from './policy.js';

export const POOL_FILE = 'pool.json';
const POOL_FORMAT = 1;

export interface PoolConfig {
  format: number;
  /** The pool's id (the store's): every disk's label names it. */
  id: string;
  /** The policy of new chunks; absent: the default for the number of active disks. */
  policy?: string;
  disks: DiskConfig[];
  /** Automatic policies by heat; absent: off. */
  tiering?: TieringConfig;
}

/** Hot chunks under one policy, cold ones under another, as their heat (heat.ts) says. */
export interface TieringConfig {
  hot: string;
  cold: string;
  /** The heat window (default an hour): shorter makes classes follow reads faster. */
  windowMs?: number;
}

export interface Tiering {
  hot: Policy;
  cold: Policy;
  windowMs: number;
}

export class PoolConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoolConfigError';
  }
}

export async function readPoolConfig(home: string): Promise<PoolConfig> {
  const file = path.join(home, POOL_FILE);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new PoolConfigError(`cannot read the pool configuration ${file}: ${(err as Error).message}`);
  }
  let config: PoolConfig;
  try {
    config = JSON.parse(text) as PoolConfig;
  } catch (err) {
    throw new PoolConfigError(`the pool configuration ${file} is not valid JSON: ${(err as Error).message}`);
  }
  if (config.format !== POOL_FORMAT) throw new PoolConfigError(`the pool configuration ${file} has format ${config.format}; this Orbit reads ${POOL_FORMAT}`);
  if (config.policy !== undefined) parsePolicy(config.policy);
  if (config.tiering !== undefined) configuredTiering(config);
  return config;
}

/** When pool.json last changed (to notice a change made by another process). */
export async function poolConfigVersion(home: string): Promise<number> {
  return (await stat(path.join(home, POOL_FILE))).mtimeMs;
}

export function newPoolConfig(id: string, firstDisk: DiskConfig): PoolConfig {
  return { format: POOL_FORMAT, id, disks: [firstDisk] };
}

export async function writePoolConfig(home: string, config: PoolConfig): Promise<void> {
  await replaceFile(path.join(home, POOL_FILE), JSON.stringify(config, null, 2) + '\n');
}

/**
 * Runs `change` on the current configuration while holding <home>/pool.lock, and writes what it
 * returns. A lock left by a dead process is taken over.
 */
export async function updatePoolConfig<T>(home: string, change: (config: PoolConfig) => Promise<T> | T): Promise<T> {
  try {
    return await withFileLock(path.join(home, 'pool.lock'), 'the pool configuration', async () => {
      const config = await readPoolConfig(home);
      const result = await change(config);
      await writePoolConfig(home, config);
      return result;
    });
  } catch (err) {
    if (err instanceof LockedError) throw new PoolConfigError(err.message);
    throw err;
  }
}

export function configuredPolicy(config: PoolConfig): Policy | undefined {
  return config.policy === undefined ? undefined : parsePolicy(config.policy);
}

export function setConfiguredPolicy(config: PoolConfig, policy: Policy | undefined): void {
  if (policy === undefined) delete config.policy;
  else config.policy = formatPolicy(policy);
}

export function configuredTiering(config: PoolConfig): Tiering | undefined {
  const t = config.tiering;
  if (t === undefined) return undefined;
  return { hot: parsePolicy(t.hot), cold: parsePolicy(t.cold), windowMs: t.windowMs ?? DEFAULT_WINDOW_MS };
}

export function setConfiguredTiering(config: PoolConfig, tiering: Tiering | undefined): void {
  if (tiering === undefined) delete config.tiering;
  else config.tiering = { hot: formatPolicy(tiering.hot), cold: formatPolicy(tiering.cold), ...(tiering.windowMs !== DEFAULT_WINDOW_MS ? { windowMs: tiering.windowMs } : {}) };
}
