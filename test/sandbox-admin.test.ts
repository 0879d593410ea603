// The admin API (validated input, clear 4xx errors), scenario files (JSON and
// YAML, errors naming the key), state kept across restarts, and the
// `smtp365 sandbox` command's contract.
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { startSandbox, ScenarioError } from '../src/sandbox/index.ts';
import { sandboxRequest, withSandbox, type Sandbox } from './helpers/sandbox.ts';

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const admin = (sb: Sandbox, method: string, p: string, json?: unknown) => sandboxRequest(sb.info, method, `${sb.info.admin}${p}`, json === undefined ? {} : { json });

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smtp365-admin-test-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('the default tenant is set up the way the guide sets one up', async (t) => {
  const sb = await withSandbox(t);
  const { info, directory: d } = sb;
  assert.deepEqual(Object.keys(info), ['authority', 'graph', 'smtp', 'admin', 'caFile', 'tenantId', 'tenantDomain', 'publicClientId', 'confidentialClient', 'users', 'sharedMailboxes']);
  assert.equal(info.graph, `${info.authority}/graph`);
  assert.equal(info.admin, `${info.authority}/admin`);
  assert.match(readFileSync(info.caFile, 'utf8'), /BEGIN CERTIFICATE/);
  const tenant = d.tenant(info.tenantId)!;
  assert.equal(tenant.smtpClientAuthenticationDisabled, true, 'tenant-wide SMTP AUTH off, as in tenants made after 2020');
  const pub = d.app(info.publicClientId)!;
  assert.equal(pub.isFallbackPublicClient, true);
  assert.equal(info.users.length, 2);
  assert.equal(d.user(info.users[1]!.upn)!.mfaRequired, true);
  assert.equal(d.user(info.users[0]!.upn)!.isAdmin, true);
  for (const m of d.data.mailboxes) assert.equal(d.smtpAuthDisabledFor(m), false, `${m.address}: SMTP AUTH enabled per mailbox`);
  const shared = d.mailbox(info.sharedMailboxes[0]!)!;
  const alexOid = d.user(info.users[0]!.upn)!.oid;
  assert.ok(shared.fullAccess.includes(alexOid) && shared.sendAs.includes(alexOid));
  const conf = d.app(info.confidentialClient.clientId)!;
  const exo = d.exchangeServicePrincipal(info.tenantId, conf.appId)!;
  assert.equal(exo.objectId, d.servicePrincipalByAppId(info.tenantId, conf.appId)!.id);
  assert.ok(shared.fullAccess.includes(exo.objectId));
  assert.ok(d.mailbox(info.users[0]!.upn)!.fullAccess.includes(exo.objectId));
  const routes = (await admin(sb, 'GET', '')).json<{ routes: string[] }>().routes;
  assert.ok(routes.some((r) => r.includes('/admin/device-codes/approve')));
});

