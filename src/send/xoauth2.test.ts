import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildXoauth2 } from './xoauth2.ts';

test('XOAUTH2 matches Microsoft\'s published test vector exactly', () => {
  assert.equal(
    buildXoauth2('test@contoso.onmicrosoft.com', 'EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA'),
    'dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0ozVmUwYmpMQldaV0NjbFJDM0VvQUEBAQ==',
  );
});

test('XOAUTH2 decodes to user=, auth=Bearer and the two \\x01 terminators', () => {
  const decoded = Buffer.from(buildXoauth2('shared@contoso.com', 'tok'), 'base64').toString('utf8');
  assert.equal(decoded, 'user=shared@contoso.com\x01auth=Bearer tok\x01\x01');
});
