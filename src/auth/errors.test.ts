// How errors thrown while getting a token are classified: transient (retry,
// the relay defers) or not (the relay raises an account alert).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ServerError } from '@azure/msal-node';
import type { Account } from '../config/account.ts';
import { toAuthError } from './errors.ts';

const account = {
  name: 'office',
  cloud: 'global',
  authorityHost: 'https://login.microsoftonline.com',
  tenant: '6f1b3c2a-4d5e-4f60-8a7b-9c0d1e2f3a4b',
  clientId: 'c0f1de47-1a2b-4c3d-8e9f-0a1b2c3d4e5f',
  user: 'alex@contoso.com',
  flow: 'client-secret',
  smtpHost: 'smtp.office365.com',
  smtpPort: 587,
} as unknown as Account;

test("MSAL's throttling replay of an earlier 5xx is transient, whatever the old description's AADSTS code", () => {
  // As ThrottlingUtils.preProcess throws it: the numeric codes as errorCode, the old description, no status.
  const replay = new ServerError('50196', 'corr-1', 'AADSTS50196: The server terminated an operation because it encountered a loop.');
  const e = toAuthError(replay, { account, operation: 'token request', throttledUntil: Date.now() + 42_000 });
  assert.equal(e.code, 'AUTH_NETWORK');
  assert.equal(e.transient, true);
  assert.match(e.explanation?.cause ?? '', /held back for 4[12] s more/);
  assert.match(e.explanation?.cause ?? '', /AADSTS50196/);
  // How long a retry must wait, for the retry loops: sooner only replays the old answer.
  assert.ok(e.retryAfterMs! > 40_000 && e.retryAfterMs! <= 42_000, String(e.retryAfterMs));
  assert.equal(toAuthError(replay, { account, operation: 'token request' }).retryAfterMs, 60_000, "MSAL's default when the time is not known");
  // No error_codes in the old body: an empty code, as before.
  assert.equal(toAuthError(new ServerError('', 'corr-2', ''), { account, operation: 'token request' }).transient, true);
});

test('the same AADSTS answered by the service in this operation is explained as such, not as throttling', () => {
  const live = new ServerError('invalid_client', 'corr-3', 'AADSTS7000215: Invalid client secret provided.', undefined, '7000215', 401);
  const e = toAuthError(live, { account, operation: 'token request', serverError: { url: 'https://login.microsoftonline.com/6f1b3c2a-4d5e-4f60-8a7b-9c0d1e2f3a4b/oauth2/v2.0/token', status: 401, error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.', error_codes: [7000215] } });
  assert.notEqual(e.code, 'AUTH_NETWORK');
  assert.equal(e.transient, false);
  // A sign-in redirect's error also has no status, but an OAuth error word: not a replay.
  const redirect = new ServerError('access_denied', 'corr-4', 'AADSTS65004: User declined to consent to access the app.');
  assert.notEqual(toAuthError(redirect, { account, operation: 'sign-in' }).code, 'AUTH_NETWORK');
});

test('a 5xx or 429 answer is transient even when its text names a non-transient AADSTS code', () => {
  const body = { url: 'https://login.microsoftonline.com/6f1b3c2a-4d5e-4f60-8a7b-9c0d1e2f3a4b/oauth2/v2.0/token', error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.', error_codes: [7000215] };
  for (const status of [503, 429]) {
    const live = new ServerError('invalid_client', 'corr-5', body.error_description, undefined, '7000215', status);
    const e = toAuthError(live, { account, operation: 'token request', serverError: { ...body, status } });
    assert.equal(e.transient, true, String(status));
  }
  const e401 = toAuthError(new ServerError('invalid_client', 'corr-6', body.error_description, undefined, '7000215', 401), { account, operation: 'token request', serverError: { ...body, status: 401 } });
  assert.equal(e401.transient, false, 'the same text with 401 is the account\'s problem');
});

test('a transient identity-service answer reads as one sentence (no doubled period)', () => {
  const body = { url: 'https://login.microsoftonline.com/organizations/oauth2/v2.0/token', error: 'temporarily_unavailable', error_description: 'AADSTS90033: A transient error has occurred. Please try again.', error_codes: [90033] };
  const e = toAuthError(new ServerError(body.error, 'corr-7', body.error_description, undefined, '90033', 503), { account, operation: 'token request', serverError: { ...body, status: 503 } });
  assert.equal(e.transient, true);
  assert.match(e.explanation?.cause ?? '', /Please try again\.$/);
  assert.doesNotMatch(e.explanation?.cause ?? '', /\.\./);
});
