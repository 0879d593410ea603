// The relay's SMTP side under hostile or broken clients: never an open relay,
// AUTH rules, size limit while streaming, protocol garbage, clients that
// vanish, sender policy, graceful stop. Real sockets, real sandbox behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import tls from 'node:tls';
import { RawSmtp } from './helpers/raw-smtp.ts';
import { sandboxRequest, type Sandbox } from './helpers/sandbox.ts';
import { certificatePairs, client, sandboxMessages, startRig, until, RELAY_PASS, RELAY_USER, type RelayRig, sharedSandbox, plain } from './relay-helpers.ts';
import { addUser, hashPassword, removeUser } from '../src/relay/users.ts';

let sandbox: Sandbox;
const reset = sharedSandbox((sb) => (sandbox = sb));

async function open(rig: RelayRig): Promise<RawSmtp> {
  const c = await RawSmtp.connect(rig.port);
  assert.match(await c.readText(), /^220 /);
  return c;
}

async function quiet(rig: RelayRig): Promise<void> {
  await until(rig.relay, async () => {
    const c = await rig.relay.queue.counts();
    return c.incoming + c.active + c.deferred === 0;
  }, 'queue drained');
}

test('never an open relay: 530 before a message is taken, nothing queued', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const c = await open(rig);
  const ehlo = await c.cmd('EHLO attacker.example');
  assert.match(ehlo, /STARTTLS/);
  assert.match(ehlo, /AUTH PLAIN LOGIN/);
  assert.match(await c.cmd('MAIL FROM:<spam@evil.example>'), /^530 5\.7\.0 Authentication required/);
  assert.match(await c.cmd('RCPT TO:<victim@example.com>'), /^5\d\d /);
  assert.match(await c.cmd('DATA'), /^5\d\d /);
  c.close();
  const counts = await rig.relay.queue.counts();
  assert.equal(counts.incoming + counts.active + counts.deferred + counts.failed, 0);
  assert.deepEqual(await readdir(path.join(rig.spool, 'data')), []);
});

test('relay users authenticate with PLAIN or LOGIN; wrong passwords are rate-limited per address', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox, config: { limits: { authFailures: 3 } } });
  const c = await open(rig);
  await c.cmd('EHLO dev.example');
  assert.match(await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, 'wrong')}`), /^535 5\.7\.8/);
  assert.match(await c.cmd('AUTH LOGIN'), /^334 /);
  assert.match(await c.cmd(Buffer.from(RELAY_USER).toString('base64')), /^334 /);
  assert.match(await c.cmd(Buffer.from(RELAY_PASS).toString('base64')), /^235 /);
  c.close();
  const c2 = await open(rig);
  await c2.cmd('EHLO dev.example');
  assert.match(await c2.cmd(`AUTH PLAIN ${plain('nobody', 'x')}`), /^535 /);
  assert.match(await c2.cmd(`AUTH PLAIN ${plain(RELAY_USER, 'wrong again')}`), /^535 /);
  assert.match(await c2.cmd(`AUTH PLAIN ${plain(RELAY_USER, 'third')}`), /^535 /);
  // Over the limit: even the right password is refused for now.
  assert.match(await c2.cmd(`AUTH PLAIN ${plain(RELAY_USER, RELAY_PASS)}`), /^454 4\.7\.0/);
  c2.close();
  const c3 = await RawSmtp.connect(rig.port);
  assert.match(await c3.readText(), /^421 4\.7\.0 Too many failed/);
  c3.close();
  assert.equal((await rig.relay.status()).counters.authFailures, 4);
});

test('a successful AUTH is remembered: the next connection with the same password needs no scrypt check; /metrics counts them', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  for (const pass of [RELAY_PASS, RELAY_PASS, 'wrong-password']) {
    const c = await open(rig);
    await c.cmd('EHLO dev.example');
    assert.match(await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, pass)}`), pass === RELAY_PASS ? /^235 / : /^535 /);
    c.close();
  }
  const metrics = await (await fetch(`${rig.relay.metricsUrl}/metrics`)).text();
  assert.match(metrics, /smtp365_relay_auth_total\{result="ok"\} 1\n/);
  assert.match(metrics, /smtp365_relay_auth_total\{result="remembered"\} 1\n/);
  assert.match(metrics, /smtp365_relay_auth_total\{result="failed"\} 1\n/);
  assert.match(metrics, /smtp365_relay_connections_total 3\n/);
});

