// The policy tiering gives a chunk by its class: hot and cold go to their policies; warm, the band
// between, leaves a chunk where it is (so a class wavering at either edge moves nothing), and a
// warm chunk under neither policy, or not stored yet, starts cold.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { formatPolicy, parsePolicy } from '../../src/pool/policy.js';
import { tieredPolicy } from '../../src/pool/tiering.js';

const tiering = { hot: parsePolicy('replicate:3'), cold: parsePolicy('ec:4+2'), windowMs: 1000 };
const given = (heat: 'hot' | 'warm' | 'cold' | undefined, stored?: string): string =>
  formatPolicy(tieredPolicy(tiering, heat, stored === undefined ? undefined : parsePolicy(stored)));

describe('tieredPolicy', () => {
  it('sends hot chunks to the hot policy and cold ones to the cold', () => {
    assert.equal(given('hot', 'ec:4+2'), 'replicate:3');
    assert.equal(given('hot', 'replicate:2'), 'replicate:3');
    assert.equal(given('cold', 'replicate:3'), 'ec:4+2');
    assert.equal(given('cold'), 'ec:4+2');
  });

  it('leaves a warm chunk, or one of unknown heat, under either tier where it is', () => {
    assert.equal(given('warm', 'replicate:3'), 'replicate:3');
    assert.equal(given('warm', 'ec:4+2'), 'ec:4+2');
    assert.equal(given(undefined, 'replicate:3'), 'replicate:3');
  });

  it('starts a warm chunk under neither tier, or a new one, cold', () => {
    assert.equal(given('warm', 'replicate:2'), 'ec:4+2');
    assert.equal(given('warm'), 'ec:4+2');
    assert.equal(given(undefined), 'ec:4+2');
  });
});
