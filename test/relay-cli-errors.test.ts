// The relay CLI when something is wrong: a spool that does not exist, a
// relay with nothing to do, a busy port, a bad relay.yaml; and --verbose
// (debug lines, never a secret). Real child processes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { access, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { withSandbox } from './helpers/sandbox.ts';
import { childSetup, client, startRelayChild, tempDir, waitFor, MAIN, RELAY_PASS, RELAY_USER } from './relay-helpers.ts';

const exec = promisify(execFile);

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await exec(process.execPath, [MAIN, ...args], { env, timeout: 60_000 });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

/** An environment with no account at all (nothing inherited from the machine). */
function bareEnv(dir: string): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH, HOME: dir, SMTP365_HOME: path.join(dir, 'home'), XDG_CONFIG_HOME: path.join(dir, 'xdg') };
}

async function busyPort(t: { after: (fn: () => unknown) => void }): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return (server.address() as net.AddressInfo).port;
}

test('queue subcommands and relay status refuse a spool that does not exist (66) and do not create it', async (t) => {
  const dir = await tempDir(t, 'smtp365-relay-nospool-');
  const env = bareEnv(dir);
  const spool = path.join(dir, 'no-such-spool');
  for (const args of [['queue', 'list'], ['queue', 'show', '0MWX64RPTEECB3636'], ['queue', 'retry', '--all'], ['queue', 'hold', '0MWX64RPTEECB3636'], ['queue', 'flush'], ['relay', 'status']]) {
    const r = await cli(env, ...args, '--spool', spool);
    assert.equal(r.code, 66, `${args.join(' ')}: ${r.out}${r.err}`);
    assert.match(r.err, /The spool .*no-such-spool does not exist/, args.join(' '));
    assert.doesNotMatch(r.out, /empty/);
  }
  const json = await cli(env, 'queue', 'list', '--spool', spool, '--json');
  assert.equal((JSON.parse(json.out) as { error: { code: string } }).error.code, 'QUEUE_NOT_FOUND');
  await assert.rejects(access(spool), 'nothing was created');
});

test('a relay that can do nothing exits 78 and says what to configure; a bad relay.yaml is refused naming the key', async (t) => {
  const dir = await tempDir(t, 'smtp365-relay-nothing-');
  const env = bareEnv(dir);
  const r = await cli(env, 'relay', '--spool', path.join(dir, 'spool'), '--listen', '127.0.0.1:0', '--no-metrics');
  assert.equal(r.code, 78, r.err);
  assert.match(r.err, /no relay users .* and no allowed networks/);
  assert.match(r.err, /smtp365 relay user add NAME/);
  assert.match(r.err, /No smtp365 account can deliver/);
  await assert.rejects(access(path.join(dir, 'spool')), 'refused before the spool (and its certificate) is made');

  const cfg = path.join(dir, 'relay.yaml');
  await writeFile(cfg, 'listen: ["127.0.0.1:0"]\nmetrcs: false\nusers:\n  - name: printer\n    passwordHash: "scrypt$16384$8$1$abc"\n');
  const bad = await cli(env, 'relay', '--config', cfg);
  assert.equal(bad.code, 78, bad.err);
  assert.match(bad.err, /users\[0\]\.passwordHash: not a password hash/);
  assert.match(bad.err, /metrcs: unknown key \(did you mean "metrics"\?\)/);
  assert.doesNotMatch(bad.err, /relay\.yaml: listen/, 'the string form of listen is fine');

  // A typo in smtp365's config.yaml: said once, as it is, not as "set an account up".
  const accounts = path.join(dir, 'config.yaml');
  await writeFile(accounts, 'default: a\naccounts:\n  a:\n    client_id: x\n    user: u@contoso.com\n');
  const good = path.join(dir, 'relay-good.yaml');
  await writeFile(good, `listen: ["127.0.0.1:0"]\nmetrics: false\nspool: ${JSON.stringify(path.join(dir, 'spool2'))}\nallow: [{ cidr: "127.0.0.1/32" }]\n`);
  const typo = await cli(env, 'relay', '--config', good, '--accounts-config', accounts);
  assert.equal(typo.code, 78, typo.err);
  assert.equal(typo.err.match(/did you mean "clientId"/g)?.length, 1, typo.err);
  assert.doesNotMatch(typo.err, /Set one up/);
});

