// One scenario per doctor check: the sandbox is broken at exactly that step
// (through its admin API, a scenario, or the account), and doctor must name
// the check, the guide step and the fix with the user's own values.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { rig, byId, statuses, tempDir } from './doctor-helpers.ts';
import { createTokenProvider } from '../src/auth/index.ts';
import { runDoctor, type CheckResult } from '../src/doctor/index.ts';
import { doctorCatalog } from '../src/doctor/catalog.ts';

// Every failure and warning these scenarios produce must be a row of docs/doctor.md's table
// (same check, same error code, same guide step): the documentation says what doctor prints.
const seen = new Map<string, CheckResult>();
/** A title with the user's values (addresses, ids, hosts, URLs) replaced, to compare with the documented example. */
const shape = (title: string) =>
  title
    .replace(/https?:\/\/\S+/g, '<v>')
    .replace(/[\w.+-]+@[\w.-]+/g, '<v>')
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi, '<v>')
    .replace(/(\d{1,3}\.){3}\d{1,3}|[a-z0-9-]+(\.[a-z0-9-]+)+\.(com|net|cn|us)/gi, '<v>')
    .replace(/:\d+/g, ':<port>');
after(() => {
  const catalog = doctorCatalog();
  for (const r of seen.values()) {
    const row = catalog.find((e) => e.check === r.number && e.explanation.code === r.code && (e.explanation.step ?? null) === r.step && shape(e.explanation.title) === shape(r.problem ?? ''));
    assert.ok(row, `check ${r.number} ${r.code} "${r.problem}" (${r.step}) is not in docs/doctor.md's table`);
  }
});

function only(results: CheckResult[], id: CheckResult['id'], status: CheckResult['status']): CheckResult {
  for (const x of results) if ((x.status === 'failed' || x.status === 'warning') && !x.timedOut) seen.set(`${x.number}:${x.code}:${x.problem}`, x);
  const r = byId(results, id);
  assert.equal(r.status, status, `${id}: ${r.detail}\n${statuses(results)}`);
  return r;
}

function skippedBecause(results: CheckResult[], ids: Array<CheckResult['id']>, failedNumber: number): void {
  for (const id of ids) {
    const r = only(results, id, 'skipped');
    assert.match(r.detail, new RegExp(`needs check ${failedNumber} `), `${id}: ${r.detail}`);
  }
}

test('1 configuration: a misspelt key is named with the file and the right key; everything else is skipped', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.yaml');
  await fs.writeFile(file, 'accounts:\n  work:\n    tenant: contoso.onmicrosoft.com\n    client_id: 5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e\n    user: a@contoso.com\n');
  const { results } = await runDoctor({ configPath: file, env: { HOME: dir, SMTP365_HOME: dir } });
  const r = only(results, 'config', 'failed');
  assert.equal(r.code, 'CONFIG_INVALID');
  assert.match(r.detail, /config\.yaml: unknown key "accounts\.work\.client_id" \(did you mean "clientId"\?\)/);
  assert.ok(r.fix.length > 0);
  skippedBecause(results, ['tenant', 'app', 'public-client', 'permissions', 'sign-in', 'token-claims', 'smtp-connection', 'smtp-auth', 'send-test'], 1);
});

test('1 configuration: no account at all points to setup, init and the environment variables', async (t) => {
  const dir = await tempDir(t);
  const { results, ok } = await runDoctor({ env: { HOME: dir, XDG_CONFIG_HOME: dir, SMTP365_HOME: dir } });
  assert.equal(ok, false);
  const r = only(results, 'config', 'failed');
  assert.equal(r.code, 'CONFIG_NOT_FOUND');
  assert.ok(r.fix.some((f) => f.includes('smtp365 setup')) && r.fix.some((f) => f.includes('smtp365 init')) && r.fix.some((f) => f.includes('SMTP365_TENANT_ID')));
});

