// smtp365 setup against the sandbox's Graph: an administrator approves the
// device code, setup creates the app, its service principal and the consent,
// writes the account; the user then signs in and doctor passes. Run twice, it
// reuses the app. App-only: the printed PowerShell, applied through the admin
// API, is exactly what makes sending work.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { withSandbox, type Sandbox } from './helpers/sandbox.ts';
import { adminClient, tempDir, statuses } from './doctor-helpers.ts';
import { runSetup, type SetupOptions } from '../src/setup/index.ts';
import { createSelfSignedCertificate } from '../src/setup/certificate.ts';
import { resolveAccount } from '../src/config/load.ts';
import { createTokenProvider } from '../src/auth/index.ts';
import { runDoctor } from '../src/doctor/index.ts';
import type { Smtp365Error } from '../src/errors/error.ts';

const ADMIN = 'alex@contoso.onmicrosoft.com';

async function setupOptions(sb: Sandbox, configPath: string, extra: Partial<SetupOptions> = {}): Promise<SetupOptions> {
  const admin = await adminClient(sb);
  // Token state of setup's doctor run stays in the test's directory, never in the real home.
  const home = path.join(path.dirname(configPath), 'home');
  return {
    tenant: sb.info.tenantId,
    authority: sb.info.authority,
    graphEndpoint: sb.info.graph,
    smtpHost: sb.info.smtp.host,
    smtpPort: sb.info.smtp.port,
    caFile: sb.info.caFile,
    configPath,
    appName: 'smtp365 e2e & co',
    env: { HOME: home, SMTP365_HOME: home },
    onDeviceCode: (dc) => void admin('POST', '/device-codes/approve', { userCode: dc.userCode, upn: ADMIN }),
    ...extra,
  };
}

async function appsNamed(sb: Sandbox, name: string): Promise<Array<{ appId: string }>> {
  const admin = await adminClient(sb);
  const all = (await admin('GET', '/apps')) as { apps: Array<{ appId: string; displayName: string }> };
  return all.apps.filter((a) => a.displayName === name);
}

test('setup (delegated) end to end: app, consent, config; then login, doctor and a message; a second run reuses the app', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'smtp365', 'config.yaml');
  const steps: string[] = [];
  const first = await runSetup({ ...(await setupOptions(sb, configPath)), doctor: true, onStep: (s) => steps.push(`${s.title}:${s.status}`) });

  assert.equal(first.app.created, true);
  assert.equal(first.servicePrincipal.created, true);
  assert.equal(first.consent.granted, true);
  assert.equal(first.consent.problem, null);
  assert.equal(first.tenantId, sb.info.tenantId);
  assert.equal(first.admin, ADMIN);
  assert.equal(first.user, ADMIN, 'without --user the account sends as the administrator');
  assert.deepEqual(steps, ['Administrator sign-in:done', 'App registration:done', 'Service principal:done', 'Admin consent:done', 'Configuration:done']);
  assert.deepEqual(first.powershell, [`Connect-ExchangeOnline -UserPrincipalName ${ADMIN}`, `Set-CASMailbox -Identity ${ADMIN} -SmtpClientAuthenticationDisabled $false`]);
  assert.deepEqual(
    first.requests.map((r) => `${r.method} ${r.path.split('?')[0]}`),
    ["GET /servicePrincipals(appId='00000003-0000-0000-c000-000000000000')", 'GET /applications', 'POST /applications', 'POST /servicePrincipals', 'POST /oauth2PermissionGrants'],
  );

  // Setup's doctor run reads the permissions from Graph with the admin's token; nobody has signed in yet.
  const d = first.doctor!.results;
  assert.equal(d.find((r) => r.id === 'permissions')!.status, 'passed', statuses(d));
  assert.match(d.find((r) => r.id === 'permissions')!.detail, /^read from Graph: SMTP\.Send, offline_access, openid, User\.Read listed and granted/);
  assert.equal(d.find((r) => r.id === 'sign-in')!.code, 'AUTH_NOT_SIGNED_IN');
  assert.ok(!JSON.stringify(first).includes('eyJ'), 'no token in the result');

  // The app as the guide sets it up, seen through the sandbox's admin API.
  const [app] = await appsNamed(sb, 'smtp365 e2e & co');
  const admin = await adminClient(sb);
  const view = (await admin('GET', `/apps/${app!.appId}`)) as Record<string, unknown>;
  assert.equal(view.isFallbackPublicClient, true);
  assert.match(JSON.stringify(view), /SMTP\.Send/);

  // The config file: the account, 0600, readable by the config loader.
  const file = await fs.readFile(configPath, 'utf8');
  const yaml = parseYaml(file) as { default: string; accounts: Record<string, Record<string, unknown>> };
  assert.equal(yaml.default, 'default');
  assert.equal(yaml.accounts.default!.clientId, first.app.appId);
  assert.equal(yaml.accounts.default!.flow, 'device-code');
  if (process.platform !== 'win32') assert.equal((await fs.stat(configPath)).mode & 0o777, 0o600);
  const account = await resolveAccount({ configPath, env: {} });
  assert.equal(account.clientId, first.app.appId);
  assert.equal(account.authorityHost, sb.info.authority);

  // The user signs in (smtp365 login) and doctor passes every check.
  const home = await tempDir(t, 'smtp365-setup-home-');
  const env = { SMTP365_HOME: home, HOME: home };
  await createTokenProvider(account, { home, env }).signIn({ onDeviceCode: (dc) => void admin('POST', '/device-codes/approve', { userCode: dc.userCode, upn: ADMIN }) });
  const report = await runDoctor({ configPath, env, timeoutSeconds: 20, sendTest: 'megan@contoso.onmicrosoft.com' });
  for (const r of report.results) assert.equal(r.status, 'passed', `${r.id}: ${r.detail}\n${statuses(report.results)}`);
  assert.equal(report.configPath, configPath);
  const delivered = sb.messages.list();
  assert.equal(delivered.length, 1);
  assert.equal(delivered[0]!.authUser, ADMIN);

  // Second run: the same app, nothing duplicated, nothing re-granted.
  const second = await runSetup(await setupOptions(sb, configPath));
  assert.equal(second.app.created, false);
  assert.equal(second.app.appId, first.app.appId);
  assert.equal(second.servicePrincipal.created, false);
  assert.equal(second.consent.alreadyGranted, true);
  assert.equal((await appsNamed(sb, 'smtp365 e2e & co')).length, 1);
  assert.ok(!second.requests.some((r) => r.method === 'POST'), second.requests.map((r) => r.method + ' ' + r.path).join('\n'));
});

