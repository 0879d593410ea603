// Every SMTP error of the reference (§5), reached through sandbox state or
// fault injection, comes back as the right code, transient flag and
// explanation; transient ones are retried within the budget, permanent ones
// returned at once; bad input is refused before any connection is made.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { createMailer, type MailerOptions, type Smtp365Error } from '../src/index.ts';
import { sendSandbox, ALEX, MEGAN, type SendSandbox } from './send-support.ts';

const fastRetry = { baseDelayMs: 5, maxDelayMs: 20, maxAttempts: 4 };

async function attempt(s: SendSandbox, extra: Partial<MailerOptions> = {}, msg: Record<string, unknown> = {}) {
  const account = s.account({ flow: 'client-secret' });
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: fastRetry, ...extra });
  try {
    const r = await mailer.send({ to: MEGAN, subject: 'matrix', text: 'x', ...msg });
    return { ok: true as const, result: r, stats: mailer.stats() };
  } catch (e) {
    return { ok: false as const, error: e as Smtp365Error, stats: mailer.stats() };
  } finally {
    await mailer.close();
  }
}

/** The error a send that must fail is refused with. */
function refusal(p: Promise<unknown>): Promise<Smtp365Error> {
  return p.then(
    () => assert.fail('refused'),
    (x: Smtp365Error) => x,
  );
}

function failed(r: Awaited<ReturnType<typeof attempt>>): Smtp365Error {
  if (r.ok) assert.fail(`expected a failure, got ${r.result.response}`);
  return r.error;
}

test('permanent SMTP replies: right code, explained, not retried', async (t) => {
  const s = await sendSandbox(t);
  const cases: Array<{ name: string; fault: Record<string, unknown>; code: string; check?: (e: Smtp365Error) => void }> = [
    { name: 'basic auth disabled', fault: { stage: 'auth', reply: '535 5.7.139 Authentication unsuccessful, basic authentication is disabled.' }, code: 'SMTP_BASIC_AUTH_DISABLED' },
    { name: 'conditional access', fault: { stage: 'auth', reply: '535 5.7.139 Authentication unsuccessful, the request did not meet the criteria to be authenticated successfully. Contact your administrator.' }, code: 'SMTP_AUTH_BLOCKED_POLICY' },
    { name: 'unsupported mechanism', fault: { stage: 'auth', reply: '504 5.7.4 Unrecognized authentication type' }, code: 'SMTP_AUTH_MECHANISM' },
    { name: 'not authenticated', fault: { stage: 'mail', reply: '530 5.7.57 Client not authenticated to send mail.' }, code: 'SMTP_NOT_AUTHENTICATED' },
    { name: 'tenant blocked', fault: { stage: 'mail', reply: '550 5.7.708 Access denied, traffic not accepted from this IP' }, code: 'SMTP_TENANT_BLOCKED' },
    { name: 'tenant threshold', fault: { stage: 'rcpt', reply: '550 5.7.705 Access denied, tenant has exceeded threshold' }, code: 'SMTP_TENANT_BLOCKED' },
    { name: 'quota', fault: { stage: 'data-end', reply: '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message' }, code: 'SMTP_QUOTA_EXCEEDED' },
    { name: 'outbound spam', fault: { stage: 'data-end', reply: '554 5.2.0 STOREDRV.Submission.Exception:OutboundSpamException; Failed to process message' }, code: 'SMTP_SPAM_BLOCKED' },
    {
      name: 'SendAsDenied (5.2.252)',
      fault: { stage: 'data-end', reply: `554 5.2.252 SendAsDenied; ${ALEX} not allowed to send as x@contoso.onmicrosoft.com; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied` },
      code: 'SMTP_SEND_AS_DENIED',
      check: (e) => assert.ok(e.explanation?.powershell?.[0]?.startsWith('Add-RecipientPermission -Identity '), JSON.stringify(e.explanation)),
    },
    { name: 'old TLS', fault: { stage: 'ehlo', reply: '421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls.' }, code: 'SMTP_TLS_TOO_OLD' },
  ];
  for (const c of cases) {
    await s.admin('DELETE', '/faults');
    await s.admin('POST', '/faults', { ...c.fault, times: null });
    const before = s.messages().length;
    const e = failed(await attempt(s));
    assert.equal(e.code, c.code, `${c.name}: ${e.message}`);
    assert.equal(e.transient, false, c.name);
    assert.equal(e.details?.attempts, 1, `${c.name}: permanent errors are not retried`);
    assert.ok(e.smtp, `${c.name}: the reply is kept`);
    assert.ok(e.explanation && e.explanation.fix.length > 0, `${c.name}: explained`);
    c.check?.(e);
    assert.equal(s.messages().length, before, c.name);
  }
  await s.admin('DELETE', '/faults');
});

