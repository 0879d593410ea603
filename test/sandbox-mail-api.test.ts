// Captured mail through the whole sandbox (startSandbox): nodemailer sends
// over STARTTLS + XOAUTH2, and the admin API and the /mail page show what
// arrived. Also: the mail survives a restart on the same state dir.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import nodemailer, { type Mail } from 'nodemailer';
import { startSandbox, type Sandbox } from '../src/sandbox/index.ts';
import { withSandbox } from './helpers/sandbox.ts';

interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function request(sb: Sandbox, method: string, urlPath: string): Promise<Res> {
  const url = new URL(urlPath, sb.url);
  const ca = fs.readFileSync(sb.info.caFile);
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

function userToken(sb: Sandbox, upn: string): string {
  const user = sb.directory.user(upn)!;
  return sb.issuer.issueAccessToken({ tenantId: sb.info.tenantId, aud: 'https://outlook.office.com', appId: sb.info.publicClientId, appidacr: '0', user, scp: ['SMTP.Send'] }).token;
}

function transport(sb: Sandbox, user: string, accessToken: string): Mail {
  return nodemailer.createTransport({
    host: sb.info.smtp.host,
    port: sb.info.smtp.port,
    secure: false,
    requireTLS: true,
    tls: { ca: fs.readFileSync(sb.info.caFile), servername: 'localhost' },
    auth: { type: 'OAuth2', user, accessToken },
  });
}

test('nodemailer sends; the admin API lists, shows, and serves the raw message; the page escapes it', async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: false });
  const alex = sb.info.users[0]!.upn;
  const megan = sb.info.users[1]!.upn;
  const tr = transport(sb, alex, userToken(sb, alex));
  t.after(() => tr.close());
  const info = await tr.sendMail({
    from: `"Alex" <${alex}>`,
    to: megan,
    cc: 'outside@example.com',
    subject: 'Report <script>alert(1)</script> & more',
    text: 'Numbers attached.\n<b>not bold</b>',
    html: '<p>Numbers attached.</p>',
    attachments: [{ filename: 'numbers.csv', content: 'a,b\n1,2\n' }],
    messageId: '<report-1@contoso.example>',
  });
  assert.match(String(info.response), /^250 2\.0\.0 OK <report-1@contoso\.example> \[Hostname=[^\]]+\.prod\.outlook\.com\]$/);

  const list = JSON.parse((await request(sb, 'GET', '/admin/messages?count=1&timeoutMs=5000')).body) as { messages: Array<Record<string, unknown>> };
  assert.equal(list.messages.length, 1);
  const m = list.messages[0]!;
  for (const key of ['id', 'mailFrom', 'rcptTo', 'from', 'to', 'subject', 'authUser', 'authIdentity', 'messageId', 'size', 'folders', 'receivedAt', 'rawUrl']) {
    assert.ok(key in m, `messages[0].${key}`);
  }
  assert.equal('rawPath' in m, false, 'no file paths over the API');
  assert.equal(m['mailFrom'], alex);
  assert.deepEqual(m['rcptTo'], [megan, 'outside@example.com']);
  assert.equal(m['subject'], 'Report <script>alert(1)</script> & more');
  assert.equal(m['authUser'], alex);
  assert.equal(m['rawUrl'], `${sb.url}/admin/messages/${m['id'] as string}/raw`);

  const detail = JSON.parse((await request(sb, 'GET', `/admin/messages/${m['id'] as string}`)).body) as {
    headers: Array<{ name: string; value: string }>;
    text: string;
    hasHtml: boolean;
    attachments: Array<{ filename: string; size: number }>;
  };
  assert.ok(detail.headers.some((h) => h.name === 'Subject'));
  assert.match(detail.text, /Numbers attached\.\n<b>not bold<\/b>/);
  assert.equal(detail.hasHtml, true);
  assert.deepEqual(detail.attachments.map((a) => a.filename), ['numbers.csv']);

  const raw = await request(sb, 'GET', m['rawUrl'] as string);
  assert.equal(raw.status, 200);
  assert.equal(raw.headers['content-type'], 'message/rfc822');
  assert.equal(raw.body, (await sb.messages.readRaw(m['id'] as string)).toString());
  assert.equal(Buffer.byteLength(raw.body), m['size']);

  const inbox = JSON.parse((await request(sb, 'GET', `/admin/mailboxes/${encodeURIComponent(megan)}/Inbox`)).body) as { messages: unknown[]; folder: string };
  assert.equal(inbox.folder, 'Inbox');
  assert.equal(inbox.messages.length, 1);
  const sent = JSON.parse((await request(sb, 'GET', `/admin/mailboxes/${encodeURIComponent(alex)}/SentItems`)).body) as { messages: unknown[] };
  assert.equal(sent.messages.length, 1);
  assert.equal((JSON.parse((await request(sb, 'GET', `/admin/mailboxes/${encodeURIComponent(alex)}/Inbox`)).body) as { messages: unknown[] }).messages.length, 0);
  assert.equal((await request(sb, 'GET', '/admin/messages?folder=Junk')).status, 400);
  assert.equal((await request(sb, 'GET', '/admin/messages/nope')).status, 404);

  const page = await request(sb, 'GET', '/mail');
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-security-policy']), /default-src 'none'/);
  assert.ok(page.body.includes('Report &lt;script&gt;alert(1)&lt;/script&gt; &amp; more'));
  assert.ok(!page.body.includes('<script>'));
  const one = await request(sb, 'GET', `/mail/${m['id'] as string}`);
  assert.ok(one.body.includes('&lt;b&gt;not bold&lt;/b&gt;'));
  assert.ok(one.body.includes('numbers.csv'));
  assert.ok(!one.body.includes('<script>') && !one.body.includes('<b>not bold'));
  assert.equal((await request(sb, 'GET', '/mail/nope')).status, 404);

  const del = JSON.parse((await request(sb, 'DELETE', '/admin/messages')).body) as { removed: number };
  assert.equal(del.removed, 1);
  assert.equal((JSON.parse((await request(sb, 'GET', '/admin/messages')).body) as { messages: unknown[] }).messages.length, 0);
});