test('setup --app-only: SMTP.SendAsApp, a secret in the 0600 config; the printed PowerShell makes AUTH work', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const mailbox = 'megan@contoso.onmicrosoft.com';
  const result = await runSetup({ ...(await setupOptions(sb, configPath)), appOnly: true, user: mailbox, account: 'daemon', doctor: true });
  assert.equal(result.consent.granted, true);
  assert.equal(result.secret?.created, true);
  assert.ok(result.secret?.masked && !result.secret.masked.includes('~'), 'the secret is masked in the result');
  const account = await resolveAccount({ configPath, name: 'daemon', env: {} });
  assert.equal(account.flow, 'client-secret');
  assert.ok(account.clientSecret && account.clientSecret.length > 10);
  const sp = result.servicePrincipal.id;
  assert.deepEqual(result.powershell.slice(1), [
    `Set-CASMailbox -Identity ${mailbox} -SmtpClientAuthenticationDisabled $false`,
    `New-ServicePrincipal -AppId ${result.app.appId} -ObjectId ${sp}`,
    `Add-MailboxPermission -Identity ${mailbox} -User ${sp} -AccessRights FullAccess`,
  ]);

  // Setup's own doctor run: permissions read from Graph, and AUTH refused with the PowerShell naming the real service principal.
  const d = result.doctor!.results;
  assert.match(d.find((r) => r.id === 'permissions')!.detail, /^read from Graph: SMTP\.SendAsApp listed and granted/);
  assert.deepEqual(d.find((r) => r.id === 'smtp-auth')!.powershell, result.powershell.slice(2));

  const home = await tempDir(t, 'smtp365-setup-home-');
  const env = { SMTP365_HOME: home, HOME: home };
  // Before the PowerShell: the token is right, Exchange refuses AUTH and doctor prints the same commands.
  let report = await runDoctor({ configPath, account: 'daemon', env, timeoutSeconds: 20 });
  const auth = report.results.find((r) => r.id === 'smtp-auth')!;
  assert.equal(auth.status, 'failed', statuses(report.results));
  assert.ok(auth.powershell.some((p) => p.startsWith(`New-ServicePrincipal -AppId ${result.app.appId}`)), auth.powershell.join('\n'));

  // The administrator runs it (through the sandbox's admin API: the Exchange side of these cmdlets).
  const admin = await adminClient(sb);
  await admin('POST', '/exchange-service-principals', { appId: result.app.appId, objectId: sp });
  await admin('PATCH', `/mailboxes/${mailbox}`, { fullAccess: { add: [sp] } });
  report = await runDoctor({ configPath, account: 'daemon', env, timeoutSeconds: 20 });
  for (const r of report.results) assert.ok(r.status === 'passed' || r.status === 'skipped', `${r.id}: ${r.detail}\n${statuses(report.results)}`);
  assert.equal(report.results.find((r) => r.id === 'smtp-auth')!.status, 'passed');

  // Re-running reuses the app and the secret in the config (no second secret).
  const again = await runSetup({ ...(await setupOptions(sb, configPath)), appOnly: true, user: mailbox, account: 'daemon' });
  assert.equal(again.app.created, false);
  assert.equal(again.secret?.reused, true);
  assert.ok(!again.requests.some((r) => r.path.endsWith('/addPassword')));
});

