import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Smtp365Error } from '../errors/error.ts';
import { addressProblem, base64Size, parseAddressField, validateMailOptions, validateRawMessage, DEFAULT_MAX_MESSAGE_BYTES } from './validate.ts';

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (e) {
    return (e as Smtp365Error).code;
  }
  return undefined;
}

test('addressProblem accepts real addresses and names what is wrong with bad ones', () => {
  for (const ok of ['a@b.co', 'first.last+tag@sub.contoso.com', 'ünï@exämple.de', '"odd name"@example.com', 'x@[192.0.2.1]']) {
    assert.equal(addressProblem(ok), undefined, ok);
  }
  assert.match(addressProblem('bob')!, /no @domain/);
  assert.match(addressProblem('bob@localhost')!, /no dot/);
  assert.match(addressProblem('@example.com')!, /before @ is empty/);
  assert.match(addressProblem('a..b@example.com')!, /misplaced dot/);
  assert.match(addressProblem('a b@example.com')!, /quoting/);
  assert.match(addressProblem('a@exa mple.com')!, /not a valid domain/);
  assert.match(addressProblem('a@-x.com')!, /not a valid domain/);
  assert.match(addressProblem('a@1.2.3.4')!, /not a valid domain/);
});

test('parseAddressField flattens nodemailer inputs and reports the field and value', () => {
  assert.deepEqual(parseAddressField('to', 'A <a@x.com>, b@y.org'), ['a@x.com', 'b@y.org']);
  assert.deepEqual(parseAddressField('to', [{ name: 'C', address: 'c@z.net' }, 'd@z.net']), ['c@z.net', 'd@z.net']);
  assert.deepEqual(parseAddressField('cc', undefined), []);
  try {
    parseAddressField('cc', 'ok@x.com, not-an-address');
    assert.fail('should throw');
  } catch (e) {
    const err = e as Smtp365Error;
    assert.equal(err.code, 'MESSAGE_INVALID');
    assert.match(err.message, /Invalid address in cc: "not-an-address" \(it has no @domain part\)/);
  }
});

test('a message needs at least one recipient, and at most 500', async () => {
  await assert.rejects(validateMailOptions({ from: 'a@x.com', subject: 's', text: 't' }, DEFAULT_MAX_MESSAGE_BYTES), (e: Smtp365Error) => {
    assert.equal(e.code, 'MESSAGE_INVALID');
    assert.match(e.message, /no recipients/);
    return true;
  });
  const many = Array.from({ length: 501 }, (_, i) => `u${i}@x.com`);
  await assert.rejects(validateMailOptions({ to: many, text: 't' }, DEFAULT_MAX_MESSAGE_BYTES), /at most 500/);
  // bcc only is fine
  await validateMailOptions({ bcc: 'b@x.com', text: 't' }, DEFAULT_MAX_MESSAGE_BYTES);
});

test('unreadable attachments are refused before connecting, naming the file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'smtp365-validate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const missing = join(dir, 'nope.pdf');
  await assert.rejects(validateMailOptions({ to: 'b@x.com', attachments: [{ path: missing }] }, DEFAULT_MAX_MESSAGE_BYTES), (e: Smtp365Error) => {
    assert.equal(e.code, 'INPUT_INVALID');
    assert.ok(e.message.includes(missing) && /no such file/.test(e.message), e.message);
    return true;
  });
  await assert.rejects(validateMailOptions({ to: 'b@x.com', attachments: [{ path: dir }] }, DEFAULT_MAX_MESSAGE_BYTES), /not a regular file/);
  if (process.getuid?.() !== 0) {
    const locked = join(dir, 'locked.txt');
    await writeFile(locked, 'x');
    await chmod(locked, 0o000);
    await assert.rejects(validateMailOptions({ to: 'b@x.com', attachments: [{ path: locked }] }, DEFAULT_MAX_MESSAGE_BYTES), /permission denied/);
  }
});

