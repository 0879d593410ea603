// `smtp365 send` and `smtp365 sendmail` as child processes, configured only
// through SMTP365_* environment variables and a temp SMTP365_HOME, the way
// cron, PHP and scripts run them: happy paths, exit codes, --json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { sendSandbox, childEnv, ALEX, MEGAN } from './send-support.ts';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function smtp365(args: string[], env: NodeJS.ProcessEnv, input?: string | Buffer): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', reject);
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

test('smtp365 send: flags, attachment, header, --json result', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await writeFile(path.join(dir, 'report.csv'), 'a,b\n1,2\n');
  await writeFile(path.join(dir, 'body.html'), '<h1>Report</h1>');
  const r = await smtp365(
    ['send', '--to', MEGAN, '--cc', 'boss@example.com', '--bcc', 'audit@example.com', '--subject', 'Nightly report', '--text', 'See attached.', '--html-file', path.join(dir, 'body.html'), '--attach', path.join(dir, 'report.csv'), '--header', 'X-Job: nightly', '--json'],
    env,
  );
  assert.equal(r.code, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; messageId: string; accepted: string[]; attempts: number };
  // --verbose shows the dialogue, never the token
  const v = await smtp365(['send', '--to', MEGAN, '--subject', 'verbose', '--text', 'x', '--verbose'], env);
  assert.equal(v.code, 0, v.stderr);
  assert.match(v.stderr, /AUTH XOAUTH2 \/\* secret \*\//);
  assert.match(v.stderr, /235 2\.7\.0 Authentication successful/);
  assert.ok(!/eyJ[A-Za-z0-9_-]{10,}/.test(v.stderr + v.stdout), 'no token in the output');
  assert.equal(out.ok, true);
  assert.deepEqual(out.accepted, [MEGAN, 'boss@example.com', 'audit@example.com']);
  const m = s.messages().find((x) => x.subject === 'Nightly report');
  assert.equal(m?.messageId, out.messageId);
  const raw = await s.raw(m!.id);
  assert.match(raw, /^X-Job: nightly\r$/m);
  assert.match(raw, /filename=report\.csv/);
  assert.match(raw, /Content-Type: text\/html/);
  assert.ok(!/^Bcc:/im.test(raw));
});

test('smtp365 send: a whole message on stdin, and piped text as the body', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  const msg = `To: ${MEGAN}\nBcc: hidden@example.com\nSubject: from stdin\n\nline one\n.\nline three\n`;
  let r = await smtp365(['send', '--stdin'], env, msg);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Sent <.+> to megan@contoso\.onmicrosoft\.com, hidden@example\.com/);
  // no body flags and piped input that starts with a header: the same
  r = await smtp365(['send', '--to', MEGAN], env, msg.replace('from stdin', 'auto-detected'));
  assert.equal(r.code, 0, r.stderr);
  // plain text piped: the body of a message built from flags
  r = await smtp365(['send', '--to', MEGAN, '--subject', 'piped body', '-q'], env, 'disk 91% full on /var\n');
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  const msgs = s.messages();
  assert.deepEqual(msgs.map((m) => m.subject), ['from stdin', 'auto-detected', 'piped body']);
  assert.deepEqual(msgs[1]!.rcptTo, [MEGAN], '--to replaces the header recipients');
  const raw0 = await s.raw(msgs[0]!.id);
  assert.ok(!/^Bcc:/im.test(raw0));
  assert.match(raw0, /^From: alex@contoso\.onmicrosoft\.com\r$/m, 'From added');
  assert.match(raw0, /^Message-ID: </m);
  assert.match(raw0, /line one\r\n\.\r\nline three/, 'a lone "." is content for send --stdin');
  assert.equal((await s.raw(msgs[2]!.id)).match(/disk 91% full/g)?.length, 1, 'the piped body once, not twice');
  // Piped text with --attach: the body, and the attachment.
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-cli-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'report.txt');
  await writeFile(file, 'attached report\n');
  r = await smtp365(['send', '--to', MEGAN, '--subject', 'piped with attachment', '--attach', file, '-q'], env, 'the body text\n');
  assert.equal(r.code, 0, r.stderr);
  const withAttachment = await s.raw(s.messages().find((m) => m.subject === 'piped with attachment')!.id);
  assert.equal(withAttachment.match(/the body text/g)?.length, 1);
  assert.match(withAttachment, /filename="?report\.txt/);
});

