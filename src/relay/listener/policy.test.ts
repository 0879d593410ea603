import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decideFromHeader, decideSender, senderMatches } from './policy.ts';
import { fromHeaderAddresses, rewriteFromHeader } from './header-rewrite.ts';
import { hashPassword, verifyPassword } from '../users.ts';
import { AuthLimiter } from './auth-limit.ts';
import { authAllowedOn } from './server.ts';

const route = (policy: { senders?: string[]; rewriteSender: boolean }) => ({ via: 'user x', account: 'a', policy });

test('sender patterns', () => {
  assert.equal(senderMatches(['*@contoso.com'], 'Scanner@Contoso.com'), true);
  assert.equal(senderMatches(['*@contoso.com'], 'x@evil-contoso.com'), false);
  assert.equal(senderMatches(['a.b@x.com'], 'aXb@x.com'), false, 'dots are literal');
});

test('sender policy: allow, refuse, rewrite', () => {
  // No list, no rewrite: the mailbox itself (Microsoft refuses anything else with 5.7.60, after the whole message).
  assert.deepEqual(decideSender(route({ rewriteSender: false }), 'MBX@c.com', 'mbx@c.com'), { ok: true, from: 'MBX@c.com' });
  const other = decideSender(route({ rewriteSender: false }), 'scan@printer.local', 'mbx@c.com');
  assert.equal(other.ok, false);
  assert.match(!other.ok ? `${other.code} ${other.message}` : '', /^550 5\.7\.1 Sender address <scan@printer\.local> is not allowed: relay user x may send as mbx@c\.com .*rewriteSender: true/);
  // The account's mailbox not known (yet): anything well-formed.
  assert.deepEqual(decideSender(route({ rewriteSender: false }), 'any@where.com', undefined), { ok: true, from: 'any@where.com' });
  const refused = decideSender(route({ senders: ['*@c.com'], rewriteSender: false }), 'x@other.com', 'mbx@c.com');
  assert.equal(refused.ok, false);
  assert.deepEqual(decideSender(route({ senders: ['*@c.com'], rewriteSender: true }), 'x@other.com', 'mbx@c.com'), { ok: true, from: 'mbx@c.com', originalFrom: 'x@other.com' });
  // Rewrite without a list keeps only the mailbox.
  assert.deepEqual(decideSender(route({ rewriteSender: true }), 'scanner@printer.local', 'mbx@c.com'), { ok: true, from: 'mbx@c.com', originalFrom: 'scanner@printer.local' });
  assert.deepEqual(decideSender(route({ rewriteSender: true }), 'MBX@c.com', 'mbx@c.com'), { ok: true, from: 'MBX@c.com' });
  assert.deepEqual(decideSender(route({ rewriteSender: true }), '', 'mbx@c.com'), { ok: true, from: 'mbx@c.com', originalFrom: '' });
});

test('a malformed envelope sender is refused with 553 5.1.8 (or rewritten); the null sender only with rewrite', () => {
  const bad = decideSender(route({ rewriteSender: false }), 'root@vm', 'mbx@c.com');
  assert.equal(bad.ok, false);
  assert.match(!bad.ok ? `${bad.code} ${bad.message}` : '', /^553 5\.1\.8 Bad sender address syntax <root@vm>: the domain "vm" has no dot.*may send as mbx@c\.com.*rewriteSender: true/);
  const listed = decideSender(route({ senders: ['*'], rewriteSender: false }), 'root@vm', 'mbx@c.com');
  assert.equal(listed.ok ? 0 : listed.code, 553, 'even a * list does not let a bad address through');
  assert.deepEqual(decideSender(route({ rewriteSender: true }), 'root@vm', 'mbx@c.com'), { ok: true, from: 'mbx@c.com', originalFrom: 'root@vm' });
  const nul = decideSender(route({ rewriteSender: false }), '', 'mbx@c.com');
  assert.equal(nul.ok ? 0 : nul.code, 550);
});

test('From header policy at the end of DATA: the same senders, 5.7.60 of our own', () => {
  assert.deepEqual(fromHeaderAddresses('Subject: x\r\nFrom: "Scan" <scan@printer.local>,\r\n b@c.com\r\nTo: y@z.com'), ['scan@printer.local', 'b@c.com']);
  assert.equal(decideFromHeader(route({ rewriteSender: false }), ['MBX@c.com'], 'mbx@c.com'), undefined);
  assert.match(decideFromHeader(route({ rewriteSender: false }), ['scan@printer.local'], 'mbx@c.com')!, /^5\.7\.60 From: header <scan@printer\.local> is not allowed.*may send as mbx@c\.com/);
  assert.equal(decideFromHeader(route({ senders: ['*@printer.local'], rewriteSender: false }), ['scan@printer.local'], 'mbx@c.com'), undefined);
  assert.equal(decideFromHeader(route({ rewriteSender: false }), ['scan@printer.local'], undefined), undefined, 'mailbox unknown: not judged');
});

