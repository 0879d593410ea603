// Every identity error a setup hits (reference §5), reached through sandbox
// state over real sockets, must come out as the right Smtp365Error code with
// the explanation and fix — never a raw MSAL error.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { withSandbox, sandboxAccount, type Sandbox } from './helpers/sandbox.ts';
import { createTokenProvider, startKeepAlive, type KeepAliveEvent } from '../src/auth/index.ts';
import type { Account } from '../src/config/account.ts';
import type { ErrorCode } from '../src/errors/codes.ts';
import type { Smtp365Error } from '../src/errors/error.ts';
import { adminFor } from './auth-sandbox-admin.ts';

const DAY = 86_400;

async function home(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-auth-err-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Asserts the error: our code, the AADSTS code, a fix, and nothing secret or raw in the message. */
function expectError(code: ErrorCode, aadsts?: number, fixIncludes?: string | RegExp) {
  return (e: Smtp365Error) => {
    assert.equal(e.name, 'Smtp365Error', String(e));
    assert.equal(e.code, code, `${e.code}: ${e.message}`);
    if (aadsts !== undefined) assert.equal(e.explanation?.aadsts, aadsts, e.message);
    assert.ok(e.explanation, 'has an explanation');
    assert.ok(e.explanation.fix.length > 0);
    if (fixIncludes) {
      const all = [e.explanation.title, e.explanation.cause, e.explanation.step ?? '', ...e.explanation.fix, e.explanation.portal ?? ''].join('\n');
      if (typeof fixIncludes === 'string') assert.ok(all.includes(fixIncludes), `explanation lacks ${fixIncludes}:\n${all}`);
      else assert.match(all, fixIncludes);
    }
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(e.message), 'no token in the message');
    return true;
  };
}

async function signedIn(t: TestContext, sb: Sandbox, account: Account = sandboxAccount(sb.info)) {
  const h = await home(t);
  const provider = createTokenProvider(account, { home: h });
  const admin = adminFor(sb);
  await provider.signIn({ onDeviceCode: (dc) => void admin.approve(dc.userCode, account.user) });
  return { provider, home: h, admin };
}

test('90002 unknown tenant and 700016 unknown app', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const h = await home(t);
  const badTenant = { ...sandboxAccount(sb.info), tenant: 'nosuchtenant.onmicrosoft.com' };
  await assert.rejects(createTokenProvider(badTenant, { home: h }).signIn(), expectError('AUTH_TENANT_NOT_FOUND', 90002, 'step 7'));
  const badApp = { ...sandboxAccount(sb.info), clientId: crypto.randomUUID() };
  await assert.rejects(createTokenProvider(badApp, { home: h }).signIn(), expectError('AUTH_APP_NOT_FOUND', 700016, 'Application (client) ID'));
});

test('7000218 public client flows off, 700025 secret sent for a public client', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const h = await home(t);
  const admin = adminFor(sb);
  await admin.patchApp(sb.info.publicClientId, { isFallbackPublicClient: false });
  const account = sandboxAccount(sb.info);
  await assert.rejects(
    createTokenProvider(account, { home: h }).signIn({ onDeviceCode: (dc) => void admin.approve(dc.userCode, account.user) }),
    expectError('AUTH_PUBLIC_CLIENT_DISABLED', 7000218, 'step 10'),
  );
  await admin.patchApp(sb.info.publicClientId, { isFallbackPublicClient: true });
  const withSecret: Account = { ...account, name: 'confused', flow: 'client-secret', clientSecret: 'a-secret-for-a-public-app' };
  await assert.rejects(createTokenProvider(withSecret, { home: h }).getAccessToken(), expectError('AUTH_PUBLIC_CLIENT_SECRET', 700025));
});

test('65001 consent missing', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const h = await home(t);
  const admin = adminFor(sb);
  await admin.revokeConsent(sb.info.publicClientId);
  const account = sandboxAccount(sb.info);
  await assert.rejects(
    createTokenProvider(account, { home: h }).signIn({ onDeviceCode: (dc) => void admin.approve(dc.userCode, account.user) }),
    expectError('AUTH_CONSENT_REQUIRED', 65001, 'steps 12–19'),
  );
});

test('50076 MFA on the password flow is refused politely, 50126 wrong password', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const mfaUser = sb.info.users.find((u) => sb.directory.user(u.upn)?.mfaRequired)!;
  const mfa = sandboxAccount(sb.info, { flow: 'password', user: mfaUser.upn });
  await assert.rejects(createTokenProvider(mfa, { home: h }).getAccessToken(), expectError('AUTH_MFA_REQUIRED', 50076, /device code/));
  const wrong = { ...sandboxAccount(sb.info, { flow: 'password' }), password: 'Wrong-Password-1' };
  await assert.rejects(createTokenProvider(wrong, { home: h }).signIn(), expectError('AUTH_BAD_CREDENTIALS', 50126));
});