test('SMTP AUTH disabled for the tenant or the mailbox: 5.7.139 with the Set-CASMailbox line, no token renewal', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('PATCH', `/mailboxes/${ALEX}`, { smtpClientAuthenticationDisabled: true });
  let r = await attempt(s);
  let e = failed(r);
  assert.equal(e.code, 'SMTP_AUTH_DISABLED_MAILBOX');
  assert.equal(e.smtp?.enhanced, '5.7.139');
  assert.deepEqual(e.explanation?.powershell, [`Set-CASMailbox -Identity ${ALEX} -SmtpClientAuthenticationDisabled $false`]);
  assert.equal(r.stats.tokenRenewals, 0, 'a new token would not help');
  await s.admin('PATCH', `/mailboxes/${ALEX}`, { smtpClientAuthenticationDisabled: null });
  await s.admin('PATCH', '/tenant', { smtpClientAuthenticationDisabled: true });
  r = await attempt(s);
  e = failed(r);
  assert.equal(e.code, 'SMTP_AUTH_DISABLED_TENANT');
  assert.equal(e.details?.attempts, 1);
  await s.admin('PATCH', '/tenant', { smtpClientAuthenticationDisabled: false });
  assert.equal((await attempt(s)).ok, true);
});

test('security defaults (delegated sign-in): 535 5.7.139 explained as policy', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  const provider = s.provider(account);
  // Signed in before Security Defaults were turned on (they refuse the password flow itself: AADSTS530035).
  await provider.getAccessToken();
  await s.admin('PATCH', '/tenant', { securityDefaults: true });
  // Where Microsoft refuses XOAUTH2 under Security Defaults too (UNCONFIRMED; the sandbox lets it through by default).
  await s.admin('PATCH', '/settings', { smtp: { securityDefaultsBlockOAuth: true } });
  const mailer = createMailer({ account, tokenProvider: provider, retry: false });
  t.after(() => mailer.close());
  const e = await refusal(mailer.send({ to: MEGAN, subject: 'x', text: 'y' }));
  assert.equal(e.code, 'SMTP_AUTH_BLOCKED_POLICY');
});

test('transient replies and drops are retried with backoff; each message arrives once', async (t) => {
  const s = await sendSandbox(t);
  const cases: Array<{ name: string; fault: Record<string, unknown>; code?: string }> = [
    { name: '451 after the final dot', fault: { stage: 'data-end', reply: '451 4.7.0 Temporary server error. Please try again later. PRX4' } },
    { name: '432 4.3.2 at MAIL', fault: { stage: 'mail', reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded' } },
    { name: '421 banner', fault: { stage: 'connect', reply: '421 4.3.2 Service not available, closing transmission channel' } },
    { name: 'drop at DATA', fault: { stage: 'data', drop: true } },
    { name: 'drop at AUTH', fault: { stage: 'auth', drop: true } },
    { name: '4.3.111 at RCPT', fault: { stage: 'rcpt', reply: '451 4.3.111 Temporary server error' } },
  ];
  for (const c of cases) {
    await s.admin('DELETE', '/faults');
    await s.admin('POST', '/faults', { ...c.fault, times: 1 });
    const before = s.messages().length;
    const r = await attempt(s);
    assert.ok(r.ok, `${c.name}: ${r.ok ? '' : r.error.message}`);
    assert.equal(r.result.attempts, 2, c.name);
    assert.equal(s.messages().length, before + 1, `${c.name}: exactly one copy`);
  }
});

test('a fault that never clears: retries stop at maxAttempts with the transient error; retry:false stops at once', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('POST', '/faults', { stage: 'data-end', reply: '451 4.7.0 Temporary server error. Please try again later. PRX4', times: null });
  let e = failed(await attempt(s));
  assert.equal(e.code, 'SMTP_TEMPORARY');
  assert.equal(e.transient, true);
  assert.equal(e.details?.attempts, 4);
  // the retries are spent: the fix does not promise more of them
  assert.ok(!/retries automatically/.test(e.explanation?.fix.join(' ') ?? ''), e.explanation?.fix.join(' '));
  assert.match(e.explanation?.fix.join(' ') ?? '', /smtp365 relay/);
  e = failed(await attempt(s, { retry: false }));
  assert.equal(e.details?.attempts, 1);
  // budget: the first backoff (≥ 500 ms) does not fit in 100 ms
  e = failed(await attempt(s, { retry: { baseDelayMs: 1000, budgetMs: 100 } }));
  assert.equal(e.details?.attempts, 1);
  assert.equal(s.messages().length, 0);
});

test('a server that stalls: timeout, retried, then delivered', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('POST', '/faults', { stage: 'connect', delayMs: 1500, times: 1 });
  const r = await attempt(s, { timeouts: { greetingMs: 300 } });
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  assert.equal(r.result.attempts, 2);
});

