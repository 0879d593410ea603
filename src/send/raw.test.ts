import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { prepareSubmissionHeaders, parseHeaderBlock, findHeaderEnd, messageIdOf, stripBccFromMessage, withoutBccStream, headersOf } from './raw.ts';
import { spoolMessage, splitHeaderSection } from './spool.ts';

test('header blocks are unfolded; several To lines all count', () => {
  const f = parseHeaderBlock('To: a@x.com,\r\n b@x.com\r\nSubject: hi\r\nTo: c@x.com\r\n');
  assert.equal(f.length, 3);
  assert.equal(f[0]!.value, 'a@x.com, b@x.com');
  const p = prepareSubmissionHeaders('To: a@x.com,\r\n b@x.com\r\nSubject: hi\r\nTo: c@x.com\r\n', { defaultFrom: 'me@contoso.com' });
  assert.deepEqual(p.to, ['a@x.com', 'b@x.com', 'c@x.com']);
});

test('submission headers: Bcc stripped, From/Date/Message-ID added only when missing', () => {
  const p = prepareSubmissionHeaders('To: a@x.com\nBcc: hidden@x.com,\n  also@x.com\nSubject: s\n', { defaultFrom: 'me@contoso.com', fromName: 'Cron Daemon' });
  assert.deepEqual(p.bcc, ['hidden@x.com', 'also@x.com']);
  assert.ok(!/hidden|also@/.test(p.text), p.text);
  assert.match(p.text, /^From: "?Cron Daemon"? <me@contoso\.com>\n/m);
  assert.match(p.text, /^Date: \w{3}, \d{2} \w{3} \d{4} \d{2}:\d{2}:\d{2} \+0000\n/m);
  assert.match(p.text, /^Message-ID: <[0-9a-f]+\.[0-9a-z]+@contoso\.com>\n/m);
  assert.ok(p.text.endsWith('Subject: s\n\n'));
  assert.deepEqual(p.added.sort(), ['Date', 'From', 'Message-ID']);
  const q = prepareSubmissionHeaders('From: Boss <boss@contoso.com>\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <x@y>\r\nTo: a@x.com\r\n', { defaultFrom: 'me@contoso.com' });
  assert.deepEqual(q.added, []);
  assert.equal(q.from, 'boss@contoso.com');
  assert.equal(q.messageId, '<x@y>');
  assert.ok(q.text.endsWith('\r\n\r\n'));
});

test('findHeaderEnd and messageIdOf read the header section only', async () => {
  assert.equal(findHeaderEnd(Buffer.from('A: 1\r\n\r\nbody')), 8);
  assert.equal(findHeaderEnd(Buffer.from('A: 1\n\nbody')), 6);
  assert.equal(findHeaderEnd(Buffer.from('A: 1\nB: 2\n')), undefined);
  assert.equal(await messageIdOf('Message-ID: <abc@d>\r\n\r\nMessage-ID: <body@x>'), '<abc@d>');
});

test('splitHeaderSection: no headers at all starts the body at once', () => {
  assert.deepEqual(splitHeaderSection(Buffer.from('hello\nworld\n'), true), { header: '', bodyStart: 0 });
  assert.deepEqual(splitHeaderSection(Buffer.from('Subject: x\nhello\n'), true), { header: 'Subject: x\n', bodyStart: 11 });
  assert.equal(splitHeaderSection(Buffer.from('Subject: x\nTo: a'), false), undefined);
  assert.deepEqual(splitHeaderSection(Buffer.from('From me Mon Jan 1\nSubject: x\n\nb'), true), { header: 'Subject: x\n', bodyStart: 30 });
});

async function spool(input: string[], dotTerminates: boolean) {
  const seen: string[] = [];
  const s = await spoolMessage(Readable.from(input.map((x) => Buffer.from(x))), {
    dotTerminates,
    onHeaders: (h) => {
      seen.push(h);
      return `X-Seen: yes\n${h}\n`;
    },
  });
  const text = await readFile(s.path, 'utf8');
  await s.cleanup();
  return { text, headers: seen[0] };
}

test('spoolMessage rewrites headers and keeps the body byte for byte', async () => {
  const r = await spool(['Subject: a\nTo: b@x.com\n', '\nline 1\n', '.leading dot\nend'], false);
  assert.equal(r.headers, 'Subject: a\nTo: b@x.com\n');
  assert.equal(r.text, 'X-Seen: yes\nSubject: a\nTo: b@x.com\n\nline 1\n.leading dot\nend');
});