test('2 tenant: an unknown tenant id fails with step 7; the SMTP connection is still checked', async (t) => {
  const r = await rig(t, { signIn: false });
  const results = await r.doctor({ use: { ...r.account, tenant: randomUUID() } });
  const x = only(results, 'tenant', 'failed');
  assert.equal(x.code, 'AUTH_TENANT_NOT_FOUND');
  assert.match(x.detail, /AADSTS90002/);
  assert.match(x.step ?? '', /step 7/);
  assert.match(x.portal ?? '', /Directory \(tenant\) ID/);
  skippedBecause(results, ['app', 'public-client', 'permissions', 'sign-in', 'token-claims', 'smtp-auth', 'send-test'], 2);
  only(results, 'smtp-connection', 'passed');
});

test('3 app: an unknown client id fails with step 7 (AADSTS700016)', async (t) => {
  const r = await rig(t, { signIn: false });
  const clientId = randomUUID();
  const results = await r.doctor({ use: { ...r.account, clientId } });
  only(results, 'tenant', 'passed');
  const x = only(results, 'app', 'failed');
  assert.equal(x.code, 'AUTH_APP_NOT_FOUND');
  assert.match(x.detail, /AADSTS700016/);
  assert.match(x.step ?? '', /step 7/);
  assert.match(x.problem ?? '', new RegExp(clientId));
  skippedBecause(results, ['public-client', 'permissions', 'sign-in', 'token-claims', 'smtp-auth'], 3);
});

test('4 public client flows off: step 10, the portal switch and the PowerShell', async (t) => {
  const r = await rig(t);
  await r.admin('PATCH', `/apps/${r.account.clientId}`, { isFallbackPublicClient: false });
  const results = await r.doctor();
  only(results, 'app', 'passed');
  const x = only(results, 'public-client', 'failed');
  assert.equal(x.code, 'AUTH_PUBLIC_CLIENT_DISABLED');
  assert.match(x.detail, /AADSTS7000218/);
  assert.match(x.step ?? '', /step 10/);
  assert.match(x.portal ?? '', /Allow public client flows › Yes/);
  assert.ok(x.powershell.some((p) => p.includes('-IsFallbackPublicClient')));
});

test('5 permissions: app-only without admin consent for SMTP.SendAsApp: steps 12–19', async (t) => {
  const r = await rig(t, { flow: 'client-secret' });
  await r.admin('PATCH', `/apps/${r.account.clientId}`, { adminConsent: false });
  const results = await r.doctor();
  only(results, 'app', 'passed');
  const x = only(results, 'permissions', 'failed');
  assert.equal(x.code, 'AUTH_CONSENT_REQUIRED');
  assert.match(x.step ?? '', /steps 12–19/);
  assert.match([x.portal, ...x.fix].join(' '), /SMTP\.SendAsApp|admin consent/);
});

test('6 sign-in: not signed in: the fix is smtp365 login for this account; claims and AUTH are skipped', async (t) => {
  const r = await rig(t, { signIn: false });
  const results = await r.doctor();
  only(results, 'public-client', 'passed');
  only(results, 'permissions', 'skipped');
  const x = only(results, 'sign-in', 'failed');
  assert.equal(x.code, 'AUTH_NOT_SIGNED_IN');
  assert.ok(x.fix.includes('Sign in: smtp365 login --account sandbox'), x.fix.join(' | '));
  skippedBecause(results, ['token-claims', 'smtp-auth', 'send-test'], 6);
  only(results, 'smtp-connection', 'passed');
});

test('7 claims: a token for the wrong resource (Graph) fails on its audience', async (t) => {
  const r = await rig(t, { signIn: false });
  const account = { ...r.account, name: 'graphy', smtpResource: 'https://graph.microsoft.com' };
  const provider = createTokenProvider(account, { home: r.home, env: r.env });
  await provider.signIn({ onDeviceCode: (dc) => void r.admin('POST', '/device-codes/approve', { userCode: dc.userCode, upn: account.user }) });
  const results = await r.doctor({ use: account });
  only(results, 'sign-in', 'passed');
  const x = only(results, 'token-claims', 'failed');
  assert.equal(x.code, 'SMTP_AUTH_FAILED');
  assert.match(x.problem ?? '', /https:\/\/graph\.microsoft\.com, not for Exchange Online SMTP/);
  assert.ok(x.fix.some((f) => f.includes('smtpResource')));
  skippedBecause(results, ['smtp-auth'], 7);
});