test('device code declined and expired', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const h = await home(t);
  const admin = adminFor(sb);
  const provider = createTokenProvider(sandboxAccount(sb.info), { home: h });
  await assert.rejects(provider.signIn({ onDeviceCode: (dc) => void admin.decline(dc.userCode) }), expectError('AUTH_DEVICE_CODE_DECLINED', undefined, 'smtp365 login'));
  // The person never shows up; 16 minutes pass at the identity service.
  await assert.rejects(provider.signIn({ onDeviceCode: () => void admin.advanceClock(16 * 60) }), expectError('AUTH_DEVICE_CODE_EXPIRED', undefined, /15 minutes/));
  assert.equal((await provider.state()).state, 'empty');
});

test('device code cancelled (Ctrl-C): AUTH_CANCELLED at once, nothing saved', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const provider = createTokenProvider(sandboxAccount(sb.info), { home: await home(t) });
  const ac = new AbortController();
  await assert.rejects(provider.signIn({ signal: ac.signal, onDeviceCode: () => ac.abort() }), expectError('AUTH_CANCELLED'));
  assert.equal((await provider.state()).state, 'empty');
});

test('700082: refresh token idle for 91 days; the state says failed with the reason', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const { provider, admin } = await signedIn(t, sb);
  await admin.advanceClock(91 * DAY);
  await assert.rejects(provider.getAccessToken({ forceRefresh: true }), expectError('AUTH_SIGNIN_EXPIRED', 700082, 'smtp365 login --account sandbox'));
  const st = await provider.state();
  assert.equal(st.state, 'failed');
  assert.equal(st.lastError?.aadsts, 700082);
  assert.equal(st.lastError?.transient, false);
  // Asking again does not pretend: still the same explanation, without the network.
  await assert.rejects(provider.getAccessToken({ forceRefresh: true }), expectError('AUTH_SIGNIN_EXPIRED', 700082));
});

test('70043 sign-in frequency and 50173 revoked sessions', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const a = await signedIn(t, sb);
  await a.admin.patchTenant({ signInFrequencySeconds: 3600 });
  await a.admin.advanceClock(2 * 3600);
  await assert.rejects(a.provider.getAccessToken({ forceRefresh: true }), expectError('AUTH_SIGNIN_EXPIRED', 70043, /Conditional Access/));
  await a.admin.patchTenant({ signInFrequencySeconds: null });

  const b = await signedIn(t, sb);
  await b.admin.advanceClock(60);
  await b.admin.patchUser(sb.info.users[0]!.upn, { revokeSessions: true });
  await assert.rejects(b.provider.getAccessToken({ forceRefresh: true }), expectError('AUTH_SIGNIN_EXPIRED', 50173, 'smtp365 login'));
  // The access token issued before still works until it expires (Microsoft cannot take it back): it is used,
  // and using it does not make the account look healthy again.
  const still = await b.provider.getAccessToken();
  assert.ok(still.expiresOn.getTime() > Date.now());
  const st = await b.provider.state();
  assert.equal(st.state, 'failed');
  assert.equal(st.lastError?.aadsts, 50173);
});

test('53003 blocked by Conditional Access', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const upn = sb.info.users[0]!.upn;
  await adminFor(sb).patchTenant({ conditionalAccessBlockedUsers: [upn] });
  await assert.rejects(signedIn(t, sb), expectError('AUTH_BLOCKED_BY_POLICY', 53003));
});

test('network: nothing listening is transient AUTH_NETWORK; an untrusted CA says to set caFile', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const down = { ...sandboxAccount(sb.info, { flow: 'client-secret' }), authorityHost: `https://127.0.0.1:${port}` };
  await assert.rejects(createTokenProvider(down, { home: h }).getAccessToken(), (e: Smtp365Error) => {
    expectError('AUTH_NETWORK')(e);
    assert.equal(e.transient, true);
    return true;
  });
  const { caFile: _ca, ...noCa } = sandboxAccount(sb.info, { flow: 'client-secret' });
  await assert.rejects(createTokenProvider(noCa, { home: h }).getAccessToken(), (e: Smtp365Error) => {
    expectError('AUTH_NETWORK', undefined, 'caFile')(e);
    assert.equal(e.transient, false);
    return true;
  });
});

