import { test } from 'node:test';
import assert from 'node:assert/strict';
import { classifyError } from './classify.ts';
import { backoffDelay, retryPolicy, DEFAULT_RETRY } from './retry.ts';
import { mayBeStaleToken } from './mailer.ts';
import { parseSmtpReply } from '../errors/error.ts';

const ctx = { host: 'smtp.office365.com', port: 587, mailbox: 'a@contoso.com' };
const err = (props: Record<string, unknown>) => Object.assign(new Error(String(props.message ?? 'x')), props);

test('network and TLS failures are classified, transient only where waiting helps', () => {
  const cases: Array<[Record<string, unknown>, string, boolean]> = [
    [{ code: 'ESOCKET', originalCode: 'ECONNREFUSED', message: 'connect ECONNREFUSED' }, 'SMTP_CONNECTION', true],
    [{ code: 'ECONNECTION', message: 'Connection closed unexpectedly' }, 'SMTP_CONNECTION', true],
    [{ code: 'ETIMEDOUT', message: 'Greeting never received' }, 'SMTP_TIMEOUT', true],
    [{ code: 'EDNS', originalCode: 'ENOTFOUND', message: 'getaddrinfo ENOTFOUND smtp.office365.con' }, 'SMTP_CONNECTION', false],
    [{ code: 'EDNS', originalCode: 'EAI_AGAIN', message: 'getaddrinfo EAI_AGAIN' }, 'SMTP_CONNECTION', true],
    [{ code: 'ESOCKET', originalCode: 'DEPTH_ZERO_SELF_SIGNED_CERT', message: 'self-signed certificate' }, 'SMTP_TLS', false],
    [{ code: 'ESOCKET', originalCode: 'ERR_TLS_CERT_ALTNAME_INVALID', message: "Hostname/IP does not match certificate's altnames" }, 'SMTP_TLS', false],
    [{ code: 'ETLS', message: 'Error initiating TLS' }, 'SMTP_TLS', false],
    [{ code: 'ESTREAM', message: 'ENOENT: no such file' }, 'MESSAGE_INVALID', false],
  ];
  for (const [props, code, transient] of cases) {
    const e = classifyError(err(props), ctx);
    assert.equal(e.code, code, JSON.stringify(props));
    assert.equal(e.transient, transient, JSON.stringify(props));
  }
});

test('errors carrying a reply are explained by the one table, with the command', () => {
  const e = classifyError(err({ code: 'EENVELOPE', response: '550 5.7.708 Access denied, traffic not accepted from this IP', responseCode: 550, command: 'MAIL FROM' }), ctx);
  assert.equal(e.code, 'SMTP_TENANT_BLOCKED');
  assert.equal(e.smtp?.command, 'MAIL');
  const r = classifyError(err({ code: 'EENVELOPE', response: '550 5.1.1 User unknown', command: 'RCPT TO' }), ctx);
  assert.equal(r.code, 'SMTP_RECIPIENT_REJECTED');
  const t = classifyError(err({ code: 'EMESSAGE', response: '421 4.3.2 Service not available', command: 'DATA' }), ctx);
  assert.equal(t.transient, true);
});

test('only the generic 535 5.7.3 may be a stale token worth one renewal', () => {
  assert.equal(mayBeStaleToken(parseSmtpReply('535 5.7.3 Authentication unsuccessful [X]')!), true);
  assert.equal(mayBeStaleToken(parseSmtpReply('535 Authentication unsuccessful')!), true);
  assert.equal(mayBeStaleToken(parseSmtpReply('535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant.')!), false);
  assert.equal(mayBeStaleToken(parseSmtpReply('504 5.7.4 Unrecognized authentication type')!), false);
});

test('backoff doubles, is jittered within [cap/2, cap], and never exceeds maxDelay', () => {
  const p = { baseDelayMs: 1000, maxDelayMs: 30_000 };
  assert.equal(backoffDelay(p, 1, () => 0), 500);
  assert.equal(backoffDelay(p, 1, () => 1), 1000);
  assert.equal(backoffDelay(p, 3, () => 1), 4000);
  assert.equal(backoffDelay(p, 20, () => 1), 30_000);
  assert.deepEqual(retryPolicy(undefined), DEFAULT_RETRY);
  assert.equal(retryPolicy(false).maxAttempts, 1);
  assert.equal(retryPolicy({ maxAttempts: 2 }).budgetMs, DEFAULT_RETRY.budgetMs);
  assert.throws(() => retryPolicy({ maxAttempts: 0 }), RangeError);
  assert.throws(() => retryPolicy({ budgetMs: -1 }), RangeError);
});

test('the per-minute submission limit is told apart from other temporary errors', () => {
  for (const raw of [
    '450 4.7.0 Submission rate limit exceeded, 30 messages per minute per mailbox. Please try again later.',
    '421 4.4.2 Message submission rate for this client has exceeded the configured limit',
  ]) {
    const e = classifyError(err({ code: 'EMESSAGE', response: raw, command: 'DATA' }), ctx);
    assert.equal(e.code, 'SMTP_TEMPORARY', raw);
    assert.equal(e.transient, true);
    assert.match(e.explanation?.title ?? '', /a@contoso\.com/);
  }
  assert.equal(classifyError(err({ code: 'EMESSAGE', response: '451 4.7.0 Temporary server error. Please try again later. PRX4', command: 'DATA' }), ctx).explanation?.title, 'Temporary error at Microsoft');
});
