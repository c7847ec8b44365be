// Peer sessions over real loopback TCP connections: version negotiation, many requests in flight
// both ways answered out of order, 4 MiB bodies, errors that leave the session up, cancellation
// reaching the handler, closing, peers that break the protocol or go silent, priority (a user's
// read overtaking queued background traffic), notifications, and byte accounting. Peers that
// misbehave are played by raw sockets writing frames by hand.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { afterEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { pino } from 'pino';
import { encodeFrame, type Frame, FrameDecoder, FrameKind, MAX_BODY_BYTES, ProtocolError } from '../../src/peer/frames.js';
import { PeerClosedError, PeerRequestError, PeerSession, type PeerSessionOptions } from '../../src/peer/session.js';
import { ChunkMemory } from '../../src/pool/chunk-memory.js';
import { capturedLogger, waitFor } from '../helpers.js';

const MiB = 1024 * 1024;
const quiet = pino({ level: 'silent' });

/** Things to close after each test. */
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** Two ends of a loopback TCP connection. */
async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const dialer = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
  await once(dialer, 'connect');
  const [listener] = await accepted;
  server.close();
  for (const s of [dialer, listener]) {
    s.setNoDelay(true); // as the transport does
    cleanups.push(() => s.destroy());
  }
  return [dialer, listener];
}

function options(localPeer: string, more: Partial<PeerSessionOptions> = {}): PeerSessionOptions {
  return { localPeer, software: 'orbit-test 1', logger: quiet, ...more };
}

/** Sessions "alpha" (dialed) and "beta" (listened) on one connection. */
async function sessionPair(a: Partial<PeerSessionOptions> = {}, b: Partial<PeerSessionOptions> = {}) {
  const [sockA, sockB] = await socketPair();
  const [alpha, beta] = await Promise.all([PeerSession.open(sockA, options('alpha', a)), PeerSession.open(sockB, options('beta', b))]);
  cleanups.push(() => alpha.close(), () => beta.close());
  return { alpha, beta, sockA, sockB };
}

/** A peer played by hand: writes frames as told, collects what comes back. */
function rawPeer(socket: net.Socket) {
  const decoder = new FrameDecoder();
  const frames: Frame[] = [];
  let ended = false;
  socket.on('data', (chunk: Buffer) => frames.push(...decoder.push(chunk)));
  socket.on('end', () => (ended = true));
  socket.on('error', () => {});
  return {
    frames,
    ended: () => ended,
    send(kind: FrameKind, id: number, header: unknown, body?: Uint8Array): void {
      socket.write(Buffer.concat(encodeFrame(kind, id, header, body)));
    },
    hello(peer = 'raw'): Buffer {
      return Buffer.concat(encodeFrame(FrameKind.HELLO, 0, { protocols: [1], peer, software: 'by hand' }));
    },
  };
}

