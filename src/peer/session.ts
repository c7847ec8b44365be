// A session with one peer: the household's protocol over one connected stream (a mutual-TLS socket
// in production, which the transport has authenticated before handing it here). Either side can
// ask (request → response or error), tell (notify) and give up (cancel) at any time, with many
// requests in flight, answered in any order.
//
// Frames and their limits are in frames.ts. On top of them:
// - Versions: each side's first frame is HELLO { protocols, peer, software }; the session speaks
//   the highest version both list. With none in common, both sides close, saying which to upgrade.
// - Message ids: each side numbers its own requests from 1. The kind says whose number a frame
//   carries: REQUEST and CANCEL the sender's, RESPONSE and ERROR the receiver's. So a "deaf" peer
//   that dials out can be asked and ask on one connection without the two counters ever meeting.
//   Id 0 is the session itself (HELLO, an ERROR that closes the session, NOTIFY).
// - Priority: frames to send wait in four lanes (control, then user, normal, background) and go
//   out in that order whenever the stream takes more (write() said true, or 'drain' came): a
//   user's read overtakes prefetch queued before it, by whole frames. A request says its
//   priority, and its response goes out in the same lane on the other side.
// - Bounds: a peer cannot make us buffer without end. Frames are bounded (frames.ts); at most
//   `maxHandlers` of its requests run at once and more wait in priority order; a request holds its
//   place until its answer is handed to the stream, so a peer that stops reading stops getting
//   work done; past `maxQueuedRequests` waiting (or `maxQueuedBytes` of their bodies) we stop
//   reading the stream, and TCP pushes back on the peer.
// - Liveness: a side that has heard nothing for `pingIntervalMs` pings; nothing heard for
//   `idleTimeoutMs` closes the session, so a half-open connection fails reads instead of hanging.
//   Any byte counts as hearing: a large frame arriving slowly is not an idle peer.
import type { Duplex } from 'node:stream';
import { componentLogger, type Logger } from '../log.js';
import type { ChunkMemory } from '../pool/chunk-memory.js';
import { type BodyMemory, encodeFrame, type Frame, FrameKind, frameKindName, MAX_MESSAGE_ID, ProtocolError } from './frames.js';
import { type FrameSink, SocketReader } from './socket-reader.js';

export { ProtocolError } from './frames.js';

/** Pieces of a frame at least this large are written on their own, not in a writev (pump). */
const ALONE_BYTES = 64 * 1024;

/** The protocol versions this Orbit speaks. */
export const PROTOCOL_VERSIONS: readonly number[] = [1];

/** What a frame is for, most urgent first: a user waiting on a read; then ordinary and control
 * traffic; then prefetch and background fill. */
export type Priority = 'user' | 'normal' | 'background';
export const PRIORITIES: readonly Priority[] = ['user', 'normal', 'background'];

export interface Hello {
  /** The versions the sender speaks. */
  protocols: number[];
  /** The sender's name for itself (its store's id); the transport checks it against its key. */
  peer: string;
  /** Its software and version, for messages ("orbit 0.1.0"). */
  software: string;
}

export interface HandlerRequest {
  method: string;
  header: Record<string, unknown>;
  body: Buffer;
  /** Aborts when the requester cancels or times out, or the session closes. */
  signal: AbortSignal;
  /** The peer asking (its HELLO's name). */
  peer: string;
  priority: Priority;
}

export interface HandlerResponse {
  header?: Record<string, unknown>;
  body?: Uint8Array;
  /** Called once, when the session needs the body no more: the stream has taken its bytes, or
   * they will never be sent (the request was cancelled, the session closed). A body in memory
   * the handler reuses goes back then. */
  sent?: () => void;
}

/** Serves one method. What it throws goes back as an ERROR with the error's `code` (an errno name
 * like 'ENOENT'; 'EIO' when it has none) and message. */
export type RequestHandler = (req: HandlerRequest) => Promise<HandlerResponse>;

export interface Notification {
  topic: string;
  header: Record<string, unknown>;
  body: Buffer;
  peer: string;
}
export type NotifyListener = (n: Notification) => void;

export interface PeerResponse {
  header: Record<string, unknown>;
  body: Buffer;
}

export interface RequestOptions {
  priority?: Priority;
  /** Give up (and cancel on the peer) after this long; default `timeouts.requestMs`. */
  timeoutMs?: number;
  signal?: AbortSignal;
  /** Memory to gather a large response body into (a chunk): the body is then lent from it, and
   * the caller gives it back (ChunkMemory.giveBack) once done with it. */
  bodyMemory?: ChunkMemory;
}

