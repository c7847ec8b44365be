// The peer protocol's frames: what two stores of a household exchange over their mutual-TLS
// connection, and the streaming decoder that cuts a socket's bytes back into them.
//
//   offset size  field
//        0    4  length: the bytes that follow (u32 BE), 9 + header length + body length
//        4    1  kind (FrameKind)
//        5    4  message id (u32 BE): which request a frame belongs to (see session.ts)
//        9    4  header length (u32 BE)
//       13       header: a JSON object, UTF-8
//                body: raw bytes, the rest of the frame (a chunk, a listing...), never JSON
//
// The header is JSON so that the protocol can grow fields without a format change; the body is
// raw so that chunks cross without base64 or copies. Limits are part of the format: a frame
// longer than MAX_FRAME_BYTES is refused from its length prefix alone, before any of it is
// buffered, so a peer can never make us hold more than one frame of bounded size.
import { TextDecoder } from 'node:util';
import type { ChunkMemory } from '../pool/chunk-memory.js';

export const FrameKind = {
  /** First frame each way: the protocol versions, peer name and software of the sender. */
  HELLO: 1,
  REQUEST: 2,
  RESPONSE: 3,
  /** The answer to a request that failed; with id 0, why the sender closes the session. */
  ERROR: 4,
  /** A one-way message (a change, an announcement); nothing answers it. */
  NOTIFY: 5,
  /** The requester gave up on request `id`: the server may stop working on it. */
  CANCEL: 6,
  PING: 7,
  PONG: 8,
} as const;
export type FrameKind = (typeof FrameKind)[keyof typeof FrameKind];

const KIND_NAMES = new Map<number, string>(Object.entries(FrameKind).map(([name, kind]) => [kind, name]));

export function isFrameKind(kind: number): kind is FrameKind {
  return KIND_NAMES.has(kind);
}

/** A kind's name for messages ("REQUEST"), or its number when it is not one. */
export function frameKindName(kind: number): string {
  return KIND_NAMES.get(kind) ?? `kind ${kind}`;
}

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const MAX_HEADER_BYTES = 64 * KiB;
/** A chunk is at most 4 MiB raw, a little more once framed by the chunk format; twice that leaves
 * room for batches and later formats without letting a peer make us buffer much. */
export const MAX_BODY_BYTES = 8 * MiB;
/** Bytes of the length prefix. */
export const FRAME_PREFIX_BYTES = 4;
/** Bytes before the header: length, kind, id, header length. */
export const FRAME_FIXED_BYTES = 13;
/** The largest value the length prefix may hold. */
export const MAX_FRAME_BYTES = FRAME_FIXED_BYTES - FRAME_PREFIX_BYTES + MAX_HEADER_BYTES + MAX_BODY_BYTES;
export const MAX_MESSAGE_ID = 0xffff_ffff;

export type ProtocolErrorReason =
  | 'frame-too-large'
  | 'frame-too-short'
  | 'header-too-large'
  | 'body-too-large'
  | 'bad-header'
  | 'unknown-kind'
  | 'bad-hello'
  | 'version-mismatch'
  | 'hello-timeout'
  | 'unexpected-frame'
  | 'bad-envelope'
  | 'duplicate-request';

/** The other side broke the protocol (or this side was asked to): the session cannot go on. */
export class ProtocolError extends Error {
  readonly code = 'EPROTO';
  constructor(
    readonly reason: ProtocolErrorReason,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }
}

export interface Frame {
  kind: FrameKind;
  id: number;
  header: Record<string, unknown>;
  /** Stays valid: either the frame's own allocation or a view of a socket chunk that nothing
   * reuses (the decoder's caller must not recycle the chunks it pushes). */
  body: Buffer;
  /** The memory a large body was gathered into, when the decoder's BodyMemory named one: the
   * frame's receiver gives it back there once done with the body. */
  lentFrom?: ChunkMemory;
}

/** Where the large body of a frame (by kind and message id) is gathered: memory lent for reuse
 * (a chunk its receiver gives back once done), or undefined for a buffer of its own. */
export type BodyMemory = (kind: FrameKind, id: number) => ChunkMemory | undefined;

/** Bodies up to this size are copied behind the header, so that small frames are one write. */
const INLINE_BODY_BYTES = 4 * KiB;
const EMPTY = Buffer.alloc(0);