test('setup --app-only --certificate: the certificate is uploaded, the key stays here (0600), and sign-in by assertion works', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const mailbox = 'alex@contoso.onmicrosoft.com';
  const result = await runSetup({ ...(await setupOptions(sb, configPath)), appOnly: true, certificate: true, user: mailbox, account: 'cert' });
  assert.equal(result.secret, null);
  assert.equal(result.certificate?.created, true);
  assert.match(result.certificate?.thumbprint ?? '', /^[0-9A-F]{40}$/);
  const account = await resolveAccount({ configPath, name: 'cert', env: {} });
  assert.equal(account.flow, 'client-certificate');
  assert.equal(account.clientSecret, undefined);
  assert.equal(account.privateKeyPath, result.certificate!.privateKeyPath);
  if (process.platform !== 'win32') assert.equal((await fs.stat(account.privateKeyPath!)).mode & 0o777, 0o600);
  assert.ok(!(await fs.readFile(configPath, 'utf8')).includes('PRIVATE KEY'), 'the key is not in the config file');
  const admin = await adminClient(sb);
  const view = (await admin('GET', `/apps/${result.app.appId}`)) as { certificates?: unknown[]; keyCredentials?: unknown[] };
  assert.equal((view.certificates ?? view.keyCredentials ?? []).length, 1, JSON.stringify(view));

  await admin('POST', '/exchange-service-principals', { appId: result.app.appId, objectId: result.servicePrincipal.id });
  await admin('PATCH', `/mailboxes/${mailbox}`, { fullAccess: { add: [result.servicePrincipal.id] } });
  const home = await tempDir(t, 'smtp365-setup-home-');
  const report = await runDoctor({ configPath, account: 'cert', env: { SMTP365_HOME: home, HOME: home }, timeoutSeconds: 20 });
  for (const r of report.results) assert.ok(r.status === 'passed' || r.status === 'skipped', `${r.id}: ${r.detail}\n${statuses(report.results)}`);

  const again = await runSetup({ ...(await setupOptions(sb, configPath)), appOnly: true, certificate: true, user: mailbox, account: 'cert' });
  assert.equal(again.certificate?.reused, true);
  assert.ok(!again.requests.some((r) => r.method === 'PATCH'), 'no second upload');
});

test('setup finds a half-done app by name (public client flows off, SMTP.Send missing, no consent) and repairs it', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const admin = await adminClient(sb);
  const made = (await admin('POST', '/apps', { displayName: 'smtp365 e2e & co', isFallbackPublicClient: false, delegatedPermissions: ['User.Read'], adminConsent: false })) as { appId: string };
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const result = await runSetup(await setupOptions(sb, configPath));
  assert.equal(result.app.created, false);
  assert.equal(result.app.updated, true);
  assert.equal(result.app.appId, made.appId);
  assert.equal(result.consent.granted, true);
  const patch = result.requests.find((r) => r.method === 'PATCH' && r.path.startsWith('/applications/'));
  assert.ok(patch, 'the app was patched');
  assert.equal((patch.body as { isFallbackPublicClient?: boolean }).isFallbackPublicClient, true);
  assert.equal((await appsNamed(sb, 'smtp365 e2e & co')).length, 1);
  const view = (await admin('GET', `/apps/${made.appId}`)) as Record<string, unknown>;
  assert.equal(view.isFallbackPublicClient, true);
  for (const p of ['SMTP.Send', 'openid', 'offline_access', 'User.Read']) assert.ok(JSON.stringify(view).includes(p), `${p} missing: ${JSON.stringify(view)}`);
});

