import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { loadAccounts, resolveAccount } from './load.ts';
import { stateDir, configCandidates } from './paths.ts';
import { Smtp365Error } from '../errors/error.ts';

const TENANT = '11111111-2222-3333-4444-555555555555';
const CLIENT = 'aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee';
const CLIENT2 = 'ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee';

async function tmp(t: TestContext): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'smtp365-config-'));
  t.after(() => fs.rm(dir, { recursive: true, force: true }));
  return dir;
}

async function rejectsWith(p: Promise<unknown>, code: string, ...parts: Array<string | RegExp>): Promise<Smtp365Error> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof Smtp365Error, `expected Smtp365Error, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    for (const part of parts) {
      if (typeof part === 'string') assert.ok(err.message.includes(part), `message lacks ${JSON.stringify(part)}:\n${err.message}`);
      else assert.match(err.message, part);
    }
    return err;
  }
  assert.fail('expected a rejection');
}

test('a YAML file with two accounts: default, cloud defaults, relative paths from the file', async (t) => {
  const dir = await tmp(t);
  await fs.writeFile(path.join(dir, 'ca.pem'), 'pem');
  const file = path.join(dir, 'config.yaml');
  await fs.writeFile(
    file,
    `default: work
accounts:
  work:
    tenant: contoso.onmicrosoft.com
    clientId: ${CLIENT}
    user: printer@contoso.com
  gov:
    cloud: usgov
    tenant: ${TENANT}
    clientId: ${CLIENT2}
    user: a@agency.gov
    flow: browser
    caFile: ca.pem
`,
  );
  const { accounts, configPath, defaultAccount } = await loadAccounts({ configPath: file, env: {} });
  assert.equal(configPath, file);
  assert.equal(defaultAccount, 'work');
  const work = accounts.find((a) => a.name === 'work')!;
  assert.equal(work.cloud, 'global');
  assert.equal(work.authorityHost, 'https://login.microsoftonline.com');
  assert.equal(work.smtpHost, 'smtp.office365.com');
  assert.equal(work.smtpPort, 587);
  assert.equal(work.flow, 'device-code');
  assert.equal(work.smtpResource, 'https://outlook.office.com');
  const gov = accounts.find((a) => a.name === 'gov')!;
  assert.equal(gov.authorityHost, 'https://login.microsoftonline.us');
  assert.equal(gov.smtpHost, 'smtp.office365.us');
  assert.equal(gov.caFile, path.join(dir, 'ca.pem'));
  assert.equal(gov.flow, 'browser');
  const resolved = await resolveAccount({ configPath: file, env: {} });
  assert.equal(resolved.name, 'work');
  assert.equal((await resolveAccount({ configPath: file, env: {}, name: 'gov' })).clientId, CLIENT2);
  assert.equal((await resolveAccount({ configPath: file, env: { SMTP365_ACCOUNT: 'gov' } })).name, 'gov');
});

test('JSON works too, found through SMTP365_CONFIG', async (t) => {
  const dir = await tmp(t);
  const file = path.join(dir, 'smtp.json');
  await fs.writeFile(file, JSON.stringify({ accounts: { only: { tenant: TENANT, clientId: CLIENT, user: 'x@contoso.com', smtpPort: '25' } } }));
  const a = await resolveAccount({ env: { SMTP365_CONFIG: file } });
  assert.equal(a.name, 'only');
  assert.equal(a.smtpPort, 25);
  assert.deepEqual(configCandidates({ SMTP365_CONFIG: file }), [file]);
  await rejectsWith(resolveAccount({ env: { SMTP365_CONFIG: path.join(dir, 'nope.yaml') } }), 'CONFIG_NOT_FOUND', 'nope.yaml');
});

test('precedence: flag > environment > file', async (t) => {
  const dir = await tmp(t);
  const file = path.join(dir, 'config.yaml');
  await fs.writeFile(file, `accounts:\n  main:\n    tenant: file-tenant.example\n    clientId: ${CLIENT}\n    user: file@contoso.com\n    smtpPort: 2525\n`);
  const env = { SMTP365_USER: 'env@contoso.com', SMTP365_TENANT_ID: 'env-tenant.example' };
  const a = await resolveAccount({ configPath: file, env });
  assert.equal(a.name, 'main');
  assert.equal(a.user, 'env@contoso.com');
  assert.equal(a.tenant, 'env-tenant.example');
  assert.equal(a.smtpPort, 2525);
  const b = await resolveAccount({ configPath: file, env, overrides: { tenant: 'flag-tenant.example', smtpPort: 587 } });
  assert.equal(b.tenant, 'flag-tenant.example');
  assert.equal(b.user, 'env@contoso.com');
  assert.equal(b.smtpPort, 587);
});

test('environment only: the default account, app-only with a secret, custom authority (the sandbox)', async (t) => {
  const dir = await tmp(t);
  await fs.writeFile(path.join(dir, 'ca.pem'), 'pem');
  const env = {
    HOME: dir,
    XDG_CONFIG_HOME: path.join(dir, 'cfg'),
    SMTP365_TENANT_ID: TENANT,
    SMTP365_CLIENT_ID: CLIENT,
    SMTP365_USER: 'daemon@contoso.com',
    SMTP365_CLIENT_SECRET: 'very-secret-value',
    SMTP365_AUTHORITY: 'https://127.0.0.1:4443',
    SMTP365_SMTP_HOST: '127.0.0.1',
    SMTP365_SMTP_PORT: '2587',
    SMTP365_CA_FILE: path.join(dir, 'ca.pem'),
  };
  const { accounts, configPath, defaultAccount } = await loadAccounts({ env });
  assert.equal(configPath, null);
  assert.equal(defaultAccount, 'default');
  assert.equal(accounts.length, 1);
  const a = accounts[0]!;
  assert.equal(a.name, 'default');
  assert.equal(a.cloud, 'custom');
  assert.equal(a.flow, 'client-secret');
  assert.equal(a.clientSecret, 'very-secret-value');
  assert.equal(a.authorityHost, 'https://127.0.0.1:4443');
  assert.equal(a.smtpHost, '127.0.0.1');
  assert.equal(a.smtpPort, 2587);
  assert.deepEqual(await resolveAccount({ env }), a);
  // The tenant may ride on the authority.
  const b = await resolveAccount({ env: { SMTP365_AUTHORITY: `https://login.microsoftonline.com/${TENANT}`, SMTP365_CLIENT_ID: CLIENT, SMTP365_USER: 'u@contoso.com' } });
  assert.equal(b.tenant, TENANT);
  assert.equal(b.cloud, 'global');
});

