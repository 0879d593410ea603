// The sandbox's replies and the product's explanation table must agree:
// every refusal the sandbox can send is explained as the right error.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseSmtpReply } from '../../errors/error.ts';
import { explainSmtpReply } from '../../errors/explain.ts';
import { authTrailer, R, rfc2822 } from './replies.ts';
import { DEFAULT_HOSTS, DEFAULT_LIMITS } from './server.ts';

test('rfc2822 and the 535 trailer look like Microsoft\'s', () => {
  assert.equal(rfc2822(new Date('2024-10-10T22:49:55Z')), 'Thu, 10 Oct 2024 22:49:55 +0000');
  assert.equal(rfc2822(new Date('2026-01-05T03:04:05Z')), 'Mon, 05 Jan 2026 03:04:05 +0000');
  assert.equal(
    authTrailer(DEFAULT_HOSTS, new Date('2023-09-12T20:59:57.214Z'), '08DBB276B7E699C4'),
    '[SB1PR00MB0001.namprd00.prod.outlook.com 2023-09-12T20:59:57.214Z 08DBB276B7E699C4]',
  );
  assert.equal(
    R.banner(DEFAULT_HOSTS, new Date('2024-10-10T22:49:55Z'), '08DCE8B62813AB2B'),
    '220 SB1PR00CA0001.outlook.office365.com Microsoft ESMTP MAIL Service ready at Thu, 10 Oct 2024 22:49:55 +0000 [08DCE8B62813AB2B]',
  );
});

test('every refusal the sandbox sends is explained with the matching error code', () => {
  const t = authTrailer(DEFAULT_HOSTS, new Date(), '08DBB276B7E699C4');
  const cases: Array<[string, string, string, boolean]> = [
    [R.authFailed(t), 'AUTH', 'SMTP_AUTH_FAILED', false],
    [R.basicAuthDisabled(t), 'AUTH', 'SMTP_BASIC_AUTH_DISABLED', false],
    [R.smtpAuthDisabledTenant(t), 'AUTH', 'SMTP_AUTH_DISABLED_TENANT', false],
    [R.smtpAuthDisabledMailbox(t), 'AUTH', 'SMTP_AUTH_DISABLED_MAILBOX', false],
    [R.securityDefaults(t), 'AUTH', 'SMTP_AUTH_BLOCKED_POLICY', false],
    [R.conditionalAccess(t), 'AUTH', 'SMTP_AUTH_BLOCKED_POLICY', false],
    [R.authMechanism, 'AUTH', 'SMTP_AUTH_MECHANISM', false],
    [R.notAuthenticated, 'MAIL', 'SMTP_NOT_AUTHENTICATED', false],
    [R.sendAsDenied, 'DATA', 'SMTP_SEND_AS_DENIED', false],
    [R.sendAsDeniedStoreDrv('a@contoso.com', 'b@contoso.com', DEFAULT_HOSTS), 'DATA', 'SMTP_SEND_AS_DENIED', false],
    [R.threadLimit, 'DATA', 'SMTP_CONCURRENCY_LIMIT', true],
    [R.quotaExceeded(DEFAULT_HOSTS), 'DATA', 'SMTP_QUOTA_EXCEEDED', false],
    [R.tooLarge, 'DATA', 'SMTP_MESSAGE_TOO_LARGE', false],
    [R.tlsTooOld, 'STARTTLS', 'SMTP_TLS_TOO_OLD', false],
    [R.outboundSpam(DEFAULT_HOSTS), 'DATA', 'SMTP_SPAM_BLOCKED', false],
    [R.tenantThreshold, 'MAIL', 'SMTP_TENANT_BLOCKED', false],
    [R.ipBlocked, 'MAIL', 'SMTP_TENANT_BLOCKED', false],
    [DEFAULT_LIMITS.messagesPerMinute.reply, 'DATA', 'SMTP_TEMPORARY', true],
    ['421 4.3.2 Service not available, closing transmission channel', 'MAIL', 'SMTP_TEMPORARY', true],
  ];
  for (const [line, command, code, transient] of cases) {
    const reply = parseSmtpReply(line, command);
    assert.ok(reply, line);
    const e = explainSmtpReply(reply);
    assert.equal(e.code, code, line);
    assert.equal(e.transient, transient, line);
  }
});
