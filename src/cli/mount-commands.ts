// mount and umount. While the store's daemon runs, it serves the mount and the command returns
// once it is ready. Otherwise a foreground mount serves until unmounted or signalled, and
// --background starts the same command as a detached child and returns once the child reports
// the mount ready. A volume attached from a peer needs the daemon: its content comes from peers.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, open } from 'node:fs/promises';
import path from 'node:path';
import { Option, type Command } from 'commander';
import { connectDaemon } from '../daemon/control.js';
import { SOFTWARE } from '../daemon/daemon.js';
import { unmountPath } from '../fuse/mountpoint.js';
import { serveMetrics, type MetricsServer } from '../http/metrics.js';
import { componentLogger } from '../log.js';
import { DEFAULT_VOLUME, Store } from '../store/store.js';
import { mountVolume, type MountedVolume } from '../vfs/mount.js';
import { parseListen } from './arguments.js';
import { homeOption, withStore, type HomeOptions } from './home.js';
import { CliError, errorLine } from './output.js';

interface MountOptions extends HomeOptions {
  volume: string;
  allowOther?: boolean;
  background?: boolean;
  /** Set on the child a --background mount starts: it reports to its parent over IPC. */
  backgroundChild?: boolean;
  /** Where to serve Prometheus metrics. */
  metrics?: { host: string; port: number };
}

/** The one message a background mount's child sends its parent. */
type Readiness = { ok: true; line: string } | { ok: false; error: string };

const CHILD_FLAG = '--background-child';

/** Mounts, calls `announce` with a line saying what is mounted where, and serves until the mount ends. */
async function serve(mountpoint: string, opts: MountOptions, announce: (line: string, mountpoint: string) => Promise<void>): Promise<void> {
  const store = await Store.open(opts.home);
  let mounted: MountedVolume;
  try {
    await refuseAttachedWithoutDaemon(store, opts.volume);
    mounted = await mountVolume(store, { volume: opts.volume, mountpoint: path.resolve(mountpoint), allowOther: opts.allowOther === true });
  } catch (err) {
    await store.close();
    throw err;
  }
  let metrics: MetricsServer | undefined;
  try {
    if (opts.metrics) metrics = await serveMetrics(store, opts.metrics, componentLogger('http'));
  } catch (err) {
    await mounted.unmount();
    await store.close();
    throw new CliError(`cannot serve metrics on ${opts.metrics!.host}:${opts.metrics!.port}: ${(err as Error).message}`);
  }
  await announce(`volume ${opts.volume} of the store at ${store.home} mounted at ${mounted.mountpoint}${metrics ? `, metrics at ${metrics.url}` : ''}`, mounted.mountpoint);
  await mounted.closed;
  await metrics?.close();
  await store.close();
}

/** Sends `report` to the parent; resolves also when the parent is gone (interrupted while waiting),
 * since a mount that is up keeps serving either way. */
function notifyParent(report: Readiness): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) resolve();
    else process.send(report, () => resolve());
  });
}

async function serveForParent(mountpoint: string, opts: MountOptions): Promise<void> {
  if (!process.send) throw new CliError(`${CHILD_FLAG} is for the process 'orbit mount --background' starts`);
  // A daemon keeps no directory busy: the paths it was given are absolute.
  process.chdir('/');
  let announced = false;
  try {
    await serve(mountpoint, opts, async (line) => {
      announced = true;
      await notifyParent({ ok: true, line });
      if (process.connected) process.disconnect();
    });
  } catch (err) {
    if (!announced) await notifyParent({ ok: false, error: errorLine(err) });
    throw err;
  }
}

/** Starts this command again as a detached child logging to <home>/run/<volume>.log, and waits
 * for it to report the mount ready or failed. */
