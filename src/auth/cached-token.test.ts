import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { cachedAccessToken } from './cached-token.ts';
import { TokenStore } from './token-store.ts';
import type { Account } from '../config/account.ts';
import { Smtp365Error } from '../errors/error.ts';

const NOW = Date.UTC(2026, 10, 26, 8, 0, 0);
const sec = (ms: number) => String(Math.floor(ms / 1000));
const CLIENT = 'c0f1de47-1a2b-4c3d-8e9f-0a1b2c3d4e5f';
const TENANT = '6f1b3c2a-4d5e-4f60-8a7b-9c0d1e2f3a4b';

const appAccount: Account = {
  name: 'app', cloud: 'custom', authorityHost: 'https://127.0.0.1:9', tenant: TENANT, clientId: CLIENT, clientSecret: 's',
  user: 'printer@contoso.com', flow: 'client-secret', smtpHost: '127.0.0.1', smtpPort: 587,
  smtpResource: 'https://outlook.office.com', graphEndpoint: 'https://graph.microsoft.com',
};
const userAccount: Account = { ...appAccount, name: 'user', cloud: 'global', authorityHost: 'https://login.microsoftonline.com', flow: 'device-code', tenant: 'contoso.onmicrosoft.com' };
delete userAccount.clientSecret;

function appToken(over: Record<string, unknown> = {}, minutes = 60): Record<string, unknown> {
  return {
    home_account_id: '', environment: '127.0.0.1:9', credential_type: 'AccessToken', client_id: CLIENT, secret: 'app-token', realm: TENANT,
    target: 'https://outlook.office365.com/.default', cached_at: sec(NOW - 60_000), expires_on: sec(NOW + minutes * 60_000), token_type: 'Bearer', ...over,
  };
}

const cache = (tokens: Record<string, unknown>[], accounts: Record<string, unknown>[] = []) =>
  JSON.stringify({
    Account: Object.fromEntries(accounts.map((a, i) => [`acct-${i}`, a])),
    AccessToken: Object.fromEntries(tokens.map((t, i) => [`at-${i}`, t])),
    RefreshToken: {},
  });

test('app-only: the one matching token, with its expiry and scopes', () => {
  const t = cachedAccessToken(cache([appToken()]), appAccount, undefined, 300, NOW);
  assert.ok(t);
  assert.equal(t.token, 'app-token');
  assert.equal(t.expiresOn.getTime(), Number(sec(NOW + 3_600_000)) * 1000);
  assert.deepEqual(t.scopes, ['https://outlook.office365.com/.default']);
  assert.equal(t.username, undefined);
});

test('a token MSAL would renew is not handed out: renewal window, caller margin, refresh_on, clock turned back', () => {
  assert.equal(cachedAccessToken(cache([appToken({}, 4)]), appAccount, undefined, 0, NOW), undefined, 'within MSAL\'s 5 minutes');
  assert.equal(cachedAccessToken(cache([appToken({}, 9)]), appAccount, undefined, 600, NOW), undefined, 'within the caller\'s 10 minutes');
  assert.ok(cachedAccessToken(cache([appToken({}, 11)]), appAccount, undefined, 600, NOW));
  assert.equal(cachedAccessToken(cache([appToken({ refresh_on: sec(NOW - 1000) })]), appAccount, undefined, 300, NOW), undefined);
  assert.ok(cachedAccessToken(cache([appToken({ refresh_on: sec(NOW + 600_000) })]), appAccount, undefined, 300, NOW));
  assert.equal(cachedAccessToken(cache([appToken({ cached_at: sec(NOW + 120_000) })]), appAccount, undefined, 300, NOW), undefined);
});

test('only a token for this client, tenant, authority and scope; none when several match', () => {
  const miss = (over: Record<string, unknown>) => cachedAccessToken(cache([appToken(over)]), appAccount, undefined, 300, NOW);
  assert.equal(miss({ client_id: '00000000-0000-0000-0000-000000000000' }), undefined);
  assert.equal(miss({ realm: 'other-tenant' }), undefined);
  assert.equal(miss({ environment: 'login.microsoftonline.com' }), undefined);
  assert.equal(miss({ target: 'https://graph.microsoft.com/.default' }), undefined);
  assert.equal(miss({ credential_type: 'AccessToken_With_AuthScheme', token_type: 'pop' }), undefined);
  assert.equal(miss({ requested_claims: '{"access_token":{}}' }), undefined);
  assert.equal(miss({ secret: '' }), undefined);
  assert.equal(cachedAccessToken(cache([appToken(), appToken({ secret: 'other' })]), appAccount, undefined, 300, NOW), undefined);
  assert.equal(cachedAccessToken('not json', appAccount, undefined, 300, NOW), undefined);
  assert.equal(cachedAccessToken('{}', appAccount, undefined, 300, NOW), undefined);
  // scopes compare case-insensitively, as MSAL does
  assert.ok(miss({ target: 'HTTPS://OUTLOOK.OFFICE365.COM/.default' }));
});

