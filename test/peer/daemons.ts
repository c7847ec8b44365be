// Daemons for the household tests: `orbit up` as a child process, and its end.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { ORBIT_NODE_ARGS, start, waitFor } from '../helpers.js';

export interface Up {
  child: ChildProcess;
  output: () => string;
  /** HOST:PORT it listens at, when it listens. */
  listen?: string;
}

/** `orbit up --home HOME ARGS…`, once it says it is up. */
export async function up(home: string, args: readonly string[] = []): Promise<Up> {
  const d = start(process.execPath, [...ORBIT_NODE_ARGS, 'up', '--home', home, ...args]);
  await waitFor(() => /orbit daemon for/.test(d.output()) || d.child.exitCode !== null, 'the daemon to start', 20_000);
  assert.equal(d.child.exitCode, null, d.output());
  const m = /listening at (\S+)/.exec(d.output());
  return { ...d, ...(m ? { listen: m[1]! } : {}) };
}

/** Ends a daemon (SIGTERM: in order; SIGKILL: as a crash) and waits for it to exit. */
export async function down(d: Up, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (d.child.exitCode !== null || d.child.signalCode !== null) return;
  const exited = new Promise((r) => d.child.once('exit', r));
  d.child.kill(signal);
  await exited;
}
