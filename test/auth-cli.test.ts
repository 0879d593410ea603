// The CLI as a person and a script use it, configured by environment
// variables only (a container): login by device code against the sandbox,
// accounts, token (only the token on stdout), logout, a corrupt cache, bad
// configuration, Ctrl-C — with the exit codes scripts rely on.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { withSandbox, type Sandbox } from './helpers/sandbox.ts';
import { adminFor, decodeJwt } from './auth-sandbox-admin.ts';

const MAIN = path.join(import.meta.dirname, '..', 'src', 'cli', 'main.ts');

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function cli(t: TestContext, args: string[], env: Record<string, string>, opts: { onStdout?: (all: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { env: { PATH: process.env.PATH ?? '', NO_COLOR: '1', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    t.after(() => child.kill());
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => {
      stdout += c.toString('utf8');
      opts.onStdout?.(stdout, child);
    });
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function envFor(t: TestContext, sb: Sandbox, extra: Record<string, string> = {}): Promise<Record<string, string>> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-auth-cli-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return {
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'config'),
    SMTP365_HOME: path.join(dir, 'state'),
    SMTP365_TENANT_ID: sb.info.tenantId,
    SMTP365_CLIENT_ID: sb.info.publicClientId,
    SMTP365_USER: sb.info.users[0]!.upn,
    SMTP365_AUTHORITY: sb.info.authority,
    SMTP365_SMTP_HOST: sb.info.smtp.host,
    SMTP365_SMTP_PORT: String(sb.info.smtp.port),
    SMTP365_CA_FILE: sb.info.caFile,
    ...extra,
  };
}

function approveFromOutput(sb: Sandbox, upn: string) {
  let done = false;
  return (all: string) => {
    const code = /Code\s+([A-Z0-9]{6,})/.exec(all)?.[1];
    if (code && !done) {
      done = true;
      void adminFor(sb).approve(code, upn);
    }
  };
}

test('environment only: login by device code, accounts, token, token --json, logout', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  const upn = sb.info.users[0]!.upn;

  const login = await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, new RegExp(`Open\\s+${sb.info.authority.replace(/[.]/g, '\\.')}/devicelogin`));
  assert.match(login.stdout, /Code\s+[A-Z0-9]{6,}/);
  assert.match(login.stdout, new RegExp(`Signed in as ${upn}`));
  assert.match(login.stdout, /smtp365 token/);

  const accounts = await cli(t, ['accounts'], env);
  assert.equal(accounts.code, 0, accounts.stderr);
  assert.match(accounts.stdout, /default \(default\)/);
  assert.match(accounts.stdout, new RegExp(`active · signed in as ${upn}`));
  assert.match(accounts.stdout, /access token\s+valid until/);
  assert.match(accounts.stdout, /refresh token\s+last used .* expires if unused \d{4}-\d\d-\d\d/);
  assert.match(accounts.stdout, /environment only/);

  const json = await cli(t, ['accounts', '--json'], env);
  const parsed = JSON.parse(json.stdout) as { accounts: Array<{ account: string; state: string; signedInAs: string; refreshTokenAgeDays: number }> };
  assert.equal(parsed.accounts[0]!.state, 'active');
  assert.equal(parsed.accounts[0]!.signedInAs, upn);
  assert.equal(parsed.accounts[0]!.refreshTokenAgeDays, 0);

  const token = await cli(t, ['token'], env);
  assert.equal(token.code, 0, token.stderr);
  assert.equal(token.stderr, '');
  assert.match(token.stdout, /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\n$/, 'only the token and a newline');
  assert.equal(decodeJwt(token.stdout.trim()).upn, upn);

  const tj = await cli(t, ['token', '--json'], env);
  const tok = JSON.parse(tj.stdout) as { token: string; expiresOn: string; account: string };
  assert.equal(tok.token, token.stdout.trim(), 'the cached token is reused across processes');
  assert.equal(tok.account, 'default');
  assert.ok(Date.parse(tok.expiresOn) > Date.now() + 5 * 60_000);

  const forced = await cli(t, ['token', '--force'], env);
  assert.equal(forced.code, 0, forced.stderr);
  assert.ok(forced.stdout.trim() !== token.stdout.trim(), '--force renews');

  const logout = await cli(t, ['logout'], env);
  assert.equal(logout.code, 0);
  assert.match(logout.stdout, /Removed the saved tokens of default/);
  const after = await cli(t, ['token'], env);
  assert.equal(after.code, 77);
  assert.equal(after.stdout, '');
  assert.match(after.stderr, /AUTH_NOT_SIGNED_IN/);
  assert.match(after.stderr, /Sign in: smtp365 login/);
});

