import { test } from 'node:test';
import assert from 'node:assert/strict';
import { redact, maskSecret } from './redact.ts';

test('tokens, secrets and authorization codes are masked wherever they appear', () => {
  const jwt = 'eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGV4In0.c2lnbmF0dXJlLXBhcnQ';
  assert.doesNotMatch(redact(`token ${jwt} here`), /eyJzdWIi/);
  assert.equal(redact('user=a@b\x01auth=Bearer abc.def.ghi\x01\x01'), 'user=a@b\x01auth=Bearer [redacted]\x01\x01');
  assert.equal(redact('client_secret=s3cr3t-VALUE&x=1'), 'client_secret=[redacted]&x=1');
  assert.equal(redact('{"refresh_token":"0.AXoA-abc"}'), '{"refresh_token":"[redacted]"}');
  assert.equal(redact('code=0.AXoAabcdefghijklmnopqrstuvwxyz&state=1'), 'code=[redacted]&state=1');
  assert.equal(redact('"password": "hunter2hunter2"'), '"password": "[redacted]"');
});

test("smtp365's own error codes and SMTP reply codes survive (scripts match on them)", () => {
  const json = JSON.stringify({ error: { code: 'SMTP_AUTH_DISABLED_MAILBOX', smtp: { code: 535 }, explanation: { code: 'AUTH_TENANT_NOT_FOUND' } } });
  assert.equal(redact(json), json);
  assert.equal(redact('code: SMTP_RECIPIENT_REJECTED'), 'code: SMTP_RECIPIENT_REJECTED');
});

test('maskSecret keeps only a hint', () => {
  assert.equal(maskSecret('short'), '********');
  assert.equal(maskSecret('abcdefghijklmnop'), 'abc…(16 chars)');
});
