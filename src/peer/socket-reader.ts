// A session's incoming frames, from whichever way its socket reads. Node's TLS layer hands each
// decrypted record to JavaScript as a new buffer pushed through a Readable stream; with `onread`
// it decrypts into a buffer the reader names and calls back, without the stream. On a socket this
// side dialed, the reader names the rest of the chunk being received (FrameDecoder.readTarget), so
// a chunk's bytes land where the codec worker will take them, neither copied out of records nor
// streamed: on loopback, a third less CPU per byte received. Node offers `onread` only to sockets
// it connects (tls.connect), not to those a server accepts: those are read from 'data' events.
import type { OnReadOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { type BodyMemory, FrameDecoder, type Frame } from './frames.js';

/** Where a reader's frames go: the bytes read, and the frames they completed or the error the
 * decoder threw (a ProtocolError when the peer broke the format). */
export type FrameSink = (bytes: number, frames: Frame[] | Error) => void;

const readers = new WeakMap<object, SocketReader>();

export class SocketReader {
  private readonly decoder = new FrameDecoder();
  private sink: FrameSink | undefined;
  /** What came before a sink attached (the peer's HELLO may come with the handshake's end). */
  private waiting: Array<[number, Frame[] | Error]> = [];
  /** A stream read from its 'data' events, once a sink attaches (until then it buffers them). */
  private stream: Duplex | undefined;

  /** For tls.connect's options. */
  readonly onread: OnReadOpts = {
    buffer: () => this.decoder.readTarget(),
    callback: (bytes, target) => {
      this.deliver(bytes, () => this.decoder.received(bytes, target));
      return true; // pausing is the session's, by socket.pause()
    },
  };

  /** The reader of a socket connected with its `onread`, if it was. */
  static of(socket: object): SocketReader | undefined {
    return readers.get(socket);
  }

  /** The reader of `stream`: the one it was connected with, or else one of its 'data' events. */
  static reading(stream: Duplex): SocketReader {
    const dialed = readers.get(stream);
    if (dialed) return dialed;
    const reader = new SocketReader();
    reader.stream = stream;
    return reader;
  }

  /** Marks `socket` as read by this reader (call once it exists). */
  bind(socket: object): void {
    readers.set(socket, this);
  }

  /** From now on frames go to `sink`, their large bodies where `bodyMemory` says; those read
   * before follow in a microtask (not during the caller's own set-up), ahead of anything read
   * later. */
  attach(sink: FrameSink, bodyMemory?: BodyMemory): void {
    this.sink = sink;
    this.decoder.bodyMemory = bodyMemory;
    const waiting = this.waiting;
    this.waiting = [];
    if (waiting.length > 0) queueMicrotask(() => waiting.forEach(([bytes, frames]) => sink(bytes, frames)));
    this.stream?.on('data', (chunk: Buffer) => this.deliver(chunk.length, () => this.decoder.push(chunk)));
  }

  /** Hands the sink the frames `decode` gives for `bytes` read, or what it threw. */
  private deliver(bytes: number, decode: () => Frame[]): void {
    let frames: Frame[] | Error;
    try {
      frames = decode();
    } catch (err) {
      frames = err instanceof Error ? err : new Error(String(err));
    }
    if (this.sink) this.sink(bytes, frames);
    else this.waiting.push([bytes, frames]);
  }
}