/** A frame as the pieces to write (`cork`, then one `write` each, so they go out as one writev):
 * the fixed part with the header, then the body itself, not copied. Throws a ProtocolError for a
 * header that is not an object or a frame over the limits (nothing a peer would accept). */
export function encodeFrame(kind: FrameKind, id: number, header: unknown, body?: Uint8Array): Buffer[] {
  if (!isFrameKind(kind)) throw new ProtocolError('unknown-kind', `cannot encode a frame of ${frameKindName(kind)}`);
  if (!Number.isInteger(id) || id < 0 || id > MAX_MESSAGE_ID) throw new RangeError(`message id ${id} is not a u32`);
  const json = isObject(header) ? JSON.stringify(header) : undefined;
  if (json === undefined || !json.startsWith('{')) throw new ProtocolError('bad-header', `a ${frameKindName(kind)} frame's header must be an object`);
  const headerLength = Buffer.byteLength(json, 'utf8');
  if (headerLength > MAX_HEADER_BYTES) throw new ProtocolError('header-too-large', `a ${frameKindName(kind)} frame's header of ${headerLength} bytes is over the limit of ${MAX_HEADER_BYTES}`);
  const bodyLength = body?.byteLength ?? 0;
  if (bodyLength > MAX_BODY_BYTES) throw new ProtocolError('body-too-large', `a ${frameKindName(kind)} frame's body of ${bodyLength} bytes is over the limit of ${MAX_BODY_BYTES}`);

  const inline = bodyLength <= INLINE_BODY_BYTES ? bodyLength : 0;
  const head = Buffer.allocUnsafe(FRAME_FIXED_BYTES + headerLength + inline);
  head.writeUInt32BE(FRAME_FIXED_BYTES - FRAME_PREFIX_BYTES + headerLength + bodyLength, 0);
  head[4] = kind;
  head.writeUInt32BE(id, 5);
  head.writeUInt32BE(headerLength, 9);
  head.write(json, FRAME_FIXED_BYTES, 'utf8');
  if (body === undefined || bodyLength === 0) return [head];
  if (inline > 0) {
    head.set(body, FRAME_FIXED_BYTES + headerLength);
    return [head];
  }
  return [head, Buffer.isBuffer(body) ? body : Buffer.from(body.buffer, body.byteOffset, body.byteLength)];
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Bodies at least this large that arrive in pieces are gathered into a buffer of their own (a
 * chunk, most often), which the receiver can hand to a worker thread without another copy: an
 * ArrayBuffer, or shared memory lent by the receiver (BodyMemory) that it reuses, so that a
 * stream of chunks does not allocate a fresh buffer each. */
const OWN_BODY_BYTES = 64 * KiB;
/** Room for one socket read that is not a large body's (a TLS record holds at most 16 KiB). */
const SCRATCH_BYTES = 64 * KiB;

/** Cuts a byte stream into frames. Push socket chunks of any size as they come; each push returns
 * the frames it completed. Only the frame in progress is held: its fixed part in a 13-byte
 * scratch buffer, the rest as views of the chunks it arrived in, joined once when it is whole (a
 * frame that lies whole in one chunk is not copied at all), or, for a large body, copied as it
 * comes into a buffer of its own. Throws a ProtocolError on the first bytes that break the
 * format, and from then on: a stream that broke it cannot be resynchronized.
 *
 * A socket that reads where it is told (Node's `onread`) can skip that copy: `readTarget` names
 * the rest of the large body being gathered, so the bytes are decrypted straight into it, and
 * `received` takes what was read. */
export class FrameDecoder {
  private readonly fixed = Buffer.alloc(FRAME_FIXED_BYTES);
  private fixedFilled = 0;
  /** The current frame's fields, once its fixed part is in. */
  private kind: FrameKind = FrameKind.HELLO;
  private id = 0;
  private headerLength = 0;
  /** Header plus body bytes of the current frame, and those received so far. */
  private restLength = -1;
  private restPieces: Buffer[] = [];
  private restFilled = 0;
  /** A large body being gathered (OWN_BODY_BYTES): its buffer and, when lent, the memory it was
   * lent from; the header goes to restPieces. */
  private body: Buffer | undefined;
  private bodyLentFrom: ChunkMemory | undefined;
  private failure: ProtocolError | undefined;
  private readonly utf8 = new TextDecoder('utf-8', { fatal: true });
  /** Where reads that are not a large body's go (readTarget). */
  private scratch: Buffer | undefined;

  /** Names where large bodies go (set once, by the frames' receiver). */
  bodyMemory: BodyMemory | undefined;

  /** Bytes of the frame in progress held now (at most MAX_FRAME_BYTES + 4). */
  get bufferedBytes(): number {
    return this.fixedFilled + this.restFilled;
  }

  push(chunk: Buffer): Frame[] {
    return this.guarded(() => this.cut(chunk));
  }

  /** Runs a step of decoding; a ProtocolError it throws is the stream's end (thrown again at
   * every later push). */
  private guarded(step: () => Frame[]): Frame[] {
    if (this.failure) throw this.failure;
    try {
      return step();
    } catch (err) {
      if (err instanceof ProtocolError) {
        this.failure = err;
        this.restPieces = [];
        if (this.body) this.bodyLentFrom?.giveBack(this.body);
        this.body = this.bodyLentFrom = undefined;
        this.fixedFilled = this.restFilled = 0;
      }
      throw err;
    }
  }

  /** Where the socket's next bytes should be read to: the rest of the large body being gathered,
   * or else a scratch buffer. */
  readTarget(): Uint8Array {
    if (this.body && this.restFilled >= this.headerLength) return this.body.subarray(this.restFilled - this.headerLength);
    return (this.scratch ??= Buffer.allocUnsafeSlow(SCRATCH_BYTES));
  }

  /** `n` bytes were read into `target`, which readTarget gave; returns the frames they completed. */
  received(n: number, target: Uint8Array): Frame[] {
    if (target === this.scratch) return this.push(Buffer.from(target.subarray(0, n))); // copied: the scratch is read into again
    return this.guarded(() => {
      if (!this.body || target.buffer !== this.body.buffer || n > this.restLength - this.restFilled) throw new Error('FrameDecoder.received: bytes read elsewhere than readTarget said');
      this.restFilled += n;
      return this.restFilled === this.restLength ? [this.finishGathered(this.body)] : [];
    });
  }

  private cut(chunk: Buffer): Frame[] {
    const frames: Frame[] = [];
    let at = 0;
    while (at < chunk.length) {
      if (this.restLength < 0) {
        if (this.fixedFilled === 0 && chunk.length - at >= FRAME_FIXED_BYTES) {
          this.startFrame(chunk, at);
          at += FRAME_FIXED_BYTES;
        } else {
          const take = Math.min(FRAME_FIXED_BYTES - this.fixedFilled, chunk.length - at);
          chunk.copy(this.fixed, this.fixedFilled, at, at + take);
          const before = this.fixedFilled;
          this.fixedFilled += take;
          at += take;
          // Refuse an oversize frame as soon as its length is known, not once 13 bytes are in.
          if (before < FRAME_PREFIX_BYTES && this.fixedFilled >= FRAME_PREFIX_BYTES) checkLength(this.fixed.readUInt32BE(0));
          if (this.fixedFilled < FRAME_FIXED_BYTES) continue;
          this.startFrame(this.fixed, 0);
          this.fixedFilled = 0;
        }
        continue;
      }
      const wanted = this.restLength - this.restFilled;
      const available = chunk.length - at;
      if (this.restFilled === 0 && available >= wanted) {
        frames.push(this.finishFrame(chunk.subarray(at, at + wanted), chunk.length));
        at += wanted;
        continue;
      }
      const take = Math.min(wanted, available);
      this.gather(chunk, at, take);
      at += take;
      if (this.restFilled === this.restLength) {
        if (this.body) {
          frames.push(this.finishGathered(this.body));
          continue;
        }
        const rest = Buffer.concat(this.restPieces, this.restLength);
        this.restPieces = [];
        frames.push(this.finishFrame(rest, rest.length));
      }
    }
    return frames;
  }

  /** Keeps `take` bytes of the frame in progress from `chunk` at `at`. */
  private gather(chunk: Buffer, at: number, take: number): void {
    if (this.restFilled === 0 && this.restLength - this.headerLength >= OWN_BODY_BYTES) {
      const length = this.restLength - this.headerLength;
      this.bodyLentFrom = this.bodyMemory?.(this.kind, this.id);
      this.body = this.bodyLentFrom ? this.bodyLentFrom.lend(length) : Buffer.allocUnsafeSlow(length);
    }
    if (this.body) {
      // The header's bytes as pieces (they are few), the body's copied into its buffer.
      const inHeader = Math.max(0, Math.min(take, this.headerLength - this.restFilled));
      if (inHeader > 0) this.restPieces.push(chunk.subarray(at, at + inHeader));
      if (take > inHeader) chunk.copy(this.body, this.restFilled + inHeader - this.headerLength, at + inHeader, at + take);
    } else {
      this.restPieces.push(chunk.subarray(at, at + take));
    }
    this.restFilled += take;
  }

  /** A frame whose large body was gathered into `body`. */
  private finishGathered(body: Buffer): Frame {
    const header = Buffer.concat(this.restPieces, this.headerLength);
    const lentFrom = this.bodyLentFrom;
    this.restPieces = [];
    this.body = this.bodyLentFrom = undefined;
    let frame: Frame;
    try {
      frame = this.finishFrame(header, header.length);
    } catch (err) {
      lentFrom?.giveBack(body);
      throw err;
    }
    return lentFrom ? { ...frame, body, lentFrom } : { ...frame, body };
  }

  /** Reads and checks a fixed part (13 bytes at `at`). */
  private startFrame(b: Buffer, at: number): void {
    const length = b.readUInt32BE(at);
    checkLength(length);
    const kind = b[at + 4]!;
    if (!isFrameKind(kind)) throw new ProtocolError('unknown-kind', `the peer sent a frame of unknown kind ${kind}`);
    const headerLength = b.readUInt32BE(at + 9);
    if (headerLength > MAX_HEADER_BYTES) throw new ProtocolError('header-too-large', `the peer sent a ${frameKindName(kind)} header of ${headerLength} bytes, over the limit of ${MAX_HEADER_BYTES}`);
    const restLength = length - (FRAME_FIXED_BYTES - FRAME_PREFIX_BYTES);
    if (headerLength < 2 || headerLength > restLength) throw new ProtocolError('bad-header', `the peer sent a ${frameKindName(kind)} frame of ${length} bytes with a header of ${headerLength}`);
    if (restLength - headerLength > MAX_BODY_BYTES) throw new ProtocolError('body-too-large', `the peer sent a ${frameKindName(kind)} body of ${restLength - headerLength} bytes, over the limit of ${MAX_BODY_BYTES}`);
    this.kind = kind;
    this.id = b.readUInt32BE(at + 5);
    this.headerLength = headerLength;
    this.restLength = restLength;
    this.restFilled = 0;
  }

  /** `rest`: the frame's header and body; `holder`: the size of the buffer it is a view of. */
  private finishFrame(rest: Buffer, holder: number): Frame {
    let header: unknown;
    try {
      header = JSON.parse(this.utf8.decode(rest.subarray(0, this.headerLength)));
    } catch {
      throw new ProtocolError('bad-header', `the peer sent a ${frameKindName(this.kind)} frame whose header is not JSON`);
    }
    if (!isObject(header)) throw new ProtocolError('bad-header', `the peer sent a ${frameKindName(this.kind)} frame whose header is not a JSON object`);
    let body = rest.length === this.headerLength ? EMPTY : rest.subarray(this.headerLength);
    // A small body in a large socket chunk is copied, so that keeping it does not keep the chunk.
    if (body.length > 0 && body.length * 2 < holder) body = Buffer.from(body);
    const frame: Frame = { kind: this.kind, id: this.id, header, body };
    this.restLength = -1;
    this.restFilled = 0;
    return frame;
  }
}

function checkLength(length: number): void {
  if (length > MAX_FRAME_BYTES) throw new ProtocolError('frame-too-large', `the peer announced a frame of ${length} bytes, over the limit of ${MAX_FRAME_BYTES}`);
  if (length < FRAME_FIXED_BYTES - FRAME_PREFIX_BYTES + 2) throw new ProtocolError('frame-too-short', `the peer announced a frame of ${length} bytes, too short for one`);
}
