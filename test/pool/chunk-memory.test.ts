// ChunkMemory: size classes, reuse of what is given back, and what it refuses to take back.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import fc from 'fast-check';
import { ChunkMemory, sizeClass } from '../../src/pool/chunk-memory.js';

describe('ChunkMemory', () => {
  it('rounds lengths up to a size class at most a quarter larger (64 KiB at least)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 * 1024 * 1024 }), fc.integer({ min: 1, max: 64 * 1024 * 1024 }), (a, b) => {
        const c = sizeClass(a);
        assert.ok(c >= a && c >= 64 * 1024, `class ${c} of ${a}`);
        if (a > 64 * 1024) assert.ok(c <= a * 1.25, `class ${c} of ${a} is more than 25 % larger`);
        assert.equal(sizeClass(c), c, 'a class is its own class');
        if (a <= b) assert.ok(sizeClass(a) <= sizeClass(b), 'classes grow with lengths');
      }),
    );
    assert.equal(sizeClass(1 << 20), 1 << 20);
    assert.equal(sizeClass((1 << 20) + 1), 1.25 * (1 << 20));
  });

  it('lends shared memory and lends it again once given back', () => {
    const memory = new ChunkMemory();
    const a = memory.lend(1_000_000);
    assert.equal(a.length, 1_000_000);
    assert.ok(a.buffer instanceof SharedArrayBuffer);
    assert.equal(a.buffer.byteLength, sizeClass(1_000_000));
    assert.equal(memory.lentSize, a.buffer.byteLength);
    const b = memory.lend(1_000_000);
    assert.notEqual(b.buffer, a.buffer, 'two loans never share memory');

    memory.giveBack(a.subarray(100, 200)); // any view of the loan gives it back
    assert.equal(memory.idleSize, a.buffer.byteLength);
    assert.equal(memory.lentSize, b.buffer.byteLength);
    assert.equal(memory.lend(990_000).buffer, a.buffer, 'a length of the same class reuses it');
    assert.equal(memory.idleSize, 0);
  });

  it('reuses memory one or two classes up, not further', () => {
    const memory = new ChunkMemory();
    const big = memory.lend(1.5 * (1 << 20)); // two classes above 1 MiB (1.25, 1.5)
    memory.giveBack(big);
    assert.equal(memory.lend(1 << 20).buffer, big.buffer);
    const huge = memory.lend(4 << 20);
    memory.giveBack(huge);
    assert.notEqual(memory.lend(1 << 20).buffer, huge.buffer, '4 MiB is not lent for 1 MiB');
  });

  it('ignores memory it did not lend and memory given back twice', () => {
    const memory = new ChunkMemory();
    memory.giveBack(Buffer.alloc(1 << 20));
    memory.giveBack(Buffer.from(new SharedArrayBuffer(1 << 20)));
    assert.equal(memory.idleSize, 0);
    const a = memory.lend(1 << 20);
    memory.giveBack(a);
    memory.giveBack(a);
    assert.equal(memory.idleSize, 1 << 20, 'counted once');
    const first = memory.lend(1 << 20);
    const second = memory.lend(1 << 20);
    assert.notEqual(first.buffer, second.buffer, 'a double give-back must not lend one buffer twice');
  });

  it('reuses a shared loan only once every holder gave it back', () => {
    const memory = new ChunkMemory();
    const loan = memory.lend(1 << 20);
    memory.share(loan, 2); // three holders now
    memory.giveBack(loan);
    memory.giveBack(loan.subarray(10));
    assert.equal(memory.idleSize, 0, 'one holder is left');
    assert.notEqual(memory.lend(1 << 20).buffer, loan.buffer, 'not lent again while held');
    memory.giveBack(loan);
    assert.equal(memory.idleSize, 1 << 20);
    memory.giveBack(loan);
    assert.equal(memory.idleSize, 1 << 20, 'a give-back beyond the holders is ignored');
    memory.share(Buffer.alloc(16));
    memory.share(loan); // no longer lent: sharing it does not lend it again
    assert.equal(memory.lend(1 << 20).buffer, loan.buffer);
  });

  it('keeps at most maxIdleBytes for reuse', () => {
    const memory = new ChunkMemory(3 << 20);
    const loans = Array.from({ length: 5 }, () => memory.lend(1 << 20));
    for (const loan of loans) memory.giveBack(loan);
    assert.equal(memory.idleSize, 3 << 20);
    assert.equal(memory.lentSize, 0);
  });

  it('drops its idle memory after a quiet spell, not while it is lending', async () => {
    const memory = new ChunkMemory(64 << 20, 200);
    memory.giveBack(memory.lend(1 << 20));
    // Lending on within the spell keeps the memory.
    for (let i = 0; i < 4; i++) {
      await sleep(100);
      memory.giveBack(memory.lend(1 << 20));
      assert.equal(memory.idleSize, 1 << 20, `dropped while lending, ${i}`);
    }
    await sleep(450);
    assert.equal(memory.idleSize, 0);
    assert.equal(memory.lend(1 << 20).length, 1 << 20, 'lends afresh after');
  });
});