test('size is estimated after base64 and compared with the limit', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'smtp365-validate-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'a.bin');
  await writeFile(file, Buffer.alloc(300_000));
  const est = await validateMailOptions({ to: 'b@x.com', text: 'hi', attachments: [{ path: file }] }, 1_000_000);
  assert.ok(est.bytes >= base64Size(300_000) && est.bytes < base64Size(300_000) + 10_000, String(est.bytes));
  assert.equal(est.complete, true);
  // 300 KB of data is ~410 KB encoded: over a 400 KB limit although the file is smaller
  await assert.rejects(validateMailOptions({ to: 'b@x.com', attachments: [{ path: file }] }, 400_000), (e: Smtp365Error) => {
    assert.equal(e.code, 'MESSAGE_TOO_LARGE');
    assert.equal(e.transient, false);
    assert.ok(e.explanation);
    return true;
  });
});

test('raw messages: envelope checked, size exact, empty refused', async () => {
  await validateRawMessage({ raw: 'Subject: x\r\n\r\nhi\r\n', envelope: { from: 'a@x.com', to: ['b@x.com'] } }, 1000);
  assert.equal(code(() => parseAddressField('envelope.to', ['bad'])), 'MESSAGE_INVALID');
  await assert.rejects(validateRawMessage({ raw: 'x', envelope: { from: 'a@x.com', to: [] } }, 1000), /no recipients/);
  await assert.rejects(validateRawMessage({ raw: '', envelope: { from: 'a@x.com', to: ['b@x.com'] } }, 1000), /empty/);
  await assert.rejects(validateRawMessage({ raw: Buffer.alloc(2000, 0x41), envelope: { from: 'a@x.com', to: ['b@x.com'] } }, 1000), (e: Smtp365Error) => e.code === 'MESSAGE_TOO_LARGE');
});

test('address strings: a line break, or two addresses without a comma, are refused (not parsed into a display name)', () => {
  assert.throws(() => parseAddressField('to', 'a@example.com\r\nBcc: evil@example.com'), /Invalid address in to: .*contains a line break/);
  assert.throws(() => parseAddressField('cc', ['ok@example.com', 'x@example.com\nBcc: y@example.com']), /contains a line break/);
  assert.throws(() => parseAddressField('to', 'a@example.com b@example.com'), /several addresses: separate them with commas/);
  assert.deepEqual(parseAddressField('to', 'a@example.com, b@example.com'), ['a@example.com', 'b@example.com']);
  assert.deepEqual(parseAddressField('to', '"ops@site" <a@example.com>'), ['a@example.com']);
  assert.deepEqual(parseAddressField('to', 'Ops Team <a@example.com>'), ['a@example.com']);
});

test("headers the builder writes itself, or runs no folding can fit, are refused in every form nodemailer takes; others pass", async () => {
  const base = { from: 'a@contoso.com', to: 'b@example.com', text: 'x' };
  for (const headers of [
    { 'Content-Type': 'text/html' },
    { 'content-transfer-encoding': ['base64'] },
    { 'MIME-Version': { prepared: true, value: '1.0' } },
    [{ key: 'Content-Disposition', value: 'inline' }],
    { 'X-Long': 'y'.repeat(1200) },
  ]) {
    await assert.rejects(validateMailOptions({ ...base, headers } as never, DEFAULT_MAX_MESSAGE_BYTES), (e: Smtp365Error) => {
      assert.equal(e.code, 'MESSAGE_INVALID');
      assert.match(e.message, /^headers\["[^"]+"\]: (smtp365 writes .+ itself \(from text, html and attachments\)|the value has 1\d{3} characters without a space)/);
      return true;
    });
  }
  await validateMailOptions({ ...base, headers: { 'X-Tag': 'a', 'List-Unsubscribe': ['<mailto:u@contoso.com>'], 'X-Long-But-Spaced': 'word '.repeat(400) } }, DEFAULT_MAX_MESSAGE_BYTES);
});