test('a message over the mailbox\'s MaxSendSize: 552 5.3.4 from the server, explained', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('PATCH', `/mailboxes/${ALEX}`, { maxSendSizeBytes: 20_000 });
  const e = failed(await attempt(s, {}, { text: 'x'.repeat(40_000) }));
  assert.equal(e.code, 'SMTP_MESSAGE_TOO_LARGE');
  assert.equal(e.smtp?.code, 552);
  assert.equal(e.details?.attempts, 1);
  assert.deepEqual(e.explanation?.powershell, [`Set-Mailbox -Identity ${ALEX} -MaxSendSize 150MB`], 'the real mailbox, not <mailbox>');
  // smtp365's own limit, checked before connecting: the same
  const local = failed(await attempt(s, { maxMessageBytes: 10_000 }, { text: 'x'.repeat(40_000) }));
  assert.equal(local.code, 'MESSAGE_TOO_LARGE');
  assert.deepEqual(local.explanation?.powershell, [`Set-Mailbox -Identity ${ALEX} -MaxSendSize 150MB`]);
});

test('some recipients refused: the message goes to the others, the refusals are reported', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', times: 1 });
  const r = await attempt(s, {}, { to: ['ghost@example.com', MEGAN] });
  assert.ok(r.ok);
  assert.deepEqual(r.result.accepted, [MEGAN]);
  assert.equal(r.result.rejected.length, 1);
  assert.equal(r.result.rejected[0]!.address, 'ghost@example.com');
  assert.equal(r.result.rejected[0]!.reply.code, 550);
  assert.deepEqual(s.messages()[0]?.rcptTo, [MEGAN]);
  // all refused: SMTP_RECIPIENT_REJECTED, permanent
  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound', times: 1 });
  const e = failed(await attempt(s, {}, { to: 'ghost@example.com' }));
  assert.equal(e.code, 'SMTP_RECIPIENT_REJECTED');
  assert.equal(e.transient, false);
});

