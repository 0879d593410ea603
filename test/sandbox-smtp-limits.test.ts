// Exchange Online's submission checks and limits in the sandbox: send-as
// after the final dot, message size, recipients per message and per day,
// connections per mailbox, messages per minute, TLS version, and BDAT.

import assert from 'node:assert/strict';
import type tls from 'node:tls';
import { test } from 'node:test';
import { mime, openAuthed, openSecure, RawSmtp, sendMessage } from './helpers/raw-smtp.ts';
import { ALEX, INFO, MEGAN, startTestSmtp } from './helpers/smtp-sandbox.ts';

const QUEUED = /^250 2\.0\.0 OK <[^>]+> \[Hostname=SB1PR00MB0001\.namprd00\.prod\.outlook\.com\]$/;

test('send-as is checked after the final dot: From and MAIL FROM must be the mailbox or have SendAs', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  const denied = '550 5.7.60 SMTP; Client does not have permissions to send as this sender';
  assert.equal(await sendMessage(c, ALEX, [MEGAN], mime(MEGAN, MEGAN, 'pretending to be Megan')), denied, 'From header');
  assert.equal(await sendMessage(c, MEGAN, [MEGAN], mime(ALEX, MEGAN, 'envelope as Megan')), denied, 'envelope sender');
  assert.equal(await sendMessage(c, ALEX, [MEGAN], mime('"Outsider" <someone@example.com>', MEGAN, 'foreign From')), denied);
  assert.match(await sendMessage(c, INFO, [MEGAN], mime(`"Contoso Info" <${INFO}>`, MEGAN, 'as the shared mailbox')), QUEUED, 'Alex has SendAs on info@');
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(`"Alex W" <${ALEX.toUpperCase()}>`, MEGAN, 'own address')), QUEUED);
  assert.equal(sb.messages.list().length, 2, 'refused messages are not stored');
  assert.deepEqual(
    sb.smtp.events().filter((e) => e.type === 'rejected').map((e) => e.type === 'rejected' && e.reason),
    ['send-as', 'send-as', 'send-as'],
  );

  // Authenticated as the shared mailbox (user= info@ with FullAccess): it is the sender.
  const s = await openAuthed(sb.port, sb.caPem, INFO, sb.userToken(ALEX));
  t.after(() => s.close());
  assert.match(await sendMessage(s, INFO, [MEGAN], mime(INFO, MEGAN, 'from the shared mailbox')), QUEUED);
  assert.deepEqual(sb.messages.list().at(-1)!.folders[0], { mailbox: INFO, folder: 'SentItems' });
  assert.equal(sb.messages.list().at(-1)!.authIdentity, ALEX);

  // App-only: the service principal needs SendAs for other addresses too.
  const a = await openAuthed(sb.port, sb.caPem, ALEX, sb.appToken());
  t.after(() => a.close());
  assert.equal(await sendMessage(a, ALEX, [MEGAN], mime(INFO, MEGAN, 'daemon as info@')), denied);
  sb.directory.mailbox(INFO)!.sendAs.push(sb.directory.servicePrincipalByAppId(sb.tenantId, sb.daemonClientId)!.id);
  assert.match(await sendMessage(a, ALEX, [MEGAN], mime(INFO, MEGAN, 'daemon as info@, granted')), QUEUED);
});

test('send-as refusal in the newer 5.2.252 style', async (t) => {
  const sb = await startTestSmtp(t, { sendAsDeniedStyle: '5.2.252' });
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  assert.equal(
    await sendMessage(c, ALEX, [MEGAN], mime(MEGAN, MEGAN, 'x')),
    `554 5.2.252 SendAsDenied; ${ALEX} not allowed to send as ${MEGAN}; STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed to process message due to a permanent exception with message Cannot submit message. [Hostname=SB1PR00MB0001.namprd00.prod.outlook.com]`,
  );
});

test("MaxSendSize: SIZE= at MAIL FROM and the size of DATA, nothing kept", async (t) => {
  const sb = await startTestSmtp(t);
  sb.directory.mailbox(ALEX)!.maxSendSizeBytes = 2000;
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}> SIZE=5000`), '552 5.3.4 Message size exceeds fixed maximum message size');
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}> SIZE=abc`), '501 5.5.4 Invalid arguments');
  const big = mime(ALEX, MEGAN, 'big', 'x'.repeat(70) + ('\r\n' + 'y'.repeat(70)).repeat(60));
  assert.equal(await sendMessage(c, ALEX, [MEGAN], big), '552 5.3.4 Message size exceeds fixed maximum message size');
  assert.equal(sb.messages.list().length, 0);
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'small')), QUEUED, 'the session goes on');
});

