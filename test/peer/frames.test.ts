// The peer protocol's frames: every kind survives encoding and decoding, however the bytes are
// split on the way (one at a time, at random points, or read where the decoder says); oversize
// frames are refused from their length prefix, before their bytes arrive; headers that are not
// JSON objects are refused.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { encodeFrame, type Frame, FrameDecoder, FrameKind, MAX_BODY_BYTES, MAX_FRAME_BYTES, MAX_HEADER_BYTES, ProtocolError } from '../../src/peer/frames.js';
import { ChunkMemory } from '../../src/pool/chunk-memory.js';

const KINDS = Object.values(FrameKind);

interface Sample {
  kind: FrameKind;
  id: number;
  header: Record<string, unknown>;
  body: Buffer;
}

function wire(samples: readonly Sample[]): Buffer {
  return Buffer.concat(samples.flatMap((s) => encodeFrame(s.kind, s.id, s.header, s.body)));
}

/** Frames or samples as plain objects, to compare (fast-check's records may lack a prototype). */
function plain(frames: readonly (Frame | Sample)[]): Sample[] {
  return frames.map((f) => ({ kind: f.kind, id: f.id, header: f.header, body: Buffer.from(f.body) }));
}

/** Feeds `bytes` to a fresh decoder cut at `cuts` (positions), returning every frame. */
function decodeIn(bytes: Buffer, cuts: readonly number[]): Frame[] {
  const d = new FrameDecoder();
  const frames: Frame[] = [];
  let from = 0;
  for (const at of [...cuts, bytes.length]) {
    // Each piece is a copy, as a socket's chunks are.
    frames.push(...d.push(Buffer.from(bytes.subarray(from, at))));
    from = at;
  }
  assert.equal(d.bufferedBytes, 0);
  return frames;
}

/** A sample whose body has one of `sizes` (in bytes). */
const sampleOf = (sizes: fc.Arbitrary<number>): fc.Arbitrary<Sample> =>
  fc.record({
    kind: fc.constantFrom(...KINDS),
    id: fc.nat({ max: 0xffff_ffff }),
    header: fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.string(), fc.integer(), fc.boolean(), fc.constant(null)), { maxKeys: 4 }).map(
      (h) => JSON.parse(JSON.stringify(h)) as Record<string, unknown>, // as a header travels: a plain object
    ),
    body: sizes.map((n) => randomBytes(n)),
  });
const sampleArb = sampleOf(fc.oneof(fc.constant(0), fc.nat({ max: 64 }), fc.integer({ min: 4000, max: 20_000 })));

