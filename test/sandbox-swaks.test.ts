// Fidelity: swaks (Debian), as a legacy script that still sends with a user
// name and password. Against Microsoft 365 after the Basic-auth retirement it
// gets 535 5.7.139; with Basic auth still allowed in the tenant it sends.
// swaks has no XOAUTH2, so this covers the password path; msmtp covers OAuth2.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import type { Sandbox } from '../src/sandbox/index.ts';
import { withSandbox } from './helpers/sandbox.ts';

const support = spawnSync('swaks', ['--support'], { encoding: 'utf8' });
const skip =
  support.error || support.status !== 0
    ? 'swaks is not installed (Debian: apt-get install swaks)'
    : !/=== TLS supported/.test(support.stdout + support.stderr)
      ? 'swaks has no TLS support here (Debian: apt-get install libnet-ssleay-perl libio-socket-ssl-perl)'
      : false;

function swaks(sb: Sandbox, auth: string, password: string): Promise<{ code: number; out: string }> {
  const args = [
    '--server', `${sb.info.smtp.host}:${sb.info.smtp.port}`,
    '--tls', '--tls-verify', '--tls-ca-path', sb.info.caFile,
    '--auth', auth, '--auth-user', sb.info.users[0]!.upn, '--auth-password', password,
    '--from', sb.info.users[0]!.upn, '--to', sb.info.users[1]!.upn,
    '--header', 'Subject: from swaks', '--body', 'legacy script',
    '--timeout', '20',
  ];
  // execFile, not spawnSync: the sandbox runs in this process and must keep answering.
  return new Promise((resolve) => {
    execFile('swaks', args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, out: stdout + stderr });
    });
  });
}

test('swaks with a password: basic authentication is disabled; with Basic auth on in the tenant it sends', { skip }, async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: false, smtp: { authFailureDelayMs: 0 } });
  const password = sb.info.users[0]!.password;

  const refused = await swaks(sb, 'LOGIN', password);
  assert.notEqual(refused.code, 0);
  assert.match(refused.out, /<~\* 535 5\.7\.139 Authentication unsuccessful, basic authentication is disabled\. \[/);
  assert.match(refused.out, /<~ {2}250-AUTH LOGIN XOAUTH2/, 'swaks saw the EHLO list inside TLS');

  sb.directory.data.tenants[0]!.basicAuthEnabled = true;
  const sent = await swaks(sb, 'LOGIN', password);
  assert.equal(sent.code, 0, sent.out);
  assert.match(sent.out, /<~ {2}250 2\.0\.0 OK <[^>]+> \[Hostname=[^\]]+\]/);
  const [m] = sb.messages.list();
  assert.equal(m?.subject, 'from swaks');
  assert.equal(m?.authIdentity, sb.info.users[0]!.upn);
});