test('bad values name the source, the key and what is expected; secrets are not shown', async (t) => {
  const dir = await tmp(t);
  const file = path.join(dir, 'config.yaml');
  await fs.writeFile(
    file,
    `accounts:
  work:
    tenant: contoso.onmicrosoft.com
    clientId: not-a-guid
    user: printer
    smtpPort: 99999
    flow: magic
    caFile: missing.pem
`,
  );
  const e = await rejectsWith(loadAccounts({ configPath: file, env: {} }), 'CONFIG_INVALID', `${file}: accounts.work.clientId: expected the Application (client) ID`, 'accounts.work.user', 'accounts.work.smtpPort: expected a port number from 1 to 65535', 'accounts.work.flow: expected one of device-code', 'missing.pem does not exist');
  assert.ok(e.message.includes('"not-a-guid"'));
  // a CA file that exists but cannot be read, or a path through a file, is not reported as missing
  const notDir = path.join(dir, 'config.yaml', 'ca.pem');
  const env = { SMTP365_TENANT_ID: TENANT, SMTP365_CLIENT_ID: CLIENT, SMTP365_USER: 'a@b.com' };
  const through = await rejectsWith(resolveAccount({ env: { ...env, SMTP365_CA_FILE: notDir } }), 'CONFIG_INVALID', `cannot read ${notDir}: ENOTDIR`);
  assert.doesNotMatch(through.message, /does not exist/);
  if (process.getuid?.() !== 0) {
    const locked = path.join(dir, 'locked.pem');
    await fs.writeFile(locked, 'pem');
    await fs.chmod(locked, 0o000);
    await rejectsWith(resolveAccount({ env: { ...env, SMTP365_CA_FILE: locked } }), 'CONFIG_INVALID', `cannot read ${locked}: permission denied`, 'needs read access');
    // Listing a shared config does not fail on another account's file this user may not read.
    const shared = path.join(dir, 'shared.yaml');
    await fs.writeFile(shared, `accounts:\n  mine:\n    tenant: ${TENANT}\n    clientId: ${CLIENT}\n    user: a@b.com\n  root-only:\n    tenant: ${TENANT}\n    clientId: ${CLIENT}\n    user: c@b.com\n    caFile: ${locked}\n`);
    assert.deepEqual((await loadAccounts({ configPath: shared, env: {} })).accounts.map((a) => a.name), ['mine', 'root-only']);
  }
  assert.doesNotMatch(e.message, /clientId is missing|user is missing/, 'a wrong value is not also "missing"');

  await rejectsWith(
    resolveAccount({ env: { SMTP365_TENANT_ID: TENANT, SMTP365_CLIENT_ID: CLIENT, SMTP365_USER: 'a@b.com', SMTP365_SMTP_PORT: 'abc' } }),
    'CONFIG_INVALID',
    'environment variable SMTP365_SMTP_PORT: expected a port number',
  );
  const s = await rejectsWith(
    resolveAccount({ env: { SMTP365_TENANT_ID: TENANT, SMTP365_CLIENT_ID: CLIENT, SMTP365_USER: 'a@b.com', SMTP365_AUTHORITY: 'http://insecure.example' }, overrides: { clientSecret: ' ' } }),
    'CONFIG_INVALID',
    'SMTP365_AUTHORITY: expected an https URL',
  );
  assert.ok(!s.message.includes('insecure') || s.message.includes('"http://insecure.example"'));
  const sec = await rejectsWith(
    resolveAccount({ env: { SMTP365_TENANT_ID: TENANT, SMTP365_CLIENT_ID: CLIENT, SMTP365_USER: 'a@b.com', SMTP365_FLOW: 'client-secret' } }),
    'CONFIG_INVALID',
    'client-secret flow needs clientSecret',
  );
  assert.ok(sec);
  const custom = await rejectsWith(resolveAccount({ env: { SMTP365_TENANT_ID: TENANT, SMTP365_CLIENT_ID: CLIENT, SMTP365_USER: 'a@b.com', SMTP365_AUTHORITY: 'https://idp.example' } }), 'CONFIG_INVALID', 'smtpHost is missing');
  assert.ok(custom);
});

