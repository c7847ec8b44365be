// Mutual TLS between peers on 127.0.0.1: known peers connect either way over TLS 1.3 and talk;
// everyone else is dropped without a byte of Orbit's protocol: an unknown key, a certificate
// claiming a known peer's ID in its CN over another key, no certificate, no ALPN, TLS 1.2,
// garbage and silence. A dialer refuses a listener that is not the peer it meant, and says so
// when nobody answers.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { connect as connectTcp, createServer as createTcpServer, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { connect as connectTls, type TLSSocket } from 'node:tls';
import { after, before, describe, it } from 'node:test';
import { selfSignedCertificate } from '../../src/peer/certificate.js';
import { encodeFrame, FrameKind } from '../../src/peer/frames.js';
import { createIdentity, type Identity } from '../../src/peer/identity.js';
import { peerIdOf, type PeerId } from '../../src/peer/peer-id.js';
import { SocketReader } from '../../src/peer/socket-reader.js';
import { dialPeer, listenForPeers, ORBIT_ALPN, PeerAuthError, type PeerListener } from '../../src/peer/transport.js';
import { tempDir, waitFor } from '../helpers.js';

const HOST = '127.0.0.1';

interface Listening {
  listener: PeerListener;
  port: number;
  peers: Array<{ peer: PeerId; socket: TLSSocket; received: () => string }>;
  refused: Array<{ peer: PeerId | undefined; remote: string; reason: string }>;
}

/** A listener for `identity` that knows `known`, greets every peer and keeps what it sends. */
async function listen(identity: Identity, known: PeerId[], handshakeTimeoutMs?: number): Promise<Listening> {
  const peers: Listening['peers'] = [];
  const refused: Listening['refused'] = [];
  const listener = await listenForPeers({
    identity,
    host: HOST,
    port: 0,
    isKnown: (id) => known.includes(id),
    onPeer: (socket, peer) => {
      let text = '';
      socket.on('error', () => undefined);
      socket.on('data', (d: Buffer) => (text += d.toString()));
      socket.write(Buffer.concat(encodeFrame(FrameKind.NOTIFY, 0, { text: `hello ${peer} from ${identity.peerId}` })));
      peers.push({ peer, socket, received: () => text });
    },
    onRefused: (peer, remote, reason) => refused.push({ peer, remote, reason }),
    handshakeTimeoutMs,
  });
  assert.equal(listener.address.host, HOST);
  assert.ok(listener.address.port > 0);
  return { listener, port: listener.address.port, peers, refused };
}

/** Calls `got` with what arrives on a socket as text: a socket dialPeer connected has its bytes
 * read as frames (socket-reader.ts), whose headers' text fields are what arrives. */
function onText(socket: Socket, got: (text: string) => void): void {
  const reader = SocketReader.of(socket);
  if (!reader) socket.on('data', (d: Buffer) => got(d.toString()));
  else reader.attach((bytes, frames) => got(frames instanceof Error ? `[${bytes} bytes, ${frames.message}]` : frames.map((f) => String(f.header.text)).join('')));
}

/** What a socket receives until it closes. */
function untilClosed(socket: Socket): Promise<string> {
  let text = '';
  onText(socket, (t) => (text += t));
  socket.on('error', () => undefined);
  return new Promise((resolve) => socket.once('close', () => resolve(text)));
}

async function receive(socket: Socket, expected: string): Promise<void> {
  let text = '';
  await new Promise<void>((resolve, reject) => {
    onText(socket, (t) => {
      text += t;
      if (text.length >= expected.length) resolve();
    });
    socket.once('close', () => reject(new Error(`closed after ${JSON.stringify(text)}`)));
  });
  assert.equal(text, expected);
}

/** An identity of a fresh key that is not on disk (for certificates made up by the test). */
function madeUpIdentity(commonName?: string): Identity {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const peerId = peerIdOf(publicKey);
  return {
    peerId,
    privateKey,
    publicKey,
    keyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    certPem: selfSignedCertificate(privateKey, publicKey, commonName ?? peerId),
  };
}