export interface PeerTimeouts {
  /** For the peer's HELLO to arrive (default 10 s). */
  helloMs?: number;
  /** For an answer, unless a request says otherwise (default 60 s). */
  requestMs?: number;
  /** Ping after hearing nothing this long (default 15 s). */
  pingIntervalMs?: number;
  /** Close after hearing nothing this long (default 45 s). */
  idleTimeoutMs?: number;
}

export interface PeerSessionOptions {
  /** This store's name, sent in HELLO. */
  localPeer: string;
  /** This software and version, sent in HELLO. */
  software: string;
  /** Versions to offer (default PROTOCOL_VERSIONS; tests offer others). */
  protocols?: readonly number[];
  /** Methods served from the first frame on (handle() adds more). */
  handlers?: Record<string, RequestHandler>;
  logger?: Logger;
  timeouts?: PeerTimeouts;
  /** The peer's requests running at once (default 64); the others wait. */
  maxHandlers?: number;
  /** The peer's requests waiting before we stop reading its stream (default 1024). */
  maxQueuedRequests?: number;
  /** The bytes of their bodies waiting before we stop reading (default 64 MiB). */
  maxQueuedBytes?: number;
}

/** The session ended before the request was answered, or the connection failed. */
export class PeerClosedError extends Error {
  readonly code: string;
  constructor(
    readonly peer: string,
    message: string,
    opts: { code?: string; cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'PeerClosedError';
    this.code = opts.code ?? 'ECONNRESET';
  }
}

/** A request that failed: the peer answered ERROR, or it timed out, was cancelled or too large. */
export class PeerRequestError extends Error {
  constructor(
    readonly code: string,
    message: string,
    opts: { cause?: unknown } = {},
  ) {
    super(message, { cause: opts.cause });
    this.name = 'PeerRequestError';
  }
}

const DEFAULTS = { helloMs: 10_000, requestMs: 60_000, pingIntervalMs: 15_000, idleTimeoutMs: 45_000 };
/** How long a closing session waits for the stream to end before destroying it. */
const END_GRACE_MS = 2_000;
/** An ERROR's message is cut to this many characters (headers are bounded). */
const MAX_ERROR_MESSAGE = 2_000;
const ERRNO_NAME = /^E[A-Z0-9]{1,20}$/;

/** Lanes of the writer, in the order they are served. */
const LANES = ['control', ...PRIORITIES] as const;
type Lane = (typeof LANES)[number];

/** A frame waiting for its turn on the stream. */
interface Outgoing {
  pieces: Buffer[];
  bytes: number;
  /** Skipped when its turn comes (its request was cancelled, or answered, meanwhile). */
  dropped: boolean;
  written: boolean;
  onWritten?: () => void;
  /** Called once its bytes are the stream's (its last write's callback) or it is dropped. */
  release?: () => void;
}

/** A queue that shifts in O(1). */
class Fifo<T> {
  private items: T[] = [];
  private head = 0;
  get length(): number {
    return this.items.length - this.head;
  }
  push(item: T): void {
    this.items.push(item);
  }
  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head]!;
    this.items[this.head++] = undefined as T;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
  /** Empties the queue, returning what it held. */
  clear(): T[] {
    const left = this.items.slice(this.head);
    this.items = [];
    this.head = 0;
    return left;
  }
}

/** One of our requests, waiting for its answer. */
interface Pending {
  id: number;
  method: string;
  frame: Outgoing;
  resolve: (r: PeerResponse) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
  detachSignal: () => void;
  bodyMemory: ChunkMemory | undefined;
}

/** One of the peer's requests, from its arrival until its answer is on the stream. */
interface Served {
  id: number;
  method: string;
  priority: Priority;
  header: Record<string, unknown>;
  body: Buffer;
  controller: AbortController;
  state: 'waiting' | 'running' | 'answering' | 'done';
  answer?: Outgoing;
}

export class PeerSession {
  private readonly lanes = new Map<Lane, Fifo<Outgoing>>(LANES.map((l) => [l, new Fifo<Outgoing>()]));
  private writeBlocked = false;
  private pumpScheduled = false;

  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  private readonly handlers = new Map<string, RequestHandler>();
  private readonly served = new Map<number, Served>();
  private readonly waiting = new Map<Priority, Fifo<Served>>(PRIORITIES.map((p) => [p, new Fifo<Served>()]));
  private waitingCount = 0;
  private waitingBytes = 0;
  private runningCount = 0;
  private readonly maxHandlers: number;
  private readonly maxQueued: number;
  private readonly maxQueuedBytes: number;

  private readonly listeners = new Map<string, Set<NotifyListener>>();