test('500 recipients per message: the 501st RCPT gets 452 4.5.3', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  // pipelined, as clients do
  c.write(Array.from({ length: 501 }, (_, i) => `RCPT TO:<r${i}@example.com>\r\n`).join(''));
  const replies: string[] = [];
  for (let i = 0; i < 501; i++) replies.push(await c.readText());
  assert.ok(replies.slice(0, 500).every((r) => r === '250 2.1.5 Recipient OK'));
  assert.equal(replies[500], '452 4.5.3 Too many recipients');
  assert.equal(await c.cmd('RCPT TO:<r0@example.com>'), '250 2.1.5 Recipient OK', 'a repeated recipient is not a new one');
  assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
  assert.match(await c.cmd(mime(ALEX, 'undisclosed-recipients:;', 'many') + '.'), QUEUED);
  assert.equal(sb.messages.list()[0]!.rcptTo.length, 500);
});

test('recipients per 24 h of sandbox time: SubmissionQuotaExceeded, then room again a day later', async (t) => {
  const sb = await startTestSmtp(t, { limits: { recipientsPerDay: 5 } });
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  const three = ['a@example.com', 'b@example.com', 'c@example.com'];
  assert.match(await sendMessage(c, ALEX, three, mime(ALEX, 'a@example.com', '1')), QUEUED);
  const refused = await sendMessage(c, ALEX, three, mime(ALEX, 'a@example.com', '2'));
  assert.equal(
    refused,
    '554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to process message due to a permanent exception with message Cannot submit message. [Hostname=SB1PR00MB0001.namprd00.prod.outlook.com]',
  );
  assert.match(await sendMessage(c, ALEX, ['a@example.com', 'b@example.com'], mime(ALEX, 'a@example.com', '3')), QUEUED, 'exactly at the limit');
  // Another mailbox has its own quota.
  const m = await openAuthed(sb.port, sb.caPem, MEGAN, sb.userToken(MEGAN));
  t.after(() => m.close());
  assert.match(await sendMessage(m, MEGAN, three, mime(MEGAN, 'a@example.com', 'megan')), QUEUED);
  sb.clock.advance(24 * 3600 + 1);
  assert.match(await sendMessage(c, ALEX, three, mime(ALEX, 'a@example.com', 'next day')), QUEUED);
});

test('the default 10,000 recipients per day is enforced', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  // 20 messages of 500 recipients fill the day; the next recipient is refused.
  for (let i = 0; i < 20; i++) {
    await c.cmd(`MAIL FROM:<${ALEX}>`);
    c.write(Array.from({ length: 500 }, (_, j) => `RCPT TO:<m${i}r${j}@example.com>\r\n`).join(''));
    for (let j = 0; j < 500; j++) await c.read();
    assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
    assert.match(await c.cmd(mime(ALEX, 'list@example.com', `batch ${i}`) + '.'), QUEUED);
  }
  assert.match(await sendMessage(c, ALEX, ['one-more@example.com'], mime(ALEX, 'x@example.com', 'over')), /^554 5\.2\.0 STOREDRV\.Submission\.Exception:SubmissionQuotaExceededException/);
});

test('more than 3 authenticated connections for a mailbox: 432 4.3.2 on the 4th', async (t) => {
  const sb = await startTestSmtp(t);
  const conns: RawSmtp[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
    t.after(() => c.close());
    conns.push(c);
  }
  const other = await openAuthed(sb.port, sb.caPem, MEGAN, sb.userToken(MEGAN));
  t.after(() => other.close());
  assert.equal(await sendMessage(conns[3]!, ALEX, [MEGAN], mime(ALEX, MEGAN, '4th')), '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded');
  for (let i = 0; i < 3; i++) assert.match(await sendMessage(conns[i]!, ALEX, [MEGAN], mime(ALEX, MEGAN, `#${i}`)), QUEUED);
  assert.match(await sendMessage(other, MEGAN, [ALEX], mime(MEGAN, ALEX, 'megan')), QUEUED, 'other mailboxes are not affected');
  // A session that said QUIT no longer submits: its slot is free at once, even while the client keeps its socket open.
  conns[0]!.socket.allowHalfOpen = true;
  assert.equal(await conns[0]!.cmd('QUIT'), '221 2.0.0 Service closing transmission channel');
  assert.match(await sendMessage(conns[3]!, ALEX, [MEGAN], mime(ALEX, MEGAN, '4th again')), QUEUED);
  // And a connection that simply goes away frees its slot too (the server sees the close a moment later).
  const fifth = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => fifth.close());
  assert.equal(await sendMessage(fifth, ALEX, [MEGAN], mime(ALEX, MEGAN, '5th')), '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded');
  conns[1]!.close();
  for (let i = 0; i < 50; i++) {
    const r = await sendMessage(fifth, ALEX, [MEGAN], mime(ALEX, MEGAN, '5th again'));
    if (r.startsWith('250 ')) return;
    assert.equal(r, '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded');
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail('the 5th connection never got room after one closed');
});

