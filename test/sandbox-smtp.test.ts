// The sandbox's SMTP dialogue and AUTH, over real sockets: every reply is
// compared with Exchange Online's wording (reference §2, §3, §5).

import assert from 'node:assert/strict';
import { test, type TestContext } from 'node:test';
import { mime, openAuthed, openSecure, RawSmtp, sendMessage, xoauth2 } from './helpers/raw-smtp.ts';
import { ALEX, INFO, MEGAN, startTestSmtp, type SmtpSandbox } from './helpers/smtp-sandbox.ts';

const BACKEND = 'SB1PR00MB0001\\.namprd00\\.prod\\.outlook\\.com';
const TRAILER = `\\[${BACKEND} \\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z [0-9A-F]{16}\\]`;
const AUTH_FAILED = new RegExp(`^535 5\\.7\\.3 Authentication unsuccessful ${TRAILER}$`);
const TENANT_DISABLED = new RegExp(
  `^535 5\\.7\\.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant\\. Visit https://aka\\.ms/smtp_auth_disabled for more information\\. ${TRAILER}$`,
);
const MAILBOX_DISABLED = new RegExp(
  `^535 5\\.7\\.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox\\. Visit https://aka\\.ms/smtp_auth_disabled for more information\\. ${TRAILER}$`,
);
const BASIC_DISABLED = new RegExp(`^535 5\\.7\\.139 Authentication unsuccessful, basic authentication is disabled\\. ${TRAILER}$`);
const SECURITY_DEFAULTS = new RegExp(`^535 5\\.7\\.139 Authentication unsuccessful, user is locked by your organization's security defaults policy\\. Contact your administrator\\. ${TRAILER}$`);
const CONDITIONAL_ACCESS = new RegExp(
  `^535 5\\.7\\.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully\\. Contact your administrator\\. ${TRAILER}$`,
);
const QUEUED = new RegExp(`^250 2\\.0\\.0 OK <[^>]+> \\[Hostname=${BACKEND}\\]$`);

async function authReply(sb: SmtpSandbox, t: TestContext, user: string, token: string): Promise<string> {
  const c = await openSecure(sb.port, sb.caPem);
  t.after(() => c.close());
  return c.cmd('AUTH XOAUTH2 ' + xoauth2(user, token));
}

test('banner, EHLO before and after STARTTLS, exactly as Exchange Online', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await RawSmtp.connect(sb.port);
  t.after(() => c.close());
  const banner = await c.readText();
  assert.match(banner, /^220 SB1PR00CA0001\.outlook\.office365\.com Microsoft ESMTP MAIL Service ready at (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d \+0000 \[[0-9A-F]{16}\]$/);
  assert.equal(
    await c.cmd('EHLO client.example'),
    [
      '250-SB1PR00CA0001.outlook.office365.com Hello [127.0.0.1]',
      '250-SIZE 157286400',
      '250-PIPELINING',
      '250-DSN',
      '250-ENHANCEDSTATUSCODES',
      '250-STARTTLS',
      '250-8BITMIME',
      '250-BINARYMIME',
      '250-CHUNKING',
      '250 SMTPUTF8',
    ].join('\n'),
  );
  assert.equal(await c.cmd('AUTH LOGIN'), '504 5.7.4 Unrecognized authentication type', 'no AUTH before TLS');
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '530 5.7.57 Client not authenticated to send mail.');
  assert.equal(await c.cmd('STARTTLS'), '220 2.0.0 SMTP server ready');
  const tls = await c.upgrade({ ca: sb.caPem });
  assert.ok(['TLSv1.2', 'TLSv1.3'].includes(tls.getProtocol() ?? ''), tls.getProtocol() ?? 'no protocol');
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '503 5.5.2 Send hello first', 'TLS starts the session over (RFC 3207)');
  assert.equal(
    await c.cmd('EHLO client.example'),
    [
      '250-SB1PR00CA0001.outlook.office365.com Hello [127.0.0.1]',
      '250-SIZE 157286400',
      '250-PIPELINING',
      '250-DSN',
      '250-ENHANCEDSTATUSCODES',
      '250-AUTH LOGIN XOAUTH2',
      '250-8BITMIME',
      '250-BINARYMIME',
      '250-CHUNKING',
      '250 SMTPUTF8',
    ].join('\n'),
  );
  assert.equal(await c.cmd('STARTTLS'), '503 5.5.1 Bad sequence of commands');
  assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
  assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
  assert.equal(await c.cmd(`VRFY ${ALEX}`), '252 2.1.5 Cannot VRFY user, but will take message for this address');
  assert.equal(await c.cmd('HELP'), '214-This server supports the following commands:\n214 HELO EHLO STARTTLS RCPT DATA RSET MAIL QUIT HELP AUTH BDAT');
  assert.equal(await c.cmd('EHLO'), '501 5.5.4 Invalid domain name');
  assert.equal(await c.cmd('HELO client.example'), '250 SB1PR00CA0001.outlook.office365.com Hello [127.0.0.1]');
  assert.equal(await c.cmd('FOO bar'), "500 5.3.3 Unrecognized command 'FOO'");
  assert.equal(await c.cmd('QUIT'), '221 2.0.0 Service closing transmission channel');
  await c.waitClosed();
});