function sha(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** A handler that waits until its request is cancelled, and tells when that happened. */
function hangingHandler() {
  const aborted: unknown[] = [];
  let started = 0;
  return {
    aborted,
    started: () => started,
    handler: ({ signal }: { signal: AbortSignal }) =>
      new Promise<never>((_resolve, reject) => {
        started++;
        signal.addEventListener('abort', () => {
          aborted.push(signal.reason);
          reject(signal.reason as Error);
        });
      }),
  };
}

describe('peer sessions', () => {
  it('say HELLO and speak the highest version both know', async () => {
    const { alpha, beta } = await sessionPair({ protocols: [1, 2, 3], software: 'orbit 0.9' }, { protocols: [2, 3, 4] });
    assert.equal(alpha.version, 3);
    assert.equal(beta.version, 3);
    assert.deepEqual(alpha.remoteHello, { protocols: [2, 3, 4], peer: 'beta', software: 'orbit-test 1' });
    assert.deepEqual(beta.remoteHello, { protocols: [1, 2, 3], peer: 'alpha', software: 'orbit 0.9' });
    assert.equal(alpha.peer, 'beta');
  });

  it('close both sides, saying which to upgrade, when no version is common', async () => {
    const [sockA, sockB] = await socketPair();
    const [a, b] = await Promise.allSettled([PeerSession.open(sockA, options('alpha', { protocols: [1] })), PeerSession.open(sockB, options('beta', { protocols: [2] }))]);
    assert.equal(a.status, 'rejected');
    assert.equal(b.status, 'rejected');
    const errA = (a as PromiseRejectedResult).reason as ProtocolError;
    const errB = (b as PromiseRejectedResult).reason as ProtocolError;
    assert.ok(errA instanceof ProtocolError && errA.reason === 'version-mismatch');
    assert.match(errA.message, /"beta" speaks protocol versions \[2\], this Orbit \[1\]: upgrade one of them/);
    assert.match(errB.message, /"alpha" speaks protocol versions \[1\], this Orbit \[2\]: upgrade one of them/);
    await waitFor(() => sockA.destroyed || sockA.readableEnded, 'the connection to end');
  });

  it('answer 200 concurrent requests, out of order, each with its own response', async () => {
    const { alpha, beta } = await sessionPair();
    beta.handle('echo', async ({ header, body }) => {
      await sleep(Math.random() * 15);
      return { header: { n: header.n }, body: Buffer.concat([Buffer.from('reply to '), body]) };
    });
    const completed: number[] = [];
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, n) =>
        alpha.request('echo', { n }, Buffer.from(`request ${n}`)).then((r) => {
          completed.push(n);
          return r;
        }),
      ),
    );
    results.forEach((r, n) => {
      assert.equal(r.header.n, n);
      assert.equal(r.body.toString(), `reply to request ${n}`);
    });
    assert.notDeepEqual(completed, [...completed].sort((x, y) => x - y), 'answers came in the order asked');
    assert.equal(alpha.requestsSent, 200);
    assert.equal(beta.requestsServed, 200);
    assert.equal(alpha.requestsPending, 0);
  });

  it('carry 4 MiB bodies intact both ways', async () => {
    const { alpha, beta } = await sessionPair();
    beta.handle('reverse', async ({ body }) => ({ header: { sha: sha(body) }, body: Buffer.from(body).reverse() }));
    const sent = [randomBytes(4 * MiB), randomBytes(4 * MiB), randomBytes(4 * MiB - 1)];
    const answers = await Promise.all(sent.map((b) => alpha.request('reverse', {}, b)));
    answers.forEach((r, i) => {
      assert.equal(r.header.sha, sha(sent[i]!));
      assert.ok(r.body.equals(Buffer.from(sent[i]!).reverse()));
    });
  });

  it('gather a response body into the memory its request names, and give back one nobody waits for', async () => {
    const [sockRaw, sockA] = await socketPair();
    const raw = rawPeer(sockRaw);
    sockRaw.write(raw.hello());
    const alpha = await PeerSession.open(sockA, options('alpha'));
    cleanups.push(() => alpha.close());
    const memory = new ChunkMemory();
    const body = randomBytes(MiB);

    const asked = alpha.request('chunk', {}, undefined, { bodyMemory: memory });
    await waitFor(() => raw.frames.some((f) => f.kind === FrameKind.REQUEST && f.id === 1), 'the request to arrive');
    raw.send(FrameKind.RESPONSE, 1, {}, body);
    const answer = await asked;
    assert.ok(answer.body.equals(body));
    assert.ok(answer.body.buffer instanceof SharedArrayBuffer, 'the body is lent memory');
    assert.ok(memory.lentSize >= MiB);
    memory.giveBack(answer.body);
    assert.equal(memory.lentSize, 0);

    // The answer's first half arrives, the request times out, then the rest arrives: nobody takes
    // the body, and its memory goes back.
    const late = alpha.request('chunk', {}, undefined, { bodyMemory: memory, timeoutMs: 300 });
    await waitFor(() => raw.frames.some((f) => f.kind === FrameKind.REQUEST && f.id === 2), 'the second request to arrive');
    const frame = Buffer.concat(encodeFrame(FrameKind.RESPONSE, 2, {}, body));
    sockRaw.write(frame.subarray(0, frame.length / 2));
    await waitFor(() => memory.lentSize >= MiB, 'the body to be gathered into lent memory');
    await assert.rejects(late, (err: unknown) => err instanceof PeerRequestError && err.code === 'ETIMEDOUT');
    sockRaw.write(frame.subarray(frame.length / 2));
    await waitFor(() => memory.lentSize === 0, 'the memory of the answer nobody waits for to go back');
    assert.equal(alpha.isClosed, false);
  });

  it('call a response\'s sent() once the stream has its body, or once it never will, exactly once', async () => {
    const { alpha, beta } = await sessionPair();
    const calls = new Map<string, number>();
    const sentOnce = (key: string, body: Buffer) => () => {
      calls.set(key, (calls.get(key) ?? 0) + 1);
      body.fill(0); // as memory lent again would be overwritten
    };
    // Sent: the bytes scribbled over in sent() must not be the ones that went out.
    beta.handle('give', async ({ header }) => {
      const body = randomBytes(4 * MiB);
      return { header: { sha: sha(body) }, body, sent: sentOnce(String(header.n), body) };
    });
    const answers = await Promise.all(Array.from({ length: 12 }, (_, n) => alpha.request('give', { n })));
    for (const r of answers) assert.equal(sha(r.body), r.header.sha);
    await waitFor(() => calls.size === 12, 'every sent()');

    // Never sent: the request timed out before its handler answered; the answer too large.
    beta.handle('late', async ({ signal }) => {
      await new Promise((resolve) => signal.addEventListener('abort', resolve));
      const body = Buffer.alloc(MiB);
      return { body, sent: sentOnce('late', body) };
    });
    await assert.rejects(alpha.request('late', {}, undefined, { timeoutMs: 50 }), { code: 'ETIMEDOUT' });
    beta.handle('huge', async () => {
      const body = Buffer.alloc(MAX_BODY_BYTES + 1);
      return { body, sent: sentOnce('huge', body) };
    });
    await assert.rejects(alpha.request('huge', {}), { code: 'EMSGSIZE' });
    await waitFor(() => calls.get('late') === 1 && calls.get('huge') === 1, 'sent() of answers never sent');

    // The session closes with answers queued and being written.
    let answered = 0;
    beta.handle('more', async ({ header }) => {
      const body = randomBytes(4 * MiB);
      if (++answered === 20) setImmediate(() => void beta.close());
      return { body, sent: sentOnce(`more${String(header.n)}`, body) };
    });
    await Promise.allSettled(Array.from({ length: 20 }, (_, n) => alpha.request('more', { n })));
    await waitFor(() => [...calls.keys()].filter((k) => k.startsWith('more')).length === 20, 'sent() of every answer when the session closed');
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.deepEqual([...calls.values()].filter((n) => n !== 1), [], 'each sent() exactly once');
  });

  it('answer an unknown method with ENOSYS, a failing handler with its code, and stay up', async () => {
    const { alpha, beta } = await sessionPair();
    beta.handle('fail', async ({ header }) => {
      if (header.how === 'enoent') throw Object.assign(new Error('no chunk 1234 here'), { code: 'ENOENT' });
      throw new Error('the disk said no');
    });
    beta.handle('ping', async () => ({ header: { pong: true } }));

    await assert.rejects(alpha.request('nope', {}), (err: unknown) => err instanceof PeerRequestError && err.code === 'ENOSYS' && /nope/.test(err.message));
    await assert.rejects(alpha.request('fail', { how: 'enoent' }), (err: unknown) => err instanceof PeerRequestError && err.code === 'ENOENT' && /no chunk 1234 here/.test(err.message));
    await assert.rejects(alpha.request('fail', {}), (err: unknown) => err instanceof PeerRequestError && err.code === 'EIO' && /the disk said no/.test(err.message));
    beta.handle('huge', async () => ({ header: {}, body: Buffer.alloc(MAX_BODY_BYTES + 1) }));
    await assert.rejects(alpha.request('huge', {}), (err: unknown) => err instanceof PeerRequestError && err.code === 'EMSGSIZE');
    await assert.rejects(alpha.request('ping', {}, Buffer.alloc(MAX_BODY_BYTES + 1)), (err: unknown) => err instanceof PeerRequestError && err.code === 'EMSGSIZE');
    assert.deepEqual((await alpha.request('ping', {})).header, { pong: true });
    assert.equal(alpha.isClosed || beta.isClosed, false);
  });

  it('cancel a request that times out or is aborted: the handler\'s signal aborts', async () => {
    const { alpha, beta } = await sessionPair();
    const slow = hangingHandler();
    beta.handle('slow', slow.handler);

    const t0 = Date.now();
    await assert.rejects(alpha.request('slow', {}, undefined, { timeoutMs: 150 }), (err: unknown) => err instanceof PeerRequestError && err.code === 'ETIMEDOUT' && /"beta" did not answer slow within 150 ms/.test(err.message));
    assert.ok(Date.now() - t0 >= 140);
    await waitFor(() => slow.aborted.length === 1, 'the handler to see the cancel');
    assert.ok(slow.aborted[0] instanceof PeerRequestError && (slow.aborted[0] as PeerRequestError).code === 'ECANCELED');

    const controller = new AbortController();
    const asked = alpha.request('slow', {}, undefined, { signal: controller.signal });
    await waitFor(() => slow.started() === 2, 'the second request to reach its handler');
    controller.abort();
    await assert.rejects(asked, (err: unknown) => err instanceof PeerRequestError && err.code === 'ECANCELED');
    await waitFor(() => slow.aborted.length === 2, 'the handler to see the second cancel');
    assert.equal(beta.requestsServed, 0, 'a cancelled request is not answered');
    assert.equal(alpha.requestsPending, 0);
  });

  it('reject pending requests with PeerClosedError naming the peer when it closes, and abort its handlers', async () => {
    const { alpha, beta } = await sessionPair();
    const hang = hangingHandler();
    beta.handle('hang', hang.handler);
    const asked = Array.from({ length: 5 }, () => alpha.request('hang', {}));
    await waitFor(() => hang.started() === 5, 'the requests to reach their handlers');
    await beta.close();
    for (const p of asked) await assert.rejects(p, (err: unknown) => err instanceof PeerClosedError && /"beta"/.test(err.message) && /hang/.test(err.message));
    assert.equal(hang.aborted.length, 5);
    assert.ok((await alpha.closed) instanceof PeerClosedError);
    assert.equal(await beta.closed, undefined);
    await assert.rejects(alpha.request('hang', {}), PeerClosedError);
    assert.equal(alpha.notify('x', {}), false);
  });

  it('reject our own pending requests when we close, and abort the peer\'s handlers', async () => {
    const { alpha, beta } = await sessionPair();
    const hang = hangingHandler();
    beta.handle('hang', hang.handler);
    const asked = alpha.request('hang', {});
    await waitFor(() => hang.started() === 1, 'the request to reach its handler');
    await alpha.close('going to sleep');
    await assert.rejects(asked, PeerClosedError);
    await waitFor(() => hang.aborted.length === 1, 'the peer\'s handler to abort');
    const why = await beta.closed;
    assert.ok(why instanceof PeerClosedError);
    assert.match(why.message, /"alpha" closed the session: .*going to sleep/);
  });

  it('close a session whose peer announces a 100 MiB frame, without buffering it', async () => {
    const [sockRaw, sockB] = await socketPair();
    const { log, lines } = capturedLogger();
    const raw = rawPeer(sockRaw);
    sockRaw.write(raw.hello());
    const beta = await PeerSession.open(sockB, options('beta', { logger: log }));
    const before = process.memoryUsage().arrayBuffers;
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(100 * MiB);
    sockRaw.write(prefix);
    for (let i = 0; i < 16; i++) sockRaw.write(randomBytes(MiB));
    const why = await beta.closed;
    assert.ok(why instanceof ProtocolError && why.reason === 'frame-too-large', String(why));
    assert.ok(process.memoryUsage().arrayBuffers - before < 60 * MiB, 'the announced frame was not allocated');
    await waitFor(() => raw.ended(), 'the connection to end');
    const farewell = raw.frames.find((f) => f.kind === FrameKind.ERROR);
    assert.equal(farewell?.id, 0);
    assert.equal(farewell?.header.code, 'EPROTO');
    assert.match(String(farewell?.header.message), /100 MiB|104857600 bytes/);
    assert.ok(lines().some((l) => l.level === 40 && l.reason === 'frame-too-large'), 'the violation is logged');
  });

  it('close a session whose peer sends garbage or breaks the rules, never throwing', async () => {
    const cases: Array<{ bytes: Buffer; reason: string }> = [
      { bytes: Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), reason: 'frame-too-large' },
      { bytes: Buffer.concat(encodeFrame(FrameKind.REQUEST, 1, {})), reason: 'bad-envelope' },
      { bytes: Buffer.concat(encodeFrame(FrameKind.HELLO, 0, { protocols: [1], peer: 'again', software: '' })), reason: 'unexpected-frame' },
      { bytes: (() => { const f = Buffer.concat(encodeFrame(FrameKind.NOTIFY, 0, { topic: 'x', header: {} })); f.write('!', 13); return f; })(), reason: 'bad-header' },
    ];
    for (const c of cases) {
      const [sockRaw, sockB] = await socketPair();
      const raw = rawPeer(sockRaw);
      sockRaw.write(raw.hello());
      const beta = await PeerSession.open(sockB, options('beta'));
      sockRaw.write(c.bytes);
      const why = await beta.closed;
      assert.ok(why instanceof ProtocolError, String(why));
      assert.equal(why.reason, c.reason);
    }
    // Before HELLO, only HELLO is welcome.
    const [sockRaw, sockB] = await socketPair();
    sockRaw.on('error', () => {});
    sockRaw.write(Buffer.concat(encodeFrame(FrameKind.REQUEST, 1, { method: 'x', header: {} })));
    await assert.rejects(PeerSession.open(sockB, options('beta')), (err: unknown) => err instanceof ProtocolError && err.reason === 'unexpected-frame');
  });

  it('serve requests that arrive along with HELLO with handlers registered right after open()', async () => {
    const [sockRaw, sockB] = await socketPair();
    const raw = rawPeer(sockRaw);
    sockRaw.write(Buffer.concat([raw.hello(), ...encodeFrame(FrameKind.REQUEST, 1, { method: 'early', priority: 'normal', header: {} }), ...encodeFrame(FrameKind.NOTIFY, 0, { topic: 't', header: { early: true } })]));
    const beta = await PeerSession.open(sockB, options('beta'));
    cleanups.push(() => beta.close());
    const heard: unknown[] = [];
    beta.handle('early', async () => ({ header: { served: true } }));
    beta.onNotify('t', (n) => heard.push(n.header));
    await waitFor(() => raw.frames.some((f) => f.kind === FrameKind.RESPONSE), 'the response');
    assert.deepEqual(raw.frames.find((f) => f.kind === FrameKind.RESPONSE)?.header, { served: true });
    assert.deepEqual(heard, [{ early: true }]);
  });

  it('let a user read overtake queued background responses', async () => {
    const { alpha, beta } = await sessionPair();
    const chunk = randomBytes(4 * MiB);
    beta.handle('read', async () => ({ header: {}, body: chunk }));
    const order: string[] = [];
    const background = Array.from({ length: 24 }, (_, i) => alpha.request('read', { i }, undefined, { priority: 'background' }).then(() => order.push(`background ${i}`)));
    // Once one background answer is in, the others are queued on beta's side (or on the wire).
    await waitFor(() => order.length >= 1, 'the first background answer', 10_000);
    const user = alpha.request('read', { user: true }, undefined, { priority: 'user' }).then(() => order.push('user'));
    await Promise.all([...background, user]);
    const at = order.indexOf('user');
    assert.ok(at > 0 && at < 12, `the user read came in ${at + 1}th of ${order.length}`);
  });

  it('let both sides ask at once on one connection without mixing up ids', async () => {
    const { alpha, beta } = await sessionPair();
    for (const s of [alpha, beta]) {
      s.handle('who', async ({ header, peer }) => {
        await sleep(Math.random() * 5);
        return { header: { me: s === alpha ? 'alpha' : 'beta', asker: peer, n: header.n } };
      });
    }
    const ask = (from: PeerSession, to: string) =>
      Array.from({ length: 150 }, (_, n) =>
        from.request('who', { n }).then((r) => {
          assert.deepEqual(r.header, { me: to, asker: from === alpha ? 'alpha' : 'beta', n });
        }),
      );
    await Promise.all([...ask(alpha, 'beta'), ...ask(beta, 'alpha')]);
    assert.equal(alpha.requestsServed, 150);
    assert.equal(beta.requestsServed, 150);
  });

  it('deliver notifications to their topic\'s listeners', async () => {
    const { alpha, beta } = await sessionPair();
    const heard: Array<{ topic: string; header: unknown; body: string; peer: string }> = [];
    beta.onNotify('changed', (n) => heard.push({ topic: n.topic, header: n.header, body: n.body.toString(), peer: n.peer }));
    const off = beta.onNotify('other', () => {
      throw new Error('a listener that fails does not take the session down');
    });
    beta.onNotify('other', async () => {
      throw new Error('nor does an async one');
    });
    assert.equal(alpha.notify('other', {}), true);
    alpha.notify('changed', { path: '/a' }, Buffer.from('one'));
    alpha.notify('changed', { path: '/b' }, undefined, { priority: 'background' });
    await waitFor(() => heard.length === 2, 'the notifications');
    assert.deepEqual(heard, [
      { topic: 'changed', header: { path: '/a' }, body: 'one', peer: 'alpha' },
      { topic: 'changed', header: { path: '/b' }, body: '', peer: 'alpha' },
    ]);
    off();
    assert.equal(beta.notificationsReceived, 3);
    assert.equal(alpha.notificationsSent, 3);
    assert.equal(beta.isClosed, false);
  });

  it('count every byte: one side\'s out is the other\'s in, and the socket\'s', async () => {
    const { alpha, beta, sockA, sockB } = await sessionPair();
    beta.handle('echo', async ({ body }) => ({ header: {}, body }));
    alpha.handle('echo', async ({ body }) => ({ header: {}, body }));
    await Promise.all([alpha.request('echo', {}, randomBytes(MiB + 17)), beta.request('echo', {}, randomBytes(100)), alpha.request('nope', {}).catch(() => {})]);
    alpha.notify('n', { x: 1 }, randomBytes(5000));
    await waitFor(() => alpha.bytesOut === beta.bytesIn && beta.bytesOut === alpha.bytesIn && alpha.notificationsSent === 1, 'the counters to settle');
    assert.ok(alpha.bytesOut > MiB + 17 && beta.bytesOut > MiB + 17);
    assert.equal(alpha.bytesOut, sockA.bytesWritten);
    assert.equal(beta.bytesIn, sockB.bytesRead);
    assert.ok(Date.now() - alpha.lastSeen < 5_000);
  });

  it('run at most maxHandlers of the peer\'s requests at once, user ones first', async () => {
    const { alpha, beta } = await sessionPair({}, { maxHandlers: 3 });
    let running = 0;
    let most = 0;
    const started: string[] = [];
    beta.handle('work', async ({ priority }) => {
      started.push(priority);
      most = Math.max(most, ++running);
      await sleep(50);
      running--;
      return { header: {} };
    });
    const asked = Array.from({ length: 12 }, () => alpha.request('work', {}, undefined, { priority: 'background' }));
    await waitFor(() => started.length === 3, 'the first three to start');
    // Sent while nine background requests wait on beta's side: they start next.
    asked.push(...Array.from({ length: 3 }, () => alpha.request('work', {}, undefined, { priority: 'user' })));
    await Promise.all(asked);
    assert.equal(most, 3);
    assert.deepEqual(started.slice(3, 6), ['user', 'user', 'user']);
  });

  it('stop reading a peer that asks faster than we serve, and serve it all in the end', async () => {
    const { alpha, beta } = await sessionPair({}, { maxHandlers: 1, maxQueuedBytes: MiB });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    beta.handle('store', async ({ body }) => {
      await gate;
      return { header: { bytes: body.length } };
    });
    const asked = Array.from({ length: 200 }, () => alpha.request('store', {}, randomBytes(64 * 1024)));
    await sleep(300);
    assert.ok(beta.bytesIn < 3 * MiB, `beta read ${beta.bytesIn} bytes of 12.5 MiB asked while it could not serve`);
    open();
    for (const r of await Promise.all(asked)) assert.equal(r.header.bytes, 64 * 1024);
  });

  it('stay up while the peer answers pings, and close when it stops', async () => {
    const timeouts = { pingIntervalMs: 60, idleTimeoutMs: 250 };
    const { alpha, beta } = await sessionPair({ timeouts }, { timeouts });
    await sleep(700);
    assert.equal(alpha.isClosed || beta.isClosed, false, 'pings kept the quiet session up');

    // A peer that said HELLO and then went silent (and stopped reading): a half-open connection.
    const [sockRaw, sockB] = await socketPair();
    sockRaw.on('error', () => {});
    sockRaw.write(rawPeer(sockRaw).hello('silent'));
    const gamma = await PeerSession.open(sockB, options('gamma', { timeouts }));
    sockRaw.pause();
    const asked = gamma.request('anything', {});
    const t0 = Date.now();
    const why = await gamma.closed;
    assert.ok(why instanceof PeerClosedError && why.code === 'ETIMEDOUT', String(why));
    assert.match(why.message, /"silent" sent nothing for \d+ ms/);
    assert.ok(Date.now() - t0 < 2_000);
    await assert.rejects(asked, (err: unknown) => err instanceof PeerClosedError && err.code === 'ETIMEDOUT');

    // A peer that never says HELLO.
    const [, sockMute] = await socketPair();
    await assert.rejects(PeerSession.open(sockMute, options('delta', { timeouts: { helloMs: 100 } })), (err: unknown) => err instanceof ProtocolError && err.reason === 'hello-timeout');
  });
});
