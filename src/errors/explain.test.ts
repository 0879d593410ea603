import { test } from 'node:test';
import assert from 'node:assert/strict';
import { explainSmtpReply, explainIdentityError, aadstsCodes, listSome } from './explain.ts';
import { parseSmtpReply } from './error.ts';

test('tenant-wide 5.7.139 names the mailbox switch with the user\'s mailbox', () => {
  const reply = parseSmtpReply(
    '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [MN2PR05CA0004.namprd05.prod.outlook.com 2024-10-10T22:49:55.000Z 08DCE8B62813AB2B]',
    'AUTH',
  );
  assert.ok(reply);
  assert.equal(reply.code, 535);
  assert.equal(reply.enhanced, '5.7.139');
  const e = explainSmtpReply(reply, { mailbox: 'printer@contoso.com' });
  assert.equal(e.code, 'SMTP_AUTH_DISABLED_TENANT');
  assert.equal(e.transient, false);
  assert.deepEqual(e.powershell, ['Set-CASMailbox -Identity printer@contoso.com -SmtpClientAuthenticationDisabled $false']);
});

test('mailbox-level, basic auth, 5.7.3, send-as, 4.3.2 and unknown replies are told apart', () => {
  const cases: Array<[string, string, boolean]> = [
    ['535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.', 'SMTP_AUTH_DISABLED_MAILBOX', false],
    ['535 5.7.139 Authentication unsuccessful, basic authentication is disabled.', 'SMTP_BASIC_AUTH_DISABLED', false],
    ['535 5.7.3 Authentication unsuccessful [HOST 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]', 'SMTP_AUTH_FAILED', false],
    ['550 5.7.60 SMTP; Client does not have permissions to send as this sender', 'SMTP_SEND_AS_DENIED', false],
    ['554 5.2.252 SendAsDenied; a@x not allowed to send as b@x; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied', 'SMTP_SEND_AS_DENIED', false],
    ['432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded', 'SMTP_CONCURRENCY_LIMIT', true],
    ['554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException', 'SMTP_QUOTA_EXCEEDED', false],
    ['451 4.7.0 Temporary server error. Please try again later. PRX4', 'SMTP_TEMPORARY', true],
    ['552 5.3.4 Message size exceeds fixed maximum message size', 'SMTP_MESSAGE_TOO_LARGE', false],
    ['530 5.7.57 Client not authenticated to send mail.', 'SMTP_NOT_AUTHENTICATED', false],
    ['504 5.7.4 Unrecognized authentication type', 'SMTP_AUTH_MECHANISM', false],
    ['550 5.1.1 something else', 'SMTP_REJECTED', false],
  ];
  for (const [raw, code, transient] of cases) {
    const e = explainSmtpReply(parseSmtpReply(raw)!, { mailbox: 'a@x', from: 'b@x' });
    assert.equal(e.code, code, raw);
    assert.equal(e.transient, transient, raw);
  }
});

test('send-as denial gives the exact Add-RecipientPermission with the user\'s values', () => {
  const e = explainSmtpReply(parseSmtpReply('550 5.7.60 SMTP; Client does not have permissions to send as this sender')!, {
    mailbox: 'alice@contoso.com',
    from: 'sales@contoso.com',
  });
  assert.deepEqual(e.powershell, ['Add-RecipientPermission -Identity sales@contoso.com -Trustee alice@contoso.com -AccessRights SendAs -Confirm:$false']);
});

test('AADSTS codes map to the guide step that fixes them', () => {
  const body = {
    error: 'invalid_client',
    error_description: "AADSTS7000218: The request body must contain the following parameter: 'client_assertion' or 'client_secret'.\r\nTrace ID: x",
    error_codes: [7000218],
  };
  const e = explainIdentityError(body);
  assert.equal(e.code, 'AUTH_PUBLIC_CLIENT_DISABLED');
  assert.match(e.step ?? '', /step 10/);
  assert.equal(e.aadsts, 7000218);
  assert.deepEqual(aadstsCodes('AADSTS700082: The refresh token has expired due to inactivity.'), [700082]);
  for (const [code, expected] of [
    [90002, 'AUTH_TENANT_NOT_FOUND'], [700016, 'AUTH_APP_NOT_FOUND'], [700025, 'AUTH_PUBLIC_CLIENT_SECRET'],
    [65001, 'AUTH_CONSENT_REQUIRED'], [50076, 'AUTH_MFA_REQUIRED'], [50126, 'AUTH_BAD_CREDENTIALS'],
    [70008, 'AUTH_SIGNIN_EXPIRED'], [700082, 'AUTH_SIGNIN_EXPIRED'], [70043, 'AUTH_SIGNIN_EXPIRED'],
    [50173, 'AUTH_SIGNIN_EXPIRED'], [53003, 'AUTH_BLOCKED_BY_POLICY'],
  ] as const) {
    assert.equal(explainIdentityError({ error_codes: [code] }).code, expected, String(code));
  }
  assert.equal(explainIdentityError({ error: 'authorization_declined' }).code, 'AUTH_DEVICE_CODE_DECLINED');
  assert.equal(explainIdentityError({ error: 'expired_token' }).code, 'AUTH_DEVICE_CODE_EXPIRED');
});