test('7+9 claims: user= is another user\'s mailbox without FullAccess: warning, then 5.7.3 with Add-MailboxPermission', async (t) => {
  const r = await rig(t);
  const account = { ...r.account, user: 'megan@contoso.onmicrosoft.com' };
  const results = await r.doctor({ use: account });
  const w = only(results, 'token-claims', 'warning');
  assert.match(w.detail, /upn alex@contoso\.onmicrosoft\.com; user=megan@contoso\.onmicrosoft\.com is another mailbox/);
  const x = only(results, 'smtp-auth', 'failed');
  assert.match(x.detail, /535 5\.7\.3/);
  assert.deepEqual(x.powershell, ['Add-MailboxPermission -Identity megan@contoso.onmicrosoft.com -User alex@contoso.onmicrosoft.com -AccessRights FullAccess -InheritanceType All']);
});

test('7+9 a shared mailbox the user has FullAccess on: a warning that names the right, and AUTH passes', async (t) => {
  const r = await rig(t);
  const results = await r.doctor({ use: { ...r.account, user: 'info@contoso.onmicrosoft.com' } });
  only(results, 'token-claims', 'warning');
  only(results, 'smtp-auth', 'passed');
  assert.equal(results.filter((x) => x.status === 'failed').length, 0, statuses(results));
});

test('8 SMTP connection: nothing listens on the port: a connection failure, AUTH skipped', async (t) => {
  const r = await rig(t);
  const port = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const results = await r.doctor({ use: { ...r.account, smtpPort: port } });
  const x = only(results, 'smtp-connection', 'failed');
  assert.equal(x.code, 'SMTP_CONNECTION');
  assert.match(x.detail, /ECONNREFUSED/);
  assert.match(x.problem ?? '', new RegExp(`127\\.0\\.0\\.1:${port}`));
  skippedBecause(results, ['smtp-auth', 'send-test'], 8);
});

test('8 SMTP connection: a server that stalls is reported as a timeout', async (t) => {
  const r = await rig(t);
  await r.admin('POST', '/faults', { stage: 'ehlo', delayMs: 20_000, times: 1 });
  const results = await r.doctor({ timeoutSeconds: 2 });
  const x = only(results, 'smtp-connection', 'failed');
  assert.equal(x.timedOut, true);
  assert.equal(x.code, 'TIMEOUT');
  assert.match(x.detail, /timed out after 2 s/);
  assert.ok(x.fix.some((f) => f.includes('--timeout')));
});

test('9 XOAUTH2: SMTP AUTH off for the mailbox vs. for the tenant are told apart, with Set-CASMailbox for this mailbox', async (t) => {
  const r = await rig(t);
  await r.admin('PATCH', `/mailboxes/${r.account.user}`, { smtpClientAuthenticationDisabled: true });
  let results = await r.doctor();
  let x = only(results, 'smtp-auth', 'failed');
  assert.equal(x.code, 'SMTP_AUTH_DISABLED_MAILBOX');
  assert.match(x.detail, /535 5\.7\.139 .*disabled for the Mailbox/);
  assert.deepEqual(x.powershell, [`Set-CASMailbox -Identity ${r.account.user} -SmtpClientAuthenticationDisabled $false`]);
  assert.match(x.step ?? '', /Enable SMTP AUTH for specific mailboxes/);
  assert.match(x.portal ?? '', /Authenticated SMTP/);

  // Back to "follow the tenant": the default tenant has SMTP AUTH off, as tenants made after 2020.
  await r.admin('PATCH', `/mailboxes/${r.account.user}`, { smtpClientAuthenticationDisabled: null });
  results = await r.doctor();
  x = only(results, 'smtp-auth', 'failed');
  assert.equal(x.code, 'SMTP_AUTH_DISABLED_TENANT');
  assert.match(x.detail, /disabled for the Tenant/);
  assert.deepEqual(x.powershell, [`Set-CASMailbox -Identity ${r.account.user} -SmtpClientAuthenticationDisabled $false`]);
});