test('admin API: tenant, mailboxes, apps, users, Exchange service principals, clock; validation errors', async (t) => {
  const sb = await withSandbox(t);
  const { info } = sb;
  const tenant = await admin(sb, 'PATCH', '/tenant', { smtpClientAuthenticationDisabled: false });
  assert.equal(tenant.status, 200, tenant.text);
  assert.equal(sb.directory.tenant(info.tenantId)!.smtpClientAuthenticationDisabled, false);
  const bad = await admin(sb, 'PATCH', '/tenant', { smtpClientAuthenticationDisabled: 'yes' });
  assert.equal(bad.status, 400);
  assert.match(bad.json<{ message: string }>().message, /^smtpClientAuthenticationDisabled: /);
  assert.equal((await admin(sb, 'PATCH', '/tenant', { noSuchSetting: true })).status, 400);
  assert.equal((await admin(sb, 'PATCH', '/tenant', { submissionBlocked: 'ip' })).json()['submissionBlocked'], 'ip');
  assert.equal((await admin(sb, 'PATCH', '/tenant', { submissionBlocked: 'sometimes' })).status, 400);
  await admin(sb, 'PATCH', '/tenant', { submissionBlocked: null });
  assert.equal((await admin(sb, 'PATCH', `/mailboxes/${info.sharedMailboxes[0]}`, { outboundSpamBlocked: true })).json()['outboundSpamBlocked'], true);

  // Set-CASMailbox: true, false, and $null (follow the tenant).
  const addr = info.users[0]!.upn.toUpperCase();
  let mb = await admin(sb, 'PATCH', `/mailboxes/${encodeURIComponent(addr)}`, { smtpClientAuthenticationDisabled: true, maxSendSizeBytes: 1000 });
  assert.equal(mb.status, 200, mb.text);
  assert.equal(mb.json()['effectiveSmtpClientAuthenticationDisabled'], true);
  mb = await admin(sb, 'PATCH', `/mailboxes/${encodeURIComponent(addr)}`, { smtpClientAuthenticationDisabled: null });
  assert.equal(mb.json()['smtpClientAuthenticationDisabled'], null);
  assert.equal(mb.json()['effectiveSmtpClientAuthenticationDisabled'], false);
  await admin(sb, 'PATCH', '/tenant', { smtpClientAuthenticationDisabled: true });
  assert.equal((await admin(sb, 'GET', `/mailboxes/${encodeURIComponent(addr)}`)).json()['effectiveSmtpClientAuthenticationDisabled'], true);
  assert.equal(sb.directory.mailbox(addr)!.maxSendSizeBytes, 1000);
  assert.equal((await admin(sb, 'PATCH', '/mailboxes/nobody@contoso.onmicrosoft.com', { maxSendSizeBytes: 1 })).status, 404);
  assert.equal((await admin(sb, 'PATCH', `/mailboxes/${addr}`, { maxSendSizeBytes: -5 })).status, 400);

  // A new shared mailbox with permissions: users by UPN, apps as app:<appId>.
  const created = await admin(sb, 'POST', '/mailboxes', { address: 'sales@contoso.onmicrosoft.com', displayName: 'Sales', smtpClientAuthenticationDisabled: false, fullAccess: [info.users[1]!.upn, `app:${info.confidentialClient.clientId}`], sendAs: [info.users[1]!.upn] });
  assert.equal(created.status, 201, created.text);
  assert.deepEqual(created.json()['fullAccessNames'], [info.users[1]!.upn, `app:${info.confidentialClient.clientId}`]);
  const removed = await admin(sb, 'PATCH', '/mailboxes/sales@contoso.onmicrosoft.com', { fullAccess: { remove: [info.users[1]!.upn] } });
  assert.deepEqual(removed.json()['fullAccessNames'], [`app:${info.confidentialClient.clientId}`]);
  const unknownTrustee = await admin(sb, 'PATCH', '/mailboxes/sales@contoso.onmicrosoft.com', { sendAs: ['ghost@contoso.onmicrosoft.com'] });
  assert.equal(unknownTrustee.status, 400);
  assert.match(unknownTrustee.json<{ message: string }>().message, /^sendAs\.0: /);
  assert.equal((await admin(sb, 'POST', '/mailboxes', { address: 'sales@contoso.onmicrosoft.com' })).status, 409);

  // Users: create, change the password (revokes sessions), disable.
  const user = await admin(sb, 'POST', '/users', { upn: 'new@contoso.onmicrosoft.com', password: 'pw-1', mfaRequired: true });
  assert.equal(user.status, 201, user.text);
  assert.equal(user.json()['mailbox'], 'new@contoso.onmicrosoft.com');
  assert.equal((await admin(sb, 'POST', '/users', { upn: 'x@elsewhere.example', password: 'p' })).status, 400);
  assert.equal((await admin(sb, 'POST', '/users', { upn: 'not-an-address', password: 'p' })).status, 400);
  const changed = await admin(sb, 'PATCH', '/users/new@contoso.onmicrosoft.com', { password: 'pw-2', accountEnabled: false });
  assert.equal(changed.json()['accountEnabled'], false);
  assert.equal(typeof changed.json()['sessionsRevokedAt'], 'number');
  assert.equal((await admin(sb, 'PATCH', '/users/ghost@contoso.onmicrosoft.com', { accountEnabled: false })).status, 404);

  // Apps: a new confidential app with admin consent and New-ServicePrincipal done wrong on purpose.
  const app = await admin(sb, 'POST', '/apps', { displayName: 'printer', applicationPermissions: ['SMTP.SendAsApp'], secrets: ['s3cret-value'] });
  assert.equal(app.status, 201, app.text);
  const appId = String(app.json()['appId']);
  const wrongSp = await admin(sb, 'POST', '/exchange-service-principals', { appId, objectId: String(app.json()['objectId']) });
  assert.equal(wrongSp.status, 201);
  assert.equal(wrongSp.json()['matchesEnterpriseApplication'], false);
  const rightSp = await admin(sb, 'POST', '/exchange-service-principals', { appId });
  assert.equal(rightSp.json()['matchesEnterpriseApplication'], true);
  assert.equal((await admin(sb, 'PATCH', `/apps/${appId}`, { applicationPermissions: ['No.Such.Role'] })).status, 400);
  const secret = await admin(sb, 'POST', `/apps/${appId}/secrets`, { displayName: 'second' });
  assert.equal(secret.status, 201);
  const cc = await sandboxRequest(info, 'POST', `/${info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'client_credentials', client_id: appId, client_secret: String(secret.json()['value']), scope: 'https://outlook.office365.com/.default' } });
  assert.equal(cc.status, 200, cc.text);
  assert.equal((await admin(sb, 'PATCH', '/apps/00000000-0000-4000-8000-000000000000', { isFallbackPublicClient: true })).status, 404);

  // Device codes and the clock.
  assert.equal((await admin(sb, 'POST', '/device-codes/approve', { userCode: 'NOPE12345', upn: info.users[0]!.upn })).status, 404);
  assert.equal((await admin(sb, 'POST', '/device-codes/approve', {})).status, 400);
  const before = sb.clock.nowSeconds();
  const clock = await admin(sb, 'POST', '/clock', { advanceSeconds: 86400 });
  assert.equal(clock.status, 200);
  assert.ok(sb.clock.nowSeconds() - before >= 86400);
  assert.equal((await admin(sb, 'POST', '/clock', { advanceSeconds: -1 })).status, 400);
  assert.equal((await admin(sb, 'PUT', '/clock', {})).status, 405);
  const state = (await admin(sb, 'GET', '/state')).json<{ directory: { users: unknown[] }; clock: { offsetSeconds: number } }>();
  assert.equal(state.directory.users.length, 3);
  assert.ok(state.clock.offsetSeconds >= 86400);
  // Reset: back to the default tenant, no sessions, no faults.
  sb.faults.add({ stage: 'token', httpStatus: 500, times: null });
  const reset = await sandboxRequest(info, 'POST', `${info.admin}/reset`);
  assert.deepEqual(reset.json()['reset'], ['directory', 'sessions', 'faults', 'messages', 'settings']);
  assert.equal(sb.directory.user('new@contoso.onmicrosoft.com'), undefined);
  assert.equal(sb.directory.app(appId), undefined);
  assert.equal(sb.directory.tenant(info.tenantId)!.smtpClientAuthenticationDisabled, true);
  assert.deepEqual(sb.faults.list(), []);
  assert.equal((await sandboxRequest(info, 'POST', `/${info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'client_credentials', client_id: info.confidentialClient.clientId, client_secret: info.confidentialClient.clientSecret, scope: 'https://outlook.office365.com/.default' } })).status, 200);
  assert.equal((await admin(sb, 'POST', '/reset', { faults: true })).json<{ reset: string[] }>().reset.join(), 'faults');
  assert.equal((await admin(sb, 'POST', '/reset', { directory: true })).status, 200);
  assert.ok(sb.directory.app('14d82eec-204b-4c2f-b7e8-296a70dab67e'), 'first-party apps stay');
  assert.equal((await admin(sb, 'POST', '/reset', { everything: true })).status, 400);
  // Not JSON at all.
  const notJson = await sandboxRequest(info, 'PATCH', `${info.admin}/tenant`, { headers: { 'content-type': 'application/json' }, form: undefined, json: undefined });
  assert.equal(notJson.status, 400);
});