test('bad input is refused before connecting, with the exact problem', async (t) => {
  const s = await sendSandbox(t);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-bad-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const bad: Array<[string, Record<string, unknown>, string, RegExp]> = [
    ['invalid to', { to: 'megan at contoso' }, 'MESSAGE_INVALID', /Invalid address in to/],
    ['invalid cc', { to: MEGAN, cc: 'x@y' }, 'MESSAGE_INVALID', /Invalid address in cc: "x@y"/],
    ['invalid from', { to: MEGAN, from: 'me@' }, 'MESSAGE_INVALID', /Invalid address in from/],
    ['no recipients', { to: [] }, 'MESSAGE_INVALID', /no recipients/],
    ['missing attachment', { to: MEGAN, attachments: [{ path: path.join(dir, 'missing.pdf') }] }, 'INPUT_INVALID', /missing\.pdf.*no such file/],
    ['too large', { to: MEGAN, text: 'x'.repeat(2_000_000) }, 'MESSAGE_TOO_LARGE', /over the limit of 1\.0 MB/],
  ];
  for (const [name, msg, code, re] of bad) {
    const r = await attempt(s, { maxMessageBytes: 1024 * 1024 }, msg);
    const e = failed(r);
    assert.equal(e.code, code, name);
    assert.match(e.message, re, name);
    assert.equal(r.stats.connections.created, 0, `${name}: no connection was opened`);
  }
  const account = s.account({ flow: 'client-secret' });
  assert.throws(() => createMailer({ account: { ...account, user: 'nobody' } }), (e: Smtp365Error) => e.code === 'INPUT_INVALID');
  assert.throws(() => createMailer({ account, maxConnections: 0 }), /maxConnections/);
  assert.throws(() => createMailer({ account: { ...account, smtpPort: 465 } }), (e: Smtp365Error) => e.code === 'CONFIG_INVALID' && /587/.test(e.message));
  assert.throws(() => createMailer({ account, rateLimit: { messagesPerMinute: -1 } }), (e: Smtp365Error) => e.code === 'INPUT_INVALID');
  assert.equal(s.messages().length, 0);
});

test('two senders on one mailbox exceed Microsoft\'s 3: the 432 4.3.2 is retried and every message arrives', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  const provider = s.provider(account);
  // Idle connections still count at Microsoft: each sender lets its own go soon (here 200 ms).
  const opts = { account, tokenProvider: provider, rateLimit: false as const, idleTimeoutMs: 200, retry: { baseDelayMs: 50, maxDelayMs: 400, maxAttempts: 12 } };
  const a = createMailer(opts);
  const b = createMailer(opts);
  t.after(() => Promise.all([a.close(), b.close()]));
  const sends = Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).send({ to: MEGAN, subject: `c${i}`, text: 'x' }));
  const results = await Promise.all(sends);
  assert.equal(s.messages().length, 12);
  assert.ok(results.some((r) => r.attempts > 1), 'the sandbox enforced the limit at least once');
});

test('the token endpoint down is a transient failure (exit 75 for the CLI), and is not hammered', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('POST', '/faults', { stage: 'token', httpStatus: 503, body: { error: 'temporarily_unavailable', error_description: 'AADSTS90033: A transient error has occurred. Please try again.' }, times: null });
  const before = s.tokenCalls();
  const e = failed(await attempt(s, { retry: { ...fastRetry, budgetMs: 5000 } }));
  assert.equal(e.code, 'AUTH_NETWORK');
  assert.equal(e.transient, true);
  // MSAL holds token requests back for 60 s after a 5xx without Retry-After: more than this retry
  // budget, so it gives up at once instead of spending its attempts on replays of the old answer.
  assert.equal(e.details?.attempts, 1);
  assert.ok(e.retryAfterMs! > 55_000 && e.retryAfterMs! <= 60_000, String(e.retryAfterMs));
  assert.match(e.explanation!.fix[0]!, /^Microsoft asked for a (59|60) s wait before the next try; the retry budget had \d+ ms left .*so this send stopped/);
  assert.equal(s.tokenCalls() - before, 1, 'not hammered');
  assert.equal(s.messages().length, 0);
});

test('one 503 from the token endpoint with Retry-After: the send waits that long (MSAL would only replay the 503 sooner) and goes out', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('POST', '/faults', { stage: 'token', httpStatus: 503, retryAfterSeconds: 2, times: 1 });
  const before = s.tokenCalls();
  const started = Date.now();
  const r = await attempt(s, { retry: { ...fastRetry, budgetMs: 10_000 } });
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  assert.equal(r.result.attempts, 2, 'the second attempt is after the throttle: no attempt spent on a replay');
  assert.ok(Date.now() - started >= 1900);
  assert.equal(s.tokenCalls() - before, 2);
  assert.equal(s.messages().length, 1);
});

