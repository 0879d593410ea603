// Every sign-in flow against the sandbox over real sockets, refresh-token
// rotation, the encrypted cache on disk, and the account state.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { withSandbox, sandboxAccount, type Sandbox } from './helpers/sandbox.ts';
import { createTokenProvider, TokenStore } from '../src/auth/index.ts';
import type { Smtp365Error } from '../src/errors/error.ts';
import { adminFor, httpsRequest, decodeJwt } from './auth-sandbox-admin.ts';

async function home(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-auth-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function signInByDeviceCode(sb: Sandbox, provider: ReturnType<typeof createTokenProvider>, upn: string) {
  const admin = adminFor(sb);
  const prompts: Array<{ userCode: string; verificationUri: string }> = [];
  const status = await provider.signIn({
    onDeviceCode: (dc) => {
      prompts.push(dc);
      void admin.approve(dc.userCode, upn);
    },
  });
  return { status, prompts };
}

test('device code: prompt, approval, tokens for SMTP.Send, state, and the cache holds no token in clear', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const h = await home(t);
  const account = sandboxAccount(sb.info);
  const provider = createTokenProvider(account, { home: h });
  assert.equal((await provider.state()).state, 'empty');
  await assert.rejects(provider.getAccessToken(), (e: Smtp365Error) => e.code === 'AUTH_NOT_SIGNED_IN' && !!e.explanation?.fix.some((f) => f.includes('smtp365 login --account sandbox')));

  // While the sign-in waits for the person, another process sees the account as pending.
  const admin = adminFor(sb);
  const prompts: Array<{ userCode: string; verificationUri: string }> = [];
  const observer = createTokenProvider(account, { home: h });
  let seenPending = false;
  const status = await provider.signIn({
    onDeviceCode: (dc) => {
      prompts.push(dc);
      void (async () => {
        while ((await observer.state()).state !== 'pending') await new Promise((r) => setTimeout(r, 20));
        seenPending = true;
        await admin.approve(dc.userCode, account.user);
      })();
    },
  });
  assert.ok(seenPending);
  assert.equal(prompts.length, 1);
  assert.match(prompts[0]!.verificationUri, /^https:\/\/127\.0\.0\.1:\d+\/devicelogin$/);
  assert.equal(status.state, 'active');
  assert.equal(status.signedInAs, account.user);
  assert.ok(status.accessTokenExpiresOn && status.accessTokenExpiresOn.getTime() > Date.now() + 50 * 60_000);
  assert.ok(status.refreshTokenLastUsed && status.refreshTokenAgeDays === 0);

  const token = await provider.getAccessToken();
  const claims = decodeJwt(token.token);
  assert.equal(claims.aud, 'https://outlook.office.com');
  assert.match(String(claims.scp), /SMTP\.Send/);
  assert.equal(claims.upn, account.user);
  assert.equal(token.username, account.user);

  // The cache on disk: encrypted, 0600, nothing readable in it.
  const file = path.join(h, 'tokens', 'sandbox.json');
  const raw = await fs.readFile(file, 'utf8');
  const payload = await new TokenStore({ home: h, account: 'sandbox' }).read();
  const rt = Object.values((JSON.parse(payload!.msal) as { RefreshToken: Record<string, { secret: string }> }).RefreshToken)[0]!.secret;
  for (const secret of [token.token, rt, token.token.split('.')[1]!, account.user]) assert.ok(!raw.includes(secret), 'a token or the user name is readable in the cache file');
  if (process.platform !== 'win32') assert.equal((await fs.stat(file)).mode & 0o777, 0o600);

  // A second provider (another process, say) reads the same sign-in from disk without a network call.
  const again = createTokenProvider(account, { home: h });
  assert.equal((await again.getAccessToken()).token, token.token);

  assert.deepEqual(await provider.signOut(), { removed: true });
  assert.equal((await provider.state()).state, 'empty');
  await assert.rejects(createTokenProvider(account, { home: h }).getAccessToken(), (e: Smtp365Error) => e.code === 'AUTH_NOT_SIGNED_IN');
});

