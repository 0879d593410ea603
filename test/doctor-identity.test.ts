// One scenario per doctor check, checks 1–6 (configuration and identity): the
// sandbox is broken at exactly that step (through its admin API, a scenario,
// or the account), and doctor must name the check, the guide step and the fix
// with the user's own values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { rig, tempDir, only, skippedBecause, checkResultsAgainstDocs } from './doctor-helpers.ts';
import tls from 'node:tls';
import { runDoctor } from '../src/doctor/index.ts';
import { signInAdmin } from '../src/setup/admin-signin.ts';
import { GRAPH_CLI_CLIENT_ID } from '../src/setup/permissions.ts';
import { createSelfSignedCertificate } from '../src/setup/certificate.ts';

checkResultsAgainstDocs();

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

test('1 configuration: several accounts and no default: name one', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'config.yaml');
  const acct = (u: string) => `    tenant: contoso.onmicrosoft.com\n    clientId: 5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e\n    user: ${u}\n`;
  await fs.writeFile(file, `accounts:\n  a:\n${acct('a@contoso.com')}  b:\n${acct('b@contoso.com')}`);
  const { results } = await runDoctor({ configPath: file, env: { HOME: dir, SMTP365_HOME: dir } });
  const r = only(results, 'config', 'failed');
  assert.equal(r.problem, 'Several accounts are configured and none is the default');
  assert.ok(r.fix[0]!.includes('--account NAME'));
});

test('5 permissions read from Graph (with an administrator\'s token): a permission not listed, then consent missing', async (t) => {
  const r = await rig(t, { signIn: false });
  const session = await signInAdmin({
    authorityHost: r.sb.info.authority,
    tenant: r.sb.info.tenantId,
    clientId: GRAPH_CLI_CLIENT_ID,
    graphResource: 'https://graph.microsoft.com',
    caFile: r.sb.info.caFile,
    onDeviceCode: (dc) => void r.admin('POST', '/device-codes/approve', { userCode: dc.userCode, upn: 'alex@contoso.onmicrosoft.com' }),
  });
  const graph = { endpoint: r.sb.info.graph, token: session.token, ca: [...tls.rootCertificates, await fs.readFile(r.sb.info.caFile, 'utf8')] };

  await r.admin('PATCH', `/apps/${r.account.clientId}`, { delegatedPermissions: ['SMTP.Send', 'openid', 'offline_access'] });
  let results = await r.doctor({ graph });
  let x = only(results, 'permissions', 'failed');
  assert.match(x.detail, /^read from Graph: the app registration does not list User\.Read$/);
  assert.match(x.step ?? '', /steps 12–19/);

  await r.admin('PATCH', `/apps/${r.account.clientId}`, { delegatedPermissions: ['SMTP.Send', 'openid', 'offline_access', 'User.Read'], adminConsent: false });
  results = await r.doctor({ graph });
  x = only(results, 'permissions', 'warning');
  assert.match(x.detail, /no admin consent for SMTP\.Send, offline_access, openid, User\.Read/);
  assert.match(x.portal ?? '', /Grant admin consent/);
  assert.ok(!JSON.stringify(results).includes(session.token.slice(0, 40)), 'the Graph token is never in the results');
});

test('3 app (app-only): a token endpoint answering 503 is "temporarily unavailable", not a network to fix', async (t) => {
  const r = await rig(t, { flow: 'client-secret' });
  await r.admin('POST', '/faults', { stage: 'token', httpStatus: 503, times: null });
  const results = await r.doctor();
  const x = only(results, 'app', 'failed');
  assert.match(x.problem ?? '', /temporarily unavailable/i, JSON.stringify(x));
  assert.doesNotMatch(`${x.problem} ${x.cause ?? ''} ${x.fix.join(' ')}`, /could not be reached|firewall|DNS/i);
});

test('6 sign-in (app-only): an expired client secret (AADSTS7000222) names the secret and how to make a new one', async (t) => {
  const r = await rig(t, { flow: 'client-secret' });
  await r.admin('PATCH', `/apps/${r.account.clientId}`, { secrets: [{ value: r.account.clientSecret!, endDateTime: new Date(Date.now() - 86_400_000).toISOString() }] });
  const results = await r.doctor();
  const x = only(results, 'sign-in', 'failed');
  assert.equal(x.code, 'AUTH_BAD_CLIENT_CREDENTIALS');
  assert.match(x.detail, /AADSTS7000222/);
  assert.match(x.problem ?? '', /client secret has expired/);
  assert.ok(x.fix.some((f) => f.includes('smtp365 setup --app-only --account sandbox')), x.fix.join(' | '));
  assert.match(x.portal ?? '', /Certificates & secrets › New client secret/);
  assert.doesNotMatch(x.fix.join(' '), /run smtp365 doctor for a step-by-step check/);
});

test('6 sign-in: a disabled user (AADSTS50057) is told to have the account enabled', async (t) => {
  const r = await rig(t);
  await r.admin('PATCH', `/users/${r.account.user}`, { accountEnabled: false });
  const results = await r.doctor();
  const x = only(results, 'sign-in', 'failed');
  assert.equal(x.code, 'AUTH_USER_DISABLED');
  assert.match(x.detail, /AADSTS50057/);
  assert.match(x.problem ?? '', /is disabled/);
  assert.ok(x.powershell.some((p) => p.includes(`Update-MgUser -UserId ${r.account.user} -AccountEnabled:$true`)), x.powershell.join(' | '));
});

test('6 sign-in (certificate): a clock off by an hour (AADSTS700024) is told to fix the clock', async (t) => {
  const r = await rig(t, { flow: 'client-certificate' });
  const cert = await createSelfSignedCertificate('smtp365 doctor test');
  await r.admin('PATCH', `/apps/${r.account.clientId}`, { certificates: [cert.certPem] });
  const certificatePath = path.join(r.home, 'app.pem');
  const privateKeyPath = path.join(r.home, 'app.key');
  await fs.writeFile(certificatePath, cert.certPem);
  await fs.writeFile(privateKeyPath, cert.keyPem, { mode: 0o600 });
  await r.admin('POST', '/clock', { advanceSeconds: 3600 });
  const results = await r.doctor({ use: { ...r.account, certificatePath, privateKeyPath } });
  const x = only(results, 'sign-in', 'failed');
  assert.match(x.detail, /AADSTS700024/);
  assert.match(x.problem ?? '', /clock is wrong/);
  assert.ok(x.fix.some((f) => f.includes('timedatectl set-ntp true')), x.fix.join(' | '));
});
