// One scenario per doctor check, checks 7–10 (token claims and SMTP): the
// sandbox is broken at exactly that step, and doctor must name the check, the
// guide step and the fix with the user's own values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { rig, only, skippedBecause, statuses, checkResultsAgainstDocs } from './doctor-helpers.ts';
import { createTokenProvider } from '../src/auth/index.ts';

checkResultsAgainstDocs();

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

test('8 SMTP connection: a server that accepts and never answers (a black-holing middlebox) is reported as a timeout', async (t) => {
  const r = await rig(t);
  const sockets = new Set<net.Socket>();
  const stall = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => stall.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => stall.close(() => resolve()));
  });
  const results = await r.doctor({ use: { ...r.account, smtpPort: (stall.address() as net.AddressInfo).port }, timeoutSeconds: 3 });
  const x = only(results, 'smtp-connection', 'failed');
  assert.equal(x.timedOut, true);
  assert.equal(x.code, 'TIMEOUT');
  assert.match(x.detail, /timed out after 3 s/);
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
  // Without Graph the Enterprise application's object id is the app-only token's oid: filled in, no placeholder.
  const view = (await r.admin('GET', `/apps/${r.account.clientId}`)) as { consent: Array<{ servicePrincipalId: string }> };
  const sp = view.consent[0]!.servicePrincipalId;
  assert.deepEqual(x.powershell, [
    `New-ServicePrincipal -AppId ${r.account.clientId} -ObjectId ${sp}`,
    `Add-MailboxPermission -Identity ${r.account.user} -User ${sp} -AccessRights FullAccess`,
  ]);
});

test('9 XOAUTH2: a connection dropped during AUTH (after check 8 connected) is a dropped session, not a port or firewall', async (t) => {
  const r = await rig(t);
  await r.admin('POST', '/faults', { stage: 'auth', drop: true, times: null });
  const results = await r.doctor();
  only(results, 'smtp-connection', 'passed');
  const x = only(results, 'smtp-auth', 'failed');
  assert.equal(x.code, 'SMTP_CONNECTION');
  assert.match(x.problem ?? '', /closed the connection in the middle of the session/);
  assert.doesNotMatch(`${x.cause} ${x.fix.join(' ')}`, /465|port is wrong|Allow outgoing TCP/);
});