test('a busy port: exit 69 naming the listener (metrics or SMTP) and how to change it; --no-metrics overrides the config', async (t) => {
  const sb = await withSandbox(t);
  const { configFile, env, dir } = await childSetup(t, sb);
  const busy = await busyPort(t);
  const metrics = await cli(env, 'relay', '--config', configFile, '--metrics', `127.0.0.1:${busy}`);
  assert.equal(metrics.code, 69, metrics.err);
  assert.match(metrics.err, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy} for metrics and health \\(HTTP\\): the address is already in use`));
  assert.match(metrics.err, /--metrics HOST:PORT.*--no-metrics/);
  const smtp = await cli(env, 'relay', '--config', configFile, '--listen', `127.0.0.1:${busy}`);
  assert.equal(smtp.code, 69, smtp.err);
  assert.match(smtp.err, new RegExp(`cannot listen on 127\\.0\\.0\\.1:${busy} for SMTP: the address is already in use`));
  assert.match(smtp.err, /--listen HOST:PORT/);
  assert.doesNotMatch(smtp.err, /INTERNAL/);

  // The config asks for the busy metrics port; --no-metrics runs without it.
  const doc = YAML.parse(await readFile(configFile, 'utf8')) as Record<string, unknown>;
  const second = path.join(dir, 'relay-busy-metrics.yaml');
  await writeFile(second, YAML.stringify({ ...doc, metrics: `127.0.0.1:${busy}` }));
  assert.equal((await cli(env, 'relay', '--config', second)).code, 69);
  const child = await startRelayChild(second, env, ['--no-metrics']);
  t.after(() => child.proc.kill('SIGKILL'));
  child.proc.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});

test('--verbose logs each connection, AUTH, MAIL/RCPT and delivery attempt as debug lines, never a secret', async (t) => {
  const sb = await withSandbox(t);
  const { account, configFile, env } = await childSetup(t, sb);
  const child = await startRelayChild(configFile, env, ['--verbose']);
  t.after(() => child.proc.kill('SIGKILL'));
  const info = await client(child.port).sendMail({ from: account.user, to: 'someone@example.com', subject: 'verbose', text: 'hello' });
  assert.match(info.response, /^250 /);
  await waitFor('the delivery reply in the relay log', async () => child.stderr(), (s) => /DEBUG delivery reply/.test(s));
  child.proc.kill('SIGTERM');
  assert.equal(await child.exited, 0);
  const log = child.stderr();
  for (const line of ['DEBUG connection ', 'DEBUG TLS established', `DEBUG relay AUTH ok client=127.0.0.1 user=${RELAY_USER}`, 'DEBUG MAIL FROM accepted', 'DEBUG RCPT TO accepted', 'DEBUG delivery attempt', 'DEBUG delivery reply', 'DEBUG connection closed']) {
    assert.ok(log.includes(line), `the log has "${line}"`);
  }
  const secrets = [RELAY_PASS, Buffer.from(`\0${RELAY_USER}\0${RELAY_PASS}`).toString('base64'), account.clientSecret!].filter(Boolean);
  for (const s of secrets) assert.ok(!log.includes(s), 'no password or client secret in the log');
  assert.doesNotMatch(log, /eyJ[A-Za-z0-9_-]{20,}/, 'no token in the log');
  assert.doesNotMatch(log, /Bearer |auth=Bearer/i);
  assert.doesNotMatch(log, /scrypt\$/, 'no password hash');
});

test('relay --help says which config file is which', async () => {
  const r = await cli({ PATH: process.env.PATH }, 'relay', '--help');
  assert.equal(r.code, 0);
  assert.match(r.out, /--config <file> +the RELAY's own config file, relay\.yaml/);
  assert.match(r.out, /--accounts-config <file> +the smtp365 ACCOUNTS config, config\.yaml/);
  assert.match(r.out, /--metrics <host:port>/);
  assert.match(r.out, /--no-metrics/);
});

const swaksSkip = spawnSync('swaks', ['--support'], { encoding: 'utf8' }).error ? 'swaks is not installed (Debian: apt-get install swaks)' : false;

test('the quick-start check of docs/relay.md: swaks with --from (the mailbox) is queued; without it, refused at MAIL FROM, not 250-then-bounce', { skip: swaksSkip }, async (t) => {
  const docs = await readFile(path.join(import.meta.dirname, '..', 'docs', 'relay.md'), 'utf8');
  const shown = /swaks --server 127\.0\.0\.1:2525 -tls --auth-user printer --auth-password '[^']+' \\\n\s+(.*)/.exec(docs);
  assert.ok(shown, 'docs/relay.md shows the swaks check');
  assert.match(shown[1]!, /--from \S+ --to \S+/);
  const sb = await withSandbox(t);
  const { account, configFile, env, dir } = await childSetup(t, sb);
  // The printer user of the quick start: no rewriteSender.
  const doc = YAML.parse(await readFile(configFile, 'utf8')) as { users: Array<Record<string, unknown>> };
  const strict = path.join(dir, 'relay-strict.yaml');
  await writeFile(strict, YAML.stringify({ ...doc, users: doc.users.map((u) => ({ ...u, rewriteSender: false })) }));
  const child = await startRelayChild(strict, env);
  t.after(() => child.proc.kill('SIGKILL'));
  const swaks = (...extra: string[]) =>
    new Promise<{ code: number; out: string }>((resolve) => {
      const args = ['--server', `127.0.0.1:${child.port}`, '-tls', '--auth-user', RELAY_USER, '--auth-password', RELAY_PASS, '--to', 'you@example.com', ...extra];
      execFile('swaks', args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr }));
    });
  const without = await swaks();
  assert.notEqual(without.code, 0, without.out);
  assert.match(without.out, /<~\* (553 5\.1\.8 Bad sender address syntax|550 5\.7\.1 Sender address .* is not allowed).*rewriteSender/);
  const withFrom = await swaks('--from', account.user);
  assert.equal(withFrom.code, 0, withFrom.out);
  assert.match(withFrom.out, /<~ +250 2\.0\.0 Ok: queued as /);
  child.proc.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});
