// sendmail's command line as cron, mail(1), PHP, git send-email and
// monitoring tools write it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSendmailArgs } from '../src/cli/commands/sendmail.ts';
import { parseHeaderFlag, parseSize, looksLikeMessage } from '../src/cli/commands/send.ts';

test('the usual callers parse', () => {
  // cronie
  let a = parseSendmailArgs(['-FCronDaemon', '-i', '-B8BITMIME', '-oem', '-oi', '-t', '-f', 'root']);
  assert.equal(a.extractRecipients, true);
  assert.equal(a.dotTerminates, false);
  assert.equal(a.fullName, 'CronDaemon');
  assert.equal(a.sender, 'root');
  assert.deepEqual(a.recipients, []);
  assert.deepEqual(a.ignored, ['-B 8BITMIME', '-oem']);
  // PHP sendmail_path = "sendmail -t -i"
  a = parseSendmailArgs(['-t', '-i']);
  assert.equal(a.extractRecipients && !a.dotTerminates, true);
  // git send-email
  a = parseSendmailArgs(['-i', '-f', 'dev@example.com', 'list@example.com', 'maintainer@example.com']);
  assert.deepEqual(a.recipients, ['list@example.com', 'maintainer@example.com']);
  assert.equal(a.sender, 'dev@example.com');
  // bsd-mailx / s-nail
  a = parseSendmailArgs(['-oi', '-oem', '--', 'bob@example.com']);
  assert.deepEqual(a.recipients, ['bob@example.com']);
  // clustered and attached forms
  a = parseSendmailArgs(['-tif', 'x@y.com', '-rother@y.com', '-odb', '-v']);
  assert.equal(a.extractRecipients, true);
  assert.equal(a.dotTerminates, false);
  assert.equal(a.sender, 'other@y.com');
  assert.equal(a.verbose, true);
  // recipients before options, "--" protects leading dashes
  a = parseSendmailArgs(['a@x.com', '-i', '--', '-weird@x.com']);
  assert.deepEqual(a.recipients, ['a@x.com', '-weird@x.com']);
});

test('modes and smtp365\'s own options', () => {
  assert.equal(parseSendmailArgs(['-bm', 'a@x.com']).mode, 'send');
  assert.equal(parseSendmailArgs(['-bp']).mode, 'print-queue');
  assert.equal(parseSendmailArgs(['-bv', 'a@x.com']).mode, 'verify');
  assert.equal(parseSendmailArgs(['-q']).mode, 'noop');
  assert.equal(parseSendmailArgs(['-q15m']).mode, 'noop');
  assert.equal(parseSendmailArgs(['-bi']).mode, 'noop');
  const a = parseSendmailArgs(['--account', 'alerts', '--config=/etc/smtp365.yaml', '--local-recipient', 'ops@x.com', '--timeout', '30', '--json', 'a@x.com']);
  assert.equal(a.account, 'alerts');
  assert.equal(a.config, '/etc/smtp365.yaml');
  assert.equal(a.localRecipient, 'ops@x.com');
  assert.equal(a.timeoutSeconds, 30);
  assert.equal(a.json, true);
  assert.deepEqual(a.recipients, ['a@x.com']);
});

test('what cannot work is refused by name', () => {
  assert.throws(() => parseSendmailArgs(['-bs']), /-bs \(SMTP on stdin\) is not supported/);
  assert.throws(() => parseSendmailArgs(['-bd']), /daemon/);
  assert.throws(() => parseSendmailArgs(['-Z']), /unknown option -Z/);
  assert.throws(() => parseSendmailArgs(['-f']), /-f needs a value/);
  assert.throws(() => parseSendmailArgs(['--nope']), /unknown option --nope/);
});

test('send flag helpers', () => {
  assert.deepEqual(parseHeaderFlag('X-Job: nightly'), ['X-Job', 'nightly']);
  assert.throws(() => parseHeaderFlag('no colon'), /Name: value/);
  assert.throws(() => parseHeaderFlag('Bcc: x@y.com'), /use --bcc/);
  assert.throws(() => parseHeaderFlag('Reply-To: x@y.com'), /use --reply-to/);
  // headers the builder writes itself would appear twice (or contradict the body)
  for (const h of ['Content-Type: text/html', 'content-transfer-encoding: base64', 'MIME-Version: 1.0', 'Content-Disposition: inline']) {
    assert.throws(() => parseHeaderFlag(h), /smtp365 writes .* itself/, h);
  }
  // a header line holds 998 characters; the builder folds only at spaces
  assert.throws(() => parseHeaderFlag(`X-Token: ${'a'.repeat(1200)}`), /1200 characters without a space.*at most 998/);
  assert.deepEqual(parseHeaderFlag(`X-Words: ${'word '.repeat(400).trim()}`)[0], 'X-Words');
  assert.equal(parseSize('35MB'), 35 * 1024 * 1024);
  assert.equal(parseSize('1.5 G'), Math.round(1.5 * 1024 ** 3));
  assert.equal(parseSize('2048'), 2048);
  assert.throws(() => parseSize('lots'));
  assert.equal(looksLikeMessage(Buffer.from('Subject: x\n\nbody')), true);
  assert.equal(looksLikeMessage(Buffer.from('disk full: 91%\n')), false);
  assert.equal(looksLikeMessage(Buffer.from('Warning: disk 91% full\n')), false);
  assert.equal(looksLikeMessage(Buffer.from('X-Priority: 1\nTo: a@b.com\n\nx')), true);
});
