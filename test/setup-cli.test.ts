// smtp365 setup through the CLI, for an account that already exists: setup
// for another app refuses instead of repointing it (its tokens are another
// app's), --account adds a second one, --replace repoints it and removes its
// tokens, and the same app again stays a no-op.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import path from 'node:path';
import { withSandbox, type Sandbox } from './helpers/sandbox.ts';
import { adminClient, tempDir } from './doctor-helpers.ts';
import { approveFromOutput, cli, type Run } from './auth-cli-helpers.ts';
import { loadAccounts } from '../src/config/load.ts';

const ADMIN = 'alex@contoso.onmicrosoft.com';

interface Rig {
  sb: Sandbox;
  config: string;
  env: Record<string, string>;
  setup(...args: string[]): Promise<Run>;
}

async function rig(t: TestContext): Promise<Rig> {
  const sb = await withSandbox(t, { deviceCodeIntervalSeconds: 1 });
  const dir = await tempDir(t, 'smtp365-setup-cli-');
  const config = path.join(dir, 'conf', 'config.yaml');
  const env: Record<string, string> = { HOME: dir, SMTP365_HOME: path.join(dir, 'state'), XDG_CONFIG_HOME: path.join(dir, 'xdg') };
  const setup = (...args: string[]) =>
    cli(
      t,
      ['setup', '--config', config, '--tenant', sb.info.tenantId, '--authority', sb.info.authority, '--graph-endpoint', sb.info.graph, '--ca-file', sb.info.caFile,
        '--smtp-host', sb.info.smtp.host, '--smtp-port', String(sb.info.smtp.port), '--no-doctor', ...args],
      env,
      { onStdout: approveFromOutput(sb, ADMIN) },
    );
  return { sb, config, env, setup };
}

async function clientIds(config: string): Promise<Record<string, string>> {
  const { accounts } = await loadAccounts({ configPath: config, env: {} });
  return Object.fromEntries(accounts.map((a) => [a.name, a.clientId]));
}

test('setup for another app refuses to repoint an existing account; --account adds one, --replace repoints it and drops its tokens', async (t) => {
  const { sb, config, env, setup } = await rig(t);
  const first = await setup('--app-name', 'first app');
  assert.equal(first.code, 0, first.stdout + first.stderr);
  // The hints use the file setup wrote, not the usual place.
  assert.match(first.stdout, new RegExp(`smtp365 login --config ${config.replace(/[.]/g, '\\.')} `));
  assert.match(first.stdout, new RegExp(`smtp365 doctor --config ${config.replace(/[.]/g, '\\.')} --send-test`));
  const appA = (await clientIds(config)).default!;
  const login = await cli(t, ['login', '--config', config], env, { onStdout: approveFromOutput(sb, ADMIN) });
  assert.equal(login.code, 0, login.stdout + login.stderr);
  const tokens = path.join(env.SMTP365_HOME!, 'tokens', 'default.json');
  await fs.access(tokens);
  const before = await fs.readFile(config, 'utf8');

  const refused = await setup('--app-name', 'second app');
  assert.equal(refused.code, 64, refused.stdout + refused.stderr);
  assert.doesNotMatch(refused.stdout, /Configuration/);
  assert.match(refused.stderr, new RegExp(`Account "default" is already set up for app ${appA}.*a new app registration "second app"`));
  assert.match(refused.stderr, /--account NEW_NAME/);
  assert.match(refused.stderr, /--replace/);
  assert.equal(await fs.readFile(config, 'utf8'), before, 'the configuration is untouched');
  await fs.access(tokens);
  const admin = await adminClient(sb);
  const apps = (await admin('GET', '/apps')) as { apps: Array<{ appId: string; displayName: string }> };
  assert.ok(!apps.apps.some((a) => a.displayName === 'second app'), 'no app was created before refusing');

  // The same app again: nothing to refuse, the tokens stay.
  const same = await setup('--app-name', 'first app');
  assert.equal(same.code, 0, same.stdout + same.stderr);
  await fs.access(tokens);

  const second = await setup('--app-name', 'second app', '--account', 'other');
  assert.equal(second.code, 0, second.stdout + second.stderr);
  const ids = await clientIds(config);
  assert.equal(ids.default, appA);
  assert.notEqual(ids.other, appA);

  // The app exists now: refused again, naming it; --replace repoints and removes the old app's tokens.
  const again = await setup('--app-name', 'second app');
  assert.equal(again.code, 64, again.stdout + again.stderr);
  assert.match(again.stderr, new RegExp(`app "second app" \\(${ids.other}\\)`));
  const replaced = await setup('--app-name', 'second app', '--replace');
  assert.equal(replaced.code, 0, replaced.stdout + replaced.stderr);
  assert.match(replaced.stdout, new RegExp(`Configuration {2}repointed from app ${appA}`));
  assert.match(replaced.stdout, /Saved tokens {2}removed those of account "default"/);
  assert.equal((await clientIds(config)).default, ids.other);
  await assert.rejects(fs.access(tokens), 'the tokens of the old app are gone');
});

test('setup by someone who may not grant consent: the account is written, and the output says it will not work until an administrator consents, with the link', async (t) => {
  const { sb, config, setup } = await rig(t);
  // Alex consents to the admin tool while an administrator, then loses the role: he can still create apps, not grant consent.
  assert.equal((await setup('--account', 'warmup', '--app-name', 'warmup')).code, 0);
  const admin = await adminClient(sb);
  await admin('PATCH', `/users/${ADMIN}`, { isAdmin: false });
  const r = await setup();
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const appId = (await clientIds(config)).default!;
  assert.match(r.stdout, /Configuration {2}updated .*account "default" — written, but it will not work until an administrator grants consent/);
  assert.match(r.stdout, /Account "default" is written to .*, but it will not work until an administrator grants consent\./);
  assert.ok(r.stdout.includes(`Admin consent link (for a Global Administrator): ${sb.info.authority}/${sb.info.tenantId}/adminconsent?client_id=${appId}`), r.stdout);
});