test('identity service errors 503: transient; the keep-alive retries with backoff and recovers', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const { provider } = await signedIn(t, sb);
  sb.faults.add({ stage: 'token', httpStatus: 503, body: { error: 'temporarily_unavailable', error_description: 'AADSTS90033: A transient error has occurred. Please try again.' }, times: 2 });
  await assert.rejects(provider.getAccessToken({ forceRefresh: true }), (e: Smtp365Error) => e.transient === true);
  const events: KeepAliveEvent[] = [];
  const done = new Promise<void>((resolve) => {
    const ka = startKeepAlive(provider, {
      intervalMs: 60_000,
      refreshEveryMs: 0,
      minBackoffMs: 20,
      onEvent: (e) => {
        events.push(e);
        if (e.type === 'recovered' || events.length > 10) {
          ka.stop();
          resolve();
        }
      },
    });
    t.after(() => ka.stop());
  });
  await done;
  assert.deepEqual(events.map((e) => e.type), ['retrying', 'recovered', 'refreshed'].slice(0, events.length));
  assert.equal(events[0]!.error?.transient, true);
  assert.ok(events[1]!.expiresOn && events[1]!.expiresOn.getTime() > Date.now());
  assert.equal((await provider.state()).state, 'active');
});

test('keep-alive: a revoked grant is reported at once as failed, with the explanation', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const { provider, admin } = await signedIn(t, sb);
  await admin.advanceClock(60);
  await admin.patchUser(sb.info.users[0]!.upn, { revokeSessions: true });
  const ev = await new Promise<KeepAliveEvent>((resolve) => {
    const ka = startKeepAlive(provider, {
      intervalMs: 60_000,
      refreshEveryMs: 0,
      onEvent: (e) => {
        if (e.type === 'failed' || e.type === 'refreshed') {
          ka.stop();
          resolve(e);
        }
      },
    });
    t.after(() => ka.stop());
  });
  assert.equal(ev.type, 'failed');
  assert.equal(ev.error?.code, 'AUTH_SIGNIN_EXPIRED');
  assert.equal(ev.error?.explanation?.aadsts, 50173);
  assert.equal(ev.status?.state, 'failed');
});

test('keep-alive: nothing to do right after a sign-in (no refresh); due after refreshEveryMs', async (t) => {
  const requests: string[] = [];
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1, quiet: false, log: (l) => requests.push(l) });
  const { provider } = await signedIn(t, sb);
  const before = requests.filter((l) => /token 200$/.test(l)).length;
  const next = (refreshEveryMs: number) =>
    new Promise<KeepAliveEvent>((resolve) => {
      const ka = startKeepAlive(provider, {
        intervalMs: 60_000,
        refreshEveryMs,
        onEvent: (e) => {
          ka.stop();
          resolve(e);
        },
      });
      t.after(() => ka.stop());
    });
  const idle = await next(86_400_000);
  assert.equal(idle.type, 'skipped');
  assert.equal(requests.filter((l) => /token 200$/.test(l)).length, before, 'no refresh when the last one is recent');
  const due = await next(0);
  assert.equal(due.type, 'refreshed');
  assert.equal(requests.filter((l) => /token 200$/.test(l)).length, before + 1);
});

test('password flow: a refresh token refused for good (revoked sessions) is replaced by signing in again with the configured password; a password refused once is not tried again by itself', async (t) => {
  const sb = await withSandbox(t);
  const h = await home(t);
  const account = sandboxAccount(sb.info, { flow: 'password' });
  const provider = createTokenProvider(account, { home: h });
  const first = await provider.getAccessToken();
  await adminFor(sb).patchUser(account.user, { revokeSessions: true });
  const again = await provider.getAccessToken({ forceRefresh: true });
  assert.notEqual(again.token, first.token);
  const st = await provider.state();
  assert.equal(st.state, 'active');
  assert.equal(st.lastError, undefined);
  // A wrong password is still a failure, explained as such.
  await adminFor(sb).patchUser(account.user, { password: 'Changed-Pass-9' });
  await assert.rejects(provider.getAccessToken({ forceRefresh: true }), (e: Smtp365Error) => e.explanation?.aadsts === 50126);
  // Not tried again by itself (each wrong try counts toward Entra's smart lockout): even once the configured
  // password is right again at Microsoft, nothing tries it until a person does (login) or the configuration changes.
  await adminFor(sb).patchUser(account.user, { password: account.password });
  for (let i = 0; i < 3; i++) await assert.rejects(createTokenProvider(account, { home: h }).getAccessToken({ forceRefresh: true }), (e: Smtp365Error) => e.explanation?.aadsts === 50126);
  assert.equal((await provider.signIn()).state, 'active', 'smtp365 login tries it');
  await adminFor(sb).patchUser(account.user, { password: 'Changed-Pass-9' });
  await assert.rejects(provider.getAccessToken({ forceRefresh: true }), (e: Smtp365Error) => e.explanation?.aadsts === 50126);
  // The configuration now holds the new password: tried, and it works.
  const fixed = createTokenProvider({ ...account, password: 'Changed-Pass-9' }, { home: h });
  assert.ok((await fixed.getAccessToken({ forceRefresh: true })).token);
  assert.equal((await fixed.state()).state, 'active');
});
