// The newcomer's path through the CLI, against a fresh sandbox:
// smtp365 setup → smtp365 login → smtp365 doctor --send-test, each a real
// child process; device codes approved through the sandbox's admin API as a
// person would on the device-login page. Plus init and doctor's exit codes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { withSandbox } from './helpers/sandbox.ts';
import { adminClient, tempDir } from './doctor-helpers.ts';
import { validateConfigFile } from '../src/config/load.ts';

const MAIN = fileURLToPath(new URL('../src/cli/main.ts', import.meta.url));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the CLI; `onOutput` sees stdout+stderr as they arrive (to answer device codes). */
function cli(args: string[], env: NodeJS.ProcessEnv, onOutput?: (text: string) => void): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH, NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
      onOutput?.(stdout + stderr);
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
      onOutput?.(stdout + stderr);
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Approves the first device code that shows up in the output, once. */
function approver(approve: (code: string) => Promise<unknown>): (text: string) => void {
  let done = false;
  return (text) => {
    const m = /enter the code ([A-Z0-9]{6,})|Code\s+([A-Z0-9]{6,})/.exec(text);
    if (m && !done) {
      done = true;
      void approve(m[1] ?? m[2]!);
    }
  };
}

test('newcomer path: setup, login, doctor --send-test, all through the CLI', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const admin = await adminClient(sb);
  const home = await tempDir(t, 'smtp365-cli-');
  const config = path.join(home, 'config.yaml');
  const env = { HOME: home, SMTP365_HOME: path.join(home, 'state'), XDG_CONFIG_HOME: home, SMTP365_CONFIG: config };
  const as = (upn: string) => approver((userCode) => admin('POST', '/device-codes/approve', { userCode, upn }));

  const setup = await cli(
    ['setup', '--tenant', sb.info.tenantId, '--authority', sb.info.authority, '--graph-endpoint', sb.info.graph, '--ca-file', sb.info.caFile,
      '--smtp-host', sb.info.smtp.host, '--smtp-port', String(sb.info.smtp.port), '--no-doctor'],
    env,
    as('alex@contoso.onmicrosoft.com'),
  );
  assert.equal(setup.code, 0, setup.stdout + setup.stderr);
  assert.match(setup.stdout, /✔ App registration {2}created "smtp365", client id [0-9a-f-]{36}/);
  assert.match(setup.stdout, /Set-CASMailbox -Identity alex@contoso\.onmicrosoft\.com -SmtpClientAuthenticationDisabled \$false/);
  assert.match(setup.stdout, /smtp365 login/);
  const accounts = await validateConfigFile(config);
  assert.equal(accounts.length, 1);

  const login = await cli(['login'], env, as('alex@contoso.onmicrosoft.com'));
  assert.equal(login.code, 0, login.stdout + login.stderr);

  const doctor = await cli(['doctor', '--send-test', 'megan@contoso.onmicrosoft.com', '--json'], env);
  assert.equal(doctor.code, 0, doctor.stdout + doctor.stderr);
  const results = JSON.parse(doctor.stdout) as Array<{ id: string; title: string; status: string; detail: string; step: string | null; fix: string[]; powershell: string[]; durationMs: number }>;
  assert.equal(results.length, 10);
  for (const r of results) {
    assert.equal(r.status, 'passed', `${r.id}: ${r.detail}`);
    for (const k of ['id', 'title', 'status', 'detail', 'step', 'fix', 'powershell', 'durationMs']) assert.ok(k in r, `--json result lacks ${k}`);
  }
  const sent = sb.messages.list();
  assert.equal(sent.length, 1);
  assert.deepEqual(sent[0]!.rcptTo, ['megan@contoso.onmicrosoft.com']);
  assert.ok(!doctor.stdout.includes('eyJ'), 'no token in the output');

  // Human output: marks, and exit 1 when a check fails (SMTP AUTH off for the mailbox).
  await admin('PATCH', '/mailboxes/alex@contoso.onmicrosoft.com', { smtpClientAuthenticationDisabled: true });
  const broken = await cli(['doctor'], env);
  assert.equal(broken.code, 1, broken.stdout + broken.stderr);
  assert.match(broken.stdout, /✔ {2}1\. Configuration valid \[passed\]/);
  assert.match(broken.stdout, /✖ {2}9\. XOAUTH2 accepted \[failed\]/);
  assert.match(broken.stdout, /PowerShell:\n {9}Set-CASMailbox -Identity alex@contoso\.onmicrosoft\.com -SmtpClientAuthenticationDisabled \$false/);
  assert.match(broken.stdout, /- 10\. Test message sent \[skipped\]/);
  assert.match(broken.stdout, /1 failed/);
});

