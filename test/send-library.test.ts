// The Mailer against the sandbox over real sockets: happy paths, the
// nodemailer transport, shared mailboxes, token renewal, the 3-connection
// cap, pacing (by counting) and a large streamed message.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import nodemailer from 'nodemailer';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { createMailer, openMailer, smtp365Transport, createPacer, type Smtp365Error, type Smtp365SentMessageInfo, type RejectedRecipient } from '../src/index.ts';
import { sendSandbox, childEnv, ALEX, MEGAN, SHARED } from './send-support.ts';

const fastRetry = { baseDelayMs: 5, maxDelayMs: 20 };

test('library: a nodemailer-style message arrives with the right envelope, headers and result', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: fastRetry });
  t.after(() => mailer.close());
  const r = await mailer.send({ to: `Megan <${MEGAN}>`, bcc: 'audit@example.com', subject: 'Quarterly numbers', text: 'See attached.', attachments: [{ filename: 'a.txt', content: 'hello' }] });
  assert.equal(r.attempts, 1);
  assert.deepEqual(r.envelope, { from: ALEX, to: [MEGAN, 'audit@example.com'] });
  assert.deepEqual(r.accepted, [MEGAN, 'audit@example.com']);
  assert.deepEqual(r.rejected, []);
  assert.match(r.response, /^250 2\.0\.0 OK/);
  assert.match(r.messageId, /^<.+@.+>$/);
  const [m] = s.messages();
  assert.ok(m);
  assert.equal(m.authUser, ALEX);
  assert.equal(m.from, ALEX, 'From defaults to the account mailbox');
  assert.equal(m.subject, 'Quarterly numbers');
  assert.deepEqual(m.rcptTo, [MEGAN, 'audit@example.com']);
  assert.equal(m.messageId, r.messageId);
  const raw = await s.raw(m.id);
  assert.ok(!/^bcc:/im.test(raw), 'Bcc is not in the transmitted headers');
  assert.match(raw, /Content-Disposition: attachment; filename=a\.txt/);
});

/** A sandbox, an app-only mailer on it and a temp dir for message files. */
async function rawRig(t: TestContext) {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: fastRetry });
  t.after(() => mailer.close());
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-raw-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return { s, mailer, dir };
}

test('library: raw messages (string, Buffer, stream, file) with an envelope', async (t) => {
  const { s, mailer, dir } = await rawRig(t);
  const msg = (n: number) => `From: ${ALEX}\r\nTo: ${MEGAN}\r\nSubject: raw ${n}\r\nMessage-ID: <raw-${n}@contoso.onmicrosoft.com>\r\n\r\n.dot-stuffed line\r\nbody ${n}\r\n`;
  await writeFile(path.join(dir, 'm.eml'), msg(4).replace(/\r\n/g, '\n'));
  const envelope = { from: ALEX, to: [MEGAN] };
  const results = [
    await mailer.send({ raw: msg(1), envelope }),
    await mailer.send({ raw: Buffer.from(msg(2)), envelope }),
    await mailer.send({ raw: Readable.from([Buffer.from(msg(3))]), envelope }),
    await mailer.send({ raw: { path: path.join(dir, 'm.eml') }, envelope }),
  ];
  assert.deepEqual(results.map((r) => r.messageId).slice(0, 2), ['<raw-1@contoso.onmicrosoft.com>', '<raw-2@contoso.onmicrosoft.com>']);
  assert.equal(results[3]!.messageId, '<raw-4@contoso.onmicrosoft.com>');
  const got = s.messages();
  assert.deepEqual(got.map((m) => m.subject), ['raw 1', 'raw 2', 'raw 3', 'raw 4']);
  for (const m of got) assert.match(await s.raw(m.id), /\r\n\.dot-stuffed line\r\n/);
  // one pooled connection served all four: the sandbox saw one AUTH identity, mailer one connection
  assert.equal(mailer.stats().connections.created, 1);
});

