// A config file holding a secret, or a private key file, that group or others
// can read: doctor check 1 warns with the chmod that fixes it, and the
// everyday commands say so once on stderr without touching stdout (tokens,
// --json). Files without secrets are left alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { withSandbox, sandboxAccount, type Sandbox } from './helpers/sandbox.ts';
import { tempDir, only, checkResultsAgainstDocs } from './doctor-helpers.ts';
import { cli } from './auth-cli-helpers.ts';
import { exposedSecretFiles } from '../src/config/exposure.ts';
import { createSelfSignedCertificate } from '../src/setup/certificate.ts';
import { runDoctor } from '../src/doctor/index.ts';
import type { Account } from '../src/config/account.ts';

checkResultsAgainstDocs();
const posix = process.platform !== 'win32';

function appOnlyConfig(sb: Sandbox): string {
  const a = sandboxAccount(sb.info, { flow: 'client-secret' });
  return [
    'default: daemon',
    'accounts:',
    '  daemon:',
    ...Object.entries({ tenant: a.tenant, clientId: a.clientId, user: a.user, flow: a.flow, clientSecret: a.clientSecret, authority: a.authorityHost, smtpHost: a.smtpHost, smtpPort: a.smtpPort, caFile: a.caFile })
      .map(([k, v]) => `    ${k}: ${JSON.stringify(v)}`),
    '',
  ].join('\n');
}

test('only files with a secret that group or others can read are reported', { skip: !posix }, async (t) => {
  const dir = await tempDir(t, 'smtp365-exposure-');
  const config = path.join(dir, 'config.yaml');
  const plain = 'accounts:\n  work:\n    tenant: contoso.onmicrosoft.com\n    clientId: 5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e\n    user: a@contoso.com\n';
  await fs.writeFile(config, plain, { mode: 0o644 });
  assert.deepEqual(await exposedSecretFiles(config, []), [], 'no secret in it: nothing to say');
  await fs.writeFile(config, plain + '    clientSecret: abc~secret\n');
  assert.deepEqual(await exposedSecretFiles(config, []), [{ file: config, holds: 'accounts.work.clientSecret', mode: '0644' }]);
  await fs.chmod(config, 0o600);
  assert.deepEqual(await exposedSecretFiles(config, []), []);

  const cert = await createSelfSignedCertificate('smtp365 test');
  const key = path.join(dir, 'key.pem');
  const pub = path.join(dir, 'cert.pem');
  await fs.writeFile(key, cert.keyPem, { mode: 0o640 });
  await fs.writeFile(pub, cert.certPem, { mode: 0o644 });
  const account = { certificatePath: pub, privateKeyPath: key } as Account;
  assert.deepEqual(await exposedSecretFiles(null, [account]), [{ file: key, holds: 'a private key', mode: '0640' }], 'the public certificate is not a secret');
});

test('doctor check 1 warns about a config file with a secret that others can read, and the other checks still run', { skip: !posix }, async (t) => {
  const sb = await withSandbox(t);
  const dir = await tempDir(t, 'smtp365-exposure-');
  const config = path.join(dir, 'config.yaml');
  await fs.writeFile(config, appOnlyConfig(sb), { mode: 0o644 });
  const report = await runDoctor({ configPath: config, env: { HOME: dir, SMTP365_HOME: dir }, timeoutSeconds: 20 });
  const r = only(report.results, 'config', 'warning');
  assert.equal(r.code, 'CONFIG_EXPOSED');
  assert.ok(r.fix.includes(`chmod 600 ${config}`), r.fix.join('\n'));
  assert.match(r.cause ?? '', /accounts\.daemon\.clientSecret/);
  assert.ok(!JSON.stringify(report).includes(sandboxAccount(sb.info, { flow: 'client-secret' }).clientSecret!), 'the secret itself is not shown');
  assert.equal(report.results.find((x) => x.id === 'tenant')!.status, 'passed');

  await fs.chmod(config, 0o600);
  const fixed = await runDoctor({ configPath: config, env: { HOME: dir, SMTP365_HOME: dir }, timeoutSeconds: 20 });
  assert.equal(fixed.results[0]!.status, 'passed');
});

test('token and accounts warn once on stderr about a readable secret, and keep stdout clean', { skip: !posix }, async (t) => {
  const sb = await withSandbox(t);
  const dir = await tempDir(t, 'smtp365-exposure-');
  const config = path.join(dir, 'config.yaml');
  await fs.writeFile(config, appOnlyConfig(sb), { mode: 0o640 });
  const env = { HOME: dir, SMTP365_HOME: path.join(dir, 'state'), XDG_CONFIG_HOME: path.join(dir, 'xdg') };
  const warning = `warning: ${config} holds accounts.daemon.clientSecret and other users can read it (mode 0640): chmod 600 ${config}\n`;

  const token = await cli(t, ['token', '--config', config], env);
  assert.equal(token.code, 0, token.stderr);
  assert.match(token.stdout, /^eyJ[\w.-]+\n$/, 'stdout holds the token alone');
  assert.equal(token.stderr, warning);

  const accounts = await cli(t, ['accounts', '--config', config, '--json'], env);
  assert.equal(accounts.code, 0, accounts.stderr);
  assert.equal((JSON.parse(accounts.stdout) as { accounts: unknown[] }).accounts.length, 1);
  assert.equal(accounts.stderr, warning);

  // sendmail too (cron mails its stderr to the job's owner); here with nothing on stdin, so it then fails.
  const sendmail = await cli(t, ['sendmail', '--config', config, 'megan@contoso.onmicrosoft.com'], env);
  assert.ok(sendmail.stderr.startsWith(warning), sendmail.stderr);

  await fs.chmod(config, 0o600);
  const quiet = await cli(t, ['token', '--config', config], env);
  assert.equal(quiet.stderr, '');
});

test('privateKey / certificate given as a path: the file is checked, the path itself is no secret; given inline with a key: the config holds a secret', { skip: process.platform === 'win32' }, async (t) => {
  const dir = await tempDir(t, 'smtp365-exposure-');
  const config = path.join(dir, 'config.yaml');
  const cert = await createSelfSignedCertificate('smtp365 test');
  const combined = path.join(dir, 'combined.pem');
  await fs.writeFile(combined, cert.certPem + cert.keyPem, { mode: 0o644 });
  const base = 'accounts:\n  daemon:\n    tenant: contoso.onmicrosoft.com\n    clientId: 5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e\n    user: a@contoso.com\n    flow: client-certificate\n';
  await fs.writeFile(config, `${base}    certificate: combined.pem\n    privateKey: combined.pem\n`, { mode: 0o644 });
  assert.deepEqual(await exposedSecretFiles(config, []), [{ file: combined, holds: 'a private key', mode: '0644' }], 'the key file named by a relative path; not the config');
  await fs.writeFile(config, `${base}    privateKey: ${JSON.stringify(cert.keyPem)}\n`);
  assert.deepEqual((await exposedSecretFiles(config, [])).map((f) => f.holds), ['accounts.daemon.privateKey']);
});
