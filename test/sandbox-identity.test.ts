// The sandbox's identity side over real HTTPS: metadata, every grant, refresh
// rotation, and each AADSTS error reached through the state that causes it.
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, generateKeyPairSync, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import { test } from 'node:test';
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { signJwt } from '../src/sandbox/tokens/jwt.ts';
import { sandboxRequest, withSandbox, type Sandbox, type SandboxResponse } from './helpers/sandbox.ts';

const SMTP_SCOPE = 'https://outlook.office.com/SMTP.Send openid profile offline_access';

function assertAad(res: SandboxResponse, status: number, error: string, code: number): Record<string, unknown> {
  assert.equal(res.status, status, res.text);
  const b = res.json();
  assert.equal(b['error'], error, res.text);
  assert.deepEqual(b['error_codes'], [code]);
  assert.match(String(b['error_description']), new RegExp(`^AADSTS${code}: .+\\r\\nTrace ID: [0-9a-f-]{36}\\r\\nCorrelation ID: [0-9a-f-]{36}\\r\\nTimestamp: \\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\dZ$`, 's'));
  assert.match(String(b['timestamp']), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/);
  assert.match(String(b['trace_id']), /^[0-9a-f-]{36}$/);
  assert.match(String(b['correlation_id']), /^[0-9a-f-]{36}$/);
  assert.equal(b['error_uri'], `https://login.microsoftonline.com/error?code=${code}`);
  return b;
}

const tokenPath = (sb: Sandbox, tenant = sb.info.tenantId) => `/${tenant}/oauth2/v2.0/token?client-request-id=${crypto.randomUUID()}`;
const token = (sb: Sandbox, form: Record<string, string>, tenant?: string) => sandboxRequest(sb.info, 'POST', tokenPath(sb, tenant), { form });
const admin = (sb: Sandbox, method: string, path: string, json?: unknown) => sandboxRequest(sb.info, method, `/admin${path}`, json === undefined ? {} : { json });

async function deviceCode(sb: Sandbox, clientId = sb.info.publicClientId, scope = SMTP_SCOPE, tenant = sb.info.tenantId): Promise<{ device_code: string; user_code: string; interval: number; message: string; verification_uri: string }> {
  const res = await sandboxRequest(sb.info, 'POST', `/${tenant}/oauth2/v2.0/devicecode`, { form: { client_id: clientId, scope } });
  assert.equal(res.status, 200, res.text);
  return res.json();
}

/** Device code sign-in approved through the admin API: the token response. */
async function signIn(sb: Sandbox, upn = sb.info.users[0]!.upn, scope = SMTP_SCOPE, clientId = sb.info.publicClientId): Promise<Record<string, unknown>> {
  const dc = await deviceCode(sb, clientId, scope);
  const ok = await admin(sb, 'POST', '/device-codes/approve', { userCode: dc.user_code, upn });
  assert.equal(ok.status, 200, ok.text);
  const res = await token(sb, { grant_type: 'urn:ietf:params:oauth:grant-type:device_code', client_id: clientId, device_code: dc.device_code, client_info: '1' });
  assert.equal(res.status, 200, res.text);
  return res.json();
}