test('STARTTLS and implicit TLS listeners with the self-signed certificate made on first start', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox, config: { listen: [{ address: '127.0.0.1:0' }, { address: '127.0.0.1:0', tls: 'implicit' }] } });
  const [starttls, implicit] = rig.relay.listeners;
  assert.equal(implicit!.tls, 'implicit');
  const ca = rig.relay.tls.cert;
  const c = await RawSmtp.connect(starttls!.port);
  await c.readText();
  await c.cmd('EHLO dev.example');
  assert.match(await c.cmd('STARTTLS'), /^220 /);
  const sock = await c.upgrade({ ca, servername: 'localhost' });
  assert.ok(sock.authorized, 'the certificate verifies against itself for localhost');
  assert.match(sock.getProtocol() ?? '', /TLSv1\.[23]/);
  assert.doesNotMatch(await c.cmd('EHLO dev.example'), /STARTTLS/);
  assert.match(await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, RELAY_PASS)}`), /^235 /);
  c.close();
  const s = tls.connect({ port: implicit!.port, host: '127.0.0.1', ca, servername: 'localhost' });
  const banner = await new Promise<string>((resolve, reject) => {
    s.once('data', (d: Buffer) => resolve(d.toString()));
    s.once('error', reject);
  });
  assert.match(banner, /^220 /);
  s.destroy();
});

test('SIGHUP reloads a renewed certificate for new TLS sessions (STARTTLS and implicit); a key that does not fit is refused and the old pair kept', async (t) => {
  await reset();
  const { a, b, files, install } = await certificatePairs(t, 'smtp365-cert-');
  const rig = await startRig(t, { sandbox, config: { tls: files, listen: [{ address: '127.0.0.1:0' }, { address: '127.0.0.1:0', tls: 'implicit' }] } });
  const [starttls, implicit] = rig.relay.listeners;
  const served = async (): Promise<string[]> => {
    const c = await RawSmtp.connect(starttls!.port);
    await c.readText();
    await c.cmd('EHLO dev.example');
    await c.cmd('STARTTLS');
    const viaStarttls = (await c.upgrade({ rejectUnauthorized: false })).getPeerCertificate().fingerprint256;
    c.close();
    const s = tls.connect({ port: implicit!.port, host: '127.0.0.1', rejectUnauthorized: false });
    await new Promise((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
    const viaImplicit = s.getPeerCertificate().fingerprint256;
    s.destroy();
    return [viaStarttls, viaImplicit];
  };
  assert.deepEqual(await served(), [a.fingerprint256, a.fingerprint256]);
  // Renewed in place (as certbot's deploy hook would, then systemctl reload).
  await install(b);
  await rig.relay.reload();
  assert.deepEqual(await served(), [b.fingerprint256, b.fingerprint256]);
  assert.equal(rig.relay.tls.fingerprint256, b.fingerprint256, 'status shows the new one');
  const st = await rig.relay.status();
  assert.equal(st.certificate.notAfter, b.notAfter);
  assert.ok(Date.parse(b.notAfter) > Date.now() + 9 * 365 * 86_400_000, 'the self-signed pair lasts ten years');
  const metrics = await (await fetch(`${rig.relay.metricsUrl}/metrics`)).text();
  assert.match(metrics, new RegExp(`smtp365_relay_certificate_not_after_seconds ${Date.parse(b.notAfter) / 1000}\\n`));
  // A botched renewal: the old certificate with the new key. Refused; TLS goes on with the pair that works.
  await install(a, ['cert']);
  await rig.relay.reload();
  assert.deepEqual(await served(), [b.fingerprint256, b.fingerprint256]);
});

test('allowed networks relay without AUTH; a sender outside the policy is refused or rewritten', async (t) => {
  await reset();
  const strict = { name: 'scanner', passwordHash: await hashPassword('scanner-pass-1'), senders: ['*@contoso.onmicrosoft.com'], rewriteSender: false };
  const rig = await startRig(t, {
    sandbox,
    config: {
      allow: [{ cidr: '127.0.0.0/8', rewriteSender: true }],
      users: [strict],
    },
  });
  // From the allowed network, no AUTH: the device's nonsense sender becomes the mailbox.
  const info = await client(rig.port, null).sendMail({ from: 'printer@printer.local', to: 'x@example.com', subject: 'from the network', text: 'hi' });
  assert.match(info.response, /^250 /);
  const got = await sandboxMessages(rig, 1);
  assert.equal(got[0]!.subject, 'from the network');
  assert.equal(got[0]!.mailFrom, rig.account.user);
  const raw = (await sandboxRequest(sandbox.info, 'GET', `${sandbox.info.admin}/messages/${got[0]!.id}/raw`)).text;
  assert.match(raw, new RegExp(`^From: "printer@printer\\.local" <${rig.account.user.replace(/\./g, '\\.')}>\r$`, 'm'));
  assert.match(raw, /^X-Smtp365-Original-From: printer@printer\.local\r$/m);
  assert.equal((await rig.relay.status()).counters.bounced, 0);
  // A user with a sender list and no rewrite: refused at MAIL FROM.
  const c = await open(rig);
  await c.cmd('EHLO dev.example');
  assert.match(await c.cmd(`AUTH PLAIN ${plain('scanner', 'scanner-pass-1')}`), /^235 /);
  assert.match(await c.cmd('MAIL FROM:<ceo@other.example>'), /^550 5\.7\.1 Sender address <ceo@other\.example> is not allowed: relay user scanner may send as \*@contoso\.onmicrosoft\.com/);
  assert.match(await c.cmd(`MAIL FROM:<${rig.account.user}>`), /^250 /);
  c.close();
  await quiet(rig);
});

test('without rewriteSender a device learns at SMTP time: bad or foreign envelope sender refused at MAIL FROM, foreign From header at the end of DATA; nothing queued', async (t) => {
  await reset();
  const user = { name: 'copier', passwordHash: await hashPassword('copier-pass-1'), rewriteSender: false };
  const rig = await startRig(t, { sandbox, config: { users: [user] } });
  const mbx = rig.account.user;
  const c = await open(rig);
  await c.cmd('EHLO dev.example');
  assert.match(await c.cmd(`AUTH PLAIN ${plain('copier', 'copier-pass-1')}`), /^235 /);
  // swaks' default sender (user@hostname): Microsoft would say "Invalid address" after a 250.
  const bad = await c.cmd('MAIL FROM:<root@vm>');
  assert.match(bad, /^553 5\.1\.8 Bad sender address syntax <root@vm>/);
  assert.match(bad, new RegExp(`may send as ${mbx.replace(/\./g, '\\.')}.*rewriteSender: true`));
  // No senders configured: the account's mailbox is the one allowed sender.
  assert.match(await c.cmd('MAIL FROM:<scan@printer.local>'), /^550 5\.7\.1 Sender address <scan@printer\.local> is not allowed/);
  assert.match(await c.cmd(`MAIL FROM:<${mbx}>`), /^250 /);
  assert.match(await c.cmd('RCPT TO:<x@localhost>'), /^501 5\.1\.3 /, 'a recipient Microsoft would refuse');
  assert.match(await c.cmd('RCPT TO:<x@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  c.write(`From: "Scanner" <scan@printer.local>\r\nTo: x@example.com\r\nSubject: foreign from\r\n\r\nbody\r\n`);
  const end = await c.cmd('.');
  assert.match(end, /^550 5\.7\.60 From: header <scan@printer\.local> is not allowed/);
  assert.match(end, /rewriteSender: true/);
  assert.deepEqual(await readdir(path.join(rig.spool, 'data')), [], 'nothing queued');
  assert.equal((await rig.relay.queue.counts()).incoming, 0);
  // The same session goes on, with a From the mailbox may use.
  assert.match(await c.cmd(`MAIL FROM:<${mbx}>`), /^250 /);
  assert.match(await c.cmd('RCPT TO:<x@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  c.write(`From: "Copier" <${mbx}>\r\nTo: x@example.com\r\nSubject: own from\r\n\r\nbody\r\n`);
  assert.match(await c.cmd('.'), /^250 2\.0\.0 Ok: queued as /);
  c.close();
  const got = await sandboxMessages(rig, 1);
  assert.deepEqual(got.map((m) => m.subject), ['own from']);
  await quiet(rig);
  assert.equal((await rig.relay.status()).counters.bounced, 0);
});

test('oversize messages get 552 while streaming; nothing is queued', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox, config: { limits: { maxMessageSize: '64KB' } } });
  const c = await open(rig);
  await c.cmd('EHLO dev.example');
  await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, RELAY_PASS)}`);
  // Declared too large: refused at MAIL FROM.
  assert.match(await c.cmd(`MAIL FROM:<${rig.account.user}> SIZE=10000000`), /^552 /);
  assert.match(await c.cmd(`MAIL FROM:<${rig.account.user}>`), /^250 /);
  assert.match(await c.cmd('RCPT TO:<x@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  const line = 'x'.repeat(998) + '\r\n';
  for (let i = 0; i < 100; i++) c.write(line);
  assert.match(await c.cmd('.'), /^552 /);
  // The session goes on.
  assert.match(await c.cmd('RSET'), /^250 /);
  c.close();
  assert.deepEqual(await readdir(path.join(rig.spool, 'data')), []);
  assert.equal((await rig.relay.queue.counts()).incoming, 0);
});

