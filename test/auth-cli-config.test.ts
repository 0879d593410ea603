// The CLI with other configurations: app-only from the environment, bad
// values, a config file with several accounts, an HTTPS proxy, and msmtp
// using `smtp365 token` as its passwordeval.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import http from 'node:http';
import net from 'node:net';
import { spawn, spawnSync } from 'node:child_process';
import { withSandbox } from './helpers/sandbox.ts';
import { decodeJwt } from './auth-sandbox-admin.ts';
import { MAIN, cli, envFor, approveFromOutput } from './auth-cli-helpers.ts';

test('app-only from the environment: token without login; login --json proves it', async (t) => {
  const sb = await withSandbox(t);
  const env = await envFor(t, sb, { SMTP365_CLIENT_ID: sb.info.confidentialClient.clientId, SMTP365_CLIENT_SECRET: sb.info.confidentialClient.clientSecret });
  const token = await cli(t, ['token'], env);
  assert.equal(token.code, 0, token.stderr);
  assert.deepEqual(decodeJwt(token.stdout.trim()).roles, ['SMTP.SendAsApp']);
  const login = await cli(t, ['login', '--json'], env);
  assert.equal(login.code, 0, login.stderr);
  const j = JSON.parse(login.stdout) as { ok: boolean; state: string; appOnly: boolean; default: boolean };
  assert.deepEqual([j.ok, j.state, j.appOnly, j.default], [true, 'active', true, true], 'the only account is the default, as accounts --json says');
  // Logging out an app: revoking a user's sessions would not stop it; its secret or certificate does.
  const logout = await cli(t, ['logout'], env);
  assert.equal(logout.code, 0, logout.stderr);
  assert.match(logout.stdout, /default is app-only: .*remove the secret or certificate/);
  assert.doesNotMatch(logout.stdout, /Revoke sessions/);
  // A wrong secret: explained, and the secret is not printed.
  const bad = await cli(t, ['token', '--force', '--verbose'], { ...env, SMTP365_CLIENT_SECRET: 'Wrong~Secret~Value~123' });
  assert.equal(bad.code, 77);
  assert.match(bad.stderr, /AUTH_BAD_CLIENT_CREDENTIALS/);
  assert.ok(!bad.stderr.includes('Wrong~Secret~Value~123'), 'the secret is masked');
  // --json too: stdout holds a token or nothing (a script reads it as the token), the error goes to stderr.
  for (const args of [['token', '--json', '--force'], ['token', '--json', '--bogus']]) {
    const j = await cli(t, args, { ...env, SMTP365_CLIENT_SECRET: 'Wrong~Secret~Value~123' });
    assert.notEqual(j.code, 0, args.join(' '));
    assert.equal(j.stdout, '', `${args.join(' ')}: nothing on stdout`);
    assert.match(j.stderr, /AUTH_BAD_CLIENT_CREDENTIALS|unknown option '--bogus'/);
  }
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
  // A bad value of an account option on the command line is a usage error too (not a config to fix).
  const o = await cli(t, ['token', '--smtp-port', 'abc'], env);
  assert.equal(o.code, 64, o.stderr);
  assert.match(o.stderr, /option --smtp-port: expected a port number/);
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