  private readonly timeouts: Required<PeerTimeouts>;
  private readonly offered: readonly number[];
  private hello: Hello | undefined;
  private negotiated = 0;
  private log: Logger;

  private bytesInCount = 0;
  private bytesOutCount = 0;
  private lastSeenMs = Date.now();
  /** Like lastSeen, but moved on while we chose not to read: what the idle check goes by. */
  private lastHeardMs = Date.now();
  private lastPingMs = 0;
  private queuedPong: Outgoing | undefined;
  private sentCount = 0;
  private servedCount = 0;
  private notifiedCount = 0;
  private heardCount = 0;

  /** Why reading is paused now (the open() caller's turn after HELLO; too many waiting requests). */
  private readonly holds = new Set<'hello' | 'load'>();
  private livenessTimer: NodeJS.Timeout | undefined;
  private helloTimer: NodeJS.Timeout | undefined;
  private isClosedFlag = false;

  private readyResolve!: () => void;
  private readyReject!: (err: Error) => void;
  private readonly ready = new Promise<void>((resolve, reject) => {
    this.readyResolve = resolve;
    this.readyReject = reject;
  });
  private closedResolve!: (reason: Error | undefined) => void;
  /** Settles once, when the session ends, with why: undefined after close() without a reason;
   * a ProtocolError when a side broke the protocol; a PeerClosedError when the connection ended,
   * failed or went idle; the Error given to close(). */
  readonly closed = new Promise<Error | undefined>((resolve) => {
    this.closedResolve = resolve;
  });

  /** Starts a session on a connected stream and resolves once the peer's HELLO is in and a
   * version agreed; rejects (and closes the stream) otherwise. */
  static async open(stream: Duplex, options: PeerSessionOptions): Promise<PeerSession> {
    const session = new PeerSession(stream, options);
    await session.ready;
    return session;
  }

  private constructor(
    private readonly stream: Duplex,
    options: PeerSessionOptions,
  ) {
    this.timeouts = { ...DEFAULTS, ...definedOnly(options.timeouts ?? {}) };
    this.offered = [...(options.protocols ?? PROTOCOL_VERSIONS)];
    this.maxHandlers = Math.max(1, options.maxHandlers ?? 64);
    this.maxQueued = Math.max(1, options.maxQueuedRequests ?? 1024);
    this.maxQueuedBytes = Math.max(1, options.maxQueuedBytes ?? 64 * 1024 * 1024);
    this.log = options.logger ?? componentLogger('peer');
    for (const [method, handler] of Object.entries(options.handlers ?? {})) this.handlers.set(method, handler);

    SocketReader.reading(stream).attach(this.received, this.responseBodyMemory);
    stream.on('end', () => this.shutdown(new PeerClosedError(this.peer, `${this.peerLabel} closed the connection`)));
    stream.on('close', () => this.shutdown(new PeerClosedError(this.peer, `the connection to ${this.peerLabel} closed`)));
    // Kept for the stream's life: an error after the session ended must not be an uncaught one.
    stream.on('error', (err: NodeJS.ErrnoException) => {
      this.shutdown(new PeerClosedError(this.peer, `the connection to ${this.peerLabel} failed: ${err.message}`, { code: err.code ?? 'ECONNRESET', cause: err }));
    });

    this.helloTimer = setTimeout(() => {
      this.shutdown(new ProtocolError('hello-timeout', `${this.peerLabel} sent no HELLO within ${this.timeouts.helloMs} ms`));
    }, this.timeouts.helloMs);
    this.helloTimer.unref();
    this.enqueue('control', this.frame(FrameKind.HELLO, 0, { protocols: this.offered, peer: options.localPeer, software: options.software }));
    if (stream.destroyed) this.shutdown(new PeerClosedError(this.peer, 'the connection was closed before the session started'));
  }

  // --- what the rest of Orbit uses --------------------------------------------------------------

  /** The peer's HELLO. */
  get remoteHello(): Hello {
    if (!this.hello) throw new Error('the peer has not said HELLO yet');
    return this.hello;
  }

  /** The protocol version this session speaks. */
  get version(): number {
    return this.negotiated;
  }

  /** The peer's name (from its HELLO; '?' before). */
  get peer(): string {
    return this.hello?.peer ?? '?';
  }