test('protocol garbage, over-long lines, bare LF and smuggling attempts: errors, no crash, nothing half-queued', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const c = await open(rig);
  assert.match(await c.cmd('HELLO?'), /^500 /);
  assert.match(await c.cmd('EHLO'), /^501 /);
  await c.cmd('EHLO dev.example');
  assert.match(await c.cmd('MAIL FROM:not-an-address'), /^5\d\d /);
  assert.match(await c.cmd('DATA'), /^5\d\d /);
  assert.match(await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, RELAY_PASS)}`), /^235 /);
  assert.match(await c.cmd(`MAIL FROM:<${rig.account.user}>`), /^250 /);
  assert.match(await c.cmd('RCPT TO:<no-at-sign>'), /^5\d\d /);
  assert.match(await c.cmd('RCPT TO:<ok@example.com>'), /^250 /);
  assert.match(await c.cmd('DATA'), /^354 /);
  // Bare LF line endings and a bare-LF "dot" that must not end the data (SMTP smuggling).
  c.write(`From: ${rig.account.user}\nTo: ok@example.com\nSubject: bare lf\n\nline one\n.\nMAIL FROM:<smuggled@evil.example>\nline two\r\n.\r\n`);
  assert.match(await c.readText(), /^250 2\.0\.0 Ok: queued as /);
  // An over-long command line closes that session only.
  c.write('NOOP ' + 'a'.repeat(40_000) + '\r\n');
  await c.waitClosed();
  const got = await sandboxMessages(rig, 1);
  assert.equal(got.length, 1);
  assert.equal(got[0]!.subject, 'bare lf');
  const raw = (await sandboxRequest(sandbox.info, 'GET', `${sandbox.info.admin}/messages/${got[0]!.id}/raw`)).text;
  assert.match(raw, /line one\r\n\.\.?\r\nMAIL FROM:<smuggled@evil\.example>\r\nline two/, 'the smuggled command stayed message content, line endings normalised');
  // The relay still serves.
  const info = await client(rig.port).sendMail({ from: rig.account.user, to: 'after@example.com', subject: 'still alive', text: 'yes' });
  assert.match(info.response, /^250 /);
  await sandboxMessages(rig, 2);
  await quiet(rig);
  assert.equal((await sandboxMessages(rig)).length, 2, 'nothing smuggled, nothing extra');
});

test('a client vanishing mid-DATA leaves nothing queued and nothing on disk', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  for (let i = 0; i < 5; i++) {
    const c = await open(rig);
    await c.cmd('EHLO dev.example');
    await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, RELAY_PASS)}`);
    await c.cmd(`MAIL FROM:<${rig.account.user}>`);
    await c.cmd('RCPT TO:<x@example.com>');
    assert.match(await c.cmd('DATA'), /^354 /);
    c.write('Subject: half\r\n\r\n' + 'partial body '.repeat(5000));
    c.close();
  }
  // The server notices the closed sockets; temp bodies are removed.
  await until(rig.relay, async () => (await readdir(path.join(rig.spool, 'data'))).length === 0, 'partial bodies removed');
  const counts = await rig.relay.queue.counts();
  assert.equal(counts.incoming + counts.active + counts.deferred + counts.failed, 0);
  assert.equal((await rig.relay.status()).counters.accepted, 0);
  // Still serving.
  assert.match((await client(rig.port).sendMail({ from: rig.account.user, to: 'x@example.com', subject: 'ok', text: 'ok' })).response, /^250 /);
});