async function mountInBackground(mountpoint: string, opts: MountOptions): Promise<void> {
  // Checked here, not only in the child: the log file's path is made of the home and the volume's name.
  const home = await withStore(opts.home, async (store) => {
    if (!(await store.meta.volumes()).some((v) => v.name === opts.volume)) throw new CliError(`no volume ${opts.volume} in the store at ${store.home}`);
    await refuseAttachedWithoutDaemon(store, opts.volume);
    return store.home;
  });
  const logPath = path.join(home, 'run', `${opts.volume}.log`);
  await mkdir(path.dirname(logPath), { recursive: true });
  const args = ['mount', '--home', home, '--volume', opts.volume, ...(opts.allowOther ? ['--allow-other'] : []),
    ...(opts.metrics ? ['--metrics', `[${opts.metrics.host}]:${opts.metrics.port}`] : []), CHILD_FLAG, path.resolve(mountpoint)];
  const log = await open(logPath, 'a');
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, [...process.execArgv, ...process.argv.slice(1, 2), ...args], { detached: true, stdio: ['ignore', log.fd, log.fd, 'ipc'] });
  } finally {
    // The child has its own descriptors by now: spawn forks before returning.
    await log.close();
  }
  const report = await new Promise<Readiness>((resolve) => {
    child.once('message', (message) => resolve(message as Readiness));
    child.once('error', (err) => resolve({ ok: false, error: `cannot start the mount process: ${err.message}` }));
    child.once('exit', (code, signal) => resolve({ ok: false, error: `the mount process ended (${signal ?? `exit code ${code}`}) before the mount was ready; see ${logPath}` }));
  });
  if (child.connected) child.disconnect();
  child.unref();
  if (!report.ok) throw new CliError(report.error);
  console.log(`${report.line} (in the background: process ${child.pid}, log ${logPath})`);
}

/** Asks the store's daemon to serve the mount; false when no daemon runs. */
async function mountThroughDaemon(mountpoint: string, opts: MountOptions): Promise<boolean> {
  const daemon = await connectDaemon(opts.home, SOFTWARE);
  if (!daemon) return false;
  try {
    if (opts.metrics) throw new CliError('--metrics is for a mount served by its own process; the daemon serves the store\'s metrics');
    const reply = await daemon.request('mount', { volume: opts.volume, mountpoint: path.resolve(mountpoint), allowOther: opts.allowOther === true });
    console.log(`volume ${opts.volume} mounted at ${String(reply.header.mountpoint)} (served by the daemon); 'orbit umount ${String(reply.header.mountpoint)}' unmounts`);
    return true;
  } finally {
    await daemon.close();
  }
}

/** A volume attached from a peer is served by the daemon only. */
async function refuseAttachedWithoutDaemon(store: Store, volume: string): Promise<void> {
  if ((await store.meta.volumes()).find((v) => v.name === volume)?.origin) {
    throw new CliError(`volume ${volume} is attached from a peer: its content comes through the daemon; start it with 'orbit up' first`);
  }
}

export function addMountCommands(program: Command): void {
  program
    .command('mount')
    .description('mount a volume and serve it until it is unmounted or interrupted')
    .argument('<mountpoint>', 'an empty directory')
    .option('--volume <name>', 'the volume to mount', DEFAULT_VOLUME)
    .option('--allow-other', 'let other users than the one mounting use the mount (needs user_allow_other in /etc/fuse.conf unless root)')
    .option('--background', 'return once the mount is ready, serving it from a detached process')
    .option('--metrics <host:port>', 'serve Prometheus metrics of the store (pool, jobs, process) at http://HOST:PORT/metrics', parseListen)
    .addOption(new Option(CHILD_FLAG).hideHelp())
    .addOption(homeOption())
    .action(async (mountpoint: string, opts: MountOptions) => {
      if (opts.backgroundChild) return serveForParent(mountpoint, opts);
      if (await mountThroughDaemon(mountpoint, opts)) return;
      if (opts.background) await mountInBackground(mountpoint, opts);
      else await serve(mountpoint, opts, async (line, at) => console.log(`${line}; Ctrl-C or 'orbit umount ${at}' unmounts`));
    });

  program
    .command('umount')
    .description('unmount a mounted volume')
    .argument('<mountpoint>', 'where the volume is mounted')
    .option('--lazy', 'detach it now even if files are open; it goes once they are closed')
    .action(async (mountpoint: string, opts: { lazy?: boolean }) => {
      await unmountPath(mountpoint, opts.lazy === true);
      console.log(`unmounted ${path.resolve(mountpoint)}`);
    });
}
