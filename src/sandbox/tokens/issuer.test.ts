import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SandboxClock } from '../state/clock.ts';
import { TokenIssuer } from './issuer.ts';
import { decodeJwt, signJwt } from './jwt.ts';
import { loadOrCreateSigningKey } from './keys.ts';

const user = { oid: '11111111-1111-4111-8111-111111111111', upn: 'a@contoso.onmicrosoft.com', displayName: 'A', password: 'x', mfaRequired: false, accountEnabled: true, sessionsRevokedAt: null };

function setup(t: { after(fn: () => void): void }, lifetime: number | [number, number] = 3600) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'smtp365-issuer-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const clock = new SandboxClock();
  const key = loadOrCreateSigningKey(dir);
  return { dir, clock, key, issuer: new TokenIssuer({ key, clock, authority: () => 'https://127.0.0.1:1', lifetime }) };
}

test('access tokens verify, and say why when they do not', (t) => {
  const { clock, issuer, dir } = setup(t);
  const { token, expiresIn, claims } = issuer.issueAccessToken({ tenantId: 't', aud: 'https://outlook.office.com', appId: 'app', appidacr: '0', user, scp: ['SMTP.Send'] });
  assert.equal(expiresIn, 3600);
  assert.equal(claims.exp - claims.iat, 3900, 'iat is back-dated five minutes');
  const ok = issuer.verifyAccessToken(token);
  assert.ok(ok.ok && ok.claims.scp === 'SMTP.Send' && ok.claims.upn === user.upn);
  assert.deepEqual(issuer.verifyAccessToken('not a jwt'), { ok: false, reason: 'malformed' });
  const [h, , s] = token.split('.') as [string, string, string];
  const tampered = `${h}.${Buffer.from(JSON.stringify({ ...claims, upn: 'evil@contoso.onmicrosoft.com' })).toString('base64url')}.${s}`;
  assert.deepEqual(issuer.verifyAccessToken(tampered), { ok: false, reason: 'signature' });
  // Same claims, another key (another sandbox): signature.
  const other = setup(t).issuer.issueAccessToken({ tenantId: 't', aud: 'x', appId: 'app', appidacr: '0', user });
  assert.deepEqual(issuer.verifyAccessToken(other.token), { ok: false, reason: 'signature' });
  // The same key is loaded again from the state dir.
  const again = new TokenIssuer({ key: loadOrCreateSigningKey(dir), clock, authority: () => '', lifetime: 60 });
  assert.ok(again.verifyAccessToken(token).ok);
  const future = signJwt({ kid: issuer.kid }, { ...claims, nbf: clock.nowSeconds() + 600 }, loadOrCreateSigningKey(dir).privateKey);
  assert.deepEqual(issuer.verifyAccessToken(future), { ok: false, reason: 'not-yet-valid' });
  clock.advance(3600);
  assert.deepEqual(issuer.verifyAccessToken(token), { ok: false, reason: 'expired' });
});

test('lifetimes are drawn from the configured range; app tokens carry roles, not scp', (t) => {
  const { issuer } = setup(t, [3600, 5400]);
  const seen = new Set<number>();
  for (let i = 0; i < 50; i++) {
    const l = issuer.lifetimeSeconds();
    assert.ok(l >= 3600 && l <= 5400);
    seen.add(l);
  }
  assert.ok(seen.size > 1);
  const app = issuer.issueAccessToken({ tenantId: 't', aud: 'https://outlook.office365.com', appId: 'app', appidacr: '1', servicePrincipalId: 'sp', roles: ['SMTP.SendAsApp'] });
  assert.deepEqual(app.claims.roles, ['SMTP.SendAsApp']);
  assert.equal(app.claims.scp, undefined);
  assert.equal(app.claims.oid, 'sp');
  assert.equal(app.claims.idtyp, 'app');
  const id = decodeJwt(issuer.issueIdToken({ tenantId: 't', clientId: 'app', user, nonce: 'n' }))!;
  assert.equal(id.payload['nonce'], 'n');
  assert.equal(id.payload['iss'], 'https://127.0.0.1:1/t/v2.0');
  assert.deepEqual(JSON.parse(Buffer.from(issuer.clientInfo(user, 't'), 'base64url').toString()), { uid: user.oid, utid: 't' });
});