test('a corrupt cache: token fails with a way forward (exit 77), login replaces it', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  const upn = sb.info.users[0]!.upn;
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  const file = path.join(env.SMTP365_HOME!, 'tokens', 'default.json');
  await fs.writeFile(file, (await fs.readFile(file, 'utf8')).replace(/"data":"(.)/, (_m, c: string) => `"data":"${c === 'A' ? 'B' : 'A'}`));
  const r = await cli(t, ['token'], env);
  assert.equal(r.code, 77);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /AUTH_CACHE_CORRUPT/);
  assert.match(r.stderr, /Sign in again: smtp365 login --account default/);
  assert.ok(!/\n\s+at /.test(r.stderr), 'no stack trace');
  const acc = await cli(t, ['accounts'], env);
  assert.equal(acc.code, 0);
  assert.match(acc.stdout, /failed/);
  assert.match(acc.stdout, /AUTH_CACHE_CORRUPT/);
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  assert.equal((await cli(t, ['token'], env)).code, 0);
});

test('app-only from the environment: token without login; login --json proves it', async (t) => {
  const sb = await withSandbox(t);
  const env = await envFor(t, sb, { SMTP365_CLIENT_ID: sb.info.confidentialClient.clientId, SMTP365_CLIENT_SECRET: sb.info.confidentialClient.clientSecret });
  const token = await cli(t, ['token'], env);
  assert.equal(token.code, 0, token.stderr);
  assert.deepEqual(decodeJwt(token.stdout.trim()).roles, ['SMTP.SendAsApp']);
  const login = await cli(t, ['login', '--json'], env);
  assert.equal(login.code, 0, login.stderr);
  const j = JSON.parse(login.stdout) as { ok: boolean; state: string; appOnly: boolean };
  assert.deepEqual([j.ok, j.state, j.appOnly], [true, 'active', true]);
  // A wrong secret: explained, and the secret is not printed.
  const bad = await cli(t, ['token', '--force', '--verbose'], { ...env, SMTP365_CLIENT_SECRET: 'Wrong~Secret~Value~123' });
  assert.equal(bad.code, 77);
  assert.match(bad.stderr, /AUTH_BAD_CLIENT_CREDENTIALS/);
  assert.ok(!bad.stderr.includes('Wrong~Secret~Value~123'), 'the secret is masked');
});

test('bad configuration: exit 78 naming the variable; usage errors exit 64', async (t) => {
  const sb = await withSandbox(t);
  const env = await envFor(t, sb, { SMTP365_SMTP_PORT: 'twenty-five' });
  const r = await cli(t, ['token'], env);
  assert.equal(r.code, 78);
  assert.match(r.stderr, /CONFIG_INVALID/);
  assert.match(r.stderr, /environment variable SMTP365_SMTP_PORT: expected a port number/);
  const cfg = path.join(env.HOME!, 'bad.yaml');
  await fs.writeFile(cfg, 'accounts:\n  work:\n    tenant: contoso.onmicrosoft.com\n    clientid: x\n');
  const f = await cli(t, ['accounts', '--config', cfg], { HOME: env.HOME!, SMTP365_HOME: env.SMTP365_HOME! });
  assert.equal(f.code, 78);
  assert.match(f.stderr, /unknown key "accounts\.work\.clientid" \(did you mean "clientId"\?\)/);
  const u = await cli(t, ['login', '--browser', '--device-code'], env);
  assert.equal(u.code, 64);
});

test('login: a declined sign-in is explained (exit 77); Ctrl-C cancels cleanly (exit 130)', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  let declined = false;
  const d = await cli(t, ['login', '--no-qr'], env, {
    onStdout: (all) => {
      const code = /Code\s+([A-Z0-9]{6,})/.exec(all)?.[1];
      if (code && !declined) {
        declined = true;
        void adminFor(sb).decline(code);
      }
    },
  });
  assert.equal(d.code, 77);
  assert.match(d.stderr, /AUTH_DEVICE_CODE_DECLINED/);
  assert.match(d.stderr, /smtp365 login/);

  let sent = false;
  const c = await cli(t, ['login', '--no-qr'], env, {
    onStdout: (all, child) => {
      if (/Code\s+[A-Z0-9]{6,}/.test(all) && !sent) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  assert.equal(c.code, 130);
  assert.match(c.stderr, /Sign-in cancelled; nothing was saved/);
  const acc = await cli(t, ['accounts', '--json'], env);
  assert.equal((JSON.parse(acc.stdout) as { accounts: Array<{ state: string }> }).accounts[0]!.state, 'empty');
});

const hasMsmtp = (() => {
  const r = spawnSync('msmtp', ['--version'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
})();

test('msmtp sends with passwordeval "smtp365 token" (the docs/auth.md example)', { skip: hasMsmtp ? false : 'msmtp is not installed (Debian: apt-get install msmtp)' }, async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const env = await envFor(t, sb);
  const upn = sb.info.users[0]!.upn;
  assert.equal((await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, upn) })).code, 0);
  const rc = path.join(env.HOME!, 'msmtprc');
  await fs.writeFile(
    rc,
    [
      'account office365',
      `host ${sb.info.smtp.host}`,
      `port ${sb.info.smtp.port}`,
      'tls on',
      'tls_starttls on',
      `tls_trust_file ${sb.info.caFile}`,
      'auth xoauth2',
      `user ${upn}`,
      `from ${upn}`,
      `passwordeval "${process.execPath} ${MAIN} token"`,
      '',
      'account default : office365',
      '',
    ].join('\n'),
    { mode: 0o600 },
  );
  const subject = `msmtp via smtp365 token ${Date.now()}`;
  const r = await new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
    const child = spawn('msmtp', ['-C', rc, sb.info.users[1]!.upn], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['pipe', 'ignore', 'pipe'] });
    t.after(() => child.kill());
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.on('error', reject);
    child.on('exit', (code) => resolve({ code, stderr }));
    child.stdin!.end(`From: ${upn}\r\nTo: ${sb.info.users[1]!.upn}\r\nSubject: ${subject}\r\n\r\nhello\r\n`);
  });
  assert.equal(r.code, 0, r.stderr);
  const got = sb.messages.list().find((m) => m.subject === subject);
  assert.ok(got, 'the sandbox received the message');
  assert.equal(got.authIdentity, upn);
  assert.equal(got.authUser, upn);
});

test('a config file with two accounts: accounts lists both, --account picks one, logout --all', async (t) => {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const base = await envFor(t, sb);
  const cfg = path.join(base.HOME!, 'config', 'smtp365', 'config.yaml');
  await fs.mkdir(path.dirname(cfg), { recursive: true });
  await fs.writeFile(
    cfg,
    [
      'default: work',
      'accounts:',
      '  work:',
      `    authority: ${sb.info.authority}`,
      `    tenant: ${sb.info.tenantDomain}`,
      `    clientId: ${sb.info.publicClientId}`,
      `    user: ${sb.info.users[0]!.upn}`,
      `    smtpHost: ${sb.info.smtp.host}`,
      `    smtpPort: ${sb.info.smtp.port}`,
      `    caFile: ${sb.info.caFile}`,
      '  daemon:',
      `    authority: ${sb.info.authority}`,
      `    tenant: ${sb.info.tenantId}`,
      `    clientId: ${sb.info.confidentialClient.clientId}`,
      `    clientSecret: ${sb.info.confidentialClient.clientSecret}`,
      `    user: ${sb.info.sharedMailboxes[0]}`,
      `    smtpHost: ${sb.info.smtp.host}`,
      `    caFile: ${sb.info.caFile}`,
      '',
    ].join('\n'),
  );
  const env = { HOME: base.HOME!, XDG_CONFIG_HOME: base.XDG_CONFIG_HOME!, SMTP365_HOME: base.SMTP365_HOME! };
  const login = await cli(t, ['login', '--no-qr'], env, { onStdout: approveFromOutput(sb, sb.info.users[0]!.upn) });
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, /account work/);
  const daemon = await cli(t, ['token', '--account', 'daemon'], env);
  assert.equal(daemon.code, 0, daemon.stderr);
  assert.deepEqual(decodeJwt(daemon.stdout.trim()).roles, ['SMTP.SendAsApp']);
  const list = await cli(t, ['accounts'], env);
  assert.match(list.stdout, /work \(default\)\s+alex@/);
  assert.match(list.stdout, /daemon\s+info@.*client-secret \(app-only\)/);
  assert.match(list.stdout, new RegExp(`Config: ${cfg.replace(/[.]/g, '\\.')}`));
  const none = await cli(t, ['token', '--account', 'nope'], env);
  assert.equal(none.code, 78);
  assert.match(none.stderr, /No account named "nope".*configured: work, daemon/);
  const out = await cli(t, ['logout', '--all', '--json'], env);
  assert.deepEqual((JSON.parse(out.stdout) as { results: unknown[] }).results, [
    { account: 'work', removed: true },
    { account: 'daemon', removed: true },
  ]);
});

test('behind an HTTPS proxy (HTTPS_PROXY with NODE_USE_ENV_PROXY=1): sign-in traffic goes through it', { skip: Number(process.versions.node.split('.')[0]) < 24 ? 'Node 24 reads HTTPS_PROXY for node:https' : false }, async (t) => {
  const sb = await withSandbox(t);
  const env = await envFor(t, sb, { SMTP365_CLIENT_ID: sb.info.confidentialClient.clientId, SMTP365_CLIENT_SECRET: sb.info.confidentialClient.clientSecret });
  const tunnels: string[] = [];
  const proxy = http.createServer((_req, res) => res.writeHead(405).end());
  proxy.on('connect', (req: http.IncomingMessage, sock: net.Socket, head: Buffer) => {
    tunnels.push(req.url ?? '');
    const [host, port] = (req.url ?? '').split(':');
    const up = net.connect(Number(port), host!, () => {
      sock.write('HTTP/1.1 200 Connection established\r\n\r\n');
      up.write(head);
      up.pipe(sock);
      sock.pipe(up);
    });
    up.on('error', () => sock.destroy());
    sock.on('error', () => up.destroy());
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => proxy.close(() => resolve())));
  t.after(() => proxy.closeAllConnections());
  const port = (proxy.address() as net.AddressInfo).port;
  const r = await cli(t, ['token'], { ...env, HTTPS_PROXY: `http://127.0.0.1:${port}`, NODE_USE_ENV_PROXY: '1' });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(decodeJwt(r.stdout.trim()).roles, ['SMTP.SendAsApp']);
  assert.ok(tunnels.includes(new URL(sb.info.authority).host), `tunnels: ${tunnels.join(', ')}`);
});