test('smtp365 send refuses before sending: line breaks in addresses, two addresses without a comma, a URL or data: URI to attach, headers it writes itself, over-long headers, build flags with a whole message', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  const refused = async (args: string[], expected: RegExp, input?: string) => {
    const r = await smtp365(['send', '--subject', 's', '--text', 'x', ...args], env, input);
    assert.equal(r.code, 65, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, expected, args.join(' '));
  };
  for (const flag of ['--to', '--cc', '--bcc', '--reply-to']) {
    await refused(flag === '--to' ? ['--to', `${MEGAN}\r\nBcc: evil@example.com`] : ['--to', MEGAN, flag, `x@example.com\r\nBcc: evil@example.com`], /contains a line break/);
  }
  await refused(['--from', `${ALEX}\r\nBcc: evil@example.com`, '--to', MEGAN], /contains a line break/);
  await refused(['--to', `${MEGAN} ops@example.com`], /several addresses: separate them with commas/);
  await refused(['--to', MEGAN, '--attach', 'https://127.0.0.1:1/report.pdf'], /--attach takes a file, not a URL/);
  await refused(['--to', MEGAN, '--attach', 'data:text/plain;base64,aGVsbG8='], /--attach takes a file, not a URL: data:/);
  await refused(['--to', MEGAN, '--header', 'Content-Type: text/html'], /smtp365 writes Content-Type itself/);
  await refused(['--to', MEGAN, '--header', `X-Long: ${'x'.repeat(1000)}`], /at most 998/);
  // A whole message is sent as it is: flags that would build one are a usage error (64), not silently dropped.
  const whole = `To: ${MEGAN}\nSubject: whole\n\nbody\n`;
  const usage = async (args: string[], expected: RegExp) => {
    const r = await smtp365(['send', ...args], env, whole);
    assert.equal(r.code, 64, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, expected, args.join(' '));
  };
  await usage(['--to', MEGAN, '--attach', MAIN], /whole message .*--attach cannot change it/);
  await usage(['--stdin', '--attach', MAIN], /--attach cannot change it/);
  await usage(['--stdin', '--header', 'X-Job: nightly'], /--stdin reads a whole message .*--header cannot change it.*into the message itself/);
  await usage(['--stdin', '--reply-to', 'ops@example.com'], /--reply-to cannot change it/);
  await usage(['--header', 'X-Job: nightly', '--reply-to', 'ops@example.com'], /stdin holds a whole message .*--header, --reply-to cannot change it/);
  await usage(['--stdin', '--text', 'x'], /--text cannot change it/);
  const j = await smtp365(['send', '--stdin', '--header', 'X-Job: nightly', '--json'], env, whole);
  assert.equal(j.code, 64);
  assert.equal((JSON.parse(j.stdout) as { error: { code: string } }).error.code, 'INPUT_INVALID');
  // A display name with an @ inside quotes and angle brackets is fine.
  const ok = await smtp365(['send', '--to', `"ops@site" <${MEGAN}>`, '--subject', 'named', '--text', 'x', '-q'], env);
  assert.equal(ok.code, 0, ok.stderr);
  assert.deepEqual(s.messages().map((m) => m.subject), ['named'], 'nothing else was sent');
});