function claims(jwt: unknown): Record<string, unknown> {
  return JSON.parse(Buffer.from(String(jwt).split('.')[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

test('OpenID configuration, JWKS and instance discovery as MSAL reads them', async (t) => {
  const sb = await withSandbox(t);
  const { authority, tenantId, tenantDomain } = sb.info;
  for (const seg of [tenantId, tenantDomain]) {
    const res = await sandboxRequest(sb.info, 'GET', `/${seg}/v2.0/.well-known/openid-configuration`);
    assert.equal(res.status, 200);
    const c = res.json();
    assert.equal(c['token_endpoint'], `${authority}/${seg}/oauth2/v2.0/token`);
    assert.equal(c['device_authorization_endpoint'], `${authority}/${seg}/oauth2/v2.0/devicecode`);
    assert.equal(c['authorization_endpoint'], `${authority}/${seg}/oauth2/v2.0/authorize`);
    assert.equal(c['issuer'], `${authority}/${tenantId}/v2.0`);
  }
  const common = (await sandboxRequest(sb.info, 'GET', '/common/v2.0/.well-known/openid-configuration')).json();
  assert.equal(common['issuer'], `${authority}/{tenantid}/v2.0`);
  const keys = (await sandboxRequest(sb.info, 'GET', `/${tenantId}/discovery/v2.0/keys`)).json<{ keys: Array<{ kid: string; kty: string; n: string; e: string }> }>();
  assert.equal(keys.keys[0]?.kty, 'RSA');
  assert.equal(keys.keys[0]?.kid, sb.issuer.kid);
  const disc = (await sandboxRequest(sb.info, 'GET', `/common/discovery/instance?api-version=1.1&authorization_endpoint=${encodeURIComponent(`${authority}/${tenantId}/oauth2/v2.0/authorize`)}`)).json<{ tenant_discovery_endpoint: string; metadata: Array<{ aliases: string[] }> }>();
  assert.equal(disc.tenant_discovery_endpoint, `${authority}/${tenantId}/v2.0/.well-known/openid-configuration`);
  assert.deepEqual(disc.metadata[0]?.aliases, [new URL(authority).host]);
  // AADSTS90002 for a tenant that does not exist, on metadata and on the token endpoint.
  assertAad(await sandboxRequest(sb.info, 'GET', '/nosuch.onmicrosoft.com/v2.0/.well-known/openid-configuration'), 400, 'invalid_tenant', 90002);
  assertAad(await token(sb, { grant_type: 'client_credentials', client_id: sb.info.confidentialClient.clientId }, 'f00df00d-0000-4000-8000-000000000000'), 400, 'invalid_request', 90002);
});

test('device code: pending, slow_down, approval, both grant spellings, tokens shaped like Entra’s', async (t) => {
  const sb = await withSandbox(t);
  const dc = await deviceCode(sb);
  assert.match(dc.user_code, /^[A-Z0-9]{9}$/);
  assert.equal(dc.verification_uri, `${sb.info.authority}/devicelogin`);
  assert.equal(dc.message, `To sign in, use a web browser to open the page ${sb.info.authority}/devicelogin and enter the code ${dc.user_code} to authenticate.`);
  assert.equal(dc.interval, 5);
  const poll = (grant: string) => token(sb, { grant_type: grant, client_id: sb.info.publicClientId, device_code: dc.device_code, client_info: '1' });
  assertAad(await poll('device_code'), 400, 'authorization_pending', 70016);
  assertAad(await poll('device_code'), 400, 'slow_down', 70016);
  // slow_down is UNCONFIRMED for Entra: it can be turned off.
  assert.equal((await admin(sb, 'PATCH', '/settings', { identity: { slowDown: false } })).status, 200);
  assertAad(await poll('device_code'), 400, 'authorization_pending', 70016);
  assertAad(await poll('device_code'), 400, 'authorization_pending', 70016);
  const pending = (await admin(sb, 'GET', '/device-codes')).json<{ deviceCodes: Array<{ userCode: string }> }>();
  assert.ok(pending.deviceCodes.some((d) => d.userCode === dc.user_code));
  assert.equal((await admin(sb, 'POST', '/device-codes/approve', { userCode: dc.user_code.toLowerCase(), upn: sb.info.users[0]!.upn })).status, 200);
  const res = await poll('device_code');
  assert.equal(res.status, 200, res.text);
  const body = res.json();
  assert.equal(body['token_type'], 'Bearer');
  assert.equal(body['scope'], 'https://outlook.office.com/SMTP.Send');
  assert.ok(Number(body['expires_in']) >= 3600 && Number(body['expires_in']) <= 5400);
  assert.equal(body['ext_expires_in'], body['expires_in']);
  const at = claims(body['access_token']);
  assert.equal(at['aud'], 'https://outlook.office.com');
  assert.equal(at['scp'], 'SMTP.Send');
  assert.equal(at['upn'], sb.info.users[0]!.upn);
  assert.equal(at['unique_name'], sb.info.users[0]!.upn);
  assert.equal(at['tid'], sb.info.tenantId);
  assert.equal(at['appid'], sb.info.publicClientId);
  assert.equal(Number(at['exp']) - Number(at['iat']), Number(body['expires_in']) + 300);
  assert.ok(sb.issuer.verifyAccessToken(String(body['access_token'])).ok);
  const header = JSON.parse(Buffer.from(String(body['access_token']).split('.')[0]!, 'base64url').toString('utf8')) as Record<string, unknown>;
  assert.equal(header['alg'], 'RS256');
  const idt = claims(body['id_token']);
  assert.equal(idt['aud'], sb.info.publicClientId);
  assert.equal(idt['preferred_username'], sb.info.users[0]!.upn);
  assert.deepEqual(JSON.parse(Buffer.from(String(body['client_info']), 'base64url').toString('utf8')), { uid: at['oid'], utid: sb.info.tenantId });
  assert.ok(String(body['refresh_token']).length > 40);
  // Redeemed: the device code cannot be used twice.
  assertAad(await poll('urn:ietf:params:oauth:grant-type:device_code'), 400, 'invalid_grant', 70000);
  // The RFC 8628 spelling, and the sandbox clock deciding the access token's fate.
  const again = await signIn(sb);
  sb.clock.advance(Number(again['expires_in']) + 1);
  assert.deepEqual(sb.issuer.verifyAccessToken(String(again['access_token'])), { ok: false, reason: 'expired' });
});

test('/organizations and /common: the signed-in user decides the tenant', async (t) => {
  const sb = await withSandbox(t);
  for (const seg of ['organizations', 'common']) {
    const dc = await deviceCode(sb, sb.info.publicClientId, SMTP_SCOPE, seg);
    await admin(sb, 'POST', '/device-codes/approve', { userCode: dc.user_code, upn: sb.info.users[0]!.upn });
    const res = await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: dc.device_code, client_info: '1' }, seg);
    assert.equal(res.status, 200, res.text);
    assert.equal(claims(res.json()['access_token'])['tid'], sb.info.tenantId);
    const rt = await token(sb, { grant_type: 'refresh_token', client_id: sb.info.publicClientId, refresh_token: String(res.json()['refresh_token']), scope: SMTP_SCOPE }, seg);
    assert.equal(rt.status, 200, rt.text);
  }
});

test('device code: declined, expired, bad code; the token endpoint lifetime option', async (t) => {
  const sb = await withSandbox(t, { tokenLifetimeSeconds: 120 });
  const declined = await deviceCode(sb);
  assert.equal((await admin(sb, 'POST', '/device-codes/decline', { userCode: declined.user_code })).status, 200);
  assertAad(await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: declined.device_code }), 400, 'authorization_declined', 70000);
  const expired = await deviceCode(sb);
  sb.clock.advance(901);
  assertAad(await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: expired.device_code }), 400, 'expired_token', 70019);
  assert.equal((await admin(sb, 'POST', '/device-codes/approve', { userCode: expired.user_code, upn: sb.info.users[0]!.upn })).status, 404);
  assertAad(await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: 'not-a-device-code' }), 400, 'bad_verification_code', 70018);
  const body = await signIn(sb);
  assert.equal(body['expires_in'], 120);
});

