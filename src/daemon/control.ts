// The daemon's control socket, <home>/run/daemon.sock: how commands act through a running daemon
// (the peers it is connected to, the volumes it serves). It speaks the peers' protocol
// (peer/session.ts) over a Unix socket: requests, answers and errors, without TLS, since only the
// store's owner can reach a socket in the store's directory (mode 0700).
import { mkdir, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import type { Logger } from '../log.js';
import { PeerSession, type RequestHandler } from '../peer/session.js';

/** What each side says it is in its hello: the control protocol has no peer IDs. */
const DAEMON = 'daemon';
const COMMAND = 'command';

export function controlSocketPath(home: string): string {
  return path.join(home, 'run', 'daemon.sock');
}

export interface ControlServer {
  close(): Promise<void>;
}

export class DaemonRunningError extends Error {
  constructor(home: string) {
    super(`a daemon already serves the store at ${home} ('orbit status' says which process)`);
    this.name = 'DaemonRunningError';
  }
}

/** Listens on the control socket; refuses when a live daemon is on it, takes over a stale one. */
export async function serveControl(home: string, handlers: Record<string, RequestHandler>, software: string, log: Logger): Promise<ControlServer> {
  const file = controlSocketPath(home);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  if (await stat(file).catch(() => undefined)) {
    const live = await connectDaemon(home, software).catch(() => undefined);
    if (live) {
      await live.close();
      throw new DaemonRunningError(home);
    }
    await rm(file, { force: true }); // left by a daemon that died
  }
  const sessions = new Set<PeerSession>();
  const server = net.createServer((socket) => {
    void PeerSession.open(socket, { localPeer: DAEMON, software, logger: log }).then(
      (session) => {
        for (const [method, handler] of Object.entries(handlers)) session.handle(method, handler);
        sessions.add(session);
        void session.closed.then(() => sessions.delete(session));
      },
      (err: unknown) => {
        log.debug({ err }, 'control: a command\'s connection failed');
        socket.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(file, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    async close() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await Promise.all([...sessions].map((s) => s.close('the daemon is stopping')));
      await rm(file, { force: true });
    },
  };
}

/** A session with the store's daemon; undefined when none runs. */
export async function connectDaemon(home: string, software: string): Promise<PeerSession | undefined> {
  const file = controlSocketPath(home);
  const socket = await new Promise<net.Socket | undefined>((resolve, reject) => {
    const s = net.createConnection(file);
    s.once('connect', () => resolve(s));
    s.once('error', (err: NodeJS.ErrnoException) => {
      // No socket, or one left by a daemon that died: no daemon.
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') resolve(undefined);
      else reject(new Error(`cannot reach the daemon at ${file}: ${err.message}`));
    });
  });
  if (!socket) return undefined;
  return PeerSession.open(socket, { localPeer: COMMAND, software });
}