test('unknown keys are reported with a suggestion, not ignored', async (t) => {
  const dir = await tmp(t);
  const file = path.join(dir, 'config.yaml');
  await fs.writeFile(file, `defualt: a\naccounts:\n  a:\n    tenant: t.example\n    client_id: ${CLIENT}\n    user: a@b.com\n    smtp_host: x\n`);
  await rejectsWith(loadAccounts({ configPath: file, env: {} }), 'CONFIG_INVALID', 'unknown key "defualt"', 'did you mean "default"', 'unknown key "accounts.a.client_id" (did you mean "clientId"?)', 'did you mean "smtpHost"');
});

test('syntax errors give the line; a missing default or account is named', async (t) => {
  const dir = await tmp(t);
  const file = path.join(dir, 'config.yaml');
  await fs.writeFile(file, 'accounts:\n  a: [unclosed\n');
  await rejectsWith(loadAccounts({ configPath: file, env: {} }), 'CONFIG_INVALID', file, /line \d+/);
  await fs.writeFile(file, `default: b\naccounts:\n  a:\n    tenant: t.example\n    clientId: ${CLIENT}\n    user: a@b.com\n`);
  await rejectsWith(loadAccounts({ configPath: file, env: {} }), 'CONFIG_INVALID', 'default: "b" is not one of the accounts (a)');
  await fs.writeFile(file, `accounts:\n  a:\n    tenant: t.example\n    clientId: ${CLIENT}\n    user: a@b.com\n  b:\n    tenant: t.example\n    clientId: ${CLIENT}\n    user: b@b.com\n`);
  await rejectsWith(resolveAccount({ configPath: file, env: {} }), 'CONFIG_NOT_FOUND', 'Several accounts are configured (a, b)');
  await rejectsWith(resolveAccount({ configPath: file, env: {}, name: 'c' }), 'CONFIG_NOT_FOUND', 'No account named "c"', 'configured: a, b');
  await fs.writeFile(file, `accounts:\n  a:\n    tenant: t.example\n    user: a@b.com\n`);
  await rejectsWith(loadAccounts({ configPath: file, env: {} }), 'CONFIG_INVALID', 'clientId is missing', 'SMTP365_CLIENT_ID');
  await rejectsWith(resolveAccount({ env: { HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'none') } }), 'CONFIG_NOT_FOUND', 'SMTP365_TENANT_ID');
});

test('stateDir: SMTP365_HOME, else XDG data dir', () => {
  assert.equal(stateDir({ SMTP365_HOME: '/srv/smtp365' }), '/srv/smtp365');
  if (process.platform === 'linux') {
    assert.equal(stateDir({ HOME: '/home/u' }), '/home/u/.local/share/smtp365');
    assert.equal(stateDir({ HOME: '/home/u', XDG_DATA_HOME: '/data' }), '/data/smtp365');
    assert.deepEqual(configCandidates({ HOME: '/home/u' })[0], '/home/u/.config/smtp365/config.yaml');
  }
});
