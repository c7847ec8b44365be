// Shared test plumbing: temporary directories, child processes, captured logs.
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import type { Logger } from '../src/log.js';

export async function tempDir(prefix: string): Promise<{ dir: string; remove: () => Promise<void> }> {
  const dir = await mkdtemp(path.join(tmpdir(), `orbit-${prefix}-`));
  return { dir, remove: () => rm(dir, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a program to completion (never throws on a non-zero exit). Always asynchronous: the test
 * process may be serving the filesystem the program uses. */
export function run(cmd: string, args: readonly string[], opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = execFile(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20, timeout: opts.timeoutMs ?? 60_000, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

/** Runs a program and returns stdout; throws with its stderr when it fails. */
export async function ok(cmd: string, args: readonly string[], opts: { input?: string } = {}): Promise<string> {
  const res = await run(cmd, args, opts);
  if (res.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${res.code}: ${res.stderr.trim()}`);
  return res.stdout;
}

/** The orbit command of this clone. */
const ORBIT_BIN = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../bin/orbit.js');

/** Node's arguments that run the orbit command as its shebang does (`#!/usr/bin/env -S node
 * FLAGS`): the flags there, then the script. Spawn process.execPath with these and the command's
 * own arguments: the test runs what a user's `npx orbit` runs, heap sizing included. */
export const ORBIT_NODE_ARGS: readonly string[] = [...shebangFlags(ORBIT_BIN), ORBIT_BIN];

function shebangFlags(script: string): string[] {
  const first = readFileSync(script, 'utf8').split('\n', 1)[0]!;
  const flags = /^#!\/usr\/bin\/env -S node(?<flags>( \S+)*)$/.exec(first)?.groups?.flags;
  if (flags === undefined) throw new Error(`${script}: its first line is not "#!/usr/bin/env -S node [FLAGS]"`);
  return flags.split(' ').filter(Boolean);
}

/** Runs `orbit …` to completion. */
export function orbit(...args: string[]): Promise<RunResult> {
  return run(process.execPath, [...ORBIT_NODE_ARGS, ...args], { timeoutMs: 180_000 });
}

/** Runs `orbit …`, asserting that it succeeds; returns its stdout. */
export async function orbitOk(...args: string[]): Promise<string> {
  const res = await orbit(...args);
  assert.equal(res.code, 0, `orbit ${args.join(' ')} exited ${res.code}: ${res.stderr}`);
  return res.stdout;
}

/** A store made with the orbit commands in `dir`/home, with `count` directory disks in all: its
 * own (home/pool) and `dir`/disk1... */
export async function storeWithDisks(dir: string, count: number): Promise<{ home: string; disks: string[] }> {
  const home = path.join(dir, 'home');
  await orbitOk('init', '--home', home);
  const disks = [path.join(home, 'pool')];
  for (let i = 1; i < count; i++) {
    const d = path.join(dir, `disk${i}`);
    await orbitOk('pool', 'add-disk', d, '--home', home);
    disks.push(d);
  }
  return { home, disks };
}

/** Python one-liners reach syscalls Node does not expose (renameat2, copy_file_range, SEEK_DATA). */
export function py(code: string, ...args: string[]): Promise<RunResult> {
  return run('python3', ['-c', code, ...args]);
}

/** Spawns a long-running child and collects its output. */
export function start(cmd: string, args: readonly string[]): { child: ReturnType<typeof spawn>; output: () => string } {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  return { child, output: () => out };
}

/** A logger whose lines the test can read. */
export function capturedLogger(): { log: Logger; lines: () => Array<Record<string, unknown>> } {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString());
      done();
    },
  });
  const log = pino({ level: 'debug' }, stream);
  return { log, lines: () => lines.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) };
}

export async function waitFor(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
