// How peers reach each other: mutual TLS 1.3, each side showing the self-signed certificate of
// its identity key (certificate.ts), each side checking that the other is the peer it means.
//
// Trust is the pinned key, not a certificate authority: certificate chains are not verified
// (they are self-signed; rejectUnauthorized: false, no host name check), and instead the peer
// ID is derived from the key in the certificate the other side showed and compared with the
// household's (the listener asks isKnown) or with the peer dialed (dialPeer's `expect`). That
// is enough because in TLS 1.3 each side sends CertificateVerify, a signature by the private
// key of its certificate over the handshake transcript: a side that shows a certificate
// without holding its key cannot complete the handshake. So a peer ID checked after the
// handshake names whoever is at the other end of this very connection; copying a peer's
// certificate, or putting its ID in the CN of another key's certificate, gets nobody in.
//
// TLS 1.3 only: its handshake encrypts the certificates (a listener does not tell passers-by
// which household it belongs to), and every cipher suite it has is one we want. The ALPN
// protocol 'orbit/1' names the protocol spoken inside, so that a later one can be told apart,
// and something that is not Orbit is refused before it says anything.
//
// In TLS 1.3 the client's handshake ends before the server has looked at the client's
// certificate: a refused client sees its connection made, then closed without a byte.
import type { AddressInfo, OnReadOpts, Socket } from 'node:net';
import { createServer, connect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { CertificateError, peerIdOfCertificate } from './certificate.js';
import type { Identity } from './identity.js';
import { parsePeerId, type PeerId } from './peer-id.js';
import { SocketReader } from './socket-reader.js';

export const ORBIT_ALPN = 'orbit/1';
/** A connection that has not finished its handshake by then is dropped: a silent client must
 * not hold a socket. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
export const DIAL_TIMEOUT_MS = 10_000;

/** The other end of a connection is not the peer expected (or not a peer at all). */
export class PeerAuthError extends Error {
  constructor(
    message: string,
    readonly expected: PeerId,
    /** The peer that answered, when its certificate names one. */
    readonly actual: PeerId | undefined,
  ) {
    super(message);
    this.name = 'PeerAuthError';
  }
}

const TLS_1_3 = { minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;

export interface PeerListener {
  /** Where it listens (the port chosen when 0 was asked). */
  readonly address: { host: string; port: number };
  /** Stops listening and ends every connection it accepted, peers' included; resolves once they
   * are closed and the port is free. Calling it again waits for the same. */
  close(): Promise<void>;
}

export interface ListenOptions {
  identity: Identity;
  host: string;
  /** 0 picks a free port. */
  port: number;
  /** Whether a peer may connect (consulted once per connection, after its handshake). */
  isKnown: (id: PeerId) => boolean;
  /** A known peer connected: the socket is the caller's, which must listen for its 'error'. */
  onPeer: (socket: TLSSocket, peer: PeerId) => void;
  /** A connection was dropped: `peer` when its certificate named one, `remote` its address
   * ("an unknown address" when it hung up during its handshake). */
  onRefused?: (peer: PeerId | undefined, remote: string, reason: string) => void;
  handshakeTimeoutMs?: number;
}

export async function listenForPeers(opts: ListenOptions): Promise<PeerListener> {
  const server = createServer({
    ...TLS_1_3,
    key: opts.identity.keyPem,
    cert: opts.identity.certPem,
    requestCert: true,
    rejectUnauthorized: false,
    ALPNProtocols: [ORBIT_ALPN],
    handshakeTimeout: opts.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
  });
  // Every connection, from its first byte to its close, so that close() can end them all.
  const connections = new Set<Socket>();
  server.on('connection', (raw: Socket) => {
    connections.add(raw);
    raw.once('close', () => connections.delete(raw));
  });

  server.on('secureConnection', (socket: TLSSocket) => {
    const remote = remoteOf(socket);
    connections.add(socket);
    socket.once('close', () => connections.delete(socket));
    const refuse = (peer: PeerId | undefined, reason: string): void => {
      // destroy(), not end(): not even a TLS close_notify goes to a stranger.
      socket.destroy();
      opts.onRefused?.(peer, remote, reason);
    };
    if (socket.alpnProtocol !== ORBIT_ALPN) return refuse(undefined, `it does not speak ${ORBIT_ALPN} (ALPN)`);
    const raw = (socket.getPeerCertificate(true) as { raw?: Buffer }).raw;
    if (!raw) return refuse(undefined, 'it showed no certificate');
    let peer: PeerId;
    try {
      peer = peerIdOfCertificate(raw);
    } catch (err) {
      return refuse(undefined, err instanceof CertificateError ? err.message : `its certificate is unusable: ${(err as Error).message}`);
    }
    if (!opts.isKnown(peer)) return refuse(peer, 'it is not a peer of this household');
    // Requests are small frames answered at once: Nagle's delay would hold them back.
    socket.setNoDelay(true);
    opts.onPeer(socket, peer);
  });
  // Handshakes that fail (garbage, another TLS version, no shared ALPN, timeout): Node destroys
  // the socket; this only reports it.
  server.on('tlsClientError', (err: Error, socket: TLSSocket) => {
    const remote = remoteOf(socket);
    socket.destroy();
    opts.onRefused?.(undefined, remote, `TLS handshake failed: ${err.message}`);
  });

  await new Promise<void>((resolve, reject) => {
    const failed = (err: Error): void => reject(new Error(`cannot listen for peers on ${opts.host}:${opts.port}: ${err.message}`, { cause: err }));
    server.once('error', failed);
    server.listen(opts.port, opts.host, () => {
      server.off('error', failed);
      resolve();
    });
  });
  const bound = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    address: { host: bound.address, port: bound.port },
    close: () =>
      (closed ??= new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        for (const socket of connections) socket.destroy();
      })),
  };
}

