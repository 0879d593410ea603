// Fidelity: Python's standard smtplib, as countless scripts use it with
// Microsoft 365 — starttls() with a trusted CA, then auth("XOAUTH2", …) — run
// unchanged except for host, port and CA. Its 334/235/535 handling must work
// against the sandbox as against Microsoft.

import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { test } from 'node:test';
import type { Sandbox } from '../src/sandbox/index.ts';
import { withSandbox } from './helpers/sandbox.ts';

const py = spawnSync('python3', ['-c', 'import smtplib, ssl'], { encoding: 'utf8' });
const skip = py.error || py.status !== 0 ? 'python3 with smtplib is not available' : false;

const SCRIPT = String.raw`
import base64, json, os, smtplib, ssl, sys
from email.message import EmailMessage
host, port, ca, user, token, to = (os.environ[k] for k in ("HOST", "PORT", "CA", "USER", "TOKEN", "TO"))
ctx = ssl.create_default_context(cafile=ca)
out = {}
try:
    with smtplib.SMTP(host, int(port), local_hostname="script.example", timeout=20) as s:
        s.ehlo()
        out["before_tls"] = sorted(s.esmtp_features)
        s.starttls(context=ctx)
        s.ehlo()
        out["after_tls"] = sorted(s.esmtp_features)
        out["auth_mechanisms"] = s.esmtp_features.get("auth", "").strip()
        code, resp = s.auth("XOAUTH2", lambda challenge=None: "user=%s\x01auth=Bearer %s\x01\x01" % (user, token), initial_response_ok=True)
        out["auth"] = [code, resp.decode()]
        msg = EmailMessage()
        msg["From"] = user
        msg["To"] = to
        msg["Subject"] = "from python smtplib"
        msg.set_content("Sent by a Python script.")
        refused = s.send_message(msg)
        out["refused"] = refused
except smtplib.SMTPAuthenticationError as e:
    out["auth_error"] = [e.smtp_code, e.smtp_error.decode()]
print(json.dumps(out))
`;

function runPython(sb: Sandbox, token: string): Promise<Record<string, unknown>> {
  const env = {
    ...process.env,
    HOST: sb.info.smtp.host,
    PORT: String(sb.info.smtp.port),
    CA: sb.info.caFile,
    USER: sb.info.users[0]!.upn,
    TOKEN: token,
    TO: sb.info.users[1]!.upn,
  };
  return new Promise((resolve, reject) => {
    execFile('python3', ['-c', SCRIPT], { env, timeout: 30_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`python failed: ${stderr || err.message}`));
      resolve(JSON.parse(stdout) as Record<string, unknown>);
    });
  });
}

test('Python smtplib: STARTTLS, AUTH XOAUTH2, send_message; the message is captured', { skip }, async (t) => {
  const sb = await withSandbox(t, { autoApproveDeviceCodes: false, smtp: { authFailureDelayMs: 0 } });
  const user = sb.directory.user(sb.info.users[0]!.upn)!;
  const token = sb.issuer.issueAccessToken({ tenantId: sb.info.tenantId, aud: 'https://outlook.office.com', appId: sb.info.publicClientId, appidacr: '0', user, scp: ['SMTP.Send'] }).token;
  const out = await runPython(sb, token);
  assert.deepEqual(out['before_tls'], ['8bitmime', 'binarymime', 'chunking', 'dsn', 'enhancedstatuscodes', 'pipelining', 'size', 'smtputf8', 'starttls']);
  assert.deepEqual(out['after_tls'], ['8bitmime', 'auth', 'binarymime', 'chunking', 'dsn', 'enhancedstatuscodes', 'pipelining', 'size', 'smtputf8']);
  assert.equal(out['auth_mechanisms'], 'LOGIN XOAUTH2');
  assert.deepEqual(out['auth'], [235, '2.7.0 Authentication successful']);
  assert.deepEqual(out['refused'], {});
  const [m] = sb.messages.list();
  assert.equal(m?.subject, 'from python smtplib');
  assert.equal(m?.authIdentity, user.upn);

  const bad = await runPython(sb, 'not-a-token');
  const [code, text] = bad['auth_error'] as [number, string];
  assert.equal(code, 535);
  assert.match(text, /^5\.7\.3 Authentication unsuccessful \[/);
});