test('recipients deferred with 4xx while others got the message are retried alone, with the same Message-ID', async (t) => {
  const s = await sendSandbox(t);
  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '451 4.4.3 Temporary lookup failure', times: 1 });
  const r = await attempt(s, {}, { to: ['later@example.com', MEGAN] });
  assert.ok(r.ok, r.ok ? '' : r.error.message);
  assert.deepEqual(r.result.accepted, [MEGAN, 'later@example.com']);
  assert.deepEqual(r.result.rejected, []);
  assert.equal(r.result.attempts, 2);
  assert.deepEqual(r.result.envelope.to, ['later@example.com', MEGAN]);
  const [first, second] = s.messages();
  assert.deepEqual(first?.rcptTo, [MEGAN]);
  assert.deepEqual(second?.rcptTo, ['later@example.com']);
  assert.equal(first?.messageId, second?.messageId);
  // without retries the deferral is reported, with its reply
  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '451 4.4.3 Temporary lookup failure', times: 1 });
  const once = await attempt(s, { retry: false }, { to: ['later@example.com', MEGAN] });
  assert.ok(once.ok);
  assert.deepEqual(once.result.rejected.map((x) => [x.address, x.reply.code]), [['later@example.com', 451]]);
});

test('a ready message with someone else\'s From: the explanation names that From, not the envelope', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => mailer.close());
  const raw = `From: Megan <${MEGAN}>\r\nTo: ${MEGAN}\r\nSubject: pretend\r\n\r\nx\r\n`;
  const e = await refusal(mailer.send({ raw, envelope: { from: ALEX, to: [MEGAN] } }));
  assert.equal(e.code, 'SMTP_SEND_AS_DENIED');
  assert.deepEqual(e.explanation?.powershell, [`Add-RecipientPermission -Identity ${MEGAN} -Trustee ${ALEX} -AccessRights SendAs -Confirm:$false`]);
});

test('a certificate that cannot be verified is refused, not retried (no caFile for the sandbox)', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  delete account.caFile;
  const mailer = createMailer({ account, tokenProvider: s.provider(s.account({ flow: 'client-secret' })), retry: fastRetry });
  t.after(() => mailer.close());
  const e = await refusal(mailer.send({ to: MEGAN, subject: 'x', text: 'y' }));
  assert.equal(e.code, 'SMTP_TLS');
  assert.equal(e.transient, false);
  assert.equal(e.details?.attempts, 1);
  assert.match(e.explanation?.fix.join(' ') ?? '', /CA/);
});

test('a pooled connection dropped by the server before the message went out: sent again at once on a new one, even with retries off', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => mailer.close());
  await mailer.send({ to: MEGAN, subject: 'first', text: 'x' });
  await s.admin('POST', '/faults', { stage: 'mail', drop: true, times: 1 });
  const r = await mailer.send({ to: MEGAN, subject: 'second', text: 'x' });
  assert.equal(r.attempts, 1);
  assert.equal(mailer.stats().connections.created, 2);
  // a fresh connection failing the same way is a real failure (retries off)
  await s.admin('POST', '/faults', { stage: 'mail', drop: true, times: 2 });
  const fresh = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => fresh.close());
  await assert.rejects(fresh.send({ to: MEGAN, subject: 'third', text: 'x' }), (e: Smtp365Error) => e.code === 'SMTP_CONNECTION' && e.transient);
  assert.deepEqual(s.messages().map((m) => m.subject), ['first', 'second']);
});

test('nothing listens on the SMTP port: SMTP_CONNECTION explained (host and port, firewall, smtp365 doctor)', async (t) => {
  const s = await sendSandbox(t);
  const srv = net.createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  const account = { ...s.account({ flow: 'client-secret' }), smtpHost: '127.0.0.1', smtpPort: port };
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => mailer.close());
  const e = await refusal(mailer.send({ to: MEGAN, subject: 'x', text: 'y' }));
  assert.equal(e.code, 'SMTP_CONNECTION');
  assert.equal(e.transient, true);
  assert.equal(e.explanation?.title, `No connection to 127.0.0.1:${port}`);
  const fix = e.explanation?.fix.join(' ') ?? '';
  assert.match(fix, new RegExp(`port ${port}`));
  assert.match(fix, /smtpHost and smtpPort.*smtp365 doctor/);
});