test('unknown app 700016, public client flows off 7000218, secret to a public client 700025, missing consent 65001', async (t) => {
  const sb = await withSandbox(t);
  const pub = sb.info.publicClientId;
  assertAad(await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/devicecode`, { form: { client_id: '00000000-1111-4222-8333-444444444444', scope: SMTP_SCOPE } }), 400, 'unauthorized_client', 700016);
  // Guide step 10 not done: "Allow public client flows" = No.
  assert.equal((await admin(sb, 'PATCH', `/apps/${pub}`, { isFallbackPublicClient: false })).status, 200);
  const dc = await deviceCode(sb);
  await admin(sb, 'POST', '/device-codes/approve', { userCode: dc.user_code, upn: sb.info.users[0]!.upn });
  assertAad(await token(sb, { grant_type: 'device_code', client_id: pub, device_code: dc.device_code }), 401, 'invalid_client', 7000218);
  assertAad(await token(sb, { grant_type: 'password', client_id: pub, username: sb.info.users[0]!.upn, password: sb.info.users[0]!.password, scope: SMTP_SCOPE }), 401, 'invalid_client', 7000218);
  await admin(sb, 'PATCH', `/apps/${pub}`, { isFallbackPublicClient: true });
  assertAad(await token(sb, { grant_type: 'password', client_id: pub, client_secret: 'whatever', username: sb.info.users[0]!.upn, password: sb.info.users[0]!.password, scope: SMTP_SCOPE }), 400, 'invalid_client', 700025);
  // Consent revoked (guide steps 12–19 without "Grant admin consent").
  assert.equal((await admin(sb, 'PATCH', `/apps/${pub}`, { adminConsent: false })).status, 200);
  const b = assertAad(await token(sb, { grant_type: 'password', client_id: pub, username: sb.info.users[0]!.upn, password: sb.info.users[0]!.password, scope: SMTP_SCOPE }), 400, 'invalid_grant', 65001);
  assert.match(String(b['error_description']), new RegExp(`application with ID '${pub}'`));
  // Granting it again makes the same request work.
  await admin(sb, 'PATCH', `/apps/${pub}`, { adminConsent: true });
  assert.equal((await token(sb, { grant_type: 'password', client_id: pub, username: sb.info.users[0]!.upn, password: sb.info.users[0]!.password, scope: SMTP_SCOPE })).status, 200);
  // Where users may consent, an interactive sign-in consents for the user (ROPC still may not).
  await admin(sb, 'PATCH', `/apps/${pub}`, { adminConsent: false });
  await admin(sb, 'PATCH', '/tenant', { usersCanConsent: true });
  assertAad(await token(sb, { grant_type: 'password', client_id: pub, username: sb.info.users[0]!.upn, password: sb.info.users[0]!.password, scope: SMTP_SCOPE }), 400, 'invalid_grant', 65001);
  const consented = await signIn(sb, sb.info.users[1]!.upn);
  assert.equal(claims(consented['access_token'])['scp'], 'SMTP.Send');
  assert.ok(sb.directory.data.delegatedGrants.some((g) => g.consentType === 'Principal' && g.principalId === sb.directory.user(sb.info.users[1]!.upn)!.oid));
  await admin(sb, 'PATCH', '/tenant', { usersCanConsent: false });
  await admin(sb, 'PATCH', `/apps/${pub}`, { adminConsent: true });
  // A scope that was never consented is refused too.
  assertAad(await token(sb, { grant_type: 'password', client_id: pub, username: sb.info.users[0]!.upn, password: sb.info.users[0]!.password, scope: 'https://graph.microsoft.com/Mail.Send' }), 400, 'invalid_grant', 65001);
});

test('password grant (ROPC): 50034 unknown user, 50126 wrong password, 50076 MFA, 50057 disabled, 53003 Conditional Access', async (t) => {
  const sb = await withSandbox(t);
  const [alex, megan] = sb.info.users as [{ upn: string; password: string }, { upn: string; password: string }];
  const ropc = (username: string, password: string) => token(sb, { grant_type: 'password', client_id: sb.info.publicClientId, username, password, scope: SMTP_SCOPE, client_info: '1' });
  assertAad(await ropc(`nobody@${sb.info.tenantDomain}`, 'x'), 400, 'invalid_grant', 50034);
  assertAad(await ropc(alex.upn, 'wrong'), 400, 'invalid_grant', 50126);
  const mfa = assertAad(await ropc(megan.upn, megan.password), 400, 'invalid_grant', 50076);
  assert.equal(mfa['suberror'], 'basic_action');
  const ok = await ropc(alex.upn, alex.password);
  assert.equal(ok.status, 200, ok.text);
  assert.equal(claims(ok.json()['access_token'])['upn'], alex.upn);
  await admin(sb, 'PATCH', `/users/${alex.upn}`, { accountEnabled: false });
  assertAad(await ropc(alex.upn, alex.password), 400, 'invalid_grant', 50057);
  await admin(sb, 'PATCH', `/users/${alex.upn}`, { accountEnabled: true });
  await admin(sb, 'PATCH', '/tenant', { conditionalAccessBlockedUsers: [alex.upn] });
  assertAad(await ropc(alex.upn, alex.password), 400, 'invalid_grant', 53003);
  await admin(sb, 'PATCH', '/tenant', { conditionalAccessBlockedUsers: [], securityDefaults: true });
  const sd = assertAad(await ropc(alex.upn, alex.password), 400, 'invalid_grant', 530035);
  assert.match(String(sd['error_description']), /blocked by security defaults/);
  // MSAL for Python asks home realm discovery first: every sandbox user is Managed.
  const realm = await sandboxRequest(sb.info, 'GET', `/common/userrealm/${encodeURIComponent(alex.upn)}?api-version=1.0`);
  assert.equal(realm.status, 200);
  assert.deepEqual(realm.json(), { ver: '1.0', account_type: 'Managed', domain_name: sb.info.tenantDomain, cloud_instance_name: 'microsoftonline.com', cloud_audience_urn: 'urn:federation:MicrosoftOnline' });
  assert.equal((await sandboxRequest(sb.info, 'GET', '/common/userrealm/someone@elsewhere.example?api-version=1.0')).json()['account_type'], 'Unknown');
});

test('refresh tokens rotate (an earlier one still works, as at Entra, or is refused with 70008 when strict); 90 days unused 700082; revoked 50173; sign-in frequency 70043', async (t) => {
  const sb = await withSandbox(t);
  const pub = sb.info.publicClientId;
  const refresh = (rt: unknown, tenant?: string) => token(sb, { grant_type: 'refresh_token', client_id: pub, refresh_token: String(rt), scope: SMTP_SCOPE, client_info: '1' }, tenant);
  const first = await signIn(sb);
  const second = await refresh(first['refresh_token']);
  assert.equal(second.status, 200, second.text);
  const rt2 = second.json()['refresh_token'];
  assert.notEqual(rt2, first['refresh_token']);
  // Entra does not revoke a refresh token when it is used: a retry after a lost answer works.
  assert.equal((await refresh(first['refresh_token'])).status, 200);
  const strict = await admin(sb, 'PATCH', '/settings', { identity: { refreshTokenReuse: false } });
  assert.equal(strict.json<{ identity: { refreshTokenReuse: boolean } }>().identity.refreshTokenReuse, false);
  assertAad(await refresh(first['refresh_token']), 400, 'invalid_grant', 70008);
  assert.deepEqual((await admin(sb, 'POST', '/reset', { settings: true })).json(), { reset: ['settings'] });
  assert.equal((await refresh(first['refresh_token'])).status, 200, 'reset puts the default back');
  assertAad(await refresh('garbage'), 400, 'invalid_grant', 9002313);
  // 89 days idle is fine; the new token then lives another 90.
  sb.clock.advance(89 * 86400);
  const third = await refresh(rt2);
  assert.equal(third.status, 200, third.text);
  sb.clock.advance(91 * 86400);
  const idle = assertAad(await refresh(third.json()['refresh_token']), 400, 'invalid_grant', 700082);
  assert.match(String(idle['error_description']), /inactive for 90\.00:00:00/);
  // Revoked sessions (admin revoke, or a password change).
  const a = await signIn(sb);
  await admin(sb, 'PATCH', `/users/${sb.info.users[0]!.upn}`, { revokeSessions: true });
  assertAad(await refresh(a['refresh_token']), 400, 'invalid_grant', 50173);
  sb.clock.advance(1);
  const b = await signIn(sb);
  sb.clock.advance(1);
  await admin(sb, 'PATCH', `/users/${sb.info.users[0]!.upn}`, { password: 'A-New-Password-1' });
  assertAad(await refresh(b['refresh_token']), 400, 'invalid_grant', 50173);
  // Conditional Access sign-in frequency: 1 hour.
  sb.clock.advance(1);
  const c = await signIn(sb);
  await admin(sb, 'PATCH', '/tenant', { signInFrequencySeconds: 3600 });
  const c2 = await refresh(c['refresh_token']);
  assert.equal(c2.status, 200, c2.text);
  sb.clock.advance(3601);
  assertAad(await refresh(c2.json()['refresh_token']), 400, 'invalid_grant', 70043);
});

test('an admin revoke kills the sessions signed in before it, not a sign-in made just after it in the same second (50173)', async (t) => {
  const sb = await withSandbox(t);
  const upn = sb.info.users[0]!.upn;
  const refresh = (rt: unknown) => token(sb, { grant_type: 'refresh_token', client_id: sb.info.publicClientId, refresh_token: String(rt), scope: SMTP_SCOPE, client_info: '1' });
  // Start of a fresh sandbox second: the sign-ins and the revoke below normally all fall in it
  // (as when a user runs `smtp365 login` at once after an admin's "revoke sessions").
  sb.clock.advance((1000 - (sb.clock.nowMs() % 1000)) / 1000);
  const old = await signIn(sb);
  await admin(sb, 'PATCH', `/users/${upn}`, { revokeSessions: true });
  const fresh = await signIn(sb);
  assertAad(await refresh(old['refresh_token']), 400, 'invalid_grant', 50173);
  const renewed = await refresh(fresh['refresh_token']);
  assert.equal(renewed.status, 200, renewed.text);
  // The rotated token carries the new sign-in: it keeps working.
  const again = await refresh(renewed.json()['refresh_token']);
  assert.equal(again.status, 200, again.text);
  // A password reset is a revoke too: the fresh session dies with it.
  await admin(sb, 'PATCH', `/users/${upn}`, { password: 'A-New-Password-2' });
  assertAad(await refresh(again.json()['refresh_token']), 400, 'invalid_grant', 50173);
});

test('a refresh token used at another tenant: 7000012; Exchange Online missing: 500011', async (t) => {
  const scenario = {
    tenants: [
      {
        domain: 'contoso.onmicrosoft.com',
        users: [{ upn: 'ann@contoso.onmicrosoft.com', password: 'pw-ann' }],
        apps: [{ displayName: 'multi', isFallbackPublicClient: true, signInAudience: 'AzureADMultipleOrgs', delegatedPermissions: ['SMTP.Send', 'offline_access', 'openid'] }],
      },
      { domain: 'fabrikam.onmicrosoft.com', exchangeOnline: false, users: [{ upn: 'bob@fabrikam.onmicrosoft.com', password: 'pw-bob' }] },
    ],
  };
  const sb = await withSandbox(t, { scenario });
  const fabrikam = sb.directory.tenant('fabrikam.onmicrosoft.com')!;
  // The app is also known in fabrikam (its admin consented to the multi-tenant app).
  sb.directory.addServicePrincipal(fabrikam.id, sb.directory.app(sb.info.publicClientId)!);
  const first = await token(sb, { grant_type: 'password', client_id: sb.info.publicClientId, username: 'ann@contoso.onmicrosoft.com', password: 'pw-ann', scope: SMTP_SCOPE });
  assert.equal(first.status, 200, first.text);
  assertAad(await token(sb, { grant_type: 'refresh_token', client_id: sb.info.publicClientId, refresh_token: String(first.json()['refresh_token']), scope: SMTP_SCOPE }, fabrikam.id), 400, 'invalid_grant', 7000012);
  assertAad(await token(sb, { grant_type: 'password', client_id: sb.info.publicClientId, username: 'bob@fabrikam.onmicrosoft.com', password: 'pw-bob', scope: SMTP_SCOPE }, 'fabrikam.onmicrosoft.com'), 400, 'invalid_resource', 500011);
  assertAad(await token(sb, { grant_type: 'password', client_id: sb.info.publicClientId, username: 'ann@contoso.onmicrosoft.com', password: 'pw-ann', scope: 'https://nosuch.example.com/.default' }), 400, 'invalid_resource', 500011);
  assertAad(await token(sb, { grant_type: 'password', client_id: sb.info.publicClientId, username: 'ann@contoso.onmicrosoft.com', password: 'pw-ann', scope: 'https://outlook.office.com/SMTP.Send https://graph.microsoft.com/User.Read' }), 400, 'invalid_scope', 28000);
});

test('client credentials with a secret: roles, wrong secret 7000215, no credential 7000216, scope must be /.default', async (t) => {
  const sb = await withSandbox(t);
  const { clientId, clientSecret } = sb.info.confidentialClient;
  const ok = await token(sb, { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, scope: 'https://outlook.office365.com/.default' });
  assert.equal(ok.status, 200, ok.text);
  const body = ok.json();
  assert.equal(body['refresh_token'], undefined);
  const c = claims(body['access_token']);
  assert.equal(c['aud'], 'https://outlook.office365.com');
  assert.deepEqual(c['roles'], ['SMTP.SendAsApp']);
  assert.equal(c['appidacr'], '1');
  assert.equal(c['oid'], sb.directory.servicePrincipalByAppId(sb.info.tenantId, clientId)!.id);
  assert.equal(c['upn'], undefined);
  // HTTP Basic client authentication works too.
  const basic = await sandboxRequest(sb.info, 'POST', tokenPath(sb), { form: { grant_type: 'client_credentials', scope: 'https://outlook.office365.com/.default' }, headers: { authorization: `Basic ${Buffer.from(`${clientId}:${encodeURIComponent(clientSecret)}`).toString('base64')}` } });
  assert.equal(basic.status, 200, basic.text);
  assertAad(await token(sb, { grant_type: 'client_credentials', client_id: clientId, client_secret: 'wrong', scope: 'https://outlook.office365.com/.default' }), 401, 'invalid_client', 7000215);
  assertAad(await token(sb, { grant_type: 'client_credentials', client_id: clientId, scope: 'https://outlook.office365.com/.default' }), 401, 'invalid_client', 7000216);
  assertAad(await token(sb, { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, scope: 'https://outlook.office365.com/SMTP.SendAsApp' }), 400, 'invalid_scope', 1002012);
  // The v1 endpoint with resource= (older libraries).
  const v1 = await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/token`, { form: { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, resource: 'https://outlook.office365.com' } });
  assert.equal(v1.status, 200, v1.text);
  assert.deepEqual(claims(v1.json()['access_token'])['roles'], ['SMTP.SendAsApp']);
  // Without the app role assignment the token has no roles (as Entra): SMTP then refuses it.
  await admin(sb, 'PATCH', `/apps/${clientId}`, { adminConsent: false });
  const noRoles = await token(sb, { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, scope: 'https://outlook.office365.com/.default' });
  assert.equal(noRoles.status, 200);
  assert.equal(claims(noRoles.json()['access_token'])['roles'], undefined);
});