test('library: a raw message loses its Bcc fields (as with sendmail), whatever form it comes in; the envelope still reaches them', async (t) => {
  const { s, mailer, dir } = await rawRig(t);
  const secret = 'hidden@example.com';
  const msg = (n: number) => `From: ${ALEX}\r\nTo: ${MEGAN}\r\nBcc: ${secret},\r\n  other-hidden@example.com\r\nSubject: bcc ${n}\r\nResent-Bcc: ${secret}\r\n\r\nBcc: in the body stays\r\n`;
  await writeFile(path.join(dir, 'm.eml'), msg(4).replace(/\r\n/g, '\n'));
  const envelope = { from: ALEX, to: [MEGAN, secret] };
  for (const raw of [msg(1), Buffer.from(msg(2)), Readable.from([Buffer.from(msg(3).slice(0, 20)), Buffer.from(msg(3).slice(20))]), { path: path.join(dir, 'm.eml') }]) {
    const r = await mailer.send({ raw, envelope });
    assert.deepEqual(r.accepted, [MEGAN, secret]);
  }
  const got = s.messages();
  assert.equal(got.length, 4);
  for (const m of got) {
    const text = await s.raw(m.id);
    assert.doesNotMatch(text, /hidden@example\.com/, `${m.subject}: ${text}`);
    assert.match(text, /^Subject: bcc \d\r\n\r\nBcc: in the body stays\r\n$/m);
    assert.deepEqual(m.rcptTo, [MEGAN, secret]);
  }
});

/** Compile-time: true only when A and B are the same type (checked by `tsc --noEmit -p .`). */
type Same<A, B> = (<X>() => X extends A ? 1 : 2) extends <X>() => X extends B ? 1 : 2 ? true : false;

test('nodemailer one-liner: createTransport(smtp365Transport({ account })) sends and reports like nodemailer, typed', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  const transporter = nodemailer.createTransport(smtp365Transport({ account, tokenProvider: s.provider(account) }));
  t.after(() => transporter.close());
  // Under strict TS, sendMail()'s info is Smtp365SentMessageInfo, not unknown (TS18046): no cast needed.
  const typed: Same<typeof transporter, Mail<Smtp365SentMessageInfo>> = true;
  assert.equal(typed, true);
  const info = await transporter.sendMail({ from: ALEX, to: MEGAN, subject: 'via nodemailer', html: '<p>hi</p>' });
  const fields: { messageId: string; accepted: string[]; rejected: string[]; rejectedErrors: RejectedRecipient[]; response: string; attempts: number } = info;
  assert.deepEqual(fields.accepted, [MEGAN]);
  assert.deepEqual(info.rejected, []);
  assert.match(info.response, /^250 /);
  assert.equal(info.attempts, 1);
  assert.equal(s.messages()[0]?.messageId, info.messageId);
  // a refused recipient: rejected holds addresses (as in nodemailer), rejectedErrors the replies
  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', times: 1 });
  const partial = await transporter.sendMail({ from: ALEX, to: ['ghost@example.com', MEGAN], subject: 'partly', text: 'x' });
  assert.deepEqual(partial.rejected, ['ghost@example.com']);
  assert.deepEqual(partial.accepted, [MEGAN]);
  assert.equal(partial.rejectedErrors[0]?.reply.code, 550);
  // errors are Smtp365Error, with code and explanation
  await assert.rejects(transporter.sendMail({ from: ALEX, to: 'nobody', subject: 'x', text: 'y' }), (e: Smtp365Error) => e.code === 'MESSAGE_INVALID');
  assert.equal(await transporter.verify(), true);
});

test('shared mailbox: user= is the shared address, the token is the delegate\'s', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ user: SHARED });
  // the token is alex's (the password flow signs in alex: username differs from the mailbox)
  account.username = ALEX;
  account.password = s.sb.info.users.find((u) => u.upn === ALEX)!.password;
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => mailer.close());
  const r = await mailer.send({ to: MEGAN, subject: 'from the team', text: 'hi' });
  assert.equal(r.envelope.from, SHARED);
  const [m] = s.messages();
  assert.equal(m?.authUser, SHARED);
  assert.equal(m?.authIdentity, ALEX);
  assert.equal(m?.from, SHARED);
});