test('smtp365 sendmail -t -i: recipients from headers, Bcc removed, From/Date/Message-ID added (cron/PHP)', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s, { flow: 'password' });
  const msg = `To: ${MEGAN}\nCc: ops@example.com\nBcc: hidden@example.com\nSubject: Cron <root@host> /usr/local/bin/backup\n\nBackup done.\n.\nstill the body with -i\n`;
  const r = await smtp365(['sendmail', '-FCronDaemon', '-i', '-B8BITMIME', '-oem', '-odi', '-t', '-f', 'root'], env, msg);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '', 'sendmail is silent on success');
  const [m] = s.messages();
  assert.deepEqual(m?.rcptTo, [MEGAN, 'ops@example.com', 'hidden@example.com']);
  assert.equal(m?.mailFrom, ALEX, '-f root is not an address: the mailbox sends as itself');
  const raw = await s.raw(m!.id);
  assert.ok(!/hidden@example\.com/.test(raw), 'Bcc is gone from the message');
  assert.match(raw, /^From: CronDaemon <alex@contoso\.onmicrosoft\.com>\r$/m);
  assert.match(raw, /^Date: .+ \+0000\r$/m);
  assert.match(raw, /^Message-ID: <.+@contoso\.onmicrosoft\.com>\r$/m);
  assert.match(raw, /still the body with -i/);
});

test('smtp365 sendmail with recipients as arguments (git send-email, mail): a lone "." ends input without -i', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  const r = await smtp365(['sendmail', '-f', ALEX, '--', MEGAN, 'second@example.com'], env, 'Subject: [PATCH] fix\nTo: list@example.com\n\ndiff\n.\nnot sent\n');
  assert.equal(r.code, 0, r.stderr);
  const [m] = s.messages();
  assert.deepEqual(m?.rcptTo, [MEGAN, 'second@example.com'], 'without -t the headers do not add recipients');
  const raw = await s.raw(m!.id);
  assert.ok(!raw.includes('not sent'));
  // local names go to --local-recipient / SMTP365_LOCAL_RECIPIENT, or are refused clearly
  let x = await smtp365(['sendmail', 'root'], env, 'Subject: x\n\ny\n');
  assert.equal(x.code, 65);
  assert.match(x.stderr, /"root" is a local user name/);
  x = await smtp365(['sendmail', 'root'], { ...env, SMTP365_LOCAL_RECIPIENT: 'admin@example.com' }, 'Subject: for root\n\ny\n');
  assert.equal(x.code, 0, x.stderr);
  assert.deepEqual(s.messages()[1]?.rcptTo, ['admin@example.com']);
  // a comma inside a quoted name does not split the address (the same list parser as -t)
  x = await smtp365(['sendmail', '-i', '--', `"Doe, John" <${MEGAN}>`, 'ops@example.com,"Roe, Jane" <jane@example.com>'], env, 'Subject: named\n\ny\n');
  assert.equal(x.code, 0, x.stderr);
  assert.deepEqual(s.messages()[2]?.rcptTo, [MEGAN, 'ops@example.com', 'jane@example.com']);
  x = await smtp365(['sendmail', '-i', `${MEGAN} ops@example.com`], env, 'Subject: x\n\ny\n');
  assert.equal(x.code, 65, 'two addresses without a comma are refused, not half-sent');
  assert.match(x.stderr, /separate them with commas/);
  // the same in a header read with -t; a name with a comma inside quotes is fine there too
  x = await smtp365(['sendmail', '-t', '-i'], env, `To: ${MEGAN} ops@example.com\nSubject: x\n\ny\n`);
  assert.equal(x.code, 65, x.stderr);
  assert.match(x.stderr, /To: header.*separate them with commas/);
  assert.equal(s.messages().length, 3);
  x = await smtp365(['sendmail', '-t', '-i'], env, `To: "Doe, John" <${MEGAN}>, ops@example.com\nCc: root-less@example.com\nSubject: x\n\ny\n`);
  assert.equal(x.code, 0, x.stderr);
  assert.deepEqual(s.messages()[3]?.rcptTo, [MEGAN, 'ops@example.com', 'root-less@example.com']);
});