async function selfSignedCert(): Promise<{ pem: string; key: KeyObject; sha1: string; sha256: string }> {
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
  const alg = { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256', publicExponent: new Uint8Array([1, 0, 1]), modulusLength: 2048 };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const cert = await x509.X509CertificateGenerator.createSelfSigned({ serialNumber: '01', name: 'CN=smtp365 test app', notBefore: new Date(Date.now() - 86400_000), notAfter: new Date(Date.now() + 86400_000), signingAlgorithm: alg, keys });
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const raw = Buffer.from(cert.rawData);
  return { pem: cert.toString('pem'), key: createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }), sha1: createHash('sha1').update(raw).digest('base64url'), sha256: createHash('sha256').update(raw).digest('base64url') };
}

test('client credentials with a certificate: x5t and x5t#S256, audience, signature, time range', async (t) => {
  const sb = await withSandbox(t);
  const { clientId } = sb.info.confidentialClient;
  const cert = await selfSignedCert();
  assert.equal((await admin(sb, 'PATCH', `/apps/${clientId}`, { certificates: [cert.pem] })).status, 200);
  const aud = `${sb.info.authority}/${sb.info.tenantId}/oauth2/v2.0/token`;
  const now = Math.floor(Date.now() / 1000);
  const assertion = (header: Record<string, unknown>, over: Record<string, unknown> = {}, key = cert.key) =>
    signJwt(header, { aud, iss: clientId, sub: clientId, jti: crypto.randomUUID(), nbf: now, exp: now + 600, ...over }, key);
  const cc = (a: string) => token(sb, { grant_type: 'client_credentials', client_id: clientId, client_assertion_type: 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer', client_assertion: a, scope: 'https://outlook.office365.com/.default' });
  for (const header of [{ x5t: cert.sha1 }, { 'x5t#S256': cert.sha256 }]) {
    const res = await cc(assertion(header));
    assert.equal(res.status, 200, res.text);
    assert.equal(claims(res.json()['access_token'])['appidacr'], '2');
  }
  assertAad(await cc(assertion({ x5t: cert.sha1 }, { aud: 'https://login.microsoftonline.com/x/oauth2/v2.0/token' })), 401, 'invalid_client', 700212);
  assertAad(await cc(assertion({ x5t: cert.sha1 }, {}, generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey)), 401, 'invalid_client', 700027);
  assertAad(await cc(assertion({ x5t: randomBytes(20).toString('base64url') })), 401, 'invalid_client', 700027);
  assertAad(await cc(assertion({ x5t: cert.sha1 }, { exp: now - 3600, nbf: now - 7200 })), 401, 'invalid_client', 700024);
  assertAad(await cc(assertion({ x5t: cert.sha1 }, { iss: 'someone-else' })), 401, 'invalid_client', 700021);
});

test('authorization code with PKCE through the sign-in page (password, MFA), and its errors', async (t) => {
  const sb = await withSandbox(t);
  const megan = sb.info.users[1]!;
  const verifier = randomBytes(32).toString('base64url');
  const challenge = createHash('sha256').update(verifier).digest('base64url');
  const redirectUri = 'http://localhost:53682/';
  const q = new URLSearchParams({ client_id: sb.info.publicClientId, response_type: 'code', redirect_uri: redirectUri, scope: SMTP_SCOPE, state: 'st4te', nonce: 'n0nce', code_challenge: challenge, code_challenge_method: 'S256' });
  const page = await sandboxRequest(sb.info, 'GET', `/${sb.info.tenantId}/oauth2/v2.0/authorize?${q}`);
  assert.equal(page.status, 200);
  const txn = /name="txn" value="([^"]+)"/.exec(page.text)![1]!;
  const wrong = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'password', login: megan.upn, passwd: 'nope' } });
  assert.match(wrong.text, /Your account or password is incorrect/);
  const mfa = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'password', login: megan.upn, passwd: megan.password } });
  assert.match(mfa.text, /authenticator app/);
  const badOtc = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'mfa', otc: '000000' } });
  assert.match(badOtc.text, /didn(&#39;|')t work/);
  const confirm = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'mfa', otc: '123456' } });
  assert.match(confirm.text, /Are you trying to sign in/);
  const done = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'confirm', action: 'continue' } });
  assert.equal(done.status, 302);
  const loc = new URL(String(done.headers['location']));
  assert.equal(`${loc.origin}${loc.pathname}`, redirectUri);
  assert.equal(loc.searchParams.get('state'), 'st4te');
  const code = loc.searchParams.get('code')!;
  const redeem = (form: Record<string, string>) => token(sb, { grant_type: 'authorization_code', client_id: sb.info.publicClientId, code, redirect_uri: redirectUri, client_info: '1', ...form });
  assertAad(await redeem({ code_verifier: 'x'.repeat(43) }), 400, 'invalid_grant', 501481);
  const ok = await redeem({ code_verifier: verifier });
  assert.equal(ok.status, 200, ok.text);
  const at = claims(ok.json()['access_token']);
  assert.equal(at['upn'], megan.upn);
  assert.deepEqual(at['amr'], ['pwd', 'mfa']);
  assert.equal(claims(ok.json()['id_token'])['nonce'], 'n0nce');
  assertAad(await redeem({ code_verifier: verifier }), 400, 'invalid_grant', 54005);
  // A redirect URI the app does not have: an error page (AADSTS50011), no redirect.
  const bad = await sandboxRequest(sb.info, 'GET', `/${sb.info.tenantId}/oauth2/v2.0/authorize?${new URLSearchParams({ client_id: sb.info.publicClientId, response_type: 'code', redirect_uri: 'https://evil.example/cb', scope: SMTP_SCOPE })}`);
  assert.equal(bad.status, 400);
  assert.match(bad.text, /AADSTS50011/);
  // Cancel sends the person back with access_denied.
  const page2 = await sandboxRequest(sb.info, 'GET', `/${sb.info.tenantId}/oauth2/v2.0/authorize?${q}`);
  const txn2 = /name="txn" value="([^"]+)"/.exec(page2.text)![1]!;
  await sandboxRequest(sb.info, 'POST', '/login', { form: { txn: txn2, step: 'password', login: sb.info.users[0]!.upn, passwd: sb.info.users[0]!.password } });
  const cancel = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn: txn2, step: 'confirm', action: 'cancel' } });
  const cl = new URL(String(cancel.headers['location']));
  assert.equal(cl.searchParams.get('error'), 'access_denied');
  assert.match(cl.searchParams.get('error_description')!, /^AADSTS65004/);
});