test('send-as refused after DATA: 5.7.60 comes back with the exact Add-RecipientPermission', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ user: MEGAN, flow: 'client-secret' });
  await s.admin('PATCH', `/mailboxes/${MEGAN}`, { fullAccess: { add: ['app:' + s.sb.info.confidentialClient.clientId] } }).catch(async () => {
    // older admin API shape: a whole list
    await s.admin('PATCH', `/mailboxes/${MEGAN}`, { fullAccess: ['app:' + s.sb.info.confidentialClient.clientId] });
  });
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: fastRetry });
  t.after(() => mailer.close());
  const err = await mailer.send({ from: ALEX, to: MEGAN, subject: 'pretend', text: 'x' }).then(
    () => assert.fail('must be refused'),
    (e: Smtp365Error) => e,
  );
  assert.equal(err.code, 'SMTP_SEND_AS_DENIED');
  assert.equal(err.transient, false);
  assert.ok(err.smtp && (err.smtp.enhanced === '5.7.60' || err.smtp.enhanced === '5.2.252'), JSON.stringify(err.smtp));
  assert.equal(err.details?.attempts, 1, 'permanent: not retried');
  assert.ok(err.explanation?.powershell?.some((p) => p.startsWith(`Add-RecipientPermission -Identity ${ALEX} -Trustee `)), JSON.stringify(err.explanation?.powershell));
  // the session survives a refused transaction: the next message reuses it
  await mailer.send({ to: MEGAN, subject: 'as myself', text: 'x' });
  assert.equal(mailer.stats().connections.created, 1);
});

test('token expiring mid-session: the live session keeps sending; a new one renews the token once', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  const provider = s.provider(account);
  const a = createMailer({ account, tokenProvider: provider, retry: false });
  await a.send({ to: MEGAN, subject: 'one', text: '1' });
  const callsBefore = s.tokenCalls();
  await s.admin('POST', '/clock', { advanceSeconds: 3 * 3600 });
  // the authenticated connection is still good at Microsoft, as here
  await a.send({ to: MEGAN, subject: 'two', text: '2' });
  await a.close();
  assert.equal(a.stats().tokenRenewals, 0);
  // a new connection with the cached token (valid by this machine's clock, expired by the server's)
  const b = createMailer({ account, tokenProvider: provider, retry: false });
  t.after(() => b.close());
  const r = await b.send({ to: MEGAN, subject: 'three', text: '3' });
  assert.equal(r.attempts, 1, 'renewed within the same attempt');
  assert.equal(b.stats().tokenRenewals, 1);
  assert.equal(s.tokenCalls() - callsBefore, 1, 'exactly one token request for the renewal');
  assert.deepEqual(s.messages().map((m) => m.subject), ['one', 'two', 'three']);
});

test('a token Microsoft keeps refusing is renewed once, then explained (535 5.7.3)', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  // user= a mailbox alex has no rights on
  account.user = MEGAN;
  account.username = ALEX;
  account.password = s.sb.info.users.find((u) => u.upn === ALEX)!.password;
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: fastRetry });
  t.after(() => mailer.close());
  const err = await mailer.send({ to: ALEX, subject: 'x', text: 'y' }).then(
    () => assert.fail('must be refused'),
    (e: Smtp365Error) => e,
  );
  assert.equal(err.code, 'SMTP_AUTH_FAILED');
  assert.equal(err.smtp?.code, 535);
  assert.equal(err.smtp?.enhanced, '5.7.3');
  assert.equal(err.details?.renewedToken, true);
  assert.equal(err.details?.attempts, 1);
  assert.equal(mailer.stats().tokenRenewals, 1);
  assert.ok(err.explanation?.fix.some((f) => f.includes(MEGAN)));
});

test('never more than 3 connections per mailbox, even when asked for more', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  const warnings: string[] = [];
  const mailer = createMailer({ account, tokenProvider: s.provider(account), maxConnections: 8, rateLimit: false, retry: false, logger: { warn: (m) => warnings.push(m) } });
  t.after(() => mailer.close());
  const results = await Promise.all(Array.from({ length: 12 }, (_, i) => mailer.send({ to: MEGAN, subject: `n${i}`, text: 'x' })));
  // the sandbox answers a 4th concurrent connection with 432 4.3.2; retries are off, so any would fail
  assert.ok(results.every((r) => r.attempts === 1));
  const st = mailer.stats();
  assert.equal(st.connections.peak, 3);
  assert.equal(st.connections.created, 3);
  assert.equal(s.messages().length, 12);
  assert.match(warnings.join('\n'), /maxConnections 8 lowered to 3/);
});