test('From header rewrite keeps the display name and the original, handles folding', () => {
  const h = 'Subject: scan\r\nFrom: "Scanner 3rd floor"\r\n <scan@printer.local>\r\nTo: a@b.com';
  const out = rewriteFromHeader(h, 'mbx@c.com', (a) => a === 'mbx@c.com')!;
  assert.equal(out, 'Subject: scan\r\nFrom: "Scanner 3rd floor" <mbx@c.com>\r\nX-Smtp365-Original-From: "Scanner 3rd floor" <scan@printer.local>\r\nTo: a@b.com');
  assert.equal(rewriteFromHeader('From: mbx@c.com\r\nTo: x@y.com', 'mbx@c.com', (a) => a === 'mbx@c.com'), undefined);
  assert.equal(rewriteFromHeader('To: x@y.com', 'mbx@c.com', () => false), undefined);
});

test('scrypt hashes verify, wrong passwords and garbage do not', async () => {
  const h = await hashPassword('correct horse');
  assert.match(h, /^scrypt\$16384\$8\$1\$/);
  assert.equal(await verifyPassword('correct horse', h), true);
  assert.equal(await verifyPassword('wrong', h), false);
  assert.equal(await verifyPassword('x', undefined), false);
  assert.equal(await verifyPassword('x', 'md5$abc'), false);
});

test('failed AUTH limiter: per address, sliding window; a success forgets only that user\'s failures', () => {
  const l = new AuthLimiter(2, 1000);
  l.fail('10.0.0.1', 'printer', 0);
  assert.equal(l.blocked('10.0.0.1', 1), false);
  l.fail('::ffff:10.0.0.1', 'printer', 2);
  assert.equal(l.blocked('10.0.0.1', 3), true);
  assert.equal(l.blocked('10.0.0.2', 3), false);
  assert.equal(l.blocked('10.0.0.1', 1500), false, 'the window moves on');
  // A device's own typo is forgiven by its next success.
  l.fail('10.0.0.3', 'printer', 0);
  l.succeed('10.0.0.3', 'printer');
  l.fail('10.0.0.3', 'printer', 1);
  assert.equal(l.blocked('10.0.0.3', 2), false);
  // Knowing one password does not reset the count while guessing another user's.
  l.fail('10.0.0.4', 'admin', 0);
  l.succeed('10.0.0.4', 'printer', 0);
  l.fail('10.0.0.4', 'admin', 1);
  assert.equal(l.blocked('10.0.0.4', 2), true);
  // Forgiven at most once per window: a device logging in as printer for every message (same NAT)
  // does not keep wiping guesses at printer's password.
  const n = new AuthLimiter(3, 1000);
  // f = a failed AUTH, s = a successful one, each at the time given (ms).
  const play = (events: Array<[number, 'f' | 's']>) => {
    for (const [at, what] of events) if (what === 'f') n.fail('10.0.0.5', 'printer', at);
    else n.succeed('10.0.0.5', 'printer', at);
  };
  play([[0, 'f'], [1, 's'], [2, 'f'], [3, 's'], [4, 'f'], [5, 's'], [6, 'f']]);
  assert.equal(n.blocked('10.0.0.5', 7), true, 'three failures since the one forgiveness');
  assert.equal(n.blocked('10.0.0.5', 1200), false, 'the window moves on');
  // A new window, a new forgiveness: two failures, forgiven, two more: not blocked (with three it would be).
  play([[1250, 'f'], [1260, 'f'], [1300, 's'], [1301, 'f'], [1302, 'f']]);
  assert.equal(n.blocked('10.0.0.5', 1303), false, 'forgiven again in the new window');
  play([[1304, 's'], [1305, 'f']]);
  assert.equal(n.blocked('10.0.0.5', 1306), true, 'but only once in it');
});

test('AUTH over plaintext: loopback yes, other peers only over TLS unless configured', () => {
  assert.equal(authAllowedOn(false, '127.0.0.1', false), true);
  assert.equal(authAllowedOn(false, '::1', false), true);
  assert.equal(authAllowedOn(false, '192.168.1.20', false), false);
  assert.equal(authAllowedOn(false, '::ffff:192.168.1.20', false), false);
  assert.equal(authAllowedOn(true, '192.168.1.20', false), true);
  assert.equal(authAllowedOn(false, '192.168.1.20', true), true);
});
