// The CLI as a person and a script use it, configured by environment
// variables only (a container): login by device code against the sandbox,
// accounts, token (only the token on stdout), logout, a corrupt cache,
// declined sign-in and Ctrl-C — with the exit codes scripts rely on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { withSandbox } from './helpers/sandbox.ts';
import { adminFor, decodeJwt } from './auth-sandbox-admin.ts';
import { cli, envFor, approveFromOutput } from './auth-cli-helpers.ts';

test('environment only: login by device code, accounts, token, token --json, logout', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  const upn = sb.info.users[0]!.upn;

  const login = await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, new RegExp(`Open\\s+${sb.info.authority.replace(/[.]/g, '\\.')}/devicelogin`));
  assert.match(login.stdout, /Code\s+[A-Z0-9]{6,}/);
  assert.match(login.stdout, new RegExp(`Signed in as ${upn}`));
  assert.match(login.stdout, /smtp365 token/);

  const accounts = await cli(t, ['accounts'], env);
  assert.equal(accounts.code, 0, accounts.stderr);
  assert.match(accounts.stdout, /default \(default\)/);
  assert.match(accounts.stdout, new RegExp(`active · signed in as ${upn}`));
  assert.match(accounts.stdout, /access token\s+valid until/);
  assert.match(accounts.stdout, /refresh token\s+last used .* expires if unused \d{4}-\d\d-\d\d/);
  assert.match(accounts.stdout, /environment only/);

  const json = await cli(t, ['accounts', '--json'], env);
  const parsed = JSON.parse(json.stdout) as { accounts: Array<{ account: string; state: string; signedInAs: string; refreshTokenAgeDays: number }> };
  assert.equal(parsed.accounts[0]!.state, 'active');
  assert.equal(parsed.accounts[0]!.signedInAs, upn);
  assert.equal(parsed.accounts[0]!.refreshTokenAgeDays, 0);

  const token = await cli(t, ['token'], env);
  assert.equal(token.code, 0, token.stderr);
  assert.equal(token.stderr, '');
  assert.match(token.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, 'only the token and a newline');
  assert.equal(decodeJwt(token.stdout.trim()).upn, upn);

  const tj = await cli(t, ['token', '--json'], env);
  const tok = JSON.parse(tj.stdout) as { token: string; expiresOn: string; account: string };
  assert.equal(tok.token, token.stdout.trim(), 'the cached token is reused across processes');
  assert.equal(tok.account, 'default');
  assert.ok(Date.parse(tok.expiresOn) > Date.now() + 5 * 60_000);

  const forced = await cli(t, ['token', '--force'], env);
  assert.equal(forced.code, 0, forced.stderr);
  assert.ok(forced.stdout.trim() !== token.stdout.trim(), '--force renews');

  const logout = await cli(t, ['logout'], env);
  assert.equal(logout.code, 0);
  assert.match(logout.stdout, /Removed the saved tokens of default/);
  const after = await cli(t, ['token'], env);
  assert.equal(after.code, 77);
  assert.equal(after.stdout, '');
  assert.match(after.stderr, /AUTH_NOT_SIGNED_IN/);
  assert.match(after.stderr, /Sign in: smtp365 login/);
});