test('the device login page: code, password, MFA, approve; and decline', async (t) => {
  const sb = await withSandbox(t);
  const megan = sb.info.users[1]!;
  const dc = await deviceCode(sb);
  assert.match((await sandboxRequest(sb.info, 'GET', '/devicelogin')).text, /Enter code/);
  assert.match((await sandboxRequest(sb.info, 'POST', '/devicelogin', { form: { otc: 'WRONGCODE' } })).text, /didn(&#39;|')t work/);
  const signInPage = await sandboxRequest(sb.info, 'POST', '/devicelogin', { form: { otc: dc.user_code } });
  const txn = /name="txn" value="([^"]+)"/.exec(signInPage.text)![1]!;
  await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'password', login: megan.upn, passwd: megan.password } });
  await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'mfa', otc: '123456' } });
  const done = await sandboxRequest(sb.info, 'POST', '/login', { form: { txn, step: 'confirm', action: 'continue' } });
  assert.match(done.text, /You have signed in to the .* application on your device/);
  const res = await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: dc.device_code });
  assert.equal(res.status, 200, res.text);
  assert.equal(claims(res.json()['access_token'])['upn'], megan.upn);

  const dc2 = await deviceCode(sb);
  const p2 = await sandboxRequest(sb.info, 'POST', '/devicelogin', { form: { otc: dc2.user_code } });
  const txn2 = /name="txn" value="([^"]+)"/.exec(p2.text)![1]!;
  await sandboxRequest(sb.info, 'POST', '/login', { form: { txn: txn2, step: 'password', login: sb.info.users[0]!.upn, passwd: sb.info.users[0]!.password } });
  assert.match((await sandboxRequest(sb.info, 'POST', '/login', { form: { txn: txn2, step: 'confirm', action: 'cancel' } })).text, /declined/);
  assertAad(await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: dc2.device_code }), 400, 'authorization_declined', 70000);
});

