import { test } from 'node:test';
import assert from 'node:assert/strict';
import { nextDelay } from './backoff.ts';
import { outcomeOf } from './classify.ts';
import { deliverableSender } from './bounce.ts';
import { Smtp365Error } from '../../errors/error.ts';

test('exponential backoff, capped, with bounded jitter', () => {
  const mid = () => 0.5;
  assert.deepEqual([1, 2, 3, 4, 5, 10].map((a) => nextDelay(a, 300_000, 4_000_000, mid)), [300_000, 600_000, 1_200_000, 2_400_000, 4_000_000, 4_000_000]);
  assert.equal(nextDelay(1, 1000, 10_000, () => 0), 900);
  assert.equal(nextDelay(1, 1000, 10_000, () => 1), 1100);
});

test('outcomes: transient retried, message problems bounce, account problems alert', () => {
  assert.equal(outcomeOf(new Smtp365Error('SMTP_TEMPORARY', 'x')), 'transient');
  assert.equal(outcomeOf(new Smtp365Error('SMTP_CONNECTION', 'x')), 'transient');
  assert.equal(outcomeOf(new Smtp365Error('AUTH_NETWORK', 'x')), 'transient');
  assert.equal(outcomeOf(new Smtp365Error('SMTP_SEND_AS_DENIED', 'x')), 'permanent');
  assert.equal(outcomeOf(new Smtp365Error('SMTP_RECIPIENT_REJECTED', 'x')), 'permanent');
  assert.equal(outcomeOf(new Smtp365Error('SMTP_MESSAGE_TOO_LARGE', 'x')), 'permanent');
  assert.equal(outcomeOf(new Smtp365Error('AUTH_SIGNIN_EXPIRED', 'x')), 'account');
  assert.equal(outcomeOf(new Smtp365Error('AUTH_NOT_SIGNED_IN', 'x')), 'account');
  assert.equal(outcomeOf(new Smtp365Error('SMTP_AUTH_DISABLED_TENANT', 'x')), 'account');
  assert.equal(outcomeOf(new Smtp365Error('SMTP_AUTH_FAILED', 'x')), 'account');
  assert.equal(outcomeOf(new Smtp365Error('INTERNAL', 'x')), 'transient', 'our own bug never destroys mail');
});

test('DSNs only to senders that can receive them', () => {
  assert.equal(deliverableSender('it@contoso.com'), true);
  assert.equal(deliverableSender(''), false);
  assert.equal(deliverableSender('scanner@printer.local'), false);
  assert.equal(deliverableSender('root@localhost'), false);
  assert.equal(deliverableSender('nobody'), false);
});
