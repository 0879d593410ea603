// How `accounts` and `login` describe an account's state: past times read as
// past, a failed account's cached token is not shown as usable, and the flow
// shown is the one the sign-in used.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { formatStatus, statusToJson } from './status-format.ts';
import { TokenStore } from './token-store.ts';
import { createTokenProvider, type AccountStatus } from './provider.ts';
import type { Account } from '../config/account.ts';

const base: AccountStatus = { account: 'work', user: 'printer@contoso.com', flow: 'device-code', appOnly: false, state: 'active', cacheFile: '/tmp/work.json' };

test('a last use at this very moment (or a hair ahead, another clock) reads "just now", later ones "N min ago"', () => {
  for (const offset of [0, 800]) {
    const text = formatStatus({ ...base, refreshTokenLastUsed: new Date(Date.now() + offset), refreshTokenAgeDays: 0 }).join('\n');
    assert.match(text, /last used .* \(just now\)/, `${offset} ms: ${text}`);
    assert.doesNotMatch(text, /in under a minute/);
  }
  const later = formatStatus({ ...base, refreshTokenLastUsed: new Date(Date.now() - 5 * 60_000) }).join('\n');
  assert.match(later, /\(5 min ago\)/);
  const err = formatStatus({ ...base, lastError: { code: 'AUTH_NETWORK', message: 'x', transient: true, at: new Date(Date.now() + 10) } }).join('\n');
  assert.match(err, /\(just now\), temporary\)/);
});

test('a failed account\'s cached access token is shown as what it is: still used until it expires, a sign-in needed before then', () => {
  const text = formatStatus({ ...base, state: 'failed', accessTokenExpiresOn: new Date(Date.now() + 3_000_000) }).join('\n');
  assert.doesNotMatch(text, /valid until/);
  assert.match(text, /access token +from before the failure, still used until .*: sign in again before then/);
  assert.match(formatStatus({ ...base, state: 'failed', accessTokenExpiresOn: new Date(Date.now() - 60_000) }).join('\n'), /access token +expired/);
});

test('the flow shown is the one the sign-in used', () => {
  const text = formatStatus({ ...base, signInFlow: 'browser' }).join('\n');
  assert.match(text.split('\n')[0]!, /· browser \(configured: device-code\)/);
  assert.match(formatStatus({ ...base, signInFlow: 'device-code' })[0]!, /· device-code$/);
  assert.equal(statusToJson({ ...base, signInFlow: 'browser' }).signInFlow, 'browser');
});

test('state() reports the flow the saved sign-in was made with', async (t) => {
  const home = await mkdtemp(path.join(tmpdir(), 'smtp365-status-'));
  t.after(() => rm(home, { recursive: true, force: true }));
  const store = new TokenStore({ home, account: 'work', env: {} });
  await store.withLock(() => store.write({ msal: JSON.stringify({ RefreshToken: { k: { secret: 'x' } } }), meta: { flow: 'browser', signedInAs: 'printer@contoso.com' } }));
  const account = { name: 'work', user: 'printer@contoso.com', flow: 'device-code' } as Account;
  const status = await createTokenProvider(account, { home, env: {} }).state();
  assert.equal(status.state, 'active');
  assert.equal(status.signInFlow, 'browser');
});
