// The relay tests' wait helper: a condition that never holds fails with what
// was awaited and what was seen, instead of hanging the suite.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from './relay-helpers.ts';

test('waitFor gives up at the deadline naming the condition and the last value seen', async () => {
  let n = 0;
  await assert.rejects(
    waitFor('n to reach 1000', async () => ({ n: ++n }), (v) => v.n >= 1000, 100, 10),
    (err: Error) => /waiting for: n to reach 1000; last seen: \{"n":\d+\}/.test(err.message),
  );
  assert.deepEqual(await waitFor('n to reach 3', async () => ++n, (v) => v >= n, 1000, 1), n);
});