test('device codes approve themselves when autoApproveDeviceCodes is set', async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: { afterMs: 0 } });
  const dc = await deviceCode(sb);
  let res: SandboxResponse;
  do {
    await new Promise((r) => setTimeout(r, 20));
    res = await token(sb, { grant_type: 'device_code', client_id: sb.info.publicClientId, device_code: dc.device_code });
  } while (res.status !== 200 && res.json()['error'] === 'authorization_pending');
  assert.equal(res.status, 200, res.text);
  assert.equal(claims(res.json()['access_token'])['upn'], sb.info.users[0]!.upn);
});

test('token endpoint faults: an HTTP error, a dropped connection, a delay that then carries on', async (t) => {
  const sb = await withSandbox(t);
  const { clientId, clientSecret } = sb.info.confidentialClient;
  const cc = () => token(sb, { grant_type: 'client_credentials', client_id: clientId, client_secret: clientSecret, scope: 'https://outlook.office365.com/.default' });
  sb.faults.add({ stage: 'token', httpStatus: 503, match: clientId });
  assertAad(await cc(), 503, 'temporarily_unavailable', 90033);
  const custom = await admin(sb, 'POST', '/faults', { stage: 'token', httpStatus: 429, body: { error: 'too_many_requests' } });
  assert.equal(custom.status, 201, custom.text);
  const r429 = await cc();
  assert.equal(r429.status, 429);
  assert.deepEqual(r429.json(), { error: 'too_many_requests' });
  sb.faults.add({ stage: 'token', drop: true });
  await assert.rejects(cc(), /socket hang up|ECONNRESET/);
  sb.faults.add({ stage: 'token', delayMs: 50 });
  assert.equal((await cc()).status, 200);
  sb.faults.add({ stage: 'devicecode', httpStatus: 500 });
  assertAad(await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/devicecode`, { form: { client_id: sb.info.publicClientId, scope: SMTP_SCOPE } }), 500, 'temporarily_unavailable', 90033);
  // A fault for another client does not apply.
  sb.faults.add({ stage: 'token', httpStatus: 500, match: 'someone-else' });
  assert.equal((await cc()).status, 200);
});