test('a list of refused recipients is named, up to three, then "and N more"', () => {
  assert.equal(listSome(['a@x.com']), 'a@x.com');
  assert.equal(listSome(['a@x.com', 'b@x.com', 'c@x.com']), 'a@x.com, b@x.com and c@x.com');
  assert.equal(listSome(['a@x.com', 'b@x.com', 'c@x.com', 'd@x.com', 'e@x.com']), 'a@x.com, b@x.com, c@x.com and 2 more');
  const e = explainSmtpReply({ code: 550, enhanced: '5.1.10', text: 'RecipientNotFound', command: 'RCPT' }, { recipients: ['a@x.com', 'b@x.com'] });
  assert.equal(e.title, 'Microsoft refused every recipient: a@x.com and b@x.com');
});

test('SendAs refused for an app-only account: the fix grants the app\'s service principal, not a user', () => {
  const reply = { code: 554, enhanced: '5.2.252', text: 'SendAsDenied; not allowed', command: 'DATA' };
  const app = explainSmtpReply(reply, { mailbox: 'scanner@contoso.com', from: 'sales@contoso.com', appOnly: true, servicePrincipalId: 'sp-1' });
  assert.match(app.fix.join(' '), /grant the app's service principal SendAs on sales@contoso\.com/);
  assert.ok(!/grant scanner@contoso\.com SendAs/.test(app.fix.join(' ')), app.fix.join(' '));
  assert.equal(app.portal, undefined, 'the portal page adds users, not service principals');
  assert.deepEqual(app.powershell, ['Add-RecipientPermission -Identity sales@contoso.com -Trustee sp-1 -AccessRights SendAs -Confirm:$false']);
  const user = explainSmtpReply(reply, { mailbox: 'alex@contoso.com', from: 'sales@contoso.com' });
  assert.match(user.fix.join(' '), /grant alex@contoso\.com SendAs on sales@contoso\.com/);
});

// Every reply and AADSTS code the reference (../shared/reference/microsoft-365-smtp-oauth.md §5)
// lists, and those a setup hits besides, gets its own explanation, never the generic fallback.
test('every SMTP reply and AADSTS code of the reference has its own explanation', () => {
  const replies = [
    '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.',
    '535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.',
    '535 5.7.139 Authentication unsuccessful, basic authentication is disabled.',
    "535 5.7.139 Authentication unsuccessful, user is locked by your organization's security defaults policy. Contact your administrator.",
    '535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.',
    '535 5.7.3 Authentication unsuccessful',
    '530 5.7.57 Client not authenticated to send mail.',
    '504 5.7.4 Unrecognized authentication type',
    '550 5.7.60 SMTP; Client does not have permissions to send as this sender',
    '554 5.2.252 SendAsDenied; a@x not allowed to send as b@x; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied',
    '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded',
    '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException',
    '554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException',
    '550 5.7.705 Access denied, tenant has exceeded threshold',
    '550 5.7.708 Access denied, traffic not accepted from this IP',
    '421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls.',
    '451 4.7.0 Temporary server error. Please try again later. PRX4',
    '451 4.3.111 Temporary server error',
    '552 5.3.4 Message size exceeds fixed maximum message size',
  ];
  for (const raw of replies) assert.notEqual(explainSmtpReply(parseSmtpReply(raw)!).code, 'SMTP_REJECTED', raw);
  const codes = [
    90002, 700016, 7000218, 700025, 65001, 50076, 50079, 50034, 50126, 70000, 70008, 700082, 70043, 50173, 53003, 530035, 500011, 7000012, 900144, 70016,
    // not in the reference's table, met by doctor: an expired secret, a disabled user, a clock off
    7000215, 7000222, 700027, 50057, 700024,
  ];
  for (const code of codes) {
    const e = explainIdentityError({ error: 'invalid_grant', error_description: `AADSTS${code}: x`, error_codes: [code] });
    assert.notEqual(e.title, 'Sign-in failed', `AADSTS${code} falls through to the generic explanation`);
    assert.equal(e.aadsts, code);
  }
  assert.notEqual(explainIdentityError({ error: 'authorization_pending' }).title, 'Sign-in failed');
});

test('mailbox-level 5.7.139 does not suggest the tenant-wide switch, which the mailbox setting overrides', () => {
  const mailbox = explainSmtpReply(parseSmtpReply('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.')!, { mailbox: 'printer@contoso.com' });
  assert.deepEqual(mailbox.powershell, ['Set-CASMailbox -Identity printer@contoso.com -SmtpClientAuthenticationDisabled $false']);
  assert.doesNotMatch(mailbox.fix.join('\n'), /Set-TransportConfig/);
  assert.ok(mailbox.fix.some((f) => f.includes('-SmtpClientAuthenticationDisabled $null') && /only where the tenant allows/.test(f)));
  const tenant = explainSmtpReply(parseSmtpReply('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.')!, { mailbox: 'printer@contoso.com' });
  assert.ok(tenant.fix.some((f) => f.includes('Set-TransportConfig')));
});