test('exit codes follow sysexits: 64 usage, 65 bad input, 75 temporary, 77 permission, 78 configuration; --json errors', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  let r = await smtp365(['sendmail', '-bs'], env);
  assert.equal(r.code, 64);
  r = await smtp365(['sendmail', '-Z'], env);
  assert.equal(r.code, 64);
  assert.match(r.stderr, /unknown option -Z/);
  r = await smtp365(['sendmail'], env, 'Subject: x\n\n');
  assert.equal(r.code, 64);
  r = await smtp365(['send', '--to', 'megan', '--subject', 'x', '--text', 'y'], env);
  assert.equal(r.code, 65);
  assert.match(r.stderr, /MESSAGE_INVALID.*Invalid address in to: "megan"/);
  r = await smtp365(['send', '--to', MEGAN, '--subject', 'x', '--attach', '/nonexistent/file.pdf'], env);
  assert.equal(r.code, 65);
  r = await smtp365(['send', '--to', MEGAN, '--subject', 'x', '--text', 'y', '--max-size', '1KB', '--html', 'z'.repeat(5000)], env);
  assert.equal(r.code, 65);
  assert.match(r.stderr, /MESSAGE_TOO_LARGE/);
  r = await smtp365(['sendmail', MEGAN], { ...env, SMTP365_MAX_MESSAGE_SIZE: '64KB' }, 'Subject: big\n\n' + 'y'.repeat(200_000));
  assert.equal(r.code, 65);
  assert.match(r.stderr, /over the limit of 64\.0 KB/);

  await s.admin('POST', '/faults', { stage: 'data-end', reply: '451 4.7.0 Temporary server error. Please try again later. PRX4', times: null });
  r = await smtp365(['send', '--to', MEGAN, '--subject', 'x', '--text', 'y', '--no-retry', '--json'], env);
  assert.equal(r.code, 75, 'EX_TEMPFAIL: the caller should retry later');
  const j = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; transient: boolean; smtp: { code: number } } };
  assert.equal(j.ok, false);
  assert.equal(j.error.code, 'SMTP_TEMPORARY');
  assert.equal(j.error.transient, true);
  assert.equal(j.error.smtp.code, 451);
  r = await smtp365(['sendmail', MEGAN, '--timeout', '1'], env, 'Subject: x\n\ny\n');
  assert.equal(r.code, 75);
  await s.admin('DELETE', '/faults');

  await s.admin('PATCH', `/mailboxes/${ALEX}`, { smtpClientAuthenticationDisabled: true });
  r = await smtp365(['send', '--to', MEGAN, '--subject', 'x', '--text', 'y'], env);
  assert.equal(r.code, 77);
  assert.match(r.stderr, /SMTP_AUTH_DISABLED_MAILBOX/);
  assert.match(r.stderr, /Set-CASMailbox -Identity alex@contoso\.onmicrosoft\.com -SmtpClientAuthenticationDisabled \$false/);
  await s.admin('PATCH', `/mailboxes/${ALEX}`, { smtpClientAuthenticationDisabled: false });

  r = await smtp365(['send', '--to', MEGAN, '--subject', 'x', '--text', 'y'], { ...env, SMTP365_TENANT_ID: '', SMTP365_CLIENT_ID: '', SMTP365_USER: '' });
  assert.equal(r.code, 78);
  assert.equal(s.messages().length, 0);
  // no secret in any output
  for (const out of [r.stdout, r.stderr]) assert.ok(!out.includes(s.sb.info.confidentialClient.clientSecret));
});

