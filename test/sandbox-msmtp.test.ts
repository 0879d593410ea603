// Fidelity: msmtp (Debian), a client nobody here wrote, configured the way a
// user configures it for Microsoft 365 (auth xoauth2, STARTTLS, passwordeval
// printing a token) and changed only to point at the sandbox and trust its
// CA. The token comes from the sandbox's token endpoint (client credentials),
// and the message must then be visible through GET /admin/messages.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import type { Sandbox } from '../src/sandbox/index.ts';
import { withSandbox } from './helpers/sandbox.ts';

const msmtp = spawnSync('msmtp', ['--version'], { encoding: 'utf8' });
const skip = msmtp.error || msmtp.status !== 0 ? 'msmtp is not installed (Debian: apt-get install msmtp; .ci/run installs it)' : false;

function post(sb: Sandbox, urlPath: string, form: Record<string, string>): Promise<{ status: number; json: Record<string, unknown> }> {
  const body = new URLSearchParams(form).toString();
  return new Promise((resolve, reject) => {
    const req = https.request(
      new URL(urlPath, sb.url),
      { method: 'POST', ca: fs.readFileSync(sb.info.caFile), headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown> }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

function getJson(sb: Sandbox, urlPath: string): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    https
      .get(new URL(urlPath, sb.url), { ca: fs.readFileSync(sb.info.caFile) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>));
      })
      .on('error', reject);
  });
}

function runMsmtp(args: string[], input: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = execFile('msmtp', args, { timeout: 30_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr });
    });
    child.stdin!.end(input);
  });
}

function writeConfig(dir: string, sb: Sandbox, user: string, tokenFile: string): string {
  const rc = path.join(dir, 'msmtprc');
  fs.writeFileSync(
    rc,
    [
      'defaults',
      `logfile ${path.join(dir, 'msmtp.log')}`,
      '',
      'account m365',
      `host ${sb.info.smtp.host}`,
      `port ${sb.info.smtp.port}`,
      'tls on',
      'tls_starttls on',
      `tls_trust_file ${sb.info.caFile}`,
      'auth xoauth2',
      `user ${user}`,
      `from ${user}`,
      `passwordeval cat ${tokenFile}`,
      '',
      'account default : m365',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  return rc;
}

test('msmtp sends with auth xoauth2 over STARTTLS; the message shows up in the messages API', { skip }, async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: false });
  const dir = fs.mkdtempSync(path.join(sb.stateDir, 'msmtp-'));
  const alex = sb.info.users[0]!.upn;
  const megan = sb.info.users[1]!.upn;

  // An app-only token from the token endpoint, as a daemon would get it.
  const tok = await post(sb, `/${sb.info.tenantId}/oauth2/v2.0/token`, {
    grant_type: 'client_credentials',
    client_id: sb.info.confidentialClient.clientId,
    client_secret: sb.info.confidentialClient.clientSecret,
    scope: 'https://outlook.office365.com/.default',
  });
  assert.equal(tok.status, 200, JSON.stringify(tok.json));
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, String(tok.json['access_token']), { mode: 0o600 });
  const rc = writeConfig(dir, sb, alex, tokenFile);

  const message = `From: Alex <${alex}>\nTo: ${megan}\nSubject: sent by msmtp\n\nHello from msmtp.\n`;
  const run = await runMsmtp(['-C', rc, '-t'], message);
  assert.equal(run.code, 0, `msmtp failed: ${run.stderr}\n${fs.existsSync(path.join(dir, 'msmtp.log')) ? fs.readFileSync(path.join(dir, 'msmtp.log'), 'utf8') : ''}`);

  const list = (await getJson(sb, '/admin/messages?count=1&timeoutMs=5000')) as { messages: Array<Record<string, unknown>> };
  assert.equal(list.messages.length, 1);
  const m = list.messages[0]!;
  assert.equal(m['subject'], 'sent by msmtp');
  assert.equal(m['authUser'], alex);
  assert.equal(m['authIdentity'], `app:${sb.info.confidentialClient.clientId}`);
  assert.deepEqual(m['rcptTo'], [megan]);
  assert.match(String(m['messageId']), /^<.+>$/);
  assert.match(fs.readFileSync(path.join(dir, 'msmtp.log'), 'utf8'), /exitcode=EX_OK/);
});

test("msmtp reports Microsoft's refusal when the token is not accepted", { skip }, async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: false, smtp: { authFailureDelayMs: 0 } });
  const dir = fs.mkdtempSync(path.join(sb.stateDir, 'msmtp-'));
  const alex = sb.info.users[0]!.upn;
  const tokenFile = path.join(dir, 'token');
  fs.writeFileSync(tokenFile, 'expired-or-wrong', { mode: 0o600 });
  const rc = writeConfig(dir, sb, alex, tokenFile);
  const run = await runMsmtp(['-C', rc, sb.info.users[1]!.upn], `Subject: no\n\nno\n`);
  assert.notEqual(run.code, 0);
  assert.match(run.stderr, /535 5\.7\.3 Authentication unsuccessful \[/);
  assert.equal(sb.messages.list().length, 0);

  // And a tenant without SMTP AUTH for the mailbox: the 5.7.139 text reaches the user.
  sb.directory.mailbox(alex)!.smtpClientAuthenticationDisabled = true;
  const user = sb.directory.user(alex)!;
  fs.writeFileSync(
    tokenFile,
    sb.issuer.issueAccessToken({ tenantId: sb.info.tenantId, aud: 'https://outlook.office.com', appId: sb.info.publicClientId, appidacr: '0', user, scp: ['SMTP.Send'] }).token,
  );
  const run2 = await runMsmtp(['-C', rc, sb.info.users[1]!.upn], `Subject: no\n\nno\n`);
  assert.notEqual(run2.code, 0);
  assert.match(run2.stderr, /SmtpClientAuthentication is disabled for the Mailbox/);
});
