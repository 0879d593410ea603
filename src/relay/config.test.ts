import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { applyOverrides, configWarnings, isLoopback, loadRelayConfig, matchNetwork, parseDuration, parseRelayConfig, parseSize } from './config.ts';
import { isSmtp365Error } from '../errors/error.ts';
import { hashPassword } from './users.ts';

test('defaults are safe: loopback:2525 with STARTTLS, 35 MB, 3 connections, 30/min, 5 days', () => {
  const c = parseRelayConfig({}, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' });
  assert.deepEqual(c.listen, [{ address: { host: '127.0.0.1', port: 2525 }, tls: 'starttls' }]);
  assert.deepEqual(c.allow, []);
  assert.equal(c.allowPlaintextAuth, false);
  assert.equal(c.limits.maxMessageSize, 35 * 1024 * 1024);
  assert.equal(c.delivery.maxConnections, 3);
  assert.equal(c.delivery.ratePerMinute, 30);
  assert.equal(c.delivery.maxLifetime, 5 * 86_400_000);
  assert.equal(c.spool, '/tmp/x/spool');
  assert.deepEqual(c.metrics, { host: '127.0.0.1', port: 9325 });
});

test('units: durations and sizes', () => {
  assert.equal(parseDuration('500ms'), 500);
  assert.equal(parseDuration('5m'), 300_000);
  assert.equal(parseDuration(2), 2000);
  assert.equal(parseSize('35MB'), 35 * 1024 * 1024);
  assert.equal(parseSize('64KB'), 65536);
  assert.throws(() => parseDuration('soon'));
});

test('authCache and delayWarning: a duration, 0 or false for off; anything else is refused with what is expected', () => {
  const parse = (v: unknown) => parseRelayConfig({ limits: { authCache: v }, delivery: { delayWarning: v } }, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' });
  assert.equal(parseRelayConfig({}, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' }).limits.authCache, 900_000, 'remembered 15 min by default');
  assert.equal(parse('4h').delivery.delayWarning, 4 * 3_600_000);
  assert.equal(parse(false).limits.authCache, 0);
  assert.equal(parse(0).delivery.delayWarning, 0);
  for (const bad of [true, null, 'soon', -5]) {
    assert.throws(() => parse(bad), (e: Error) => /limits\.authCache: expected a duration such as 15m or 4h .*0 \/ false for off/.test(e.message) && /delivery\.delayWarning: expected a duration/.test(e.message), String(bad));
  }
});

test('settings that cannot do what they ask are warned about: delay notices without bounces, or not before the lifetime ends', () => {
  const c = (delivery: Record<string, unknown>) => parseRelayConfig({ delivery }, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' });
  assert.deepEqual(configWarnings(c({ delayWarning: '4h' })), []);
  assert.match(configWarnings(c({ delayWarning: '4h', bounces: false })).join(), /delivery\.bounces is false/);
  assert.match(configWarnings(c({ delayWarning: '2h', maxLifetime: '1h' })).join(), /not shorter than delivery\.maxLifetime/);
});

test('errors name the file and the key', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-relaycfg-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const f = path.join(dir, 'relay.yaml');
  await writeFile(f, 'listen:\n  - address: "nonsense"\nallow:\n  - cidr: 10.0.0.0/33\ndelivery:\n  maxConnections: 4\nbogus: 1\n');
  await assert.rejects(loadRelayConfig(f), (err: unknown) => {
    assert.ok(isSmtp365Error(err) && err.code === 'CONFIG_INVALID');
    assert.match(err.message, new RegExp(`${f.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: listen\\[0\\]\\.address: expected HOST:PORT`));
    assert.match(err.message, /allow\[0\]\.cidr: expected an IP network/);
    assert.match(err.message, /delivery\.maxConnections/);
    assert.match(err.message, /bogus/);
    return true;
  });
  await writeFile(f, 'relay:\n  listen:\n    - address: 0.0.0.0:587\n      tls: implicit\n  spool: ./q\n');
  const c = await loadRelayConfig(f);
  assert.deepEqual(c.listen, [{ address: { host: '0.0.0.0', port: 587 }, tls: 'implicit' }]);
  assert.equal(c.spool, path.join(dir, 'q'), 'relative paths are relative to the file');
});

test('command-line overrides: --listen with schemes, --allow CIDR checked', () => {
  const base = parseRelayConfig({}, '<t>');
  const c = applyOverrides(base, { listen: ['0.0.0.0:2525', 'tls://[::1]:4650', 'plain://127.0.0.1:25'], allow: ['192.168.1.0/24'], account: 'office' });
  assert.deepEqual(
    c.listen.map((l) => [l.address.host, l.address.port, l.tls]),
    [['0.0.0.0', 2525, 'starttls'], ['::1', 4650, 'implicit'], ['127.0.0.1', 25, 'none']],
  );
  assert.equal(c.allow[0]!.account, 'office');
  assert.throws(() => applyOverrides(base, { allow: ['300.1.1.1/8'] }), /--allow/);
});

test('network matching and loopback', () => {
  const nets = [{ cidr: '192.168.1.0/24' }, { cidr: '10.1.2.3' }, { cidr: 'fd00::/8' }];
  assert.equal(matchNetwork(nets, '192.168.1.77')?.cidr, '192.168.1.0/24');
  assert.equal(matchNetwork(nets, '::ffff:192.168.1.77')?.cidr, '192.168.1.0/24');
  assert.equal(matchNetwork(nets, '10.1.2.3')?.cidr, '10.1.2.3');
  assert.equal(matchNetwork(nets, '10.1.2.4'), undefined);
  assert.equal(matchNetwork(nets, 'fd12::1')?.cidr, 'fd00::/8');
  assert.equal(isLoopback('127.0.0.1'), true);
  assert.equal(isLoopback('::ffff:127.0.0.1'), true);
  assert.equal(isLoopback('::1'), true);
  assert.equal(isLoopback('192.168.1.1'), false);
});

test('relay.yaml: a malformed passwordHash is refused at load, naming the key', async () => {
  const good = await hashPassword('a-long-password');
  assert.throws(
    () => parseRelayConfig({ users: [{ name: 'printer', passwordHash: 'scrypt$16384$8$1$abc' }] }, 'relay.yaml', ''),
    (err: Error) => /relay\.yaml: users\[0\]\.passwordHash: not a password hash/.test(err.message),
  );
  assert.equal(parseRelayConfig({ users: [{ name: 'printer', passwordHash: good }] }, 'relay.yaml', '').users.length, 1);
});

test('relay.yaml: listen in the --listen string form, a list or a single value', () => {
  assert.deepEqual(parseRelayConfig({ listen: ['127.0.0.1:2527', 'tls://0.0.0.0:465'] }, '<t>').listen, [
    { address: { host: '127.0.0.1', port: 2527 }, tls: 'starttls' },
    { address: { host: '0.0.0.0', port: 465 }, tls: 'implicit' },
  ]);
  assert.deepEqual(parseRelayConfig({ listen: 'plain://127.0.0.1:25' }, '<t>').listen, [{ address: { host: '127.0.0.1', port: 25 }, tls: 'none' }]);
  assert.throws(() => parseRelayConfig({ listen: ['127.0.0.1'] }, 'relay.yaml', ''), /relay\.yaml: listen\[0\]\.address: expected HOST:PORT/);
});

test('relay.yaml: unknown keys get a "did you mean", at the top and inside sections', () => {
  assert.throws(
    () => parseRelayConfig({ listne: '127.0.0.1:2525', limits: { maxMesageSize: '1MB' }, users: [{ name: 'a', passwordHash: 'x', rewrite_sender: true }] }, 'relay.yaml', ''),
    (err: Error) => {
      assert.match(err.message, /relay\.yaml: listne: unknown key \(did you mean "listen"\?\)/);
      assert.match(err.message, /relay\.yaml: limits\.maxMesageSize: unknown key \(did you mean "maxMessageSize"\?\)/);
      assert.match(err.message, /relay\.yaml: users\[0\]\.rewrite_sender: unknown key \(did you mean "rewriteSender"\?\)/);
      return true;
    },
  );
  // Inside a listener (a list made from strings or objects): the typo first, then what it left missing.
  assert.throws(
    () => parseRelayConfig({ listen: [{ adress: '127.0.0.1:2525' }] }, 'relay.yaml', ''),
    (err: Error) => {
      assert.match(err.message, /listen\[0\]\.adress: unknown key \(did you mean "address"\?\); known keys here: address, tls\n.*listen\[0\]\.address: missing \(expected string\)/);
      return true;
    },
  );
});

test('--metrics HOST:PORT and --no-metrics override the config key', () => {
  const base = parseRelayConfig({}, '<t>');
  assert.deepEqual(applyOverrides(base, { metrics: '127.0.0.1:9400' }).metrics, { host: '127.0.0.1', port: 9400 });
  assert.equal(applyOverrides(base, { metrics: false }).metrics, false);
  assert.throws(() => applyOverrides(base, { metrics: 'nope' }), /--metrics nope/);
});

test('listenerThreads: 0 by default, a number or auto; anything else says what it takes', () => {
  assert.equal(parseRelayConfig({}, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' }).listenerThreads, 0);
  assert.equal(parseRelayConfig({ listenerThreads: 'auto' }, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' }).listenerThreads, 'auto');
  assert.equal(parseRelayConfig({ listenerThreads: 2 }, '<t>', 'relay', { SMTP365_HOME: '/tmp/x' }).listenerThreads, 2);
  assert.throws(
    () => parseRelayConfig({ listenerThreads: 'many' as never }, 'relay.yaml', 'relay', { SMTP365_HOME: '/tmp/x' }),
    (err: unknown) => isSmtp365Error(err) && /relay\.yaml: .*listenerThreads: expected a number of threads from 0 to 64, or auto/.test(err.message),
  );
});

test('allow: a bare CIDR is short for { cidr }, alone or in a list with full entries', () => {
  assert.deepEqual(parseRelayConfig({ allow: ['192.168.1.0/24', { cidr: '10.0.0.0/8', rewriteSender: true }] }, '<t>').allow, [
    { cidr: '192.168.1.0/24', rewriteSender: false },
    { cidr: '10.0.0.0/8', rewriteSender: true },
  ]);
  assert.deepEqual(parseRelayConfig({ allow: '192.168.1.0/24' }, '<t>').allow, [{ cidr: '192.168.1.0/24', rewriteSender: false }]);
  assert.throws(() => parseRelayConfig({ allow: ['nonsense'] }, 'relay.yaml', ''), /allow\[0\]\.cidr: expected an IP network/);
  assert.deepEqual(parseRelayConfig({ allow: null }, '<t>').allow, [], 'allow: left empty in YAML');
});
