import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hashPassword } from '../users.ts';
import { PasswordCheck } from './password-check.ts';

test('a successful check is remembered: the next AUTH of the same user and password makes no scrypt check', async () => {
  const stored = await hashPassword('printer-secret-1');
  const pc = new PasswordCheck({ ttlMs: 60_000 });
  assert.equal(await pc.verify('printer', 'printer-secret-1', stored), true);
  assert.equal(await pc.verify('printer', 'printer-secret-1', stored), true);
  assert.equal(pc.checks, 1);
  // A wrong password is checked every time and never remembered.
  assert.equal(await pc.verify('printer', 'wrong-password', stored), false);
  assert.equal(await pc.verify('printer', 'wrong-password', stored), false);
  assert.equal(pc.checks, 3);
  // Another user name with the same password and hash is not the remembered one.
  assert.equal(await pc.verify('scanner', 'printer-secret-1', stored), true);
  assert.equal(pc.checks, 4);
});

test('a new password (a new stored hash), an unknown user, expiry and ttl 0 all check again', async () => {
  const old = await hashPassword('printer-secret-1');
  const changed = await hashPassword('printer-secret-2');
  const pc = new PasswordCheck({ ttlMs: 60_000 });
  assert.equal(await pc.verify('printer', 'printer-secret-1', old), true);
  assert.equal(await pc.verify('printer', 'printer-secret-1', changed), false, 'the old password no longer works after a change');
  assert.equal(pc.checks, 2);
  assert.equal(await pc.verify('ghost', 'printer-secret-1', undefined), false);
  assert.equal(await pc.verify('ghost', 'printer-secret-1', undefined), false);
  assert.equal(pc.checks, 4, 'no such user: scrypt against a dummy each time (the same cost, so timing does not tell)');
  assert.equal(await pc.verify('printer', 'printer-secret-1', old, Date.now() + 60_001), true);
  assert.equal(pc.checks, 5, 'expired');
  pc.setTtl(0);
  assert.equal(await pc.verify('printer', 'printer-secret-1', old), true);
  assert.equal(await pc.verify('printer', 'printer-secret-1', old), true);
  assert.equal(pc.checks, 7, 'ttl 0 remembers nothing');
});

test('one scrypt check at a time; identical tries share one, for unknown users too; past maxWaiting: busy, not a wrong password', async () => {
  const stored = await hashPassword('printer-secret-1');
  const pc = new PasswordCheck({ ttlMs: 0, maxWaiting: 3 });
  let peak = 0;
  let done = false;
  const watch = (async () => {
    while (!done) {
      peak = Math.max(peak, pc.inProgress);
      await new Promise((r) => setImmediate(r));
    }
  })();
  try {
    // i = 1 and 3 are the same try: checked once.
    const results = await Promise.all(Array.from({ length: 4 }, (_, i) => pc.verify('printer', i % 2 ? 'printer-secret-1' : `nope-${i}`, stored)));
    assert.deepEqual(results, [false, true, false, true]);
    assert.equal(pc.checks, 3);
    assert.equal(peak, 1);
    // Five identical tries at once: one check, whether the user exists or not (timing does not tell).
    await Promise.all(Array.from({ length: 5 }, () => pc.verify('printer', 'guess-1', stored)));
    assert.equal(pc.checks, 4);
    await Promise.all(Array.from({ length: 5 }, () => pc.verify('nobody', 'guess-1', undefined)));
    assert.equal(pc.checks, 5);
    // One running, 3 waiting: the fifth different try is refused as busy.
    const tries = Array.from({ length: 5 }, (_, i) => pc.verify('printer', `other-${i}`, stored).then((v) => v, (e: Error) => e.name));
    assert.deepEqual(await Promise.all(tries), [false, false, false, false, 'PasswordCheckBusy']);
  } finally {
    done = true;
    await watch;
    await pc.close();
  }
});

test('lowering the lifetime applies to what is remembered already', async () => {
  const stored = await hashPassword('printer-secret-1');
  const pc = new PasswordCheck({ ttlMs: 60_000 });
  await pc.verify('printer', 'printer-secret-1', stored);
  pc.setTtl(1);
  await new Promise((r) => setTimeout(r, 5));
  await pc.verify('printer', 'printer-secret-1', stored);
  assert.equal(pc.checks, 2);
  await pc.close();
});

test('the remembered successes are bounded: the oldest is forgotten first', async () => {
  const stored = await hashPassword('printer-secret-1');
  const pc = new PasswordCheck({ ttlMs: 60_000, maxEntries: 2 });
  for (const name of ['a', 'b', 'c']) await pc.verify(name, 'printer-secret-1', stored);
  assert.equal(pc.checks, 3);
  await pc.verify('c', 'printer-secret-1', stored);
  await pc.verify('b', 'printer-secret-1', stored);
  assert.equal(pc.checks, 3, 'b and c remembered');
  await pc.verify('a', 'printer-secret-1', stored);
  assert.equal(pc.checks, 4, 'a was forgotten');
});

test('scrypt on its own thread gives the same answers as on the pool; a closed checker falls back to the pool', async () => {
  const stored = await hashPassword('printer-secret-1');
  const onThread = new PasswordCheck({ ttlMs: 0 });
  const onPool = new PasswordCheck({ ttlMs: 0, derive: 'pool' });
  for (const pw of ['printer-secret-1', 'printer-secret-2', '']) {
    assert.equal(await onThread.verify('printer', pw, stored), await onPool.verify('printer', pw, stored), pw);
  }
  await onThread.close();
  assert.equal(await onThread.verify('printer', 'printer-secret-1', stored), true);
});

test('memory stays bounded when many different passwords are checked (glibc kept a 16 MB buffer per pool thread)', async () => {
  const stored = await hashPassword('printer-secret-1');
  const pc = new PasswordCheck({ ttlMs: 60_000 });
  await pc.verify('printer', 'warm-up-1', stored); // the thread and its first buffer
  const before = process.memoryUsage().rss;
  const answers = await Promise.all(Array.from({ length: 32 }, (_, i) => pc.verify('printer', `wrong-${i}`, stored)));
  const grewMb = (process.memoryUsage().rss - before) / 1048576;
  await pc.close();
  assert.ok(answers.every((a) => a === false));
  // On libuv's pool the same 32 checks left about 200 MB resident on this machine.
  assert.ok(grewMb < 80, `resident memory grew by ${grewMb.toFixed(0)} MB`);
});