test('9 XOAUTH2 app-only: no Exchange service principal: 5.7.3 with New-ServicePrincipal and Add-MailboxPermission', async (t) => {
  const r = await rig(t, { flow: 'client-secret' });
  await r.admin('DELETE', `/exchange-service-principals/${r.account.clientId}`);
  const results = await r.doctor();
  only(results, 'token-claims', 'passed');
  const x = only(results, 'smtp-auth', 'failed');
  assert.equal(x.code, 'SMTP_AUTH_FAILED');
  assert.match(x.powershell[0] ?? '', new RegExp(`^New-ServicePrincipal -AppId ${r.account.clientId} -ObjectId `));
  assert.match(x.powershell[1] ?? '', new RegExp(`^Add-MailboxPermission -Identity ${r.account.user} -User .* -AccessRights FullAccess$`));
});

test('6 sign-in: a refresh token idle for more than 90 days (AADSTS700082): sign in again', async (t) => {
  const r = await rig(t);
  await r.admin('POST', '/clock', { advanceSeconds: 91 * 86400 });
  const results = await r.doctor();
  const x = only(results, 'sign-in', 'failed');
  assert.equal(x.code, 'AUTH_SIGNIN_EXPIRED');
  assert.match(x.detail, /AADSTS700082/);
  assert.match(x.problem ?? '', /90 days/);
  assert.ok(x.fix.some((f) => f.includes('smtp365 login --account sandbox')), x.fix.join(' | '));
  skippedBecause(results, ['token-claims', 'smtp-auth'], 6);
});

test('5 permissions: delegated consent revoked after sign-in is found on the next refresh (AADSTS65001)', async (t) => {
  const r = await rig(t);
  await r.admin('PATCH', `/apps/${r.account.clientId}`, { adminConsent: false });
  const results = await r.doctor();
  const x = only(results, 'permissions', 'failed');
  assert.equal(x.code, 'AUTH_CONSENT_REQUIRED');
  assert.match(x.step ?? '', /steps 12–19/);
  assert.match(x.portal ?? '', /SMTP\.Send, openid, offline_access, User\.Read › Grant admin consent/);
});

test('10 send-test: From an address the mailbox may not send as: SendAs denied with Add-RecipientPermission; one it may: delivered', async (t) => {
  const r = await rig(t);
  let results = await r.doctor({ sendTest: 'megan@contoso.onmicrosoft.com', from: 'megan@contoso.onmicrosoft.com' });
  only(results, 'smtp-auth', 'passed');
  const x = only(results, 'send-test', 'failed');
  assert.equal(x.code, 'SMTP_SEND_AS_DENIED');
  assert.match(x.detail, /5\.7\.60|5\.2\.252/);
  assert.deepEqual(x.powershell, [`Add-RecipientPermission -Identity megan@contoso.onmicrosoft.com -Trustee ${r.account.user} -AccessRights SendAs -Confirm:$false`]);
  assert.equal(r.sb.messages.list().length, 0, 'a refused message is not delivered');

  results = await r.doctor({ sendTest: 'megan@contoso.onmicrosoft.com', from: 'info@contoso.onmicrosoft.com' });
  only(results, 'send-test', 'passed');
  const delivered = r.sb.messages.list();
  assert.equal(delivered.length, 1);
  assert.equal(delivered[0]!.from?.toLowerCase().includes('info@contoso.onmicrosoft.com'), true);
});
