import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPacer, pacerFor } from './pacer.ts';

/** A clock and scheduler the test moves by hand: pacing is checked by counting, never by waiting. */
function fakeTime() {
  let now = 1_000_000;
  const timers: Array<{ at: number; fn: () => void; cancelled: boolean }> = [];
  return {
    now: () => now,
    schedule: (fn: () => void, ms: number) => {
      const t = { at: now + ms, fn, cancelled: false };
      timers.push(t);
      return { cancel: () => (t.cancelled = true) };
    },
    async advance(ms: number) {
      now += ms;
      for (const t of timers.splice(0)) {
        if (t.cancelled) continue;
        if (t.at <= now) t.fn();
        else timers.push(t);
      }
      await new Promise((r) => setImmediate(r));
    },
  };
}

test('at most `limit` starts in any window; the next waits for the oldest to leave it', async () => {
  const time = fakeTime();
  const pacer = createPacer({ limit: 3, windowMs: 60_000, now: time.now, schedule: time.schedule });
  let started = 0;
  const all = Array.from({ length: 7 }, () => pacer.acquire().then(() => started++));
  await new Promise((r) => setImmediate(r));
  assert.equal(started, 3);
  assert.equal(pacer.waiting(), 4);
  await time.advance(59_999);
  assert.equal(started, 3, 'still inside the window');
  await time.advance(1);
  assert.equal(started, 6);
  await time.advance(60_000);
  assert.equal(started, 7);
  await Promise.all(all);
  assert.equal(pacer.inWindow(), 1);
});

test('a sliding window never lets 2× the limit through across a window edge', async () => {
  const time = fakeTime();
  const pacer = createPacer({ limit: 30, now: time.now, schedule: time.schedule });
  const startsAt: number[] = [];
  const waits: Promise<void>[] = [];
  for (let i = 0; i < 100; i++) waits.push(pacer.acquire().then(() => void startsAt.push(time.now())));
  await new Promise((r) => setImmediate(r));
  for (let t = 0; t < 240; t++) await time.advance(1_000);
  await Promise.all(waits);
  for (const s of startsAt) {
    const inWindow = startsAt.filter((x) => x > s - 60_000 && x <= s).length;
    assert.ok(inWindow <= 30, `at ${s}: ${inWindow} starts within 60 s`);
  }
  assert.equal(startsAt.length, 100);
  assert.equal(startsAt.filter((x) => x === startsAt[0]).length, 30, 'the first 30 go at once');
});

test('acquire() honours an abort signal and leaves the queue clean', async () => {
  const time = fakeTime();
  const pacer = createPacer({ limit: 1, now: time.now, schedule: time.schedule });
  await pacer.acquire();
  const ac = new AbortController();
  const waiting = pacer.acquire(ac.signal);
  ac.abort(new Error('stop'));
  await assert.rejects(waiting, /stop/);
  assert.equal(pacer.waiting(), 0);
});

test('pacerFor: default 30/min, off with false, invalid limits refused', () => {
  assert.equal(pacerFor(undefined)!.limit, 30);
  assert.equal(pacerFor({ messagesPerMinute: 10 })!.limit, 10);
  assert.equal(pacerFor(false), undefined);
  assert.throws(() => pacerFor({ messagesPerMinute: 0 }), RangeError);
  assert.throws(() => createPacer({ limit: 2, windowMs: 0 }), RangeError);
});
