// The remote-read bench's baseline: the file's bytes as one plain TLS 1.3 stream over loopback,
// from a server process to a client process (bench/peer/tls-stream-peer.ts), neither sharing an
// event loop with the other or with the bench. The server reads the plain copy of the file, on
// the same backing store as Orbit's pools, with a self-signed Ed25519 certificate made with
// openssl for the run. Each read is a new connection, asked for once the handshake is done, so
// that its time to the first 4 KiB, like a mount's, has no connection setup in it.
import type { ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { run, start } from '../../test/helpers.js';
import { dropCaches, PHASE_TIMEOUT_MS, stopProcess } from '../lib.js';
import type { ReadFigures, RemoteReader } from './cold-read.js';
import type { Loopback } from './private-loopback.js';

const PEER_PROGRAM = path.join(path.dirname(fileURLToPath(import.meta.url)), 'tls-stream-peer.ts');
/** The peer program is TypeScript, run with the loader the bench runs with. */
const NODE_ARGS = ['--import', import.meta.resolve('tsx'), PEER_PROGRAM];
const START_TIMEOUT_MS = 30_000;

interface ClientReport {
  bytes: number;
  firstByteSeconds: number;
  seconds: number;
  protocol: string;
  cipher: string;
}

export class TlsStream implements RemoteReader {
  readonly name = 'TLS stream';
  /** What the last connection negotiated, e.g. "TLSv1.3 TLS_AES_256_GCM_SHA384". */
  negotiated = '';

  private constructor(
    private readonly server: ChildProcess,
    private readonly net: Loopback,
    private readonly port: number,
    private readonly certFile: string,
    private readonly size: number,
  ) {}

  /** A server under `dir` sending `file`, of `size` bytes, to each client; both on `net`. */
  static async start(dir: string, net: Loopback, file: string, size: number): Promise<TlsStream> {
    await mkdir(dir, { recursive: true });
    const keyFile = path.join(dir, 'key.pem');
    const certFile = path.join(dir, 'cert.pem');
    const made = await run('openssl', ['req', '-x509', '-newkey', 'ed25519', '-nodes', '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=orbit-bench']);
    if (made.code !== 0) throw new Error(`openssl cannot make the TLS stream's certificate: ${made.stderr.trim()}`);

    const { child: server, output } = start(...net.command(process.execPath, [...NODE_ARGS, 'server', keyFile, certFile, file]));
    const deadline = Date.now() + START_TIMEOUT_MS;
    let port: RegExpExecArray | null;
    while (!(port = /listening (\d+)/.exec(output()))) {
      if (server.exitCode !== null || Date.now() > deadline) {
        await stopProcess(server);
        throw new Error(`the TLS stream server did not start: ${output().trim()}`);
      }
      await sleep(20);
    }
    return new TlsStream(server, net, Number(port[1]), certFile, size);
  }

  async read(): Promise<ReadFigures> {
    await dropCaches();
    const before = await this.net.bytes();
    const res = await run(...this.net.command(process.execPath, [...NODE_ARGS, 'client', String(this.port), this.certFile]), { timeoutMs: PHASE_TIMEOUT_MS });
    const moved = (await this.net.bytes()) - before;
    if (res.code !== 0) throw new Error(`the TLS stream client failed: ${res.stderr.trim() || `exit ${res.code}`}`);
    const report = JSON.parse(res.stdout) as ClientReport;
    if (report.bytes !== this.size) throw new Error(`the TLS stream moved ${report.bytes} bytes, not ${this.size}`);
    this.negotiated = `${report.protocol} ${report.cipher}`;
    return { firstByteSeconds: report.firstByteSeconds, throughput: report.bytes / report.seconds / 1e6, moved };
  }

  close(): Promise<void> {
    return stopProcess(this.server);
  }
}