test('30 messages per minute: the excess gets a 4xx (reject mode), room again after a minute', async (t) => {
  const sb = await startTestSmtp(t, { limits: { messagesPerMinute: { limit: 3 } } });
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  for (let i = 0; i < 3; i++) assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, `m${i}`)), QUEUED);
  assert.equal(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'm3')), '450 4.7.0 Submission rate limit exceeded, 30 messages per minute per mailbox. Please try again later.');
  sb.clock.advance(61);
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'm4')), QUEUED);
  sb.smtp.limits.messagesPerMinute.mode = 'off';
  for (let i = 0; i < 4; i++) assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, `off${i}`)), QUEUED);
});

test('TLS 1.0 and 1.1 clients get 421 4.7.66 after the handshake', async (t) => {
  const sb = await startTestSmtp(t);
  for (const version of ['TLSv1', 'TLSv1.1'] as const) {
    const c = await RawSmtp.connect(sb.port);
    t.after(() => c.close());
    await c.readText();
    await c.cmd('EHLO old.client');
    assert.equal(await c.cmd('STARTTLS'), '220 2.0.0 SMTP server ready');
    const s = await c.upgrade({ ca: sb.caPem, minVersion: version, maxVersion: version, ciphers: 'DEFAULT:@SECLEVEL=0' });
    assert.equal(s.getProtocol(), version);
    assert.equal(await c.readText(), '421 4.7.66 TLS 1.0 and 1.1 are not supported. Please upgrade/update your client to support TLS 1.2. Visit https://aka.ms/smtp_auth_tls.');
    await c.waitClosed();
  }
  const ok = await openSecure(sb.port, sb.caPem);
  t.after(() => ok.close());
  assert.equal((ok.socket as tls.TLSSocket).getProtocol(), 'TLSv1.3');
});

test('CHUNKING: BDAT chunks and LAST, BINARYMIME, and DATA refused in a BINARYMIME transaction', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  const message = mime(ALEX, MEGAN, 'chunked', 'a line\r\n.starts with a dot\r\nend');
  const part1 = Buffer.from(message.slice(0, 40));
  const part2 = Buffer.from(message.slice(40));
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}> BODY=BINARYMIME`), '250 2.1.0 Sender OK');
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  assert.equal(await c.cmd('DATA'), '503 5.5.1 Bad sequence of commands');
  c.write(Buffer.concat([Buffer.from(`BDAT ${part1.length}\r\n`), part1]));
  assert.equal(await c.readText(), `250 2.0.0 BDAT chunk of ${part1.length} octets received`);
  // the last chunk, pipelined with the next command
  c.write(Buffer.concat([Buffer.from(`BDAT ${part2.length} LAST\r\n`), part2, Buffer.from('NOOP\r\n')]));
  assert.match(await c.readText(), QUEUED);
  assert.equal(await c.readText(), '250 2.0.0 OK');
  assert.equal((await sb.messages.readRaw(sb.messages.list()[0]!.id)).toString(), message, 'stored byte for byte, no dot-unstuffing');
  assert.equal(sb.messages.list()[0]!.subject, 'chunked');

  // BDAT before MAIL: the chunk is read and refused
  c.write('BDAT 5 LAST\r\nhello');
  assert.equal(await c.readText(), '503 5.5.2 Need mail command');
  assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK', 'still in step after the refused chunk');

  // BDAT over the mailbox size limit
  sb.directory.mailbox(ALEX)!.maxSendSizeBytes = 100;
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  const big = Buffer.alloc(300, 'x');
  c.write(Buffer.concat([Buffer.from(`BDAT ${big.length} LAST\r\n`), big]));
  assert.equal(await c.readText(), '552 5.3.4 Message size exceeds fixed maximum message size');
  assert.equal(sb.messages.list().length, 1);
});

test("messages per minute in 'delay' mode: the reply waits for room instead of refusing", async (t) => {
  const sb = await startTestSmtp(t, { limits: { messagesPerMinute: { limit: 1, mode: 'delay' } } });
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'first')), QUEUED);
  sb.clock.advance(59.7); // the minute has 0.3 s left
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'second')), QUEUED);
  const delayed = sb.smtp.events().filter((e) => e.type === 'delayed');
  assert.equal(delayed.length, 1);
  assert.ok(delayed[0]!.type === 'delayed' && delayed[0]!.ms > 0 && delayed[0]!.ms <= 300);
  assert.equal(sb.messages.list().length, 2);
});

test('blocked tenant (5.7.705 / 5.7.708 at MAIL FROM) and a mailbox blocked for outbound spam (after the dot)', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  const tenant = sb.directory.data.tenants[0]!;
  tenant.submissionBlocked = 'threshold';
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '550 5.7.705 Access denied, tenant has exceeded threshold');
  tenant.submissionBlocked = 'ip';
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '550 5.7.708 Access denied, traffic not accepted from this IP');
  tenant.submissionBlocked = null;
  sb.directory.mailbox(ALEX)!.outboundSpamBlocked = true;
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'spam?')), /^554 5\.2\.0 STOREDRV\.Submission\.Exception:OutboundSpamException; /);
  assert.equal(sb.messages.list().length, 0);
  sb.directory.mailbox(ALEX)!.outboundSpamBlocked = false;
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'released')), QUEUED);
});