test('a corrupt cache: token fails with a way forward (exit 77), login replaces it', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  const upn = sb.info.users[0]!.upn;
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  const file = path.join(env.SMTP365_HOME!, 'tokens', 'default.json');
  await fs.writeFile(file, (await fs.readFile(file, 'utf8')).replace(/"data":"(.)/, (_m, c: string) => `"data":"${c === 'A' ? 'B' : 'A'}`));
  const r = await cli(t, ['token'], env);
  assert.equal(r.code, 77);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /AUTH_CACHE_CORRUPT/);
  assert.match(r.stderr, /Sign in again: smtp365 login --account default/);
  assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  const acc = await cli(t, ['accounts'], env);
  assert.equal(acc.code, 0);
  assert.match(acc.stdout, /failed/);
  assert.match(acc.stdout, /AUTH_CACHE_CORRUPT/);
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  assert.equal((await cli(t, ['token'], env)).code, 0);
});

test('login: a declined sign-in is explained (exit 77); Ctrl-C cancels cleanly (exit 130)', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  let declined = false;
  const d = await cli(t, ['login', '--no-qr'], env, {
    onStdout: (all) => {
      const code = /Code\s+([A-Z0-9]{6,})/.exec(all)?.[1];
      if (code && !declined) {
        declined = true;
        void adminFor(sb).decline(code);
      }
    },
  });
  assert.equal(d.code, 77);
  assert.match(d.stderr, /AUTH_DEVICE_CODE_DECLINED/);
  assert.match(d.stderr, /smtp365 login/);

  let sent = false;
  const c = await cli(t, ['login', '--no-qr'], env, {
    onStdout: (all, child) => {
      if (/Code\s+[A-Z0-9]{6,}/.test(all) && !sent) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  assert.equal(c.code, 130);
  assert.match(c.stderr, /Sign-in cancelled; nothing was saved/);
  const acc = await cli(t, ['accounts', '--json'], env);
  assert.equal((JSON.parse(acc.stdout) as { accounts: Array<{ state: string }> }).accounts[0]!.state, 'empty');
});

test('login with a mistyped client id: the explanation, never an empty sign-in box', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb, { SMTP365_CLIENT_ID: '00000000-1111-2222-3333-444444444444' });
  const r = await cli(t, ['login', '--no-qr'], env);
  assert.equal(r.code, 77);
  assert.match(r.stderr, /AUTH_APP_NOT_FOUND/);
  assert.match(r.stderr, /step 7/);
  assert.doesNotMatch(r.stdout + r.stderr, /undefined|NaN/);
});

test('login: the identity service going away while waiting is a network error (exit 75), not the last "pending" answer', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  let closed = false;
  const r = await cli(t, ['login', '--no-qr'], env, {
    onStdout: (all) => {
      if (!closed && /Code\s+[A-Z0-9]{6,}/.test(all)) {
        closed = true;
        // Let at least one "authorization_pending" poll happen first.
        setTimeout(() => void sb.close(), 1500);
      }
    },
  });
  assert.equal(r.code, 75, r.stderr);
  assert.match(r.stderr, /AUTH_NETWORK/);
  assert.doesNotMatch(r.stderr, /pending/i);
});

test('app-only with an unreadable cache: token still works, warns once on stderr and rewrites the cache', async (t) => {
  const sb = await withSandbox(t);
  const env = await envFor(t, sb, { SMTP365_CLIENT_ID: sb.info.confidentialClient.clientId, SMTP365_CLIENT_SECRET: sb.info.confidentialClient.clientSecret, SMTP365_FLOW: 'client-secret' });
  assert.equal((await cli(t, ['token'], env)).code, 0);
  const file = path.join(env.SMTP365_HOME!, 'tokens', 'default.json');
  await fs.writeFile(file, '{ not json');
  const r = await cli(t, ['token'], env);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^eyJ/);
  assert.equal(r.stderr.match(/warning/g)?.length, 1, r.stderr);
  assert.match(r.stderr, /cannot be used: the file is damaged \(not valid JSON\); getting a new token and replacing it/);
  const again = await cli(t, ['token'], env);
  assert.equal(again.stderr, '', 'the cache was rewritten');
});

test('a damaged cache.key: token and login name the shared key file, restore or remove it; after removing it login works', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  const upn = sb.info.users[0]!.upn;
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  const keyFile = path.join(env.SMTP365_HOME!, 'cache.key');
  await fs.writeFile(keyFile, 'not a key\n', { mode: 0o600 });
  for (const args of [['token'], ['login', '--no-qr']]) {
    const r = await cli(t, args, env);
    assert.equal(r.code, 77, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, new RegExp(`The token cache key ${keyFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} is damaged`));
    assert.match(r.stderr, /every account under/);
    assert.match(r.stderr, /Restore .*cache\.key from a backup/);
    assert.match(r.stderr, /Or remove it \(rm .*cache\.key\)/);
    assert.doesNotMatch(r.stderr, /Other accounts are not affected/);
  }
  await fs.rm(keyFile);
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  assert.equal((await cli(t, ['token'], env)).code, 0);
});