test('a message: AUTH XOAUTH2 inline, MAIL, RCPT, DATA, stored in Sent Items and the recipient\'s Inbox', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openSecure(sb.port, sb.caPem);
  t.after(() => c.close());
  assert.equal(await c.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, sb.userToken(ALEX))), '235 2.7.0 Authentication successful');
  assert.equal(await c.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, sb.userToken(ALEX))), '503 5.5.2 Already authenticated');
  assert.equal(await c.cmd('RCPT TO:<x@example.com>'), '503 5.5.2 Need mail command');
  assert.equal(await c.cmd('DATA'), '503 5.5.2 Need mail command');
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '503 5.5.2 Sender already specified');
  assert.equal(await c.cmd('DATA'), '503 5.5.2 Need rcpt command');
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  assert.equal(await c.cmd('RCPT TO:<someone@example.com>'), '250 2.1.5 Recipient OK');
  assert.equal(await c.cmd('RCPT TO:<not an address>'), '501 5.1.3 Invalid address');
  assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
  const reply = await c.cmd(mime(ALEX, MEGAN, 'Quarterly report', 'Line one\r\n.dot-stuffed line', 'Message-ID: <q1@contoso.example>\r\n').replace(/^\./gm, '..') + '.');
  assert.equal(reply, '250 2.0.0 OK <q1@contoso.example> [Hostname=SB1PR00MB0001.namprd00.prod.outlook.com]');

  const [m] = sb.messages.list();
  assert.ok(m);
  assert.equal(m.authUser, ALEX);
  assert.equal(m.authIdentity, ALEX);
  assert.equal(m.mailFrom, ALEX);
  assert.deepEqual(m.rcptTo, [MEGAN, 'someone@example.com']);
  assert.equal(m.subject, 'Quarterly report');
  assert.equal(m.messageId, '<q1@contoso.example>');
  assert.deepEqual(m.folders, [
    { mailbox: ALEX, folder: 'SentItems' },
    { mailbox: MEGAN, folder: 'Inbox' },
  ]);
  const raw = (await sb.messages.readRaw(m.id)).toString();
  assert.match(raw, /\r\nLine one\r\n\.dot-stuffed line\r\n$/, 'dot-unstuffed, stored byte for byte');
  assert.equal(sb.messages.list({ mailbox: MEGAN, folder: 'Inbox' }).length, 1);
  assert.equal(sb.messages.list({ mailbox: MEGAN, folder: 'SentItems' }).length, 0);

  // a message without a Message-ID gets one in the reply
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'no id')), QUEUED);
  assert.match(sb.messages.list()[1]!.messageId ?? '', /^<[0-9a-f]{32}@sb1pr00mb0001\.namprd00\.prod\.outlook\.com>$/);
});

test('XOAUTH2 after an empty 334, and cancel with *', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openSecure(sb.port, sb.caPem);
  t.after(() => c.close());
  assert.equal(await c.cmd('AUTH XOAUTH2'), '334 ');
  assert.match(await c.cmd('*'), AUTH_FAILED);
  assert.equal(await c.cmd('AUTH XOAUTH2'), '334 ');
  assert.equal(await c.cmd(xoauth2(ALEX, sb.userToken(ALEX))), '235 2.7.0 Authentication successful');
});