test('refresh ahead of expiry rotates the refresh token; the old one is dead (70008 if replayed)', async (t) => {
  // Strict rotation (Entra itself lets an earlier refresh token work on): the newest must be what was kept.
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1, identity: { refreshTokenReuse: false } });
  const h = await home(t);
  const account = sandboxAccount(sb.info);
  const provider = createTokenProvider(account, { home: h });
  await signInByDeviceCode(sb, provider, account.user);
  const store = new TokenStore({ home: h, account: account.name });
  const before = await store.read();
  const rtOf = (p: typeof before) => Object.values((JSON.parse(p!.msal) as { RefreshToken: Record<string, { secret: string }> }).RefreshToken)[0]!.secret;
  const first = await provider.getAccessToken();
  // Ask for more validity than the token has left: it must be renewed, not handed out.
  const remaining = Math.floor((first.expiresOn.getTime() - Date.now()) / 1000);
  const second = await provider.getAccessToken({ minValiditySeconds: remaining + 60 });
  assert.ok(second.token !== first.token, 'renewed');
  const after = await store.read();
  assert.ok(rtOf(after) !== rtOf(before), 'the rotated refresh token was saved');

  // Replaying the old refresh token at the token endpoint: refused.
  const body = new URLSearchParams({ grant_type: 'refresh_token', client_id: account.clientId, refresh_token: rtOf(before), scope: 'https://outlook.office.com/SMTP.Send offline_access' });
  const r = await httpsRequest(sb, 'POST', `${sb.info.authority}/${sb.info.tenantId}/oauth2/v2.0/token`, body.toString(), 'application/x-www-form-urlencoded');
  assert.equal(r.status, 400);
  assert.deepEqual((r.json as { error_codes: number[] }).error_codes, [70008]);

  // A backup of the old cache restored (or a second machine with a copy): AADSTS70008, explained.
  await store.withLock(() => store.write(before!));
  const restored = createTokenProvider(account, { home: h });
  await assert.rejects(restored.getAccessToken({ forceRefresh: true }), (e: Smtp365Error) => {
    assert.equal(e.code, 'AUTH_SIGNIN_EXPIRED');
    assert.equal(e.explanation?.aadsts, 70008);
    assert.ok(e.explanation?.fix.some((f) => f.includes('smtp365 login')));
    return true;
  });
  const st = await restored.state();
  assert.equal(st.state, 'failed');
  assert.equal(st.lastError?.code, 'AUTH_SIGNIN_EXPIRED');
  assert.equal(st.lastError?.aadsts, 70008);
});

test('app-only with a client secret: a token with SMTP.SendAsApp, no sign-in needed', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const account = sandboxAccount(sb.info, { flow: 'client-secret', name: 'daemon' });
  const provider = createTokenProvider(account, { home: h });
  const st0 = await provider.state();
  assert.equal(st0.state, 'empty');
  assert.equal(st0.appOnly, true);
  const token = await provider.getAccessToken();
  const claims = decodeJwt(token.token);
  assert.equal(claims.aud, 'https://outlook.office365.com');
  assert.deepEqual(claims.roles, ['SMTP.SendAsApp']);
  assert.equal(token.username, undefined);
  const status = await provider.signIn();
  assert.equal(status.state, 'active');
  // Cached across processes: a second provider gets the same token from the encrypted file.
  assert.equal((await createTokenProvider(account, { home: h }).getAccessToken()).token, (await provider.getAccessToken()).token);
  const raw = await fs.readFile(path.join(h, 'tokens', 'daemon.json'), 'utf8');
  assert.ok(!raw.includes(token.token.split('.')[1]!));
});

