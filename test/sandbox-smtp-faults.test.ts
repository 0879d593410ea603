// Fault injection at each SMTP stage, set through the admin API the way a
// user's reliability test would: a reply, a dropped connection, a delay,
// N times, only for one mailbox.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { test } from 'node:test';
import { mime, openAuthed, openSecure, RawSmtp, sendMessage, xoauth2 } from './helpers/raw-smtp.ts';
import { ALEX, MEGAN, startTestSmtp, type SmtpSandbox } from './helpers/smtp-sandbox.ts';

const QUEUED = /^250 2\.0\.0 OK <[^>]+> \[Hostname=SB1PR00MB0001\.namprd00\.prod\.outlook\.com\]$/;
const PRX4 = '451 4.7.0 Temporary server error. Please try again later. PRX4';

async function addFault(sb: SmtpSandbox, spec: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
  const res = await fetch(`${sb.adminUrl}/admin/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(spec) });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

test('admin API: add, list, get, delete faults; invalid input gets a clear 400', async (t) => {
  const sb = await startTestSmtp(t);
  const added = await addFault(sb, { stage: 'auth', reply: PRX4, times: 2 });
  assert.equal(added.status, 201);
  assert.equal(added.body['stage'], 'auth');
  assert.equal(added.body['times'], 2);
  const id = added.body['id'] as string;
  const many = await addFault(sb, [
    { stage: 'mail', drop: true },
    { stage: 'token', httpStatus: 503, body: { error: 'temporarily_unavailable' }, match: 'some-client' },
  ]);
  assert.equal(many.status, 201);
  assert.equal((many.body['faults'] as unknown[]).length, 2);

  const list = (await (await fetch(`${sb.adminUrl}/admin/faults`)).json()) as { faults: Array<{ id: string }> };
  assert.equal(list.faults.length, 3);
  assert.equal(((await (await fetch(`${sb.adminUrl}/admin/faults/${id}`)).json()) as { reply: string }).reply, PRX4);
  assert.equal((await fetch(`${sb.adminUrl}/admin/faults/${id}`, { method: 'DELETE' })).status, 204);
  assert.equal((await fetch(`${sb.adminUrl}/admin/faults/${id}`, { method: 'DELETE' })).status, 404);
  assert.equal((await fetch(`${sb.adminUrl}/admin/faults/${id}`)).status, 404);

  for (const [spec, message] of [
    [{ stage: 'auth', reply: 'not a reply' }, /reply must be an SMTP refusal/],
    [{ stage: 'auth', reply: '235 2.7.0 Authentication successful' }, /reply must be an SMTP refusal \(4xx or 5xx\)/],
    [{ stage: 'later', drop: true }, /stage must be one of: connect, ehlo/],
    [{ stage: 'auth' }, /at least one of/],
    [{ stage: 'auth', drop: true, times: -1 }, /times/],
    [{ stage: 'auth', drop: true, extra: 1 }, /extra/],
    [[{ stage: 'auth', drop: true }, { stage: 'mail' }], /fault \[1\]/],
  ] as const) {
    const r = await addFault(sb, spec);
    assert.equal(r.status, 400, JSON.stringify(spec));
    assert.equal(r.body['error'], 'invalid_fault');
    assert.match(r.body['message'] as string, message);
  }
  const notJson = await fetch(`${sb.adminUrl}/admin/faults`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{oops' });
  assert.equal(notJson.status, 400);
  assert.equal(((await notJson.json()) as { error: string }).error, 'invalid_json');
  assert.equal((await fetch(`${sb.adminUrl}/admin/faults`, { method: 'PUT' })).status, 405);
  assert.equal(sb.faults.list().length, 2, 'refused specs added nothing');

  const cleared = (await (await fetch(`${sb.adminUrl}/admin/faults`, { method: 'DELETE' })).json()) as { removed: number };
  assert.equal(cleared.removed, 2);
  assert.equal(sb.faults.list().length, 0);
});

test('connect: a reply instead of the banner, then a drop, then normal', async (t) => {
  const sb = await startTestSmtp(t);
  await addFault(sb, { stage: 'connect', reply: '421 4.3.2 Service not available' });
  await addFault(sb, { stage: 'connect', drop: true });
  const a = await RawSmtp.connect(sb.port);
  t.after(() => a.close());
  assert.equal(await a.readText(), '421 4.3.2 Service not available');
  await a.waitClosed();
  const b = await RawSmtp.connect(sb.port);
  t.after(() => b.close());
  await assert.rejects(b.read(), /connection closed/);
  const c = await RawSmtp.connect(sb.port);
  t.after(() => c.close());
  assert.match(await c.readText(), /^220 /);
});

test('ehlo and starttls: reply and drop', async (t) => {
  const sb = await startTestSmtp(t);
  sb.faults.add({ stage: 'ehlo', reply: '554 5.7.1 Service unavailable' });
  const c = await RawSmtp.connect(sb.port);
  t.after(() => c.close());
  await c.readText();
  assert.equal(await c.cmd('EHLO a'), '554 5.7.1 Service unavailable');
  assert.match(await c.cmd('EHLO a'), /^250-/);
  sb.faults.add({ stage: 'starttls', drop: true });
  c.write('STARTTLS\r\n');
  await c.waitClosed();
});

test('auth: N times a 451, only for one mailbox, then success', async (t) => {
  const sb = await startTestSmtp(t);
  await addFault(sb, { stage: 'auth', reply: PRX4, times: 2, match: ALEX });
  const m = await openSecure(sb.port, sb.caPem);
  t.after(() => m.close());
  assert.equal(await m.cmd('AUTH XOAUTH2 ' + xoauth2(MEGAN, sb.userToken(MEGAN))), '235 2.7.0 Authentication successful', 'other mailboxes unaffected');
  for (let i = 0; i < 2; i++) {
    const c = await openSecure(sb.port, sb.caPem);
    t.after(() => c.close());
    assert.equal(await c.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, sb.userToken(ALEX))), PRX4);
  }
  const ok = await openSecure(sb.port, sb.caPem);
  t.after(() => ok.close());
  assert.equal(await ok.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, sb.userToken(ALEX))), '235 2.7.0 Authentication successful');
  assert.deepEqual(
    sb.smtp.events().filter((e) => e.type === 'fault').map((e) => e.type === 'fault' && e.stage),
    ['auth', 'auth'],
  );
});

test('mail, rcpt, data: replies; data-end: a PRX4 after the dot and nothing stored', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  sb.faults.add({ stage: 'mail', reply: '451 4.3.0 mail fault' });
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '451 4.3.0 mail fault');
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  sb.faults.add({ stage: 'rcpt', reply: '452 4.5.3 rcpt fault' });
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '452 4.5.3 rcpt fault');
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  sb.faults.add({ stage: 'data', reply: '451 4.3.0 data fault' });
  assert.equal(await c.cmd('DATA'), '451 4.3.0 data fault');
  assert.equal(await c.cmd('DATA'), '354 Start mail input; end with <CRLF>.<CRLF>');
  sb.faults.add({ stage: 'data-end', reply: PRX4 });
  assert.equal(await c.cmd(mime(ALEX, MEGAN, 'faulted') + '.'), PRX4);
  assert.equal(sb.messages.list().length, 0);
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'retry')), QUEUED, 'the retry goes through');
  assert.equal(sb.messages.list().length, 1);
});

test('data-end drop: the connection is cut after the dot and the message is not kept', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  sb.faults.add({ stage: 'data-end', drop: true });
  await assert.rejects(sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'lost')), /connection closed/);
  assert.equal(sb.messages.list().length, 0);
});

test('delay without a reply: the stage then proceeds normally', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  sb.faults.add({ stage: 'rcpt', delayMs: 200 });
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  const started = process.hrtime.bigint();
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  assert.ok(Number(process.hrtime.bigint() - started) / 1e6 >= 190, 'not answered before the delay');
  sb.faults.add({ stage: 'data', reply: '451 4.3.0 slow fault', delayMs: 50 });
  assert.equal(await c.cmd('DATA'), '451 4.3.0 slow fault');
});

test('probability 0 never applies; a BDAT transaction gets the data fault on its first chunk', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  sb.faults.add({ stage: 'mail', drop: true, probability: 0, times: null });
  for (let i = 0; i < 5; i++) {
    assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
    assert.equal(await c.cmd('RSET'), '250 2.0.0 Resetting');
  }
  sb.faults.clear();
  sb.faults.add({ stage: 'data', reply: '451 4.3.0 chunk fault' });
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  const body = mime(ALEX, MEGAN, 'chunks');
  c.write(`BDAT ${body.length} LAST\r\n${body}`);
  assert.equal(await c.readText(), '451 4.3.0 chunk fault');
  assert.equal(sb.messages.list().length, 0);
  assert.equal(await c.cmd('NOOP'), '250 2.0.0 OK');
});

test('a storage failure answers 451 after the dot (DATA) or LAST (BDAT) and the session goes on', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openAuthed(sb.port, sb.caPem, ALEX, sb.userToken(ALEX));
  t.after(() => c.close());
  fs.rmSync(sb.messages.dir, { recursive: true, force: true });
  assert.equal(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'nowhere to go', 'x'.repeat(100_000))), '451 4.3.0 Temporary server error. Please try again later.');
  assert.ok(sb.smtp.events().some((e) => e.type === 'error'));
  // The same with BDAT: the chunks after the failure are read and dropped, LAST gets the 451.
  assert.equal(await c.cmd(`MAIL FROM:<${ALEX}>`), '250 2.1.0 Sender OK');
  assert.equal(await c.cmd(`RCPT TO:<${MEGAN}>`), '250 2.1.5 Recipient OK');
  const body = Buffer.from(mime(ALEX, MEGAN, 'chunks to nowhere', 'y'.repeat(60_000)));
  const half = Math.floor(body.length / 2);
  c.write(Buffer.concat([Buffer.from(`BDAT ${half}\r\n`), body.subarray(0, half)]));
  assert.match(await c.readText(), /^250 /);
  c.write(Buffer.concat([Buffer.from(`BDAT ${body.length - half} LAST\r\n`), body.subarray(half)]));
  assert.equal(await c.readText(), '451 4.3.0 Temporary server error. Please try again later.');
  fs.mkdirSync(sb.messages.dir, { recursive: true });
  assert.match(await sendMessage(c, ALEX, [MEGAN], mime(ALEX, MEGAN, 'stored')), QUEUED);
});

test('admin API: the SMTP event log says why AUTH failed; limits can be read and changed', async (t) => {
  const sb = await startTestSmtp(t);
  const c = await openSecure(sb.port, sb.caPem);
  t.after(() => c.close());
  assert.match(await c.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, sb.userToken(ALEX, { aud: 'https://graph.microsoft.com' }))), /^535 5\.7\.3 /);
  assert.equal(await c.cmd('AUTH XOAUTH2 ' + xoauth2(ALEX, sb.userToken(ALEX))), '235 2.7.0 Authentication successful');
  const res = await fetch(`${sb.adminUrl}/admin/smtp/events?type=auth&mailbox=${encodeURIComponent(ALEX)}`);
  const { events } = (await res.json()) as { events: Array<{ ok: boolean; detail?: string; refusal?: string; at: string }> };
  assert.equal(events.length, 2);
  assert.equal(events[0]!.ok, false);
  assert.equal(events[0]!.refusal, 'failed');
  assert.match(events[0]!.detail!, /audience is "https:\/\/graph\.microsoft\.com"/);
  assert.equal(events[1]!.ok, true);
  assert.equal((await fetch(`${sb.adminUrl}/admin/smtp/events?type=nope`)).status, 400);

  const patch = await fetch(`${sb.adminUrl}/admin/smtp/limits`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ recipientsPerDay: 1, messagesPerMinute: { mode: 'off' } }) });
  assert.equal(patch.status, 200);
  const limits = (await patch.json()) as { recipientsPerDay: number; messagesPerMinute: { mode: string; limit: number } };
  assert.equal(limits.recipientsPerDay, 1);
  assert.deepEqual([limits.messagesPerMinute.mode, limits.messagesPerMinute.limit], ['off', 30]);
  assert.match(await sendMessage(c, ALEX, [MEGAN, 'x@example.com'], mime(ALEX, MEGAN, 'two')), /^554 5\.2\.0 .*SubmissionQuotaExceededException/);
  const bad = await fetch(`${sb.adminUrl}/admin/smtp/limits`, { method: 'PATCH', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ recipientsPerDay: -5 }) });
  assert.equal(bad.status, 400);
  assert.equal(((await bad.json()) as { error: string }).error, 'invalid_limits');
});
