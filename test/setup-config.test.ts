// Writing the configuration: setup adds or updates one account and keeps the
// file's comments and other accounts; the file stays 0600; what it writes is
// what the config loader reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { tempDir } from './doctor-helpers.ts';
import { upsertAccount, renderConfigTemplate, readAccountApp } from '../src/setup/config-file.ts';
import { validateConfigFile, loadAccounts } from '../src/config/load.ts';

test('upsertAccount keeps comments and other accounts, updates only the keys given, and sets a default once', async (t) => {
  const dir = await tempDir(t, 'smtp365-config-');
  const file = path.join(dir, 'nested', 'config.yaml');
  const r1 = await upsertAccount(file, 'printer', { tenant: 'contoso.onmicrosoft.com', clientId: '5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e', user: 'printer@contoso.com', flow: 'device-code' });
  assert.equal(r1.created, true);
  if (process.platform !== 'win32') {
    assert.equal((await fs.stat(file)).mode & 0o777, 0o600);
    assert.equal((await fs.stat(path.dirname(file))).mode & 0o777, 0o700);
  }
  // A person edits the file: a comment and another account.
  await fs.writeFile(file, (await fs.readFile(file, 'utf8')) + '  # the scanner on floor 2\n  scanner:\n    tenant: contoso.onmicrosoft.com\n    clientId: 5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e\n    user: scanner@contoso.com\n');
  const r2 = await upsertAccount(file, 'daemon', { tenant: 'contoso.onmicrosoft.com', clientId: 'c0f1de47-1a2b-4c3d-8e9f-0a1b2c3d4e5f', user: 'noreply@contoso.com', flow: 'client-secret', clientSecret: 'abc~secret-value-1234' });
  assert.equal(r2.created, false);
  await upsertAccount(file, 'printer', { user: 'printer2@contoso.com' });
  const text = await fs.readFile(file, 'utf8');
  assert.match(text, /# the scanner on floor 2/);
  const { accounts, defaultAccount } = await loadAccounts({ configPath: file, env: {} });
  assert.equal(defaultAccount, 'printer', 'the first account written stays the default');
  assert.deepEqual(accounts.map((a) => a.name).sort(), ['daemon', 'printer', 'scanner']);
  const printer = accounts.find((a) => a.name === 'printer')!;
  assert.equal(printer.user, 'printer2@contoso.com');
  assert.equal(printer.clientId, '5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e', 'keys not given are kept');
  assert.equal(accounts.find((a) => a.name === 'daemon')!.clientSecret, 'abc~secret-value-1234');
  if (process.platform !== 'win32') assert.equal((await fs.stat(file)).mode & 0o777, 0o600);

  // Repointed at another app (setup --replace): the old app's secret goes, it is no use to the new one.
  await upsertAccount(file, 'daemon', { clientId: '11111111-2222-4333-8444-555555555555', flow: 'device-code' }, { remove: ['clientSecret', 'certificatePath', 'privateKeyPath'] });
  assert.doesNotMatch(await fs.readFile(file, 'utf8'), /abc~secret-value-1234/);
  assert.equal((await readAccountApp(file, 'daemon'))?.clientId, '11111111-2222-4333-8444-555555555555');
  assert.equal(await readAccountApp(file, 'nobody'), null);
});

test('the init template is valid once filled, and names each value\'s guide step', async (t) => {
  const dir = await tempDir(t, 'smtp365-config-');
  const file = path.join(dir, 'config.yaml');
  const text = renderConfigTemplate({ name: 'work', fields: { tenant: 'contoso.onmicrosoft.com', clientId: '5ea1c0de-7b1e-4c5a-9d2f-3e4a5b6c7d8e', user: 'a@contoso.com', smtpPort: 587 } });
  await fs.writeFile(file, text);
  const [account] = await validateConfigFile(file);
  assert.equal(account!.name, 'work');
  assert.equal(account!.smtpHost, 'smtp.office365.com');
  assert.match(text, /tenant: "contoso\.onmicrosoft\.com" +# Directory \(tenant\) ID or domain: app Overview page, guide step 7/);
  assert.match(text, /# smtpHost: "smtp\.office365\.com"/);
  assert.match(text, /smtpPort: 587 /);
});