test('setup --dry-run signs nobody in, calls nothing and writes nothing', async (t) => {
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const result = await runSetup({ dryRun: true, configPath, user: 'printer@contoso.com', env: {}, onDeviceCode: () => assert.fail('no sign-in in a dry run') });
  assert.equal(result.dryRun, true);
  assert.deepEqual(
    result.requests.map((r) => `${r.method} ${r.path.split('?')[0]}`),
    ["GET /servicePrincipals(appId='00000003-0000-0000-c000-000000000000')", 'GET /applications', 'POST /applications', 'POST /servicePrincipals', 'POST /oauth2PermissionGrants'],
  );
  const create = result.requests.find((r) => r.method === 'POST' && r.path === '/applications')!;
  assert.equal((create.body as { isFallbackPublicClient?: boolean }).isFallbackPublicClient, true);
  await assert.rejects(fs.access(configPath));

  // An account already there: a dry run cannot tell which app a real run would find, so it says what it would check.
  const existing = 'accounts:\n  default:\n    tenant: contoso.onmicrosoft.com\n    clientId: 5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e\n    user: printer@contoso.com\n';
  await fs.writeFile(configPath, existing, { mode: 0o600 });
  const again = await runSetup({ dryRun: true, configPath, user: 'printer@contoso.com', env: {}, onDeviceCode: () => assert.fail('no sign-in in a dry run') });
  assert.match(again.notes.join('\n'), /a real run refuses to point it at another app unless --replace/);
  assert.equal(await fs.readFile(configPath, 'utf8'), existing, 'nothing written');
});

test('setup signed in by a user who is no administrator: refused with what to do instead, nothing written', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const admin = await adminClient(sb);
  await admin('PATCH', '/users/megan@contoso.onmicrosoft.com', { mfaRequired: false });
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const opts = await setupOptions(sb, configPath);
  await assert.rejects(
    runSetup({ ...opts, onDeviceCode: (dc) => void admin('POST', '/device-codes/approve', { userCode: dc.userCode, upn: 'megan@contoso.onmicrosoft.com' }) }),
    (e: Smtp365Error) => {
      assert.equal(e.code, 'AUTH_CONSENT_REQUIRED');
      assert.match(e.message, /AADSTS65001/);
      assert.match(e.explanation?.title ?? '', /administrator tool/);
      assert.ok(e.explanation?.fix.some((f) => f.includes('--admin-client-id')));
      assert.ok(e.explanation?.fix.some((f) => f.includes('smtp365 init')));
      return true;
    },
  );
  await assert.rejects(fs.access(configPath));
  assert.equal((await appsNamed(sb, 'smtp365 e2e & co')).length, 0);
});

test('re-running setup --app-only replaces a client secret that expired or expires within 30 days, and says so', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const opts = { ...(await setupOptions(sb, configPath)), appOnly: true, user: 'megan@contoso.onmicrosoft.com', account: 'daemon' };
  const first = await runSetup(opts);
  const admin = await adminClient(sb);
  const secretOf = async () => (await resolveAccount({ configPath, name: 'daemon', env: {} })).clientSecret!;
  for (const [days, reason] of [[-1, /expired on \d{4}-\d\d-\d\d/], [10, /expires on \d{4}-\d\d-\d\d, within 30 days/]] as const) {
    const old = await secretOf();
    await admin('PATCH', `/apps/${first.app.appId}`, { secrets: [{ value: old, endDateTime: new Date(Date.now() + days * 86_400_000).toISOString() }] });
    const steps: string[] = [];
    const again = await runSetup({ ...opts, onStep: (s) => steps.push(`${s.title}: ${s.detail ?? ''}`) });
    assert.equal(again.secret?.created, true, `${days} days`);
    assert.ok(again.requests.some((r) => r.path.endsWith('/addPassword')));
    assert.match(steps.find((s) => s.startsWith('Client secret'))!, reason);
    assert.notEqual(await secretOf(), old, 'the new secret is in the configuration');
    assert.ok(!again.notes.some((n) => /again before then/.test(n)));
  }
  // The new secret signs in; a further run keeps it.
  const account = await resolveAccount({ configPath, name: 'daemon', env: {} });
  const home = await tempDir(t, 'smtp365-setup-home-');
  assert.ok((await createTokenProvider(account, { home, env: { SMTP365_HOME: home, HOME: home } }).getAccessToken()).token);
  const third = await runSetup(opts);
  assert.equal(third.secret?.reused, true);
});