test('graceful stop: the message being received is finished and queued; idle sessions get 421', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const idle = await open(rig);
  await idle.cmd('EHLO idle.example');
  const c = await open(rig);
  await c.cmd('EHLO dev.example');
  await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, RELAY_PASS)}`);
  await c.cmd(`MAIL FROM:<${rig.account.user}>`);
  await c.cmd('RCPT TO:<x@example.com>');
  assert.match(await c.cmd('DATA'), /^354 /);
  // The 354 came after the relay's onData started: the session counts as receiving a message.
  c.write('Subject: in flight at stop\r\n\r\nfirst half\r\n');
  const stopping = rig.relay.listener.stop();
  assert.match(await idle.readText(), /^421 /);
  c.write('second half\r\n.\r\n');
  assert.match(await c.readText(), /^250 2\.0\.0 Ok: queued as /);
  c.close();
  await stopping;
  // New connections are refused once stopped.
  await assert.rejects(RawSmtp.connect(rig.port).then(async (x) => {
    await x.readText();
  }));
  // The message answered 250 during the stop is delivered (delivery goes on until the daemon stops).
  const got = await sandboxMessages(rig, 1);
  assert.equal(got[0]!.subject, 'in flight at stop');
});

test('reload (SIGHUP) picks up users added and removed with smtp365 relay user', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const usersFile = rig.relay.config.usersFile;
  const c = await open(rig);
  await c.cmd('EHLO dev.example');
  assert.match(await c.cmd(`AUTH PLAIN ${plain('newdevice', 'new-device-pass')}`), /^535 /);
  c.close();
  await addUser(usersFile, 'newdevice', 'new-device-pass', { rewriteSender: true });
  await rig.relay.reload();
  const c2 = await open(rig);
  await c2.cmd('EHLO dev.example');
  assert.match(await c2.cmd(`AUTH PLAIN ${plain('newdevice', 'new-device-pass')}`), /^235 /);
  c2.close();
  await removeUser(usersFile, 'newdevice');
  await rig.relay.reload();
  const c3 = await open(rig);
  await c3.cmd('EHLO dev.example');
  assert.match(await c3.cmd(`AUTH PLAIN ${plain('newdevice', 'new-device-pass')}`), /^535 /);
  c3.close();
});
