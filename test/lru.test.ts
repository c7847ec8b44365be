// LruMap: entries in order of use, whatever mix of sets, touches and deletes, checked against a
// plain array kept in that order.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { LruMap } from '../src/lru.js';

type Op = { op: 'set' | 'touch' | 'delete'; key: number; value: number };

describe('LruMap', () => {
  it('keeps entries in order of use', () => {
    const opArb: fc.Arbitrary<Op> = fc.record({ op: fc.constantFrom('set', 'touch', 'delete'), key: fc.nat(12), value: fc.integer() }) as fc.Arbitrary<Op>;
    fc.assert(
      fc.property(fc.array(opArb, { maxLength: 200 }), (ops) => {
        const lru = new LruMap<number, number>();
        let model: Array<[number, number]> = [];
        for (const { op, key, value } of ops) {
          const at = model.findIndex(([k]) => k === key);
          if (op === 'set') {
            if (at >= 0) model.splice(at, 1);
            model.push([key, value]);
            lru.set(key, value);
          } else if (op === 'touch') {
            if (at >= 0) model.push(...model.splice(at, 1));
            assert.equal(lru.touch(key), at >= 0);
          } else {
            if (at >= 0) model.splice(at, 1);
            assert.equal(lru.delete(key), at >= 0);
          }
          assert.deepEqual([...lru], model);
          assert.equal(lru.size, model.length);
          assert.deepEqual(lru.first(), model[0]);
          assert.deepEqual([...lru.keys()], model.map(([k]) => k));
          for (const [k, v] of model) assert.equal(lru.get(k), v);
        }
        lru.clear();
        model = [];
        assert.deepEqual([...lru], model);
        assert.equal(lru.first(), undefined);
      }),
    );
  });

  it('lets the entry just visited be deleted while iterating', () => {
    const lru = new LruMap<string, number>();
    for (const [i, k] of ['a', 'b', 'c', 'd'].entries()) lru.set(k, i);
    const seen: string[] = [];
    for (const [k] of lru) {
      seen.push(k);
      lru.delete(k);
    }
    assert.deepEqual(seen, ['a', 'b', 'c', 'd']);
    assert.equal(lru.size, 0);
  });
});
