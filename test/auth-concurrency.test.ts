// Two processes (the CLI and the relay, say) refreshing the same account at
// once: the cross-process lock makes one of them refresh and the other use
// the result, so a rotated refresh token is never lost and nobody gets locked
// out (AADSTS70008 for a retired refresh token).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import { withSandbox, sandboxAccount, sandboxRequest } from './helpers/sandbox.ts';
import { createTokenProvider, TokenStore } from '../src/auth/index.ts';
import type { Account } from '../src/config/account.ts';
import { adminFor } from './auth-sandbox-admin.ts';

const AUTH_INDEX = pathToFileURL(path.join(import.meta.dirname, '..', 'src', 'auth', 'index.ts')).href;

const CHILD = `
  import { createTokenProvider } from ${JSON.stringify(AUTH_INDEX)};
  const account = JSON.parse(process.env.TEST_ACCOUNT);
  const provider = createTokenProvider(account, { home: process.env.TEST_HOME });
  const forced = process.env.TEST_FORCE === '1';
  const rounds = Number(process.env.TEST_ROUNDS);
  // Start together, so the two processes really overlap.
  await new Promise((r) => setTimeout(r, Math.max(0, Number(process.env.TEST_START) - Date.now())));
  const out = [];
  for (let i = 0; i < rounds; i++) {
    try {
      const t = await provider.getAccessToken({ forceRefresh: forced });
      out.push({ ok: true, tail: t.token.slice(-16) });
    } catch (e) {
      out.push({ ok: false, code: e.code, message: e.message });
    }
  }
  process.stdout.write(JSON.stringify(out));
`;

function runChild(t: TestContext, env: Record<string, string>): Promise<Array<{ ok: boolean; tail?: string; code?: string; message?: string }>> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', CHILD], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill());
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => {
      if (code !== 0) reject(new Error(`child exited with ${code}`));
      else resolve(JSON.parse(out));
    });
  });
}

async function setup(t: TestContext) {
  const tokenRequests: string[] = [];
  // Strict rotation (Entra lets an earlier refresh token work on): a lost rotation would show as 70008.
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1, quiet: false, log: (line) => tokenRequests.push(line), identity: { refreshTokenReuse: false } });
  const h = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-auth-conc-'));
  t.after(() => fs.rm(h, { recursive: true, force: true }));
  const account: Account = sandboxAccount(sb.info);
  const provider = createTokenProvider(account, { home: h });
  const admin = adminFor(sb);
  await provider.signIn({ onDeviceCode: (dc) => void admin.approve(dc.userCode, account.user) });
  const env = { TEST_ACCOUNT: JSON.stringify(account), TEST_HOME: h };
  const tokenPosts = () => tokenRequests.filter((l) => /^POST \S+\/oauth2\/v2\.0\/token 200$/.test(l)).length;
  return { sb, h, account, env, tokenPosts, tokenRequests };
}

test('two processes need a new token at once: one refresh, both get it', async (t) => {
  const { h, account, env, tokenPosts } = await setup(t);
  // Make the saved access token look expired, so both processes must renew.
  const store = new TokenStore({ home: h, account: account.name });
  const p = (await store.read())!;
  const msal = JSON.parse(p.msal) as { AccessToken: Record<string, { expires_on: string; extended_expires_on?: string }> };
  for (const at of Object.values(msal.AccessToken)) {
    at.expires_on = String(Math.floor(Date.now() / 1000) - 10);
    at.extended_expires_on = at.expires_on;
  }
  await store.withLock(() => store.write({ ...p, msal: JSON.stringify(msal) }));
  const before = tokenPosts();
  const start = String(Date.now() + 400);
  const [a, b] = await Promise.all([
    runChild(t, { ...env, TEST_FORCE: '0', TEST_ROUNDS: '1', TEST_START: start }),
    runChild(t, { ...env, TEST_FORCE: '0', TEST_ROUNDS: '1', TEST_START: start }),
  ]);
  assert.ok(a[0]!.ok && b[0]!.ok, JSON.stringify([a, b]));
  assert.equal(a[0]!.tail, b[0]!.tail, 'both use the one renewed token');
  assert.equal(tokenPosts() - before, 1, 'exactly one refresh (one rotation)');
});

test('two processes forcing refreshes concurrently: every rotation is kept, nobody is locked out', async (t) => {
  const { account, h, env, tokenRequests: log } = await setup(t);
  const signInRequests = log.length;
  const start = String(Date.now() + 400);
  const [a, b] = await Promise.all([
    runChild(t, { ...env, TEST_FORCE: '1', TEST_ROUNDS: '4', TEST_START: start }),
    runChild(t, { ...env, TEST_FORCE: '1', TEST_ROUNDS: '4', TEST_START: start }),
  ]);
  const all = [...a, ...b];
  const tokenRequests = log.slice(signInRequests);
  assert.deepEqual(all.filter((r) => !r.ok), [], 'no refresh failed');
  assert.equal(new Set(all.map((r) => r.tail)).size, 8, 'eight refreshes, eight different tokens');
  assert.ok(!tokenRequests.some((l) => /token 400$/.test(l)), 'no refresh was refused (70008 for a lost rotation)');
  assert.equal(tokenRequests.filter((l) => /token 200$/.test(l)).length, 8, 'eight refreshes reached the token endpoint');
  // The cache holds the latest refresh token: it still works.
  const fresh = createTokenProvider(account, { home: h });
  assert.ok((await fresh.getAccessToken({ forceRefresh: true })).token);
  assert.equal((await fresh.state()).state, 'active');
});

test('a refresh with a revoked token still running while `smtp365 login` signs in again never undoes the new sign-in', async (t) => {
  const { sb, h, account } = await setup(t);
  const admin = adminFor(sb);
  // The relay and `smtp365 login`: two providers (two stores) on one cache, ordered only by the file lock.
  const relay = createTokenProvider(account, { home: h });
  const cli = createTokenProvider(account, { home: h });
  await admin.patchUser(account.user, { revokeSessions: true });
  // The identity service is slow to refuse the relay's refresh: the new sign-in finishes meanwhile.
  const f = await sandboxRequest(sb.info, 'POST', `${sb.info.admin}/faults`, { json: { stage: 'token', delayMs: 2500, times: 1 } });
  assert.ok(f.status < 300, f.text);
  const refused = relay.getAccessToken({ forceRefresh: true }).then(
    () => undefined,
    (e: unknown) => e as { code?: string },
  );
  // The relay's refresh holds the cache lock (its token request is on its way) before the sign-in starts.
  const lock = `${path.join(h, 'tokens', account.name)}.json.lock`;
  while (!(await fs.stat(lock).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 5));
  const signedIn = await cli.signIn({ onDeviceCode: (dc) => void admin.approve(dc.userCode, account.user) });
  assert.equal(signedIn.state, 'active');
  assert.equal((await refused)?.code, 'AUTH_SIGNIN_EXPIRED', 'the old refresh token was refused');
  // The refusal was recorded before the new sign-in, never over it.
  const after = await cli.state();
  assert.equal(after.state, 'active');
  assert.equal(after.lastError, undefined);
  assert.ok((await relay.getAccessToken({ forceRefresh: true })).token, 'the relay uses the new sign-in');
  assert.equal((await relay.state()).state, 'active');
});