describe('peer frames', () => {
  it('round-trips every kind, with and without a body', () => {
    const samples: Sample[] = KINDS.flatMap((kind, i) => [
      { kind, id: i, header: { kind, text: 'héllo ✓' }, body: Buffer.alloc(0) },
      { kind, id: 0xffff_ffff - i, header: {}, body: randomBytes(100 + i * 3000) },
    ]);
    const frames = decodeIn(wire(samples), []);
    assert.deepEqual(plain(frames), samples);
  });

  it('round-trips a 4 MiB body and a 64 KiB header without copying the body on the way out', () => {
    const body = randomBytes(4 * 1024 * 1024);
    const pieces = encodeFrame(FrameKind.RESPONSE, 7, { pad: 'x'.repeat(MAX_HEADER_BYTES - 20) }, body);
    assert.equal(pieces.length, 2);
    assert.equal(pieces[1]!.buffer, body.buffer, 'the body is the caller\'s buffer, not a copy');
    const frames = decodeIn(Buffer.concat(pieces), [1, 5, 13, 70_000, 1_000_000]);
    assert.equal(frames.length, 1);
    assert.ok(frames[0]!.body.equals(body));
  });

  it('yields the same frames fed one byte at a time', () => {
    const samples: Sample[] = KINDS.map((kind, i) => ({ kind, id: i * 1000, header: { n: i }, body: randomBytes(i * 7) }));
    const bytes = wire(samples);
    const cuts = Array.from({ length: bytes.length - 1 }, (_, i) => i + 1);
    assert.deepEqual(plain(decodeIn(bytes, cuts)), samples);
  });

  it('yields the same frames whatever the splits', () => {
    fc.assert(
      fc.property(fc.array(sampleArb, { minLength: 1, maxLength: 8 }), fc.array(fc.double({ min: 0, max: 1, noNaN: true }), { maxLength: 20 }), (samples, fractions) => {
        const bytes = wire(samples);
        const cuts = [...new Set(fractions.map((f) => Math.floor(f * bytes.length)))].sort((a, b) => a - b);
        assert.deepEqual(plain(decodeIn(bytes, cuts)), plain(samples));
      }),
      { numRuns: 150 },
    );
  });

  it('yields the same frames read where it says (onread), large bodies straight into their own buffers', () => {
    const withLarge = sampleOf(fc.integer({ min: 64 * 1024, max: 300_000 }));
    fc.assert(
      fc.property(fc.array(fc.oneof(sampleArb, withLarge), { minLength: 1, maxLength: 6 }), fc.array(fc.integer({ min: 1, max: 16 * 1024 }), { minLength: 1, maxLength: 10 }), (samples, reads) => {
        const bytes = wire(samples);
        const d = new FrameDecoder();
        const frames: Frame[] = [];
        // As a socket does: each read at most what the target holds (and what a record holds).
        for (let at = 0, i = 0; at < bytes.length; i++) {
          const target = d.readTarget();
          const n = Math.min(target.length, reads[i % reads.length]!, bytes.length - at);
          target.set(bytes.subarray(at, at + n));
          frames.push(...d.received(n, target));
          at += n;
        }
        // Compared only now: every frame stays valid while the scratch is read into again.
        assert.deepEqual(plain(frames), plain(samples));
        for (const f of frames) if (f.body.length >= 64 * 1024) assert.equal(f.body.byteLength, f.body.buffer.byteLength, 'a large body is a buffer of its own');
      }),
      { numRuns: 100 },
    );
    const d = new FrameDecoder();
    assert.throws(() => d.received(10, new Uint8Array(10)), /elsewhere than readTarget said/);
  });

  it('gathers the large bodies it is told to into lent memory, and gives a broken frame\'s back', () => {
    const memory = new ChunkMemory();
    const asked: Array<[FrameKind, number]> = [];
    const d = new FrameDecoder();
    // Only responses to request 7 are lent; a small body never is.
    d.bodyMemory = (kind, id) => {
      asked.push([kind, id]);
      return kind === FrameKind.RESPONSE && id === 7 ? memory : undefined;
    };
    const big = randomBytes(300_000);
    const samples: Sample[] = [
      { kind: FrameKind.RESPONSE, id: 7, header: { n: 1 }, body: big },
      { kind: FrameKind.RESPONSE, id: 8, header: { n: 2 }, body: big },
      { kind: FrameKind.RESPONSE, id: 7, header: { n: 3 }, body: randomBytes(1000) },
    ];
    const bytes = wire(samples);
    const frames: Frame[] = [];
    for (let at = 0; at < bytes.length; at += 5000) frames.push(...d.push(Buffer.from(bytes.subarray(at, at + 5000))));
    assert.deepEqual(plain(frames), plain(samples));
    assert.deepEqual(asked, [[FrameKind.RESPONSE, 7], [FrameKind.RESPONSE, 8]], 'asked once per large body');
    assert.equal(frames[0]!.lentFrom, memory);
    assert.ok(frames[0]!.body.buffer instanceof SharedArrayBuffer);
    assert.equal(frames[1]!.lentFrom, undefined);
    assert.equal(frames[2]!.lentFrom, undefined);
    memory.giveBack(frames[0]!.body);
    assert.equal(memory.lentSize, 0);

    // A frame whose header turns out not to be JSON gives its body back before the error.
    const broken = encodeFrame(FrameKind.RESPONSE, 7, { x: 1 }, big);
    broken[0]!.write('!', 13, 'utf8');
    const d2 = new FrameDecoder();
    let lent = 0;
    d2.bodyMemory = () => {
      lent++;
      return memory;
    };
    const all = Buffer.concat(broken);
    assert.throws(() => {
      for (let at = 0; at < all.length; at += 5000) d2.push(Buffer.from(all.subarray(at, at + 5000)));
    }, ProtocolError);
    assert.equal(lent, 1);
    assert.equal(memory.lentSize, 0, 'nothing left on loan');
  });

  it('refuses an oversize frame from its 4-byte length prefix alone', () => {
    const d = new FrameDecoder();
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(100 * 1024 * 1024);
    assert.throws(() => d.push(prefix.subarray(0, 2)).concat(d.push(prefix.subarray(2))), (err: unknown) => err instanceof ProtocolError && err.reason === 'frame-too-large');
    assert.equal(d.bufferedBytes, 0);
    // And it stays refused: a broken stream cannot be resynchronized.
    assert.throws(() => d.push(Buffer.alloc(20)), ProtocolError);

    const justOver = Buffer.alloc(4);
    justOver.writeUInt32BE(MAX_FRAME_BYTES + 1);
    assert.throws(() => new FrameDecoder().push(justOver), (err: unknown) => err instanceof ProtocolError && err.reason === 'frame-too-large');
  });

  it('refuses headers that are not JSON objects, bad lengths and unknown kinds', () => {
    const raw = (kind: number, header: Buffer, body = Buffer.alloc(0)): Buffer => {
      const b = Buffer.alloc(13);
      b.writeUInt32BE(9 + header.length + body.length, 0);
      b[4] = kind;
      b.writeUInt32BE(1, 5);
      b.writeUInt32BE(header.length, 9);
      return Buffer.concat([b, header, body]);
    };
    const reasonOf = (bytes: Buffer): string => {
      try {
        new FrameDecoder().push(bytes);
      } catch (err) {
        assert.ok(err instanceof ProtocolError, String(err));
        return err.reason;
      }
      return 'accepted';
    };
    assert.equal(reasonOf(raw(FrameKind.REQUEST, Buffer.from('{"ok":1}'))), 'accepted');
    assert.equal(reasonOf(raw(FrameKind.REQUEST, Buffer.from('not json'))), 'bad-header');
    assert.equal(reasonOf(raw(FrameKind.REQUEST, Buffer.from('[1,2]'))), 'bad-header');
    assert.equal(reasonOf(raw(FrameKind.REQUEST, Buffer.from('"str"'))), 'bad-header');
    assert.equal(reasonOf(raw(FrameKind.REQUEST, Buffer.from([0x7b, 0xff, 0xfe, 0x7d]))), 'bad-header');
    assert.equal(reasonOf(raw(99, Buffer.from('{}'))), 'unknown-kind');
    const tooLong = raw(FrameKind.REQUEST, Buffer.from('{}'));
    tooLong.writeUInt32BE(MAX_HEADER_BYTES + 1, 9);
    assert.equal(reasonOf(tooLong.subarray(0, 13)), 'header-too-large');
    const pastFrame = raw(FrameKind.REQUEST, Buffer.from('{}'));
    pastFrame.writeUInt32BE(50, 9);
    assert.equal(reasonOf(pastFrame), 'bad-header');
    const short = Buffer.alloc(4);
    short.writeUInt32BE(3);
    assert.equal(reasonOf(short), 'frame-too-short');
  });

  it('refuses to encode what a peer would refuse', () => {
    assert.throws(() => encodeFrame(FrameKind.REQUEST, 1, [1, 2]), ProtocolError);
    assert.throws(() => encodeFrame(FrameKind.REQUEST, 1, 'text'), ProtocolError);
    assert.throws(() => encodeFrame(FrameKind.REQUEST, 1, { pad: 'x'.repeat(MAX_HEADER_BYTES) }), (err: unknown) => err instanceof ProtocolError && err.reason === 'header-too-large');
    assert.throws(() => encodeFrame(FrameKind.REQUEST, 1, {}, Buffer.alloc(MAX_BODY_BYTES + 1)), (err: unknown) => err instanceof ProtocolError && err.reason === 'body-too-large');
    assert.throws(() => encodeFrame(FrameKind.REQUEST, -1, {}), RangeError);
    assert.equal(encodeFrame(FrameKind.REQUEST, 1, {}, Buffer.alloc(MAX_BODY_BYTES)).length, 2);
  });

  it('keeps bodies valid after the chunks they came in are gone, without pinning large chunks for small bodies', () => {
    const samples: Sample[] = [
      { kind: FrameKind.NOTIFY, id: 0, header: {}, body: Buffer.from('small') },
      { kind: FrameKind.RESPONSE, id: 1, header: {}, body: randomBytes(60_000) },
    ];
    const chunk = wire(samples);
    const frames = new FrameDecoder().push(chunk);
    assert.notEqual(frames[0]!.body.buffer, chunk.buffer, 'a small body is copied out of the big chunk');
    assert.equal(frames[1]!.body.buffer, chunk.buffer, 'a body filling the chunk is a view of it');
  });
});
