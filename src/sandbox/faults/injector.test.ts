import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FaultInjector } from './injector.ts';

test('times counts down and removes the fault; null means until removed', () => {
  const f = new FaultInjector();
  const a = f.add({ stage: 'auth', reply: '451 4.7.0 Temporary server error. Please try again later. PRX4', times: 2 });
  assert.match(a.id, /^fault-/);
  assert.equal(f.take('auth')?.reply, a.reply);
  assert.equal(f.list()[0]?.times, 1);
  assert.ok(f.take('auth'));
  assert.equal(f.take('auth'), undefined);
  assert.equal(f.list().length, 0);

  const forever = f.add({ stage: 'mail', drop: true, times: null });
  for (let i = 0; i < 5; i++) assert.equal(f.take('mail')?.drop, true);
  assert.equal(f.remove(forever.id), true);
  assert.equal(f.remove(forever.id), false);
  assert.equal(f.take('mail'), undefined);
});

test('default is once; stages do not mix; first added is first used', () => {
  const f = new FaultInjector();
  f.add({ stage: 'rcpt', reply: '451 4.3.0 first' });
  f.add({ stage: 'rcpt', reply: '452 4.3.0 second' });
  assert.equal(f.take('data'), undefined);
  assert.equal(f.take('rcpt')?.reply, '451 4.3.0 first');
  assert.equal(f.take('rcpt')?.reply, '452 4.3.0 second');
  assert.equal(f.take('rcpt'), undefined);
});

test('match restricts to one mailbox or client id, case-insensitively', () => {
  const f = new FaultInjector();
  f.add({ stage: 'auth', reply: '535 5.7.3 no', match: 'Alex@Contoso.onmicrosoft.com', times: null });
  assert.equal(f.take('auth'), undefined, 'nothing known at this stage: a matched fault does not apply');
  assert.equal(f.take('auth', 'megan@contoso.onmicrosoft.com'), undefined);
  assert.ok(f.take('auth', 'alex@contoso.onmicrosoft.com'));
  f.add({ stage: 'token', httpStatus: 503, body: { error: 'temporarily_unavailable' }, match: 'client-1' });
  assert.equal(f.take('token', 'CLIENT-1')?.httpStatus, 503);
});

test('recipient restricts a rcpt fault to one RCPT TO address, case-insensitively; other stages refuse it', () => {
  const f = new FaultInjector();
  f.add({ stage: 'rcpt', reply: '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found', recipient: 'Nobody@Example.com', times: null });
  assert.equal(f.take('rcpt', 'alex@contoso.onmicrosoft.com', 'someone@example.com'), undefined);
  assert.equal(f.take('rcpt', 'alex@contoso.onmicrosoft.com'), undefined, 'no address known: a recipient fault does not apply');
  assert.match(f.take('rcpt', 'alex@contoso.onmicrosoft.com', 'nobody@EXAMPLE.com')?.reply ?? '', /^550 5\.1\.1/);
  assert.throws(() => f.add({ stage: 'mail', reply: '550 5.1.1 no', recipient: 'nobody@example.com' }), /recipient: applies to the "rcpt" stage only/);
  assert.throws(() => f.add({ stage: 'rcpt', reply: '550 5.1.1 no', recipient: 'not an address' }), /recipient: must be one exact address/);
});

test('probability uses the random source; a miss does not count down', () => {
  const rolls = [0.9, 0.1];
  const f = new FaultInjector({ random: () => rolls.shift() ?? 0.99 });
  f.add({ stage: 'connect', drop: true, probability: 0.5 });
  assert.equal(f.take('connect'), undefined);
  assert.equal(f.list()[0]?.times, 1);
  assert.ok(f.take('connect'));
  const never = new FaultInjector();
  never.add({ stage: 'ehlo', drop: true, probability: 0, times: null });
  for (let i = 0; i < 100; i++) assert.equal(never.take('ehlo'), undefined);
});

test('invalid specs are refused with a readable reason', () => {
  const f = new FaultInjector();
  assert.throws(() => f.add({ stage: 'auth' }), /at least one of: reply, httpStatus, body, drop, delayMs/);
  assert.throws(() => f.add({ stage: 'auth', reply: 'oops' }), /reply must be an SMTP refusal/);
  assert.throws(() => f.add({ stage: 'mail', reply: '250 2.1.0 Sender OK' }), /reply must be an SMTP refusal/);
  assert.throws(() => f.add({ stage: 'nope' as 'auth', drop: true }), /stage must be one of/);
  assert.throws(() => f.add({ stage: 'mail', httpStatus: 500 }), /token and devicecode stages/);
  assert.throws(() => f.add({ stage: 'token', reply: '451 x' }), /use httpStatus and body/);
  assert.throws(() => f.add({ stage: 'data', drop: true, reply: '451 x' }), /drop cannot be combined/);
  assert.throws(() => f.add({ stage: 'data', drop: true, times: 0 }), /times/);
  assert.throws(() => f.add({ stage: 'data', drop: true, probability: 2 }), /probability/);
  f.add({ id: 'mine', stage: 'data', delayMs: 10 });
  assert.throws(() => f.add({ id: 'mine', stage: 'data', delayMs: 10 }), /already in use/);
  f.clear();
  assert.equal(f.list().length, 0);
});

test('recipient is one exact address: no second @, no * pattern', () => {
  const f = new FaultInjector();
  assert.throws(() => f.add({ stage: 'rcpt', reply: '550 5.1.1 no', recipient: 'a@@b.com' }), /recipient: must be one exact address/);
  assert.throws(() => f.add({ stage: 'rcpt', reply: '550 5.1.1 no', recipient: '*@example.com' }), /\* is not a wildcard/);
  f.add({ stage: 'rcpt', reply: '550 5.1.1 no', recipient: 'jürgen@exämple.com' });
  assert.ok(f.take('rcpt', undefined, 'JÜRGEN@exämple.com'), 'non-ASCII addresses match, without case');
});