describe('peer transport', () => {
  let dir: string;
  let remove: () => Promise<void>;
  let alice: Identity;
  let bob: Identity;
  let carol: Identity;
  const open: Array<{ close(): unknown }> = [];
  before(async () => {
    ({ dir, remove } = await tempDir('transport'));
    [alice, bob, carol] = await Promise.all([createIdentity(path.join(dir, 'alice')), createIdentity(path.join(dir, 'bob')), createIdentity(path.join(dir, 'carol'))]);
  });
  after(async () => {
    for (const o of open) await o.close();
    await remove();
  });
  const listening = async (identity: Identity, known: PeerId[], handshakeTimeoutMs?: number): Promise<Listening> => {
    const l = await listen(identity, known, handshakeTimeoutMs);
    open.push(l.listener);
    return l;
  };

  it('connects two peers that know each other, either way, over TLS 1.3', async () => {
    for (const [server, client] of [
      [alice, bob],
      [bob, alice],
    ] as const) {
      const l = await listening(server, [client.peerId]);
      const socket = await dialPeer({ identity: client, host: HOST, port: l.port, expect: server.peerId });
      socket.on('error', () => undefined);
      assert.equal(socket.getProtocol(), 'TLSv1.3');
      assert.equal(socket.alpnProtocol, ORBIT_ALPN);
      await receive(socket, `hello ${client.peerId} from ${server.peerId}`);
      socket.write('ping from the client');
      await waitFor(() => l.peers[0]?.received() === 'ping from the client', 'the listener to receive');
      assert.equal(l.peers.length, 1);
      assert.equal(l.peers[0]!.peer, client.peerId);
      assert.equal(l.peers[0]!.socket.getProtocol(), 'TLSv1.3');
      assert.deepEqual(l.refused, []);
      const closed = untilClosed(socket);
      await l.listener.close();
      await closed;
    }
  });

  it('drops a peer it does not know, having said nothing', async () => {
    const l = await listening(alice, [bob.peerId]);
    // Carol knows Alice, so her side of the handshake succeeds; then Alice drops her.
    const socket = await dialPeer({ identity: carol, host: HOST, port: l.port, expect: alice.peerId });
    assert.equal(await untilClosed(socket), '');
    await waitFor(() => l.refused.length === 1, 'the refusal');
    assert.equal(l.refused[0]!.peer, carol.peerId);
    assert.match(l.refused[0]!.remote, /^127\.0\.0\.1:\d+$/);
    assert.match(l.refused[0]!.reason, /not a peer of this household/);
    assert.equal(l.peers.length, 0);
  });

  it("knows a peer by its key, not by the ID its certificate's CN claims", async () => {
    const l = await listening(alice, [bob.peerId]);
    const impostor = madeUpIdentity(bob.peerId);
    const socket = await dialPeer({ identity: impostor, host: HOST, port: l.port, expect: alice.peerId });
    assert.equal(socket.getPeerCertificate().subject.CN, alice.peerId);
    assert.equal(await untilClosed(socket), '');
    await waitFor(() => l.refused.length === 1, 'the refusal');
    assert.equal(l.refused[0]!.peer, impostor.peerId);
    assert.notEqual(impostor.peerId, bob.peerId);
    assert.equal(l.peers.length, 0);
  });

  it('drops a client without a certificate, without ALPN, or with TLS 1.2', async () => {
    const l = await listening(alice, [bob.peerId]);
    const noCertificate = connectTls({ host: HOST, port: l.port, ALPNProtocols: [ORBIT_ALPN], rejectUnauthorized: false });
    assert.equal(await untilClosed(noCertificate), '');
    await waitFor(() => l.refused.length === 1, 'the refusal');
    assert.deepEqual([l.refused[0]!.peer, l.refused[0]!.reason], [undefined, 'it showed no certificate']);

    const noAlpn = connectTls({ host: HOST, port: l.port, key: bob.keyPem, cert: bob.certPem, rejectUnauthorized: false });
    assert.equal(await untilClosed(noAlpn), '');
    await waitFor(() => l.refused.length === 2, 'the refusal');
    assert.match(l.refused[1]!.reason, /does not speak orbit\/1/);

    const tls12 = connectTls({ host: HOST, port: l.port, key: bob.keyPem, cert: bob.certPem, ALPNProtocols: [ORBIT_ALPN], maxVersion: 'TLSv1.2', rejectUnauthorized: false });
    assert.equal(await untilClosed(tls12), '');
    await waitFor(() => l.refused.length === 3, 'the refusal');
    assert.match(l.refused[2]!.reason, /TLS handshake failed/);
    assert.equal(l.peers.length, 0);
  });

  it('drops garbage and silence, and goes on serving', async () => {
    const l = await listening(alice, [bob.peerId], 300);
    const garbage = connectTcp(l.port, HOST);
    garbage.write('GET / HTTP/1.1\r\nHost: orbit\r\n\r\n');
    garbage.write(Buffer.alloc(3000, 0x16));
    assert.equal(await untilClosed(garbage), '');
    await waitFor(() => l.refused.length === 1, 'the refusal');
    assert.match(l.refused[0]!.reason, /TLS handshake failed/);
    assert.match(l.refused[0]!.remote, /^127\.0\.0\.1:\d+$/);

    const started = Date.now();
    const silent = connectTcp(l.port, HOST);
    assert.equal(await untilClosed(silent), '');
    assert.ok(Date.now() - started < 5000);
    await waitFor(() => l.refused.length === 2, 'the refusal');
    assert.match(l.refused[1]!.reason, /TLS handshake failed: .*timed out|TLS handshake failed: .*timeout/i);
    assert.match(l.refused[1]!.remote, /^127\.0\.0\.1:\d+$/);

    const socket = await dialPeer({ identity: bob, host: HOST, port: l.port, expect: alice.peerId });
    await receive(socket, `hello ${bob.peerId} from ${alice.peerId}`);
    const closed = untilClosed(socket);
    socket.end();
    await closed;
  });

  it('refuses a listener that is not the peer it dials', async () => {
    const l = await listening(alice, [bob.peerId]);
    await assert.rejects(dialPeer({ identity: bob, host: HOST, port: l.port, expect: carol.peerId }), (err: Error) => {
      assert.ok(err instanceof PeerAuthError);
      assert.equal(err.name, 'PeerAuthError');
      assert.equal(err.expected, carol.peerId);
      assert.equal(err.actual, alice.peerId);
      assert.equal(err.message, `the peer at ${HOST}:${l.port} is ${alice.peerId}, not ${carol.peerId}`);
      return true;
    });
    // Alice knows Bob; his dialer hung up on her as soon as it saw her certificate, which may be
    // before his last handshake message reached her.
    await waitFor(() => l.peers.length + l.refused.length === 1, 'the listener to see the dialer');
    if (l.peers[0]) await waitFor(() => l.peers[0]!.socket.destroyed, 'the dialer to hang up');
    else assert.match(l.refused[0]!.reason, /TLS handshake failed/);
  });

  it('says when nobody answers, or not in time, or the dial is aborted', async () => {
    const free = createTcpServer();
    await new Promise<void>((resolve) => free.listen(0, HOST, resolve));
    const freePort = (free.address() as { port: number }).port;
    await new Promise((resolve) => free.close(resolve));
    await assert.rejects(dialPeer({ identity: bob, host: HOST, port: freePort, expect: alice.peerId }), new RegExp(`^Error: cannot connect to the peer at ${HOST}:${freePort}: .*ECONNREFUSED`));

    // A TCP server that accepts and never answers.
    const mute: Server = createTcpServer(() => undefined);
    await new Promise<void>((resolve) => mute.listen(0, HOST, resolve));
    const mutePort = (mute.address() as { port: number }).port;
    try {
      await assert.rejects(dialPeer({ identity: bob, host: HOST, port: mutePort, expect: alice.peerId, timeoutMs: 200 }), {
        message: `the peer at ${HOST}:${mutePort} did not answer within 200 ms`,
      });
      const aborting = new AbortController();
      setTimeout(() => aborting.abort(), 100);
      await assert.rejects(dialPeer({ identity: bob, host: HOST, port: mutePort, expect: alice.peerId, signal: aborting.signal }), {
        name: 'AbortError',
        message: `connecting to the peer at ${HOST}:${mutePort} was aborted`,
      });
      await assert.rejects(dialPeer({ identity: bob, host: HOST, port: mutePort, expect: alice.peerId, signal: AbortSignal.abort() }), { name: 'AbortError' });
    } finally {
      mute.close();
      // The mute server keeps its accepted sockets; the dialer destroyed its side of each.
    }
  });

  it('ends its connections when closed', async () => {
    const l = await listen(alice, [bob.peerId]);
    const socket = await dialPeer({ identity: bob, host: HOST, port: l.port, expect: alice.peerId });
    await receive(socket, `hello ${bob.peerId} from ${alice.peerId}`);
    const closed = untilClosed(socket);
    await l.listener.close();
    await closed;
    await assert.rejects(dialPeer({ identity: bob, host: HOST, port: l.port, expect: alice.peerId }), /ECONNREFUSED/);
  });
});