test('delegated: the signed-in user\'s token (MSAL\'s cache alias of the public cloud), with the username', () => {
  const alex = { home_account_id: 'uid-a.utid', environment: 'login.windows.net', realm: 'tid-1', username: 'alex@contoso.com' };
  const megan = { home_account_id: 'uid-m.utid', environment: 'login.windows.net', realm: 'tid-1', username: 'megan@contoso.com' };
  const tok = (acct: typeof alex, secret: string) => ({
    home_account_id: acct.home_account_id, environment: 'login.windows.net', credential_type: 'AccessToken', client_id: CLIENT, secret, realm: 'tid-1',
    target: 'https://outlook.office.com/SMTP.Send openid profile offline_access', cached_at: sec(NOW - 1000), expires_on: sec(NOW + 3_600_000), token_type: 'Bearer',
  });
  const c = cache([tok(alex, 'alex-token'), tok(megan, 'megan-token')], [alex, megan]);
  const m = cachedAccessToken(c, userAccount, 'Megan@contoso.com', 300, NOW);
  assert.equal(m?.token, 'megan-token');
  assert.equal(m?.username, 'megan@contoso.com');
  assert.equal(cachedAccessToken(c, userAccount, undefined, 300, NOW)?.token, 'alex-token', 'the first account, as acquire() picks it');
  // a token of another cloud's authority is not this account's
  assert.equal(cachedAccessToken(c, { ...userAccount, cloud: 'usgov', authorityHost: 'https://login.microsoftonline.us' }, 'alex@contoso.com', 300, NOW), undefined);
  // an account without its token: MSAL must refresh
  assert.equal(cachedAccessToken(cache([tok(alex, 'alex-token')], [alex, megan]), userAccount, 'megan@contoso.com', 300, NOW), undefined);
});

async function tmp(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-cached-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

test('the provider serves a valid cached token without the identity service; anything else goes to MSAL', async (t) => {
  const home = await tmp(t);
  const store = new TokenStore({ home, account: 'app', env: {} });
  const msal = cache([appToken({}, 60)].map((x) => ({ ...x, cached_at: sec(Date.now() - 60_000), expires_on: sec(Date.now() + 3_600_000) })));
  await store.withLock(() => store.write({ msal, meta: { refreshTokenLastUsed: new Date().toISOString() } }));
  const { createTokenProvider } = await import('./provider.ts');
  const events: string[] = [];
  // The authority (port 9) answers nothing: a token can only come from the cache file.
  const p = createTokenProvider(appAccount, { home, env: {}, logger: (e) => events.push(`${e.type}:${e.message}`) });
  const tok = await p.getAccessToken();
  assert.equal(tok.token, 'app-token');
  assert.deepEqual(events, ['token:access token from the cache']);
  // A margin the cached token cannot meet, or a forced renewal, asks the identity service (unreachable here).
  const fresh = createTokenProvider(appAccount, { home, env: {} });
  await assert.rejects(fresh.getAccessToken({ minValiditySeconds: 7200 }), (e: Smtp365Error) => e instanceof Smtp365Error && e.transient);
  await assert.rejects(fresh.getAccessToken({ forceRefresh: true }), (e: Smtp365Error) => e instanceof Smtp365Error);
  // A recorded error is cleared by the full path, not skipped by the fast one.
  await store.withLock(() => store.write({ msal, meta: { lastError: { code: 'AUTH_NETWORK', message: 'x', transient: true, at: new Date().toISOString() } } }));
  const afterError = createTokenProvider(appAccount, { home, env: {} });
  await assert.rejects(afterError.getAccessToken(), (e: Smtp365Error) => e instanceof Smtp365Error);
});