test('mechanisms: PLAIN is unrecognized, LOGIN is Basic auth and refused, malformed XOAUTH2 is 5.7.3', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openSecure(sb.port, sb.caPem);
  t.after(() => c.close());
  assert.equal(await c.cmd('AUTH PLAIN ' + Buffer.from(`\0${ALEX}\0pw`).toString('base64')), '504 5.7.4 Unrecognized authentication type');
  assert.equal(await c.cmd('AUTH CRAM-MD5'), '504 5.7.4 Unrecognized authentication type');
  assert.equal(await c.cmd('AUTH LOGIN'), '334 VXNlcm5hbWU6');
  assert.equal(await c.cmd(Buffer.from(ALEX).toString('base64')), '334 UGFzc3dvcmQ6');
  assert.match(await c.cmd(Buffer.from('Sandbox-Pass-1').toString('base64')), BASIC_DISABLED);
  assert.match(await c.cmd('AUTH XOAUTH2 bm90IHhvYXV0aDI='), AUTH_FAILED);
  assert.match(await c.cmd('AUTH XOAUTH2 %%%'), AUTH_FAILED);
  assert.match(await c.cmd('AUTH XOAUTH2 ' + Buffer.from(`user=${ALEX}\x01auth=Basic abc\x01\x01`).toString('base64')), AUTH_FAILED);
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '530 5.7.57 Client not authenticated to send mail.');

  // With Basic auth still allowed in the tenant, LOGIN with the right password works.
  sb.directory.data.tenants[0]!.basicAuthEnabled = true;
  assert.equal(await c.cmd('AUTH LOGIN ' + Buffer.from(ALEX).toString('base64')), '334 UGFzc3dvcmQ6');
  assert.match(await c.cmd(Buffer.from('wrong').toString('base64')), AUTH_FAILED);
  assert.equal(await c.cmd('AUTH LOGIN ' + Buffer.from(ALEX).toString('base64')), '334 UGFzc3dvcmQ6');
  assert.equal(await c.cmd(Buffer.from('Sandbox-Pass-1').toString('base64')), '235 2.7.0 Authentication successful');

  // A password is not enough for a user who must use MFA; Security Defaults block Basic auth for everyone.
  const login = async (upn: string, password: string): Promise<string> => {
    const d = await openSecure(sb.port, sb.caPem);
    t.after(() => d.close());
    assert.equal(await d.cmd('AUTH LOGIN ' + Buffer.from(upn).toString('base64')), '334 UGFzc3dvcmQ6');
    return d.cmd(Buffer.from(password).toString('base64'));
  };
  assert.match(await login(MEGAN, 'Sandbox-Pass-2'), AUTH_FAILED, 'per-user MFA');
  sb.directory.data.tenants[0]!.securityDefaults = true;
  assert.match(await login(ALEX, 'Sandbox-Pass-1'), SECURITY_DEFAULTS);
});

