// The remote-read bench's other columns, where Debian's packages are installed (openssh-server,
// sshfs, rclone): sshfs, and rclone's mount of an SFTP remote with --vfs-cache-mode full, each
// reading the plain copy of the file from an sshd of the bench's own on the bench's loopback (a
// spare port, a temporary configuration, host and client keys made for the run, root logging in
// by key). Both run with their defaults otherwise, SSH's cipher choice included.
//
// A cold read remounts (sshfs keeps nothing between mounts but the kernel's page cache, which
// the bench drops); rclone's cache directory is also deleted, since it would keep the file.
// What cannot be set up here is left out with one line saying why, and the bench goes on.
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, start } from '../../test/helpers.js';
import { installed, startFs, stopProcess, type MountedProcess, type Workload } from '../lib.js';
import { readThroughMount, type ReadFigures, type RemoteReader } from './cold-read.js';
import type { Loopback } from './private-loopback.js';

const START_TIMEOUT_MS = 30_000;
const RCLONE_REMOTE = 'bench';

/** A TCP port nothing listens on now (sshd wants one on its command line, not port 0). On the
 * bench's own loopback nothing else listens, but it may be the machine's. */
async function sparePort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const address = server.address();
  server.close();
  await once(server, 'close');
  if (typeof address !== 'object' || address === null) throw new Error('no spare TCP port');
  return address.port;
}

async function keyPair(file: string): Promise<void> {
  const made = await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'orbit-bench', '-f', file]);
  if (made.code !== 0) throw new Error(`ssh-keygen: ${made.stderr.trim()}`);
}

/** An sshd of the bench's own on 127.0.0.1, letting root in with one key. */
class Sshd {
  private constructor(
    private readonly process: ChildProcess,
    readonly port: number,
    /** The client's private key. */
    readonly clientKey: string,
  ) {}

  static async start(dir: string, net: Loopback): Promise<Sshd> {
    const hostKey = path.join(dir, 'host_ed25519');
    const clientKey = path.join(dir, 'client_ed25519');
    await keyPair(hostKey);
    await keyPair(clientKey);
    const port = await sparePort();
    const config = path.join(dir, 'sshd_config');
    await writeFile(config, [
      `Port ${port}`,
      'ListenAddress 127.0.0.1',
      `HostKey ${hostKey}`,
      'PidFile none',
      `AuthorizedKeysFile ${clientKey}.pub`,
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      'UsePAM no',
      // The keys sit under a scratch directory in a world-writable parent (/dev/shm, /tmp),
      // which strict modes refuse.
      'StrictModes no',
      'Subsystem sftp internal-sftp',
      '',
    ].join('\n'));
    // sshd refuses to start without its privilege separation directory, which Debian makes
    // only when its own service starts.
    await mkdir('/run/sshd', { recursive: true, mode: 0o755 });
    // -D: stays the child the bench started; -e: logs to stderr, where it says it listens.
    const { child: sshd, output } = start(...net.command('/usr/sbin/sshd', ['-D', '-e', '-f', config]));
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!/Server listening on/.test(output())) {
      if (sshd.exitCode !== null || Date.now() > deadline) {
        await stopProcess(sshd);
        throw new Error(`sshd did not start: ${output().trim() || `exit ${sshd.exitCode}`}`);
      }
      await sleep(20);
    }
    return new Sshd(sshd, port, clientKey);
  }

  close(): Promise<void> {
    return stopProcess(this.process);
  }
}

/** A network filesystem mounted by a program of its own, remounted (and its cache forgotten) for
 * each cold read. */
class RemoteMount implements RemoteReader {
  private fs: MountedProcess | undefined;

  constructor(
    readonly name: string,
    private readonly work: Workload,
    private readonly net: Loopback,
    private readonly mountpoint: string,
    private readonly size: number,
    private readonly mount: () => Promise<MountedProcess>,
    /** Deletes what the program keeps between mounts. */
    private readonly forget: () => Promise<void> = async () => undefined,
  ) {}

  /** Mounts once and unmounts: whether it can be set up here at all. */
  async tryOut(): Promise<void> {
    await this.cold();
    await this.close();
  }

  read(): Promise<ReadFigures> {
    return readThroughMount(this.work, this.net, { file: path.join(this.mountpoint, 'file'), size: this.size, cold: () => this.cold() });
  }

  async close(): Promise<void> {
    const fs = this.fs;
    this.fs = undefined;
    await fs?.unmount();
  }

  private async cold(): Promise<void> {
    await this.close();
    await this.forget();
    this.fs = await this.mount();
  }
}