test('without -i a line holding only "." ends the message, even split across chunks', async () => {
  assert.equal((await spool(['Subject: a\n\nbody\n.', '\nignored\n'], true)).text, 'X-Seen: yes\nSubject: a\n\nbody\n');
  assert.equal((await spool(['Subject: a\n\nbody\n', '.\r', '\nignored'], true)).text, 'X-Seen: yes\nSubject: a\n\nbody\n');
  assert.equal((await spool(['Subject: a\n\n.. two dots stay\n.x\n'], true)).text, 'X-Seen: yes\nSubject: a\n\n.. two dots stay\n.x\n');
  assert.equal((await spool(['Subject: a\n.\nrest'], true)).text, 'X-Seen: yes\nSubject: a\n\n');
  // with -i the dot line is content
  assert.equal((await spool(['Subject: a\n\nx\n.\ny'], false)).text, 'X-Seen: yes\nSubject: a\n\nx\n.\ny');
});

test('Bcc and Resent-Bcc fields leave the header section, folded lines and all; the rest byte for byte, either line ending', async () => {
  const cases: Array<[string, string]> = [
    ['To: a@x\r\nBcc: b@x,\r\n c@x\r\nSubject: s\r\n\r\nBcc: body\r\n', 'To: a@x\r\nSubject: s\r\n\r\nBcc: body\r\n'],
    ['To: a@x\nSubject: s\nbcc:b@x\n\nbody\n', 'To: a@x\nSubject: s\n\nbody\n'],
    ['Resent-Bcc: r@x\r\nTo: a@x\r\n\r\n', 'To: a@x\r\n\r\n'],
    ['To: a@x\r\nX-Bcc-Note: kept\r\n\r\nx', 'To: a@x\r\nX-Bcc-Note: kept\r\n\r\nx'],
    ['To: a@x\r\nSubject: no body, no blank line', 'To: a@x\r\nSubject: no body, no blank line'],
    // LF fields, then a CRLF blank line: the body stays a body
    ['From: a@x\nBcc: b@x\n\r\nbody\n', 'From: a@x\n\r\nbody\n'],
    // header fields only, no blank line (RFC 5322 allows it): still removed
    ['To: a@x\r\nBcc: b@x\r\n', 'To: a@x\r\n'],
    ['To: a@x\r\nBcc: b@x', 'To: a@x'],
  ];
  for (const [input, expected] of cases) {
    assert.equal(stripBccFromMessage(Buffer.from(input)).toString(), expected, JSON.stringify(input));
    // As a stream, cut at every byte boundary of the header section.
    for (const cut of [1, 7, input.indexOf('Bcc') + 2, input.length - 1]) {
      const src = Readable.from([Buffer.from(input.slice(0, cut)), Buffer.from(input.slice(cut))]);
      const out: Buffer[] = [];
      for await (const c of withoutBccStream(src)) out.push(c as Buffer);
      assert.equal(Buffer.concat(out).toString(), expected, `${JSON.stringify(input)} cut at ${cut}`);
    }
  }
  const untouched = Buffer.from('To: a@x\r\n\r\nbody');
  assert.equal(stripBccFromMessage(untouched), untouched, 'no copy when there is nothing to remove');
});

test('a failing source ends the Bcc-stripping stream with its error', async () => {
  const src = new Readable({ read() {} });
  const out = withoutBccStream(src);
  const failed = new Promise((_, reject) => out.on('error', reject));
  out.resume();
  src.push('To: a@x\r\n');
  src.destroy(new Error('EIO: read failed'));
  await assert.rejects(failed, /EIO/);
});

test('the bytes a Bcc removal takes are counted as bytes (the exact SIZE= of a raw file), also for non-UTF-8 names', async () => {
  for (const msg of [
    Buffer.concat([Buffer.from('To: a@x\r\nBcc: "J'), Buffer.from([0xf6]), Buffer.from('rg" <j@x>\r\n\r\nbody\r\n')]),
    Buffer.from('To: a@x\r\nBcc: "Jörg" <j@x>,\r\n  k@x\r\n\r\nbody\r\n'),
    Buffer.from('To: a@x\nBcc: b@x\n'),
  ]) {
    assert.equal((await headersOf(msg)).bccBytes, msg.length - stripBccFromMessage(msg).length);
  }
  assert.equal((await headersOf(Buffer.from('To: a@x\r\n\r\nBcc: only in the body\r\n'))).bccBytes, undefined);
});