test('token checks: signature, expiry, audience, scope, mailbox rights', async (t) => {
  const sb = await startTestSmtp(t);
  const good = sb.userToken(ALEX);
  const [h, p] = good.split('.');
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(p!, 'base64url').toString()), upn: 'x' })).toString('base64url')}.${good.split('.')[2]}`;
  assert.match(await authReply(sb, t, ALEX, tampered), AUTH_FAILED, 'bad signature');
  assert.match(await authReply(sb, t, ALEX, 'EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA'), AUTH_FAILED, 'not a JWT');
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX, { aud: 'https://graph.microsoft.com' })), AUTH_FAILED, 'a Graph token');
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX, { scp: ['User.Read', 'openid'] })), AUTH_FAILED, 'no SMTP.Send');
  assert.match(await authReply(sb, t, MEGAN, sb.userToken(ALEX)), AUTH_FAILED, "user= another user's mailbox");
  assert.match(await authReply(sb, t, 'nobody@contoso.onmicrosoft.com', sb.userToken(ALEX)), AUTH_FAILED, 'no such mailbox');
  assert.equal(await authReply(sb, t, INFO, sb.userToken(ALEX)), '235 2.7.0 Authentication successful', 'shared mailbox with FullAccess');
  assert.match(await authReply(sb, t, INFO, sb.userToken(MEGAN)), AUTH_FAILED, 'shared mailbox without FullAccess');
  assert.equal(await authReply(sb, t, ALEX.toUpperCase(), sb.userToken(ALEX)), '235 2.7.0 Authentication successful', 'addresses are case-insensitive');

  const short = sb.userToken(ALEX, { lifetimeSeconds: 60 });
  sb.clock.advance(61);
  assert.match(await authReply(sb, t, ALEX, short), AUTH_FAILED, 'expired');
  assert.equal(await authReply(sb, t, ALEX, good), '235 2.7.0 Authentication successful');

  const failures = sb.smtp.events().filter((e) => e.type === 'auth' && !e.ok);
  assert.equal(failures.length, 8);
  assert.ok(failures.every((e) => e.type === 'auth' && !e.ok && e.detail.length > 10));
  assert.ok(failures.some((e) => e.type === 'auth' && !e.ok && /audience/.test(e.detail)));
});

test('SMTP AUTH switches, security defaults, Conditional Access, disabled user', async (t) => {
  const sb = await startTestSmtp(t);
  const mbx = sb.directory.mailbox(ALEX)!;
  const tenant = sb.directory.data.tenants[0]!;
  assert.equal(tenant.smtpClientAuthenticationDisabled, true, 'default tenant: off tenant-wide, on for the mailbox');

  mbx.smtpClientAuthenticationDisabled = null; // follow the tenant
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX)), TENANT_DISABLED);
  mbx.smtpClientAuthenticationDisabled = true;
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX)), MAILBOX_DISABLED);
  tenant.smtpClientAuthenticationDisabled = false;
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX)), MAILBOX_DISABLED, 'the mailbox setting wins');
  mbx.smtpClientAuthenticationDisabled = null;
  assert.equal(await authReply(sb, t, ALEX, sb.userToken(ALEX)), '235 2.7.0 Authentication successful');

  // Security Defaults block legacy (Basic) authentication; a token from a modern sign-in gets through,
  // unless the sandbox is told Microsoft refuses it too (UNCONFIRMED either way).
  tenant.securityDefaults = true;
  assert.equal(await authReply(sb, t, ALEX, sb.userToken(ALEX)), '235 2.7.0 Authentication successful');
  sb.smtp.behaviour.securityDefaultsBlockOAuth = true;
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX)), SECURITY_DEFAULTS);
  sb.smtp.behaviour.securityDefaultsBlockOAuth = false;
  tenant.securityDefaults = false;
  tenant.conditionalAccessBlockedUsers = [ALEX];
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX)), CONDITIONAL_ACCESS);
  tenant.conditionalAccessBlockedUsers = [];
  sb.directory.user(ALEX)!.accountEnabled = false;
  assert.match(await authReply(sb, t, ALEX, sb.userToken(ALEX)), AUTH_FAILED);
});

test('app-only: SMTP.SendAsApp, Exchange service principal with the right object id, FullAccess', async (t) => {
  const sb = await startTestSmtp(t);
  assert.equal(await authReply(sb, t, ALEX, sb.appToken()), '235 2.7.0 Authentication successful');
  assert.equal(await authReply(sb, t, INFO, sb.appToken()), '235 2.7.0 Authentication successful');
  assert.match(await authReply(sb, t, MEGAN, sb.appToken()), AUTH_FAILED, 'no FullAccess on megan');
  assert.match(await authReply(sb, t, ALEX, sb.appToken({ roles: [] })), AUTH_FAILED, 'no SMTP.SendAsApp role');
  assert.match(await authReply(sb, t, ALEX, sb.appToken({ aud: 'https://graph.microsoft.com' })), AUTH_FAILED, 'Graph audience');

  const exo = sb.directory.data.exchangeServicePrincipals;
  const saved = exo.map((e) => ({ ...e }));
  const app = sb.directory.app(sb.daemonClientId)!;
  exo[0]!.objectId = app.objectId; // the common mistake: the App Registration's object id
  assert.match(await authReply(sb, t, ALEX, sb.appToken()), AUTH_FAILED, 'New-ServicePrincipal with the wrong object id');
  assert.ok(sb.smtp.events().some((e) => e.type === 'auth' && !e.ok && /App Registration/.test(e.detail)));
  exo.length = 0;
  assert.match(await authReply(sb, t, ALEX, sb.appToken()), AUTH_FAILED, 'no New-ServicePrincipal at all');
  exo.push(...saved);

  // and a message sent app-only is recorded as such
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.appToken());
  t.after(() => c.close());
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'from the daemon')), QUEUED);
  assert.equal(sb.messages.list()[0]!.authIdentity, `app:${sb.daemonClientId}`);
});

test('a refused AUTH takes authFailureDelayMs to answer', async (t) => {
  const sb = await startTestSmtp(t, { authFailureDelayMs: 300 });
  const c = await openSecure(sb.port, sb.caPem);
  t.after(() => c.close());
  const started = process.hrtime.bigint();
  assert.match(await c.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, 'garbage')), AUTH_FAILED);
  // A lower bound only (never an upper one): the reply cannot come before the delay.
  assert.ok(Number(process.hrtime.bigint() - started) / 1e6 >= 290);
});