  /** Every byte read from / written to the stream, frames' own bytes included. */
  get bytesIn(): number {
    return this.bytesInCount;
  }
  get bytesOut(): number {
    return this.bytesOutCount;
  }
  /** When a byte last came from the peer (ms since the epoch). */
  get lastSeen(): number {
    return this.lastSeenMs;
  }
  /** Our requests handed to the stream. */
  get requestsSent(): number {
    return this.sentCount;
  }
  /** The peer's requests answered (a response or an error handed to the stream). */
  get requestsServed(): number {
    return this.servedCount;
  }
  get notificationsSent(): number {
    return this.notifiedCount;
  }
  get notificationsReceived(): number {
    return this.heardCount;
  }
  /** Our requests waiting for an answer. */
  get requestsPending(): number {
    return this.pending.size;
  }
  get isClosed(): boolean {
    return this.isClosedFlag;
  }

  /** Asks the peer. Rejects with a PeerRequestError (the peer's ERROR code; 'ETIMEDOUT',
   * 'ECANCELED' for a signal, 'EMSGSIZE' for a request over the frame limits) or a
   * PeerClosedError. A request given up on is cancelled on the peer. */
  request(method: string, header: Record<string, unknown>, body?: Uint8Array, opts: RequestOptions = {}): Promise<PeerResponse> {
    if (this.isClosedFlag) return Promise.reject(new PeerClosedError(this.peer, `the session with ${this.peerLabel} is closed: cannot send ${method}`));
    const priority = opts.priority ?? 'normal';
    if (!PRIORITIES.includes(priority)) return Promise.reject(new TypeError(`unknown priority ${String(priority)}`));
    if (typeof method !== 'string' || !isPlainObject(header)) return Promise.reject(new TypeError('a request needs a method name and a header object'));
    if (opts.signal?.aborted) return Promise.reject(new PeerRequestError('ECANCELED', `${method} to ${this.peerLabel} was cancelled before it was sent`, { cause: opts.signal.reason }));
    const id = this.allocateId();
    let frame: Outgoing;
    try {
      frame = this.frame(FrameKind.REQUEST, id, { method, priority, header }, body);
    } catch (err) {
      return Promise.reject(new PeerRequestError(encodingFailure(err), `${method} to ${this.peerLabel} cannot be sent: ${(err as Error).message}`, { cause: err }));
    }
    // Infinity: no time limit.
    const timeoutMs = Math.min(opts.timeoutMs ?? this.timeouts.requestMs, 2 ** 31 - 1);
    return new Promise<PeerResponse>((resolve, reject) => {
      const signal = opts.signal;
      const onAbort = (): void => this.giveUp(p, new PeerRequestError('ECANCELED', `${method} to ${this.peerLabel} was cancelled`, { cause: signal?.reason }));
      const p: Pending = {
        id,
        method,
        frame,
        resolve,
        reject,
        timer: setTimeout(() => this.giveUp(p, new PeerRequestError('ETIMEDOUT', `${this.peerLabel} did not answer ${method} within ${timeoutMs} ms`)), Math.max(0, timeoutMs)).unref(),
        detachSignal: () => signal?.removeEventListener('abort', onAbort),
        bodyMemory: opts.bodyMemory,
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      frame.onWritten = () => this.sentCount++;
      this.pending.set(id, p);
      this.enqueue(priority, frame);
    });
  }

  /** Serves `method` (replacing a handler of that name). */
  handle(method: string, handler: RequestHandler): void {
    this.handlers.set(method, handler);
  }

  /** Tells the peer, without an answer. False when the session is closed (nothing is sent).
   * Throws, like request() rejects, for a header that cannot be sent. */
  notify(topic: string, header: Record<string, unknown>, body?: Uint8Array, opts: { priority?: Priority } = {}): boolean {
    if (this.isClosedFlag) return false;
    if (typeof topic !== 'string' || !isPlainObject(header)) throw new TypeError('a notification needs a topic and a header object');
    const frame = this.frame(FrameKind.NOTIFY, 0, { topic, header }, body);
    frame.onWritten = () => this.notifiedCount++;
    this.enqueue(opts.priority ?? 'normal', frame);
    return true;
  }

  /** Calls `listener` for each notification of `topic`; returns what unsubscribes it. */
  onNotify(topic: string, listener: NotifyListener): () => void {
    let set = this.listeners.get(topic);
    if (!set) this.listeners.set(topic, (set = new Set()));
    set.add(listener);
    return () => set.delete(listener);
  }

  /** Ends the session: our pending requests reject with PeerClosedError, the peer's stop (their
   * signals abort), the stream ends. With a reason, the peer is told it. Resolves like `closed`. */
  close(reason?: Error | string): Promise<Error | undefined> {
    if (typeof reason === 'string') this.shutdown(new PeerClosedError(this.peer, `this side closed the session: ${reason}`, { code: 'ESHUTDOWN' }), { code: 'ESHUTDOWN', message: reason });
    else this.shutdown(reason, reason ? { code: errnoName((reason as NodeJS.ErrnoException).code, 'ESHUTDOWN'), message: reason.message } : undefined);
    return this.closed;
  }

  // --- reading ------------------------------------------------------------------------------------

  /** A response's large body goes into the memory its request named. */
  private readonly responseBodyMemory: BodyMemory = (kind, id) => (kind === FrameKind.RESPONSE ? this.pending.get(id)?.bodyMemory : undefined);

  /** `bytes` came in, completing `frames` (or breaking the protocol). */
  private readonly received: FrameSink = (bytes, frames) => {
    if (this.isClosedFlag) return;
    this.bytesInCount += bytes;
    this.lastSeenMs = this.lastHeardMs = Date.now();
    if (frames instanceof Error) this.violation(frames);
    else this.dispatchFrom(frames, 0);
  };

  private dispatchFrom(frames: Frame[], from: number): void {
    for (let i = from; i < frames.length && !this.isClosedFlag; i++) {
      const opening = !this.hello;
      try {
        this.dispatch(frames[i]!);
      } catch (err) {
        this.violation(err);
        return;
      }
      if (opening && this.hello && i + 1 < frames.length) {
        // open() has just resolved: let its caller register handlers and listeners (its code runs
        // in the microtasks before setImmediate) before the frames that came along with HELLO.
        this.hold('hello', true);
        setImmediate(() => {
          this.dispatchFrom(frames, i + 1);
          this.hold('hello', false);
        });
        return;
      }
    }
  }

  private dispatch(f: Frame): void {
    if (!this.hello) {
      if (f.kind === FrameKind.HELLO) return this.onHello(f.header);
      if (f.kind === FrameKind.ERROR && f.id === 0) return this.onFarewell(f.header);
      throw new ProtocolError('unexpected-frame', `${this.peerLabel} sent ${frameKindName(f.kind)} before HELLO`);
    }
    switch (f.kind) {
      case FrameKind.HELLO:
        throw new ProtocolError('unexpected-frame', `${this.peerLabel} sent a second HELLO`);
      case FrameKind.REQUEST:
        return this.onRequest(f);
      case FrameKind.RESPONSE:
        // Lent memory goes back when nobody takes the body.
        if (!this.pending.has(f.id)) f.lentFrom?.giveBack(f.body);
        return this.onAnswer(f.id, (p) => p.resolve({ header: f.header, body: f.body }));
      case FrameKind.ERROR: {
        if (f.id === 0) return this.onFarewell(f.header);
        const code = errnoName(f.header.code, 'EIO');
        const message = typeof f.header.message === 'string' ? f.header.message : code;
        return this.onAnswer(f.id, (p) => p.reject(new PeerRequestError(code, `${this.peerLabel} answered ${p.method} with ${code}: ${message}`)));
      }
      case FrameKind.NOTIFY:
        return this.onNotification(f);
      case FrameKind.CANCEL:
        return this.onCancel(f.id);
      case FrameKind.PING: {
        // One PONG waiting is enough: a peer pinging faster than it reads cannot grow our queue.
        if (this.queuedPong && !this.queuedPong.written) drop(this.queuedPong);
        this.queuedPong = this.frame(FrameKind.PONG, f.id, {});
        this.enqueue('control', this.queuedPong);
        return;
      }
      case FrameKind.PONG:
        return; // hearing it was the point
    }
  }

  private onHello(header: Record<string, unknown>): void {
    const { protocols, peer, software } = header;
    if (!Array.isArray(protocols) || protocols.length === 0 || protocols.length > 64 || !protocols.every((v) => Number.isInteger(v) && v > 0) || typeof peer !== 'string' || peer.length === 0 || peer.length > 256 || typeof software !== 'string' || software.length > 256) {
      throw new ProtocolError('bad-hello', `the peer's HELLO is malformed: ${JSON.stringify(header).slice(0, 200)}`);
    }
    const theirs = protocols as number[];
    const common = this.offered.filter((v) => theirs.includes(v));
    if (common.length === 0) {
      const message = `the peer "${peer}" speaks protocol versions [${theirs.join(', ')}], this Orbit [${this.offered.join(', ')}]: upgrade one of them`;
      this.shutdown(new ProtocolError('version-mismatch', message), { code: 'EPROTONOSUPPORT', message });
      return;
    }
    this.hello = { protocols: theirs, peer, software };
    this.negotiated = Math.max(...common);
    this.log = this.log.child({ peer });
    clearTimeout(this.helloTimer);
    this.startLiveness();
    this.log.debug({ version: this.negotiated, software }, 'peer session open');
    this.readyResolve();
  }

  /** ERROR with id 0: the peer closes the session, and says why. */
  private onFarewell(header: Record<string, unknown>): void {
    const code = errnoName(header.code, 'ECONNRESET');
    const message = typeof header.message === 'string' ? header.message : code;
    this.shutdown(new PeerClosedError(this.peer, `${this.peerLabel} closed the session: ${message}`, { code }));
  }

  private onAnswer(id: number, settle: (p: Pending) => void): void {
    const p = this.pending.get(id);
    // Not ours any more: we gave up on it and its answer crossed our CANCEL.
    if (!p) return;
    this.forget(p);
    settle(p);
  }

  private onNotification(f: Frame): void {
    const topic = f.header.topic;
    const header = f.header.header ?? {};
    if (typeof topic !== 'string' || !isPlainObject(header)) {
      throw new ProtocolError('bad-envelope', `${this.peerLabel} sent a NOTIFY without a topic and header`);
    }
    this.heardCount++;
    for (const listener of this.listeners.get(topic) ?? []) {
      const failed = (err: unknown): void => this.log.warn({ err, topic }, 'a notification listener failed');
      try {
        // An async listener's failure must not become an unhandled rejection either.
        const returned: unknown = listener({ topic, header, body: f.body, peer: this.peer });
        if (returned instanceof Promise) returned.catch(failed);
      } catch (err) {
        failed(err);
      }
    }
  }

  // --- serving --------------------------------------------------------------------------------------

  private onRequest(f: Frame): void {
    const { method, priority, header } = f.header;
    if (typeof method !== 'string' || !isPlainObject(header)) {
      throw new ProtocolError('bad-envelope', `${this.peerLabel} sent a REQUEST without a method and header`);
    }
    if (f.id === 0 || this.served.has(f.id)) throw new ProtocolError('duplicate-request', `${this.peerLabel} sent request id ${f.id} while it is in use`);
    const s: Served = {
      id: f.id,
      method,
      priority: PRIORITIES.includes(priority as Priority) ? (priority as Priority) : 'normal',
      header,
      body: f.body,
      controller: new AbortController(),
      state: 'waiting',
    };
    this.served.set(s.id, s);
    this.waiting.get(s.priority)!.push(s);
    this.waitingCount++;
    this.waitingBytes += s.body.length;
    this.startHandlers();
  }

  private startHandlers(): void {
    while (this.runningCount < this.maxHandlers && this.waitingCount > 0 && !this.isClosedFlag) {
      let next: Served | undefined;
      for (const p of PRIORITIES) {
        const q = this.waiting.get(p)!;
        while (q.length > 0 && !next) {
          const s = q.shift()!;
          if (s.state === 'waiting') next = s;
        }
        if (next) break;
      }
      if (!next) break;
      this.waitingCount--;
      this.waitingBytes -= next.body.length;
      this.runningCount++;
      next.state = 'running';
      void this.serve(next);
    }
    // Stop reading at the limits; read again once half of them is free.
    const loaded = this.holds.has('load') ? 2 : 1;
    this.hold('load', this.waitingCount * loaded >= this.maxQueued || this.waitingBytes * loaded >= this.maxQueuedBytes);
  }

  private async serve(s: Served): Promise<void> {
    let kind: FrameKind;
    let header: Record<string, unknown>;
    let body: Uint8Array | undefined;
    let sent: (() => void) | undefined;
    try {
      const handler = this.handlers.get(s.method);
      if (!handler) throw new PeerRequestError('ENOSYS', `no method "${s.method}" here`);
      const res = await handler({ method: s.method, header: s.header, body: s.body, signal: s.controller.signal, peer: this.peer, priority: s.priority });
      kind = FrameKind.RESPONSE;
      header = res.header ?? {};
      body = res.body;
      sent = res.sent;
    } catch (err) {
      kind = FrameKind.ERROR;
      header = errorHeader(err);
      if (s.state === 'running' && !s.controller.signal.aborted && header.code === 'EIO') this.log.debug({ err, method: s.method }, 'a request handler failed');
    }
    // Cancelled, or the session closed, meanwhile: nobody wants the answer.
    if (s.state !== 'running') {
      sent?.();
      return;
    }
    let answer: Outgoing;
    try {
      answer = this.frame(kind, s.id, header, body);
      answer.release = sent;
    } catch (err) {
      sent?.();
      kind = FrameKind.ERROR;
      answer = this.frame(kind, s.id, { code: encodingFailure(err), message: `the answer to ${s.method} cannot be sent: ${(err as Error).message}`.slice(0, MAX_ERROR_MESSAGE) });
    }
    s.state = 'answering';
    s.answer = answer;
    answer.onWritten = () => {
      this.servedCount++;
      this.finishServed(s);
    };
    // A response goes in its request's lane; an error, small and final, with the control frames.
    this.enqueue(kind === FrameKind.RESPONSE ? s.priority : 'control', answer);
  }

  /** The request's place is free again: its answer is on the stream, or nobody wants it. */
  private finishServed(s: Served): void {
    if (s.state === 'done') return;
    if (s.state === 'waiting') {
      this.waitingCount--;
      this.waitingBytes -= s.body.length;
    }
    else this.runningCount--;
    s.state = 'done';
    if (this.served.get(s.id) === s) this.served.delete(s.id);
    this.startHandlers();
  }

  private onCancel(id: number): void {
    const s = this.served.get(id);
    if (!s) return; // already answered: the CANCEL crossed the answer
    if (s.answer) drop(s.answer);
    s.controller.abort(new PeerRequestError('ECANCELED', `${this.peerLabel} cancelled ${s.method}`));
    this.finishServed(s);
  }

  // --- writing --------------------------------------------------------------------------------------

  private frame(kind: FrameKind, id: number, header: unknown, body?: Uint8Array): Outgoing {
    const pieces = encodeFrame(kind, id, header, body);
    let bytes = 0;
    for (const p of pieces) bytes += p.length;
    return { pieces, bytes, dropped: false, written: false };
  }

  private enqueue(lane: Lane, frame: Outgoing): void {
    if (this.isClosedFlag) return drop(frame);
    this.lanes.get(lane)!.push(frame);
    if (this.pumpScheduled || this.writeBlocked) return;
    // Frames queued in the same turn of the event loop go out together, in priority order.
    this.pumpScheduled = true;
    queueMicrotask(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  private nextFrame(): Outgoing | undefined {
    for (const lane of LANES) {
      const q = this.lanes.get(lane)!;
      for (let f = q.shift(); f; f = q.shift()) if (!f.dropped) return f;
    }
    return undefined;
  }

  /** Writes frames, most urgent first, until the stream says it has enough. */
  private pump(): void {
    if (this.isClosedFlag || this.writeBlocked || this.stream.destroyed) return;
    let corked = false;
    try {
      for (let f = this.nextFrame(); f; f = this.nextFrame()) {
        let more = true;
        const last = f.pieces.length - 1;
        for (let i = 0; i <= last; i++) {
          const piece = f.pieces[i]!;
          // Small pieces go out together (corked: one writev). A large body goes alone: a TLS
          // socket copies the pieces of a writev into one buffer before encrypting them, which
          // for a chunk is a copy of every byte sent; written alone, it is encrypted in place.
          const alone = piece.length >= ALONE_BYTES;
          if (alone === corked) {
            if (alone) this.stream.uncork();
            else this.stream.cork();
            corked = !alone;
          }
          more = this.stream.write(piece, i === last && f.release ? () => release(f) : undefined);
        }
        f.written = true;
        f.pieces = [];
        this.bytesOutCount += f.bytes;
        f.onWritten?.();
        if (!more) {
          this.writeBlocked = true;
          this.stream.once('drain', this.onDrain);
          break;
        }
        if (this.isClosedFlag) break;
      }
    } finally {
      if (corked) this.stream.uncork();
    }
  }

  private readonly onDrain = (): void => {
    this.writeBlocked = false;
    this.pump();
  };

  // --- our requests ---------------------------------------------------------------------------------

  private allocateId(): number {
    for (;;) {
      const id = this.nextId;
      this.nextId = id >= MAX_MESSAGE_ID ? 1 : id + 1;
      if (!this.pending.has(id)) return id;
    }
  }

  private forget(p: Pending): void {
    this.pending.delete(p.id);
    clearTimeout(p.timer);
    p.detachSignal();
  }

  /** Our side stops waiting: the caller hears why, the peer is told to stop (unless the request
   * never left the queue, then it never will). */
  private giveUp(p: Pending, err: Error): void {
    if (this.pending.get(p.id) !== p) return;
    this.forget(p);
    if (p.frame.written) this.enqueue('control', this.frame(FrameKind.CANCEL, p.id, {}));
    else drop(p.frame);
    p.reject(err);
  }

  // --- liveness and the end ---------------------------------------------------------------------------

  private startLiveness(): void {
    const { pingIntervalMs, idleTimeoutMs } = this.timeouts;
    const tick = Math.max(5, Math.min(pingIntervalMs, idleTimeoutMs) / 3);
    this.livenessTimer = setInterval(() => {
      const now = Date.now();
      // While we do not read, silence is ours, not the peer's.
      if (this.holds.size > 0) this.lastHeardMs = now;
      const silent = now - this.lastHeardMs;
      if (silent >= idleTimeoutMs) {
        this.shutdown(new PeerClosedError(this.peer, `${this.peerLabel} sent nothing for ${silent} ms: the connection is presumed dead`, { code: 'ETIMEDOUT' }));
      } else if (silent >= pingIntervalMs && now - this.lastPingMs >= pingIntervalMs) {
        this.lastPingMs = now;
        this.enqueue('control', this.frame(FrameKind.PING, now % MAX_MESSAGE_ID, {}));
      }
    }, tick);
    this.livenessTimer.unref();
  }

  private hold(why: 'hello' | 'load', on: boolean): void {
    if (on === this.holds.has(why)) return;
    if (on) this.holds.add(why);
    else this.holds.delete(why);
    if (this.isClosedFlag) return;
    if (this.holds.size > 0) this.stream.pause();
    else {
      this.lastHeardMs = Date.now();
      this.stream.resume();
    }
  }

  private violation(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (error instanceof ProtocolError) this.log.warn({ reason: error.reason, err: error.message }, 'the peer broke the protocol: closing the session');
    else this.log.error({ err: error }, 'a peer frame could not be handled: closing the session');
    this.shutdown(error, { code: 'EPROTO', message: error.message });
  }

  /** Ends everything once; `farewell` is the ERROR (id 0) telling the peer why. */
  private shutdown(reason: Error | undefined, farewell?: { code: string; message: string }): void {
    if (this.isClosedFlag) return;
    this.isClosedFlag = true;
    clearTimeout(this.helloTimer);
    clearInterval(this.livenessTimer);
    this.stream.off('drain', this.onDrain);
    for (const q of this.lanes.values()) for (const f of q.clear()) drop(f);
    for (const q of this.waiting.values()) q.clear();

    const gone = (what: string): PeerClosedError =>
      new PeerClosedError(this.peer, `the session with ${this.peerLabel} closed before it answered ${what}${reason ? `: ${reason.message}` : ''}`, {
        code: reason instanceof PeerClosedError ? reason.code : 'ECONNRESET',
        cause: reason,
      });
    for (const p of [...this.pending.values()]) {
      this.forget(p);
      p.reject(gone(p.method));
    }
    for (const s of this.served.values()) {
      s.state = 'done';
      s.controller.abort(gone(s.method));
    }
    this.served.clear();
    this.waitingCount = this.waitingBytes = this.runningCount = 0;

    if (!this.hello) this.readyReject(reason ?? new PeerClosedError(this.peer, 'the session was closed before the peer said HELLO'));
    if (reason && !(reason instanceof ProtocolError)) this.log.debug({ err: reason.message }, 'peer session closed');

    const stream = this.stream;
    if (!stream.destroyed) {
      if (farewell && stream.writable) {
        const bye = this.frame(FrameKind.ERROR, 0, { code: farewell.code, message: farewell.message.slice(0, MAX_ERROR_MESSAGE) });
        for (const piece of bye.pieces) stream.write(piece);
        this.bytesOutCount += bye.bytes;
      }
      stream.end();
      // Nothing more is read; what the peer still sends is dropped, not kept.
      if (this.holds.size > 0) stream.resume();
      setTimeout(() => stream.destroy(), END_GRACE_MS).unref();
    }
    this.closedResolve(reason);
  }

  private get peerLabel(): string {
    return this.hello ? `peer "${this.hello.peer}"` : 'the peer';
  }
}

/** Takes a frame off the wire: skipped if queued, its memory released if not yet written. */
function drop(f: Outgoing): void {
  f.dropped = true;
  f.pieces = [];
  if (!f.written) release(f);
}

/** Calls the frame's release once, whichever of its write's callback and a drop comes first. */
function release(f: Outgoing): void {
  const done = f.release;
  f.release = undefined;
  done?.();
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The code for a message that cannot be encoded: too large, or not JSON. */
function encodingFailure(err: unknown): string {
  return err instanceof ProtocolError && err.reason.endsWith('-too-large') ? 'EMSGSIZE' : 'EINVAL';
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function errnoName(v: unknown, fallback: string): string {
  return typeof v === 'string' && ERRNO_NAME.test(v) ? v : fallback;
}

/** What an ERROR frame says of a handler's failure. */
function errorHeader(err: unknown): { code: string; message: string } {
  const e = err as { code?: unknown; message?: unknown } | null;
  const code = errnoName(e?.code, 'EIO');
  const message = typeof e?.message === 'string' ? e.message : String(err);
  return { code, message: message.slice(0, MAX_ERROR_MESSAGE) };
}