test('init writes a commented config that doctor reads, and never overwrites it without --force', async (t) => {
  const home = await tempDir(t, 'smtp365-cli-');
  const config = path.join(home, 'sub', 'config.yaml');
  const env = { HOME: home, SMTP365_HOME: home, XDG_CONFIG_HOME: home };
  const first = await cli(['init', '--config', config, '--tenant', 'contoso.onmicrosoft.com', '--client-id', '5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e', '--user', 'printer@contoso.com'], env);
  assert.equal(first.code, 0, first.stderr);
  const text = await fs.readFile(config, 'utf8');
  assert.match(text, /# Directory \(tenant\) ID or domain: app Overview page, guide step 7/);
  assert.match(text, /Set-CASMailbox -Identity <user>/);
  if (process.platform !== 'win32') assert.equal((await fs.stat(config)).mode & 0o777, 0o600);
  const [account] = await validateConfigFile(config);
  assert.equal(account!.user, 'printer@contoso.com');
  assert.equal(account!.flow, 'device-code');

  await fs.appendFile(config, '# my own note\n');
  const again = await cli(['init', '--config', config], env);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already exists; use --force/);
  assert.match(await fs.readFile(config, 'utf8'), /# my own note/);

  const forced = await cli(['init', '--config', config, '--force', '--app-only'], env);
  assert.equal(forced.code, 0, forced.stderr);
  const replaced = await fs.readFile(config, 'utf8');
  assert.doesNotMatch(replaced, /# my own note/);
  assert.match(replaced, /flow: "client-secret"/);
  assert.match(replaced, /New-ServicePrincipal/);

  // Empty values are reported by doctor's first check, by key.
  const doctor = await cli(['doctor', '--config', config, '--json'], env);
  assert.equal(doctor.code, 1);
  const results = JSON.parse(doctor.stdout) as Array<{ id: string; status: string; detail: string }>;
  assert.equal(results[0]!.status, 'failed');
  assert.match(results[0]!.detail, /accounts\.default\.clientSecret/);
});

test('doctor: a --send-test that is no address, or --from without --send-test, is a usage error (64) before any check', async (t) => {
  const home = await tempDir(t, 'smtp365-cli-');
  const env = { HOME: home, SMTP365_HOME: home, XDG_CONFIG_HOME: home };
  const bad = await cli(['doctor', '--send-test', 'not-an-addr'], env);
  assert.equal(bad.code, 64, bad.stdout + bad.stderr);
  assert.match(bad.stderr, /--send-test "not-an-addr" is not an address \(it has no @domain part\)/);
  assert.doesNotMatch(bad.stdout, /checking each step/);
  const from = await cli(['doctor', '--from', 'a@example.com'], env);
  assert.equal(from.code, 64, from.stderr);
  assert.match(from.stderr, /give --send-test ADDRESS too/);
});

test('doctor takes the account options login and send take: -a, -c and the overrides (--tenant, --client-id, --authority, …)', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const home = await tempDir(t, 'smtp365-cli-');
  const config = path.join(home, 'config.yaml');
  // The file's tenant and client id are wrong: only the overrides make checks 2 and 3 pass.
  await fs.writeFile(config, 'accounts:\n  work:\n    tenant: 00000000-0000-0000-0000-000000000001\n    clientId: 00000000-0000-0000-0000-000000000002\n    user: alex@contoso.onmicrosoft.com\n', { mode: 0o600 });
  const env = { HOME: home, SMTP365_HOME: home, XDG_CONFIG_HOME: home };
  const run = await cli(
    ['doctor', '-c', config, '-a', 'work', '--tenant', sb.info.tenantId, '--client-id', sb.info.publicClientId, '--authority', sb.info.authority,
      '--ca-file', sb.info.caFile, '--smtp-host', sb.info.smtp.host, '--smtp-port', String(sb.info.smtp.port), '--json'],
    env,
  );
  assert.notEqual(run.code, 64, run.stderr);
  const results = JSON.parse(run.stdout) as Array<{ id: string; status: string; detail: string }>;
  for (const id of ['config', 'tenant', 'app', 'public-client']) assert.equal(results.find((r) => r.id === id)?.status, 'passed', `${id}: ${JSON.stringify(results.find((r) => r.id === id))}`);
  assert.equal(results.find((r) => r.id === 'sign-in')?.status, 'failed', 'nobody signed in');
});