test('nodemailer sees the send-as refusal and a PRX4 fault as errors with Microsoft\'s replies', async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: false });
  const alex = sb.info.users[0]!.upn;
  const megan = sb.info.users[1]!.upn;
  const tr = transport(sb, alex, userToken(sb, alex));
  t.after(() => tr.close());
  await assert.rejects(tr.sendMail({ from: megan, to: alex, subject: 'x', text: 'x' }), (err: Error & { response?: string; responseCode?: number }) => {
    assert.equal(err.response, '550 5.7.60 SMTP; Client does not have permissions to send as this sender');
    assert.equal(err.responseCode, 550);
    return true;
  });
  sb.faults.add({ stage: 'data-end', reply: '451 4.7.0 Temporary server error. Please try again later. PRX4' });
  await assert.rejects(tr.sendMail({ from: alex, to: megan, subject: 'x', text: 'x' }), (err: Error & { responseCode?: number }) => err.responseCode === 451);
  await tr.sendMail({ from: alex, to: megan, subject: 'retry', text: 'x' });
  assert.deepEqual(sb.messages.list().map((m) => m.subject), ['retry']);

  const bad = transport(sb, alex, 'not-a-token');
  t.after(() => bad.close());
  await assert.rejects(bad.sendMail({ from: alex, to: megan, subject: 'x', text: 'x' }), (err: Error & { response?: string }) => /^535 5\.7\.3 Authentication unsuccessful \[/.test(err.response ?? ''));
});

test('captured mail survives a restart on the same state dir', async (t) => {
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'smtp365-restart-'));
  t.after(() => fs.rmSync(stateDir, { recursive: true, force: true }));
  const first = await startSandbox({ stateDir, quiet: true, autoApproveDeviceCodes: false });
  let firstClosed = false;
  t.after(() => (firstClosed ? undefined : first.close()));
  const alex = first.info.users[0]!.upn;
  const tr = transport(first, alex, userToken(first, alex));
  await tr.sendMail({ from: alex, to: first.info.users[1]!.upn, subject: 'before restart', text: 'kept' });
  tr.close();
  await first.close();
  firstClosed = true;

  const second = await withSandbox(t, { stateDir, autoApproveDeviceCodes: false });
  const list = JSON.parse((await request(second, 'GET', '/admin/messages')).body) as { messages: Array<{ subject: string; id: string }> };
  assert.deepEqual(list.messages.map((m) => m.subject), ['before restart']);
  assert.match((await request(second, 'GET', `/admin/messages/${list.messages[0]!.id}/raw`)).body, /\r\n\r\nkept\r\n$/);
});