export interface SshSides {
  /** The sides that could be set up. */
  readers: RemoteReader[];
  /** Why the others could not (one line each). */
  leftOut: string[];
  close(): Promise<void>;
}

/**
 * sshfs and rclone reading `servedDir`/file (of `size` bytes) over SSH, their files under `dir`.
 * The sides whose programs are missing or fail to start are left out, and say why.
 */
export async function startSshSides(dir: string, servedDir: string, size: number, work: Workload, net: Loopback): Promise<SshSides> {
  const readers: RemoteMount[] = [];
  const leftOut: string[] = [];
  let sshd: Sshd | undefined;
  const close = async (): Promise<void> => {
    try {
      for (const r of readers) await r.close();
    } finally {
      await sshd?.close();
    }
  };
  const none = { readers: [], leftOut, close };

  const missingSsh = [];
  for (const program of ['/usr/sbin/sshd', 'ssh', 'ssh-keygen']) if (!(await installed(program))) missingSsh.push(program);
  if (missingSsh.length > 0) {
    leftOut.push(`sshfs and rclone left out: no ${missingSsh.join(', ')} here (apt-get install openssh-server openssh-client sshfs rclone)`);
    return none;
  }
  const wanted: Array<'sshfs' | 'rclone'> = [];
  for (const program of ['sshfs', 'rclone'] as const) {
    if (await installed(program)) wanted.push(program);
    else leftOut.push(`${program} left out: it is not installed (apt-get install ${program})`);
  }
  if (wanted.length === 0) return none;

  await mkdir(dir, { recursive: true });
  try {
    sshd = await Sshd.start(dir, net);
  } catch (err) {
    leftOut.push(`${wanted.join(' and ')} left out: ${firstLine(err)}`);
    return none;
  }
  try {
    for (const program of wanted) {
      const candidate = await (program === 'sshfs' ? sshfs : rclone)({ dir, servedDir, size, work, net, sshd });
      try {
        await candidate.tryOut();
        readers.push(candidate);
      } catch (err) {
        await candidate.close().catch(() => undefined);
        leftOut.push(`${candidate.name} left out: ${firstLine(err)}`);
      }
    }
  } catch (err) {
    await close();
    throw err;
  }
  if (readers.length === 0) await close();
  return { readers, leftOut, close };
}

/** What a side needs to be set up. */
interface Setting {
  dir: string;
  servedDir: string;
  size: number;
  work: Workload;
  net: Loopback;
  sshd: Sshd;
}

async function sshfs({ dir, servedDir, size, work, net, sshd }: Setting): Promise<RemoteMount> {
  const mountpoint = path.join(dir, 'mnt-sshfs');
  await mkdir(mountpoint);
  const options = [`port=${sshd.port}`, `IdentityFile=${sshd.clientKey}`, 'StrictHostKeyChecking=no', 'UserKnownHostsFile=/dev/null', 'BatchMode=yes', 'LogLevel=ERROR'];
  return new RemoteMount('sshfs', work, net, mountpoint, size, () =>
    // -f: stays in the foreground, the child the bench started, until unmounted.
    startFs(...net.command('sshfs', ['-f', '-o', options.join(','), `root@127.0.0.1:${servedDir}`, mountpoint]), mountpoint));
}

async function rclone({ dir, servedDir, size, work, net, sshd }: Setting): Promise<RemoteMount> {
  const mountpoint = path.join(dir, 'mnt-rclone');
  const cache = path.join(dir, 'rclone-cache');
  const config = path.join(dir, 'rclone.conf');
  await mkdir(mountpoint);
  await writeFile(config, [
    `[${RCLONE_REMOTE}]`,
    'type = sftp',
    'host = 127.0.0.1',
    `port = ${sshd.port}`,
    'user = root',
    `key_file = ${sshd.clientKey}`,
    'shell_type = unix',
    // No checksums by remote commands: they would read the whole file once more on the server.
    'md5sum_command = none',
    'sha1sum_command = none',
    '',
  ].join('\n'));
  return new RemoteMount(
    'rclone vfs full', work, net, mountpoint, size,
    () => startFs(...net.command('rclone', ['mount', '--config', config, `${RCLONE_REMOTE}:${servedDir}`, mountpoint, '--vfs-cache-mode', 'full', '--cache-dir', cache]), mountpoint),
    () => rm(cache, { recursive: true, force: true }),
  );
}

function firstLine(err: unknown): string {
  return (err as Error).message.split('\n')[0]!;
}