export interface DialOptions {
  identity: Identity;
  host: string;
  port: number;
  /** The peer meant: any other answering is refused. */
  expect: PeerId;
  timeoutMs?: number;
  signal?: AbortSignal;
}

/** A TLS connection to the peer `expect` at host:port, ready for its protocol. Rejects with
 * PeerAuthError when someone else answers, and with an Error naming host:port when nobody does
 * (in time). */
export async function dialPeer(opts: DialOptions): Promise<TLSSocket> {
  const expect = parsePeerId(opts.expect);
  const where = `${opts.host}:${opts.port}`;
  const timeoutMs = opts.timeoutMs ?? DIAL_TIMEOUT_MS;
  const { signal } = opts;
  if (signal?.aborted) throw abortError(where, signal);
  return new Promise<TLSSocket>((resolve, reject) => {
    // Frames are read straight out of the connection (socket-reader.ts).
    const reader = new SocketReader();
    const options: ConnectionOptions & { onread: OnReadOpts } = {
      ...TLS_1_3,
      host: opts.host,
      port: opts.port,
      key: opts.identity.keyPem,
      cert: opts.identity.certPem,
      ALPNProtocols: [ORBIT_ALPN],
      rejectUnauthorized: false,
      checkServerIdentity: () => undefined,
      onread: reader.onread,
    };
    const socket = connect(options);
    reader.bind(socket);
    const timer = setTimeout(() => fail(new Error(`the peer at ${where} did not answer within ${timeoutMs} ms`)), timeoutMs);
    const onAbort = (): void => fail(abortError(where, signal!));
    const onError = (err: Error): void => fail(new Error(`cannot connect to the peer at ${where}: ${err.message}`, { cause: err }));
    const onClose = (): void => fail(new Error(`the peer at ${where} closed the connection during the TLS handshake`));
    const done = (): void => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.off('error', onError);
      socket.off('close', onClose);
    };
    let settled = false;
    function fail(err: Error): void {
      if (settled) return;
      settled = true;
      done();
      socket.destroy();
      reject(err);
    }
    signal?.addEventListener('abort', onAbort);
    socket.on('error', onError);
    socket.on('close', onClose);
    socket.once('secureConnect', () => {
      if (socket.alpnProtocol !== ORBIT_ALPN) return fail(new Error(`${where} does not speak ${ORBIT_ALPN}: it is not an Orbit peer`));
      const raw = (socket.getPeerCertificate(true) as { raw?: Buffer }).raw;
      let actual: PeerId;
      try {
        if (!raw) throw new CertificateError('it showed no certificate');
        actual = peerIdOfCertificate(raw);
      } catch (err) {
        return fail(new PeerAuthError(`the peer at ${where} is not ${expect}: ${(err as Error).message}`, expect, undefined));
      }
      if (actual !== expect) return fail(new PeerAuthError(`the peer at ${where} is ${actual}, not ${expect}`, expect, actual));
      socket.setNoDelay(true);
      settled = true;
      done();
      resolve(socket);
    });
  });
}

function abortError(where: string, signal: AbortSignal): Error {
  const err = new Error(`connecting to the peer at ${where} was aborted`, { cause: signal.reason });
  err.name = 'AbortError';
  return err;
}

const remoteOf = (socket: Socket): string =>
  socket.remoteAddress === undefined ? 'an unknown address' : socket.remoteFamily === 'IPv6' ? `[${socket.remoteAddress}]:${socket.remotePort}` : `${socket.remoteAddress}:${socket.remotePort}`;