test('scenario files: YAML and JSON, errors that name the key', async (t) => {
  const dir = tempDir(t);
  const yamlFile = path.join(dir, 'tenant.yaml');
  writeFileSync(
    yamlFile,
    `tenants:
  - domain: fabrikam.onmicrosoft.com
    smtpClientAuthenticationDisabled: false
    users:
      - upn: ops@fabrikam.onmicrosoft.com
        password: ops-pass
        mfaRequired: true
        mfaCode: "2468"
    sharedMailboxes:
      - address: alerts@fabrikam.onmicrosoft.com
        fullAccess: [ops@fabrikam.onmicrosoft.com]
    apps:
      - displayName: monitoring
        isFallbackPublicClient: true
        delegatedPermissions: [SMTP.Send, offline_access, openid]
`,
  );
  const sb = await withSandbox(t, { scenario: yamlFile });
  assert.equal(sb.info.tenantDomain, 'fabrikam.onmicrosoft.com');
  assert.deepEqual(sb.info.users, [{ upn: 'ops@fabrikam.onmicrosoft.com', password: 'ops-pass' }]);
  assert.deepEqual(sb.info.sharedMailboxes, ['alerts@fabrikam.onmicrosoft.com']);
  assert.equal(sb.info.confidentialClient.clientId, '');
  assert.equal(sb.directory.user('ops@fabrikam.onmicrosoft.com')!.mfaCode, '2468');

  const bad = async (scenario: unknown, pattern: RegExp) => {
    const file = path.join(dir, `bad-${Math.random().toString(36).slice(2)}.json`);
    writeFileSync(file, JSON.stringify(scenario));
    await assert.rejects(startSandbox({ scenario: file, stateDir: path.join(dir, 'state-bad') }), (e: Error) => e instanceof ScenarioError && pattern.test(e.message));
  };
  await bad({ tenants: [] }, /tenants: at least one tenant/);
  await bad({ tenants: [{ domain: 'x.onmicrosoft.com', users: [{ upn: 'nope', password: 'p' }] }] }, /tenants\.0\.users\.0\.upn: must be an e-mail address/);
  await bad({ tenants: [{ domain: 'x.onmicrosoft.com', apps: [{ displayName: 'a', delegatedPermissions: ['Mail.Sned'] }] }] }, /tenants\.0\.apps\.0\.delegatedPermissions\.0: unknown Microsoft Graph delegated permission "Mail\.Sned"/);
  await bad({ tenants: [{ domain: 'x.onmicrosoft.com', sharedMailboxes: [{ address: 's@x.onmicrosoft.com', fullAccess: ['ghost@x.onmicrosoft.com'] }] }] }, /tenants\.0\.sharedMailboxes\.0\.fullAccess\.0: no user ghost@/);
  await bad({ tenants: [{ domain: 'x.onmicrosoft.com', colour: 'blue' }] }, /tenants\.0: Unrecognized key/);
  const brokenYaml = path.join(dir, 'broken.yaml');
  writeFileSync(brokenYaml, 'tenants: [\n');
  await assert.rejects(startSandbox({ scenario: brokenYaml, stateDir: path.join(dir, 'state-broken') }), /not valid YAML/);
});

