// The Graph subset as setup automation uses it: create and update an app
// registration, its service principal, consent (delegated and app role),
// then the new app gets tokens; and Graph's refusals (401, 403, 404, 400).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { WELL_KNOWN } from '../src/sandbox/state/model.ts';
import { sandboxRequest, withSandbox, type Sandbox } from './helpers/sandbox.ts';

const GRAPH_ADMIN_SCOPES = 'https://graph.microsoft.com/Application.ReadWrite.All https://graph.microsoft.com/DelegatedPermissionGrant.ReadWrite.All https://graph.microsoft.com/AppRoleAssignment.ReadWrite.All openid profile offline_access';

async function graphToken(sb: Sandbox, upn: string, scope = GRAPH_ADMIN_SCOPES): Promise<{ status: number; body: Record<string, unknown> }> {
  // As `az`/Graph PowerShell do: the Microsoft Graph Command Line Tools public client, device code.
  const dc = await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/devicecode`, { form: { client_id: WELL_KNOWN.graphCliClientId, scope } });
  assert.equal(dc.status, 200, dc.text);
  const userCode = dc.json()['user_code'];
  assert.equal((await sandboxRequest(sb.info, 'POST', '/admin/device-codes/approve', { json: { userCode, upn } })).status, 200);
  const res = await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'device_code', client_id: WELL_KNOWN.graphCliClientId, device_code: String(dc.json()['device_code']) } });
  return { status: res.status, body: res.json() };
}

test('Graph: register an app, its service principal, consent, and the app then gets SMTP tokens', async (t) => {
  const sb = await withSandbox(t);
  const alex = sb.info.users[0]!;
  const tok = await graphToken(sb, alex.upn);
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  const bearer = String(tok.body['access_token']);
  const g = (method: string, path: string, json?: unknown) => sandboxRequest(sb.info, method, `${sb.info.graph}/v1.0${path}`, { bearer, ...(json === undefined ? {} : { json }) });

  const me = await g('GET', '/me');
  assert.equal(me.status, 200, me.text);
  assert.equal(me.json()['userPrincipalName'], alex.upn);

  // Guide steps 2–19, by Graph.
  const created = await g('POST', '/applications', {
    displayName: 'smtp365 by Graph',
    signInAudience: 'AzureADMyOrg',
    isFallbackPublicClient: false,
    publicClient: { redirectUris: ['http://localhost'] },
    requiredResourceAccess: [{ resourceAppId: WELL_KNOWN.graphAppId, resourceAccess: ['SMTP.Send', 'offline_access', 'openid', 'User.Read'].map((n) => ({ id: WELL_KNOWN.scopes[n as keyof typeof WELL_KNOWN.scopes], type: 'Scope' })) }],
  });
  assert.equal(created.status, 201, created.text);
  const app = created.json();
  const appId = String(app['appId']);
  assert.equal(app['isFallbackPublicClient'], false);
  const listed = await g('GET', `/applications?$filter=${encodeURIComponent(`appId eq '${appId}'`)}&$select=id,appId,displayName`);
  assert.deepEqual(listed.json<{ value: unknown[] }>().value, [{ id: app['id'], appId, displayName: 'smtp365 by Graph' }]);
  assert.equal((await g('PATCH', `/applications/${app['id']}`, { isFallbackPublicClient: true })).status, 204);
  assert.equal((await g('GET', `/applications(appId='${appId}')`)).json()['isFallbackPublicClient'], true);

  const sp = await g('POST', '/servicePrincipals', { appId });
  assert.equal(sp.status, 201, sp.text);
  const dup = await g('POST', '/servicePrincipals', { appId });
  assert.equal(dup.status, 409);
  assert.equal(dup.json<{ error: { code: string } }>().error.code, 'Request_MultipleObjectsWithSameKeyValue');

  const graphSp = await g('GET', `/servicePrincipals(appId='${WELL_KNOWN.graphAppId}')?$select=id,oauth2PermissionScopes,appRoles`);
  assert.equal(graphSp.status, 200, graphSp.text);
  const scopes = graphSp.json<{ id: string; oauth2PermissionScopes: Array<{ id: string; value: string }> }>();
  assert.equal(scopes.oauth2PermissionScopes.find((s) => s.value === 'SMTP.Send')?.id, WELL_KNOWN.scopes['SMTP.Send']);

  // Before consent the new app's users get AADSTS65001.
  const ropc = () => sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'password', client_id: appId, username: alex.upn, password: alex.password, scope: 'https://outlook.office.com/SMTP.Send offline_access' } });
  const before = await ropc();
  assert.equal(before.status, 400);
  assert.deepEqual(before.json()['error_codes'], [65001]);
  const grant = await g('POST', '/oauth2PermissionGrants', { clientId: sp.json()['id'], consentType: 'AllPrincipals', principalId: null, resourceId: scopes.id, scope: 'SMTP.Send offline_access openid User.Read' });
  assert.equal(grant.status, 201, grant.text);
  const after = await ropc();
  assert.equal(after.status, 200, after.text);
  assert.equal(sb.issuer.verifyAccessToken(String(after.json()['access_token'])).ok, true);
  const grants = await g('GET', `/oauth2PermissionGrants?$filter=${encodeURIComponent(`clientId eq '${sp.json()['id']}'`)}`);
  assert.equal(grants.json<{ value: Array<{ scope: string }> }>().value[0]?.scope, 'SMTP.Send offline_access openid User.Read');

  // App-only: a secret, the Exchange app role, then client credentials.
  const daemon = (await g('POST', '/applications', { displayName: 'daemon by Graph', requiredResourceAccess: [{ resourceAppId: WELL_KNOWN.exchangeAppId, resourceAccess: [{ id: WELL_KNOWN.appRoles['SMTP.SendAsApp'], type: 'Role' }] }] })).json();
  const pw = await g('POST', `/applications/${daemon['id']}/addPassword`, { passwordCredential: { displayName: 'test' } });
  assert.equal(pw.status, 200, pw.text);
  const secret = String(pw.json()['secretText']);
  assert.ok(secret.length > 20);
  assert.equal((await g('GET', `/applications/${daemon['id']}`)).json<{ passwordCredentials: Array<{ secretText: unknown; hint: string }> }>().passwordCredentials[0]?.secretText, null);
  const daemonSp = (await g('POST', '/servicePrincipals', { appId: daemon['appId'] })).json();
  const exo = (await g('GET', `/servicePrincipals?$filter=${encodeURIComponent(`appId eq '${WELL_KNOWN.exchangeAppId}'`)}`)).json<{ value: Array<{ id: string; appRoles: Array<{ id: string; value: string }> }> }>().value[0]!;
  const roleId = exo.appRoles.find((r) => r.value === 'SMTP.SendAsApp')!.id;
  const assign = await g('POST', `/servicePrincipals/${exo.id}/appRoleAssignedTo`, { principalId: daemonSp['id'], resourceId: exo.id, appRoleId: roleId });
  assert.equal(assign.status, 201, assign.text);
  assert.equal((await g('POST', `/servicePrincipals/${exo.id}/appRoleAssignedTo`, { principalId: daemonSp['id'], resourceId: exo.id, appRoleId: roleId })).status, 400);
  const cc = await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'client_credentials', client_id: String(daemon['appId']), client_secret: secret, scope: 'https://outlook.office365.com/.default' } });
  assert.equal(cc.status, 200, cc.text);
  const v = sb.issuer.verifyAccessToken(String(cc.json()['access_token']));
  assert.ok(v.ok);
  assert.deepEqual(v.claims.roles, ['SMTP.SendAsApp']);
  assert.equal(v.claims.oid, daemonSp['id']);
  // The admin API shows what Graph did.
  const adminView = (await sandboxRequest(sb.info, 'GET', `/admin/apps/${daemon['appId']}`)).json<{ consent: Array<{ applicationRoles: Array<{ role: string }> }> }>();
  assert.equal(adminView.consent[0]?.applicationRoles[0]?.role, 'SMTP.SendAsApp');
});

test('Graph refusals: no token, a token for another audience, not an admin, unknown objects and properties', async (t) => {
  const sb = await withSandbox(t);
  const [alex, megan] = sb.info.users as [{ upn: string; password: string }, { upn: string; password: string }];
  const req = (method: string, path: string, bearer?: string, json?: unknown) => sandboxRequest(sb.info, method, `${sb.info.graph}/v1.0${path}`, { ...(bearer ? { bearer } : {}), ...(json === undefined ? {} : { json }) });
  const err = (r: { status: number; json: <T>() => T }, status: number, code: string) => {
    assert.equal(r.status, status);
    const e = r.json<{ error: { code: string; message: string; innerError: { 'request-id': string; date: string } } }>().error;
    assert.equal(e.code, code);
    assert.ok(e.innerError['request-id'] && e.innerError.date);
  };
  err(await req('GET', '/me'), 401, 'InvalidAuthenticationToken');
  // An SMTP token is not a Graph token.
  const smtp = await sandboxRequest(sb.info, 'POST', `/${sb.info.tenantId}/oauth2/v2.0/token`, { form: { grant_type: 'password', client_id: sb.info.publicClientId, username: alex.upn, password: alex.password, scope: 'https://outlook.office.com/SMTP.Send' } });
  err(await req('GET', '/me', String(smtp.json()['access_token'])), 401, 'InvalidAuthenticationToken');

  // A non-admin cannot consent to admin-only Graph permissions for the Graph tools…
  const refused = await graphToken(sb, megan.upn);
  assert.equal(refused.status, 400);
  assert.deepEqual(refused.body['error_codes'], [65001]);
  // …but with the tenant-wide consent an admin gave, she gets the scopes; her role still limits her.
  const admin = await graphToken(sb, alex.upn);
  const ab = String(admin.body['access_token']);
  const cliSp = (await req('GET', `/servicePrincipals(appId='${WELL_KNOWN.graphCliClientId}')`, ab)).json();
  const graphSp = (await req('GET', `/servicePrincipals(appId='${WELL_KNOWN.graphAppId}')`, ab)).json();
  assert.equal((await req('POST', '/oauth2PermissionGrants', ab, { clientId: cliSp['id'], consentType: 'AllPrincipals', resourceId: graphSp['id'], scope: 'Application.ReadWrite.All DelegatedPermissionGrant.ReadWrite.All AppRoleAssignment.ReadWrite.All' })).status, 201);
  const mt = await graphToken(sb, megan.upn);
  assert.equal(mt.status, 200, JSON.stringify(mt.body));
  const mb = String(mt.body['access_token']);
  const own = await req('POST', '/applications', mb, { displayName: 'megan app' });
  assert.equal(own.status, 201, own.text);
  assert.equal((await req('PATCH', `/applications/${own.json()['id']}`, mb, { isFallbackPublicClient: true })).status, 204);
  const other = (await req('GET', `/applications(appId='${sb.info.publicClientId}')`, mb)).json();
  err(await req('PATCH', `/applications/${other['id']}`, mb, { isFallbackPublicClient: false }), 403, 'Authorization_RequestDenied');
  const ownSp = (await req('POST', '/servicePrincipals', mb, { appId: own.json()['appId'] })).json();
  err(await req('POST', '/oauth2PermissionGrants', mb, { clientId: ownSp['id'], consentType: 'AllPrincipals', resourceId: graphSp['id'], scope: 'SMTP.Send' }), 403, 'Authorization_RequestDenied');
  // A token without the scope: 403 too.
  const userRead = await graphToken(sb, megan.upn, 'User.Read openid');
  assert.equal(userRead.status, 200, JSON.stringify(userRead.body));
  err(await req('GET', '/applications', String(userRead.body['access_token'])), 403, 'Authorization_RequestDenied');
  assert.equal((await req('GET', '/me', String(userRead.body['access_token']))).json()['userPrincipalName'], megan.upn);

  err(await req('GET', '/applications/00000000-0000-4000-8000-000000000000', ab), 404, 'Request_ResourceNotFound');
  err(await req('PATCH', `/applications/${other['id']}`, ab, { noSuchProperty: 1 }), 400, 'Request_BadRequest');
  err(await req('POST', '/oauth2PermissionGrants', ab, { clientId: cliSp['id'], consentType: 'AllPrincipals', resourceId: graphSp['id'], scope: 'No.Such.Scope' }), 400, 'Request_BadRequest');
});
