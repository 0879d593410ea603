// doctor against a healthy sandbox tenant: every check passes, for the
// guide's delegated setup and for app-only; --send-test delivers a message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { rig, byId, statuses } from './doctor-helpers.ts';

test('delegated (the guide\'s setup): all checks pass; --send-test delivers through the sandbox', async (t) => {
  const r = await rig(t);
  const results = await r.doctor({ sendTest: 'megan@contoso.onmicrosoft.com' });
  assert.equal(results.length, 10);
  assert.deepEqual(results.map((x) => x.number), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  for (const x of results) assert.equal(x.status, 'passed', `${x.id}: ${x.detail} ${x.problem ?? ''}\n${statuses(results)}`);
  assert.match(byId(results, 'sign-in').detail, new RegExp(`signed in as ${r.account.user}`));
  assert.match(byId(results, 'token-claims').detail, /aud https:\/\/outlook\.office\.com.*scp .*SMTP\.Send/);
  assert.match(byId(results, 'smtp-connection').detail, /TLSv1\.[23].*AUTH .*XOAUTH2/);
  assert.match(byId(results, 'smtp-auth').detail, /^AUTH XOAUTH2 user=alex@contoso\.onmicrosoft\.com: 235/);
  const sent = r.sb.messages.list().filter((m) => m.rcptTo.includes('megan@contoso.onmicrosoft.com'));
  assert.equal(sent.length, 1, 'exactly one message: the AUTH check sends nothing');
  assert.equal(sent[0]!.authUser, r.account.user);
  for (const x of results) assert.deepEqual([x.fix, x.powershell, x.step], [[], [], null]);
});

test('app-only: all checks pass, public client flows are skipped as not needed', async (t) => {
  const r = await rig(t, { flow: 'client-secret' });
  const results = await r.doctor();
  const expected = { 'public-client': 'skipped', 'send-test': 'skipped' } as Record<string, string>;
  for (const x of results) assert.equal(x.status, expected[x.id] ?? 'passed', `${x.id}: ${x.detail}\n${statuses(results)}`);
  assert.match(byId(results, 'public-client').detail, /app-only/);
  assert.match(byId(results, 'permissions').detail, /SMTP\.SendAsApp/);
  assert.match(byId(results, 'send-test').detail, /--send-test/);
});