/** An app-only certificate account set up, then its certificate swapped for one expiring in 10 days (files only: the caller puts it on the app). */
async function expiringCertificate(t: TestContext) {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const dir = await tempDir(t, 'smtp365-setup-');
  const configPath = path.join(dir, 'config.yaml');
  const opts = { ...(await setupOptions(sb, configPath)), appOnly: true, certificate: true, user: 'alex@contoso.onmicrosoft.com', account: 'cert' };
  const first = await runSetup(opts);
  const short = await createSelfSignedCertificate('smtp365 cert', 10);
  await fs.writeFile(first.certificate!.certificatePath, short.certPem);
  await fs.writeFile(first.certificate!.privateKeyPath, short.keyPem);
  return { sb, configPath, opts, first, short, admin: await adminClient(sb) };
}

test('re-running setup --app-only --certificate renews a certificate that expires within 30 days: the new one on the app beside the old until its end, new files, the old key kept', async (t) => {
  const { configPath, opts, first, short, admin } = await expiringCertificate(t);
  await admin('PATCH', `/apps/${first.app.appId}`, { certificates: [short.certPem] });
  const steps: string[] = [];
  const again = await runSetup({ ...opts, onStep: (s) => steps.push(`${s.title}: ${s.detail ?? ''}`) });
  assert.equal(again.certificate?.created, true);
  assert.notEqual(again.certificate?.thumbprint, short.thumbprint);
  assert.match(steps.find((s) => s.startsWith('Certificate'))!, /renewed .*expires on .*within 30 days/);
  const view = (await admin('GET', `/apps/${first.app.appId}`)) as { certificates: Array<{ thumbprintSha1: string }> };
  assert.deepEqual(
    view.certificates.map((c) => Buffer.from(c.thumbprintSha1, 'base64url').toString('hex').toUpperCase()).sort(),
    [again.certificate!.thumbprint, short.thumbprint].sort(),
    'the new certificate is added; the expiring one stays valid for whoever still uses it',
  );
  // New files: the key other machines (or this one, until the switch) still use is not overwritten.
  assert.notEqual(again.certificate!.privateKeyPath, first.certificate!.privateKeyPath);
  assert.equal(await fs.readFile(first.certificate!.privateKeyPath, 'utf8'), short.keyPem);
  const account = await resolveAccount({ configPath, name: 'cert', env: {} });
  const home = await tempDir(t, 'smtp365-setup-home-');
  assert.ok((await createTokenProvider(account, { home, env: { SMTP365_HOME: home, HOME: home } }).getAccessToken()).token, 'the new certificate signs in');
});

test('a certificate to renew on an app that has another certificate smtp365 cannot send along: the new one is made for a manual upload, the account keeps the old one meanwhile', async (t) => {
  const { configPath, opts, first, short, admin } = await expiringCertificate(t);
  const foreign = await createSelfSignedCertificate('another server', 365);
  await admin('PATCH', `/apps/${first.app.appId}`, { certificates: [short.certPem, foreign.certPem] });
  const again = await runSetup(opts);
  assert.match(again.notes.join('\n'), /other certificate\(s\) smtp365 cannot send along.*Upload certificate/s);
  const view = (await admin('GET', `/apps/${first.app.appId}`)) as { certificates: Array<{ thumbprintSha1: string }> };
  assert.equal(view.certificates.length, 2, 'the app is left as it was');
  const account = await resolveAccount({ configPath, name: 'cert', env: {} });
  assert.equal(account.certificatePath, first.certificate!.certificatePath, 'still the certificate the app knows');
  assert.equal(await fs.readFile(first.certificate!.privateKeyPath, 'utf8'), short.keyPem, 'its key is kept');
});

test('a later renewal is not blocked by a certificate left on the app that has expired meanwhile: it is dropped, the renewal goes through', async (t) => {
  const { configPath, opts, first, short, admin } = await expiringCertificate(t);
  const expired = await createSelfSignedCertificate('smtp365 cert', -0.5);
  await admin('PATCH', `/apps/${first.app.appId}`, { certificates: [expired.certPem, short.certPem] });
  const again = await runSetup(opts);
  assert.doesNotMatch(again.notes.join('\n'), /Upload certificate/);
  const view = (await admin('GET', `/apps/${first.app.appId}`)) as { certificates: Array<{ thumbprintSha1: string }> };
  assert.deepEqual(
    view.certificates.map((c) => Buffer.from(c.thumbprintSha1, 'base64url').toString('hex').toUpperCase()).sort(),
    [again.certificate!.thumbprint, short.thumbprint].sort(),
  );
  assert.equal((await resolveAccount({ configPath, name: 'cert', env: {} })).certificatePath, again.certificate!.certificatePath);
});
