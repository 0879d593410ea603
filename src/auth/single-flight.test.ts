import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SingleFlight } from './single-flight.ts';
import type { AccessToken } from './types.ts';
import { Smtp365Error } from '../errors/error.ts';

function fakeFetcher(lifetimeSeconds = 3600) {
  const calls: Array<{ forced: boolean; min: number }> = [];
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  let fail: Error | undefined;
  let n = 0;
  const fetcher = async (forced: boolean, min: number): Promise<AccessToken> => {
    calls.push({ forced, min });
    if (gate) await gate;
    if (fail) throw fail;
    n++;
    return { token: `token-${n}`, expiresOn: new Date(Date.now() + lifetimeSeconds * 1000), scopes: ['SMTP.Send'] };
  };
  return {
    fetcher,
    calls,
    hold() {
      gate = new Promise<void>((r) => (release = r));
    },
    release() {
      gate = undefined;
      release?.();
    },
    failWith(e: Error | undefined) {
      fail = e;
    },
  };
}

test('concurrent callers share one renewal', async () => {
  const f = fakeFetcher();
  const sf = new SingleFlight(f.fetcher);
  f.hold();
  const all = Array.from({ length: 20 }, () => sf.get());
  f.release();
  const tokens = await Promise.all(all);
  assert.equal(f.calls.length, 1);
  assert.ok(tokens.every((t) => t.token === 'token-1'));
  // Still fresh: no renewal.
  assert.equal((await sf.get()).token, 'token-1');
  assert.equal(f.calls.length, 1);
});

test('a token inside the margin is renewed, never handed out', async () => {
  const f = fakeFetcher(200); // 200 s left < 300 s default margin
  const sf = new SingleFlight(f.fetcher);
  const t1 = await sf.get({ minValiditySeconds: 60 });
  assert.equal(t1.token, 'token-1');
  assert.equal(f.calls.length, 1);
  // The default margin (300 s) is more than what is left: renew.
  const t2 = await sf.get();
  assert.notEqual(t2.token, 'token-1');
  assert.ok(f.calls.length >= 2);
});

test('forceRefresh renews even a fresh token, and waits for a running renewal first', async () => {
  const f = fakeFetcher();
  const sf = new SingleFlight(f.fetcher);
  await sf.get();
  f.hold();
  const a = sf.get();
  const b = sf.get({ forceRefresh: true });
  f.release();
  const [ta, tb] = await Promise.all([a, b]);
  assert.equal(ta.token, 'token-1', 'the fresh token is returned without a call');
  assert.equal(tb.token, 'token-2');
  assert.deepEqual(f.calls.map((c) => c.forced), [false, true]);
});

test('a failure reaches every waiting caller; the next call tries again', async () => {
  const f = fakeFetcher();
  const sf = new SingleFlight(f.fetcher);
  f.hold();
  f.failWith(new Smtp365Error('AUTH_NETWORK', 'down'));
  const all = Array.from({ length: 5 }, () => sf.get().then(() => 'ok', (e: Smtp365Error) => e.code));
  f.release();
  assert.deepEqual(await Promise.all(all), Array(5).fill('AUTH_NETWORK'));
  assert.equal(f.calls.length, 1);
  f.failWith(undefined);
  assert.equal((await sf.get()).token, 'token-1');
  assert.equal(f.calls.length, 2);
});

test('an aborted caller stops waiting; the others still get the token', async () => {
  const f = fakeFetcher();
  const sf = new SingleFlight(f.fetcher);
  f.hold();
  const ac = new AbortController();
  const aborted = sf.get({ signal: ac.signal });
  const other = sf.get();
  ac.abort();
  await assert.rejects(aborted, (e: Smtp365Error) => e.code === 'AUTH_CANCELLED');
  f.release();
  assert.equal((await other).token, 'token-1');
  assert.equal(f.calls.length, 1);
});

test('an expired token from the fetcher is an error, not a token', async () => {
  const sf = new SingleFlight(async () => ({ token: 'old', expiresOn: new Date(Date.now() - 1000), scopes: [] }));
  await assert.rejects(sf.get({ forceRefresh: true }), (e: Smtp365Error) => e.code === 'AUTH_FAILED');
});