test('a state dir keeps the CA, the signing key and the directory across restarts', async (t) => {
  const stateDir = tempDir(t);
  const first = await startSandbox({ stateDir, quiet: true });
  const ca = readFileSync(first.info.caFile, 'utf8');
  await sandboxRequest(first.info, 'PATCH', `${first.info.admin}/tenant`, { json: { smtpClientAuthenticationDisabled: false } });
  const res = await sandboxRequest(first.info, 'POST', `/${first.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'client_credentials', client_id: first.info.confidentialClient.clientId, client_secret: first.info.confidentialClient.clientSecret, scope: 'https://outlook.office365.com/.default' } });
  const accessToken = String(res.json()['access_token']);
  const ropc = await sandboxRequest(first.info, 'POST', `/${first.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'password', client_id: first.info.publicClientId, username: first.info.users[0]!.upn, password: first.info.users[0]!.password, scope: 'https://outlook.office.com/SMTP.Send offline_access' } });
  const refreshToken = String(ropc.json()['refresh_token']);
  await first.close();
  assert.equal(statSync(path.join(stateDir, 'directory.json')).mode & 0o077, 0, 'the directory (passwords, secrets) is owner-only');
  assert.equal(statSync(path.join(stateDir, 'signing-key.pem')).mode & 0o077, 0);

  const second = await startSandbox({ stateDir, quiet: true });
  t.after(() => second.close());
  assert.equal(readFileSync(second.info.caFile, 'utf8'), ca);
  assert.equal(second.directory.tenant(second.info.tenantId)!.smtpClientAuthenticationDisabled, false);
  assert.ok(second.issuer.verifyAccessToken(accessToken).ok, 'tokens issued before the restart still verify');
  const refreshed = await sandboxRequest(second.info, 'POST', `/${second.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'refresh_token', client_id: second.info.publicClientId, refresh_token: refreshToken, scope: 'https://outlook.office.com/SMTP.Send offline_access' } });
  assert.equal(refreshed.status, 200, `refresh tokens survive the restart: ${refreshed.text}`);
  assert.ok(!readFileSync(path.join(stateDir, 'sessions.json'), 'utf8').includes(refreshToken), 'only hashes are stored');
});

test('smtp365 sandbox --json prints exactly one line with the contract, and stops cleanly on SIGTERM', async (t) => {
  const stateDir = tempDir(t);
  const child = spawn(process.execPath, ['src/cli/main.ts', 'sandbox', '--json', '--state', stateDir], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: string[] = [];
  const rl = createInterface({ input: child.stdout });
  const first = await new Promise<string>((resolve, reject) => {
    rl.once('line', resolve);
    child.once('exit', () => reject(new Error(`exited early: ${stderr}`)));
  });
  lines.push(first);
  rl.on('line', (l) => lines.push(l));
  const info = JSON.parse(first) as Record<string, unknown> & { authority: string; caFile: string; tenantId: string; smtp: { host: string; port: number } };
  assert.deepEqual(Object.keys(info), ['authority', 'graph', 'smtp', 'admin', 'caFile', 'tenantId', 'tenantDomain', 'publicClientId', 'confidentialClient', 'users', 'sharedMailboxes']);
  assert.equal(info.caFile, path.join(stateDir, 'ca.pem'));
  const oidc = await sandboxRequest(info, 'GET', `/${info.tenantId}/v2.0/.well-known/openid-configuration`);
  assert.equal(oidc.status, 200);
  child.kill('SIGTERM');
  const code = await new Promise<number | null>((resolve) => (child.exitCode !== null ? resolve(child.exitCode) : child.once('exit', resolve)));
  assert.equal(code, 0, stderr);
  assert.deepEqual(lines, [first], 'one line, nothing else on stdout');
});

test('smtp365 sandbox: a bad scenario exits 78 with the key named', async (t) => {
  const dir = tempDir(t);
  const file = path.join(dir, 's.json');
  writeFileSync(file, JSON.stringify({ tenants: [{ domain: 'x.onmicrosoft.com', users: [{ upn: 'a@x.onmicrosoft.com' }] }] }));
  const child = spawn(process.execPath, ['src/cli/main.ts', 'sandbox', '--json', '--scenario', file, '--state', path.join(dir, 'st')], { cwd: repoRoot, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
  assert.equal(code, 78);
  assert.match(stderr, /tenants\.0\.users\.0\.password/);
});

test('the SMTP side\'s admin routes (event log, limits) answer on the sandbox\'s HTTPS admin API', async (t) => {
  const sb = await withSandbox(t);
  const events = await sandboxRequest(sb.info, 'GET', `${sb.info.admin}/smtp/events`);
  assert.equal(events.status, 200, events.text);
  const limits = await sandboxRequest(sb.info, 'PATCH', `${sb.info.admin}/smtp/limits`, { json: { recipientsPerDay: 5 } });
  assert.equal(limits.status, 200, limits.text);
  const read = await sandboxRequest(sb.info, 'GET', `${sb.info.admin}/smtp/limits`);
  assert.match(read.text, /"recipientsPerDay":\s*5/);
});

test('settings: where Microsoft is uncertain, changeable at run time and validated; the CLI sets the SMTP ones', async (t) => {
  const sb = await withSandbox(t, { smtp: { authFailureDelayMs: 0 } });
  const view = (await admin(sb, 'GET', '/settings')).json();
  assert.deepEqual(view, {
    identity: { refreshTokenReuse: true, slowDown: true },
    smtp: { authFailureDelayMs: 0, sendAsDeniedStyle: '5.7.60', securityDefaultsBlockOAuth: false },
  });
  const patched = await admin(sb, 'PATCH', '/settings', { smtp: { authFailureDelayMs: 6000, sendAsDeniedStyle: '5.2.252' } });
  assert.equal(patched.status, 200, patched.text);
  assert.deepEqual(patched.json()['smtp'], { authFailureDelayMs: 6000, sendAsDeniedStyle: '5.2.252', securityDefaultsBlockOAuth: false });
  assert.equal(sb.smtp.behaviour.authFailureDelayMs, 6000, 'the sessions read the same object');
  for (const [body, message] of [
    [{ smtp: { sendAsDeniedStyle: '5.7.61' } }, /smtp\.sendAsDeniedStyle: must be "5\.7\.60" or "5\.2\.252"/],
    [{ smtp: { authFailureDelayMs: -1 } }, /smtp\.authFailureDelayMs/],
    [{ identity: { rotate: true } }, /rotate/],
    [{ limits: {} }, /limits/],
  ] as const) {
    const r = await admin(sb, 'PATCH', '/settings', body);
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json()['error'], 'invalid_settings');
    assert.match(String(r.json()['message']), message);
  }
  assert.equal((await admin(sb, 'GET', '/settings')).json<{ smtp: { authFailureDelayMs: number } }>().smtp.authFailureDelayMs, 6000, 'a bad patch changes nothing');
  assert.equal((await admin(sb, 'DELETE', '/settings')).status, 405);
  // The SMTP limits are put back by a reset too (a test's small limit must not reach the next test).
  const limits = (await admin(sb, 'GET', '/smtp/limits')).json();
  assert.equal((await admin(sb, 'PATCH', '/smtp/limits', { recipientsPerDay: 4, messagesPerMinute: { mode: 'delay' } })).status, 200);
  await admin(sb, 'POST', '/reset', {});
  assert.deepEqual((await admin(sb, 'GET', '/settings')).json(), view);
  assert.deepEqual((await admin(sb, 'GET', '/smtp/limits')).json(), limits);
  assert.ok((await admin(sb, 'GET', '')).json<{ routes: string[] }>().routes.some((r) => r.includes('/admin/smtp/limits')), 'GET {admin} lists the SMTP routes');

  // The CLI: the SMTP settings as flags, checked before anything starts.
  const cli = path.join(repoRoot, 'src', 'cli', 'main.ts');
  const bad = spawnSync(process.execPath, [cli, 'sandbox', '--send-as-denied-style', '5.7.1'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(bad.status, 64, bad.stderr);
  assert.match(bad.stderr, /5\.7\.60 \(the classic reply\) or 5\.2\.252/);
});