test('pacing holds messages beyond the limit until the window moves (counted, not timed)', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  let now = 0;
  const timers: Array<() => void> = [];
  const pacer = createPacer({ limit: 2, windowMs: 60_000, now: () => now, schedule: (fn) => (timers.push(fn), { cancel: () => undefined }) });
  const mailer = createMailer({ account, tokenProvider: s.provider(account), pacer, retry: false });
  t.after(() => mailer.close());
  const sends = Array.from({ length: 3 }, (_, i) => mailer.send({ to: MEGAN, subject: `p${i}`, text: 'x' }));
  await Promise.all(sends.slice(0, 2));
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(s.messages().length, 2);
  assert.equal(pacer.waiting(), 1);
  assert.equal(mailer.stats().pacing?.waiting, 1);
  now += 60_000;
  for (const fn of timers.splice(0)) fn();
  await sends[2];
  assert.equal(s.messages().length, 3);
});

test('a large attachment is streamed from disk and arrives intact', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-big-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'big.bin');
  const data = Buffer.alloc(6 * 1024 * 1024);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE(i, i);
  await writeFile(file, data);
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => mailer.close());
  const progress: number[] = [];
  const r = await mailer.send({ to: MEGAN, subject: 'big', text: 'attached', attachments: [{ path: file }] }, { onProgress: (p) => progress.push(p.sentBytes) });
  assert.equal(r.attempts, 1);
  assert.ok(progress.length > 10, 'progress is reported while streaming');
  assert.ok(progress.at(-1)! > data.length, 'the encoded size exceeds the file size');
  const raw = await s.raw(s.messages()[0]!.id);
  const b64 = /filename=big\.bin\r\n\r\n([A-Za-z0-9+/=\r\n]+?)\r\n--/.exec(raw)?.[1];
  assert.ok(b64, 'attachment part found');
  assert.ok(Buffer.from(b64.replace(/\r\n/g, ''), 'base64').equals(data), 'attachment arrives byte for byte');
});

test('a send can be cancelled with an AbortSignal, also while it streams', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account({ flow: 'client-secret' });
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false });
  t.after(() => mailer.close());
  const ac = new AbortController();
  ac.abort(new Error('not needed any more'));
  await assert.rejects(mailer.send({ to: MEGAN, subject: 'x', text: 'y' }, { signal: ac.signal }), /not needed any more/);
  // mid-stream: abort once the first bytes went out
  const ac2 = new AbortController();
  const big = Buffer.alloc(4 * 1024 * 1024, 0x61);
  await assert.rejects(
    mailer.send({ to: MEGAN, subject: 'big', text: 'x', attachments: [{ filename: 'a.bin', content: big }] }, { signal: ac2.signal, onProgress: () => ac2.abort(new Error('stop now')) }),
    /stop now/,
  );
  assert.equal(s.messages().length, 0);
  // the mailer still works afterwards
  await mailer.send({ to: MEGAN, subject: 'after', text: 'y' });
  assert.deepEqual(s.messages().map((m) => m.subject), ['after']);
});

test('openMailer() and smtp365Transport() find the account in the environment (or config file) by themselves', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  const mailer = await openMailer({ env, retry: false });
  t.after(() => mailer.close());
  await mailer.send({ to: MEGAN, subject: 'openMailer', text: 'x' });
  const transporter = nodemailer.createTransport(smtp365Transport({ env }));
  t.after(() => transporter.close());
  await transporter.sendMail({ to: MEGAN, subject: 'lazy transport', text: 'x' });
  assert.deepEqual(s.messages().map((m) => m.subject), ['openMailer', 'lazy transport']);
  assert.equal(s.messages()[1]?.from, ALEX, 'From defaults to the mailbox with the transport too');
  // no account anywhere: the error comes with the first send, clearly
  const nowhere = nodemailer.createTransport(smtp365Transport({ env: { HOME: s.home, XDG_CONFIG_HOME: `${s.home}/none` } }));
  await assert.rejects(nowhere.sendMail({ to: MEGAN, subject: 'x', text: 'y' }), (e: Smtp365Error) => e.code === 'CONFIG_NOT_FOUND');
  nowhere.close();
});