test('app-only with an unreadable token cache: a new token replaces it (one warning), and login works too', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const account = sandboxAccount(sb.info, { flow: 'client-secret', name: 'daemon' });
  await createTokenProvider(account, { home: h }).getAccessToken();
  const file = path.join(h, 'tokens', 'daemon.json');
  const damage = async () => fs.writeFile(file, (await fs.readFile(file, 'utf8')).replace(/"data":"(.)/, (_m, c: string) => `"data":"${c === 'A' ? 'B' : 'A'}`));
  await damage();
  const events: Array<{ type: string; level: string }> = [];
  const provider = createTokenProvider(account, { home: h, logger: (e) => events.push(e) });
  assert.deepEqual(decodeJwt((await provider.getAccessToken()).token).roles, ['SMTP.SendAsApp']);
  assert.deepEqual(events.filter((e) => e.type === 'cache-corrupt').map((e) => e.level), ['warn']);
  assert.equal((await provider.state()).state, 'active', 'the cache was rewritten');
  await provider.getAccessToken({ forceRefresh: true });
  assert.equal(events.filter((e) => e.type === 'cache-corrupt').length, 1, 'warned once');
  // smtp365 login --account daemon: the way out the error names must work.
  await damage();
  const status = await createTokenProvider(account, { home: h }).signIn();
  assert.equal(status.state, 'active');
});

test('app-only with a certificate (assertion signed with the private key)', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const { certPem, keyPem, sha1, sha256 } = await selfSignedCertificate();
  const app = sb.directory.app(sb.info.confidentialClient.clientId)!;
  sb.directory.patchApp(app, { certificates: [...app.certificates, { thumbprintSha1: sha1, thumbprintSha256: sha256, pem: certPem }] });
  const certFile = path.join(h, 'app.pem');
  const keyFile = path.join(h, 'app.key');
  await fs.writeFile(certFile, certPem);
  await fs.writeFile(keyFile, keyPem, { mode: 0o600 });
  const account = { ...sandboxAccount(sb.info, { flow: 'client-certificate', name: 'cert' }), certificatePath: certFile, privateKeyPath: keyFile };
  const token = await createTokenProvider(account, { home: h }).getAccessToken();
  assert.deepEqual(decodeJwt(token.token).roles, ['SMTP.SendAsApp']);
  // A certificate the app does not know: AADSTS700027, explained.
  const other = await selfSignedCertificate();
  await fs.writeFile(certFile, other.certPem);
  await fs.writeFile(keyFile, other.keyPem);
  await assert.rejects(createTokenProvider(account, { home: await home(t) }).getAccessToken(), (e: Smtp365Error) => e.code === 'AUTH_BAD_CLIENT_CREDENTIALS' && e.explanation?.aadsts === 700027);
});

test('password flow (deprecated): works for a user without MFA; 50076 for MFA, 50126 for a wrong password', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const account = sandboxAccount(sb.info, { flow: 'password', name: 'legacy' });
  const provider = createTokenProvider(account, { home: h });
  const token = await provider.getAccessToken();
  assert.equal(decodeJwt(token.token).upn, account.user);
  assert.equal((await provider.state()).state, 'active');

  const mfaUser = sb.info.users[1]!;
  assert.ok(sb.directory.user(mfaUser.upn)?.mfaRequired, 'the default scenario has an MFA user');
  const mfa = sandboxAccount(sb.info, { flow: 'password', name: 'mfa', user: mfaUser.upn });
  await assert.rejects(createTokenProvider(mfa, { home: h }).signIn(), (e: Smtp365Error) => {
    assert.equal(e.code, 'AUTH_MFA_REQUIRED');
    assert.equal(e.explanation?.aadsts, 50076);
    assert.ok(e.explanation?.fix.some((f) => f.includes('device code')), 'says to use the device code instead');
    return true;
  });
  const wrong = { ...account, name: 'wrong', password: 'not-the-password' };
  await assert.rejects(createTokenProvider(wrong, { home: h }).getAccessToken(), (e: Smtp365Error) => e.code === 'AUTH_BAD_CREDENTIALS' && e.explanation?.aadsts === 50126 && !e.message.includes('not-the-password'));
});

test('browser: auth code + PKCE through a loopback redirect', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const account = sandboxAccount(sb.info, { flow: 'browser', name: 'web' });
  const provider = createTokenProvider(account, { home: h });
  let opened = '';
  // If the simulated person fails, stop the sign-in instead of waiting for ever.
  const ac = new AbortController();
  let personError: unknown;
  const status = await provider.signIn({
    signal: ac.signal,
    openBrowser: async (url) => {
      opened = url;
      // What a person does in the browser: the sign-in page, the password, "Continue".
      void (async () => {
        const page = await httpsRequest(sb, 'GET', url);
        const txn = /name="txn" value="([^"]+)"/.exec(page.text)?.[1];
        assert.ok(txn, 'sign-in page with a transaction');
        const user = sb.info.users[0]!;
        const pw = await httpsRequest(sb, 'POST', `${sb.info.authority}/login`, new URLSearchParams({ txn, step: 'password', login: user.upn, passwd: user.password }).toString(), 'application/x-www-form-urlencoded');
        assert.equal(pw.status, 200);
        const done = await httpsRequest(sb, 'POST', `${sb.info.authority}/login`, new URLSearchParams({ txn, step: 'confirm', action: 'continue' }).toString(), 'application/x-www-form-urlencoded');
        assert.equal(done.status, 200);
        // response_mode=form_post: the page posts the code to smtp365's loopback listener, as the browser would.
        const action = /<form method="post" action="([^"]+)"/.exec(done.text)?.[1];
        assert.match(action ?? '', /^http:\/\/localhost:\d+\/?$/);
        const fields = new URLSearchParams([...done.text.matchAll(/name="([^"]+)" value="([^"]*)"/g)].map((m): [string, string] => [m[1]!, m[2]!.replace(/&amp;/g, '&')]));
        assert.ok(fields.get('code'));
        const u = new URL(action!);
        await new Promise<void>((resolve, reject) => {
          const form = fields.toString();
          const req = http.request({ host: '127.0.0.1', port: u.port, path: '/', method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(form) } }, (res) => {
            res.resume();
            res.on('end', resolve);
          });
          req.on('error', reject);
          req.end(form);
        });
      })().catch((e: unknown) => {
        personError = e;
        ac.abort();
      });
    },
  }).catch((e: unknown) => {
    throw personError ?? e;
  });
  const q = new URL(opened).searchParams;
  assert.equal(q.get('code_challenge_method'), 'S256');
  assert.ok(q.get('code_challenge'));
  assert.equal(q.get('login_hint'), account.user);
  assert.equal(status.state, 'active');
  assert.equal(status.signedInAs, account.user);
  assert.match(String(decodeJwt((await provider.getAccessToken()).token).scp), /SMTP\.Send/);
});

// ------------------------------------------------------------------ helpers

async function selfSignedCertificate(): Promise<{ certPem: string; keyPem: string; sha1: string; sha256: string }> {
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(crypto.webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const keys = (await crypto.webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as crypto.webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: crypto.randomBytes(8).toString('hex'),
    name: 'CN=smtp365 test app',
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
    keys,
    signingAlgorithm: alg,
  });
  const der = Buffer.from(cert.rawData);
  const pkcs8 = Buffer.from(await crypto.webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END PRIVATE KEY-----\n`.replace(/\n\n/g, '\n');
  return {
    certPem: cert.toString('pem'),
    keyPem,
    sha1: crypto.createHash('sha1').update(der).digest('base64url'),
    sha256: crypto.createHash('sha256').update(der).digest('base64url'),
  };
}

test('browser: a sign-in nobody finishes is cancelled cleanly (the loopback listener is released)', async (t) => {
  const sb = await withSandbox(t);
  const provider = createTokenProvider(sandboxAccount(sb.info, { flow: 'browser', name: 'web' }), { home: await home(t) });
  const ac = new AbortController();
  await assert.rejects(
    provider.signIn({ signal: ac.signal, openBrowser: () => void setImmediate(() => ac.abort()) }),
    (e: Smtp365Error) => e.code === 'AUTH_CANCELLED',
  );
  await assert.rejects(provider.signIn({ timeoutMs: 50, openBrowser: () => undefined }), (e: Smtp365Error) => e.code === 'AUTH_CANCELLED' && /not finished in time/.test(e.message));
  assert.equal((await provider.state()).state, 'empty');
});