test('a recipient refused while others are accepted: sent to them, exit 67, the refusal named (send and sendmail)', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', times: 1 });
  const r = await smtp365(['send', '--to', `nobody@example.com,${MEGAN}`, '--subject', 'partial', '--text', 'x', '--json'], env);
  assert.equal(r.code, 67, r.stderr);
  const out = JSON.parse(r.stdout) as { ok: boolean; accepted: string[]; rejected: Array<{ address: string }> };
  assert.equal(out.ok, false);
  assert.deepEqual(out.accepted, [MEGAN]);
  assert.deepEqual(out.rejected.map((x) => x.address), ['nobody@example.com']);
  assert.ok(s.messages().some((m) => m.subject === 'partial'));

  await s.admin('POST', '/faults', { stage: 'rcpt', reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', times: 1 });
  const sm = await smtp365(['sendmail', 'nobody@example.com', MEGAN], env, `Subject: partial sendmail\n\nhello\n`);
  assert.equal(sm.code, 67, sm.stderr);
  assert.match(sm.stderr, /Rejected nobody@example\.com: 550 5\.1\.10/);
});

test('recipients still deferred (4xx) after the retries: "deferred (temporary …)"; exit 75 only when nobody got the message (67 when others did, so nothing resends it whole); every recipient refused: named', async (t) => {
  const s = await sendSandbox(t);
  const env = childEnv(s);
  const defer = (recipient: string) => s.admin('POST', '/faults', { stage: 'rcpt', recipient, reply: '451 4.4.3 Temporary lookup failure', times: null });
  const refuse = (recipient: string) => s.admin('POST', '/faults', { stage: 'rcpt', recipient, reply: '550 5.1.10 RESOLVER.ADR.RecipientNotFound', times: null });
  await defer('later@example.com');
  let r = await smtp365(['send', '--to', `later@example.com,${MEGAN}`, '--subject', 'deferred', '--text', 'x', '--no-retry'], env);
  assert.equal(r.code, 67, `Megan got it: a retry of the whole message would send it to her again\n${r.stdout}${r.stderr}`);
  assert.match(r.stdout, /Deferred later@example\.com \(temporary: 451 4\.4\.3 Temporary lookup failure\)/);
  assert.ok(!/Rejected/.test(r.stdout));
  await defer('later2@example.com');
  r = await smtp365(['sendmail', '--timeout', '1', 'later@example.com', 'later2@example.com'], env, 'Subject: deferred sendmail\n\nx\n');
  assert.equal(r.code, 75, `nobody got it: safe to send again\n${r.stderr}`);
  assert.match(r.stderr, /SMTP_TEMPORARY.*451 4\.4\.3 Temporary lookup failure/s);
  await refuse('ghost@example.com');
  r = await smtp365(['send', '--to', `later@example.com,ghost@example.com,${MEGAN}`, '--subject', 'mixed', '--text', 'x', '--no-retry'], env);
  assert.equal(r.code, 67, 'a permanent refusal among the failures: 67');
  await refuse('ghost2@example.com');
  r = await smtp365(['send', '--to', 'ghost@example.com,ghost2@example.com', '--subject', 'nobody', '--text', 'x'], env);
  assert.equal(r.code, 67, r.stderr);
  assert.match(r.stderr, /SMTP_RECIPIENT_REJECTED.*Microsoft refused every recipient: ghost@example\.com and ghost2@example\.com/);
});

test('--json: a usage error is JSON on stdout too (exit 64), as every other error', async (t) => {
  const s = await sendSandbox(t);
  const r = await smtp365(['send', '--bogus', '--json'], childEnv(s));
  assert.equal(r.code, 64);
  const out = JSON.parse(r.stdout) as { ok: boolean; error: { code: string; message: string } };
  assert.equal(out.ok, false);
  assert.equal(out.error.code, 'INPUT_INVALID');
  assert.match(out.error.message, /unknown option '--bogus'/);
  const plain = await smtp365(['send', '--bogus'], childEnv(s));
  assert.equal(plain.stdout, '', 'without --json, stdout stays empty');
  // sendmail --json: usage errors are JSON on stdout too, as for send --json
  for (const args of [['sendmail', '-Z', '--json'], ['sendmail', '--json'], ['sendmail', '-bs', '--json']]) {
    const u = await smtp365(args, childEnv(s), 'Subject: x\n\n');
    assert.equal(u.code, 64, args.join(' '));
    const err = JSON.parse(u.stdout) as { ok: boolean; error: { code: string; message: string } };
    assert.equal(err.ok, false);
    assert.equal(err.error.code, 'INPUT_INVALID');
  }
  const verify = await smtp365(['sendmail', '-bv', '--json', MEGAN], childEnv(s));
  assert.equal(verify.code, 0, verify.stderr);
  assert.deepEqual((JSON.parse(verify.stdout) as { recipients: Array<{ address: string }> }).recipients.map((r) => r.address), [MEGAN]);
});
