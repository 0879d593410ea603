// `smtp365 queue` and `smtp365 relay status` from another process while the
// relay (also the real CLI) runs: the operator's commands race the relay
// safely, and status shows the account alert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { access, mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import YAML from 'yaml';
import { withSandbox, sandboxRequest } from './helpers/sandbox.ts';
import { client, childSetup, startRelayChild, tempDir, waitFor, MAIN, UNLIMITED } from './relay-helpers.ts';
import { Queue } from '../src/relay/queue/queue.ts';

const exec = promisify(execFile);

async function cli(env: NodeJS.ProcessEnv, ...args: string[]): Promise<{ code: number; out: string; err: string }> {
  try {
    const r = await exec(process.execPath, [MAIN, ...args], { env });
    return { code: 0, out: r.stdout, err: r.stderr };
  } catch (e) {
    const x = e as { code: number; stdout: string; stderr: string };
    return { code: x.code, out: x.stdout, err: x.stderr };
  }
}

test('queue list/show/hold/release/delete/flush and relay status while the relay runs', async (t) => {
  const sb = await withSandbox(t, UNLIMITED);
  // Long pauses: once the account is refused, messages wait for the operator.
  const { account, configFile, env, dir } = await childSetup(t, sb, { accountPause: '1h', minBackoff: '1h', maxBackoff: '1h' });
  const mbx = `${sb.info.admin}/mailboxes/${account.user}`;
  await sandboxRequest(sb.info, 'PATCH', mbx, { json: { smtpClientAuthenticationDisabled: true } });
  const child = await startRelayChild(configFile, env);
  t.after(() => {
    child.proc.kill('SIGKILL');
  });
  const spool = path.join(dir, 'spool');
  const ids: string[] = [];
  for (const subject of ['one', 'two', 'three']) {
    const info = await client(child.port).sendMail({ from: account.user, to: 'x@example.com', subject, text: subject });
    ids.push(/queued as (\S+)/.exec(info.response)![1]!);
  }
  const q = await Queue.open(spool);
  // The first attempts hit the disabled mailbox: deferred, account paused, the rest waits in incoming.
  await waitFor('one message deferred, none active, the rest in incoming (3 in all)', () => q.counts(), (c) => c.deferred >= 1 && c.active === 0 && c.deferred + c.incoming === 3);

  const status = await cli(env, 'relay', 'status', '--config', configFile, '--json');
  assert.equal(status.code, 0, status.err);
  const st = JSON.parse(status.out) as { running: boolean; queue: Record<string, number>; accounts: Array<{ name: string; alert?: { code: string } }> };
  assert.equal(st.running, true);
  assert.equal((st.queue.deferred ?? 0) + (st.queue.incoming ?? 0), 3);
  assert.equal(st.accounts[0]!.alert?.code, 'SMTP_AUTH_DISABLED_MAILBOX');
  const human = await cli(env, 'relay', 'status', '--config', configFile);
  assert.match(human.out, /ALERT SMTP_AUTH_DISABLED_MAILBOX/);

  const list = JSON.parse((await cli(env, 'queue', 'list', '--config', configFile, '--json')).out) as { messages: Array<{ id: string; state: string; lastError?: string }> };
  assert.deepEqual(list.messages.map((m) => m.id).sort(), [...ids].sort());
  const deferred = list.messages.find((m) => m.state === 'deferred')!;
  assert.match(deferred.lastError!, /5\.7\.139/);

  const [one, two] = ids as [string, string, string];
  const other = deferred.id === one ? two : one;
  assert.equal((await cli(env, 'queue', 'hold', deferred.id, '--config', configFile)).code, 0);
  const shown = JSON.parse((await cli(env, 'queue', 'show', deferred.id, '--config', configFile, '--json')).out) as { state: string; recipients: Array<{ status: string }> };
  assert.equal(shown.state, 'hold');
  const del = await cli(env, 'queue', 'delete', other, '--config', configFile, '--json');
  assert.equal(del.code, 0, del.err);
  await assert.rejects(access(q.dataPath(other)));
  assert.equal((await cli(env, 'queue', 'show', other, '--config', configFile)).code, 66, 'gone: EX_NOINPUT');
  assert.equal((await cli(env, 'queue', 'show', '../../etc/passwd', '--config', configFile)).code, 65, 'not an id');

  // The admin fixes the mailbox; flush wakes the relay (SIGHUP) and releases the paused account.
  await sandboxRequest(sb.info, 'PATCH', mbx, { json: { smtpClientAuthenticationDisabled: false } });
  assert.equal((await cli(env, 'queue', 'flush', '--config', configFile)).code, 0);
  assert.equal((await cli(env, 'queue', 'release', deferred.id, '--config', configFile)).code, 0);
  const got = (await sandboxRequest(sb.info, 'GET', `${sb.info.admin}/messages?count=2&timeoutMs=60000`)).json<{ messages: Array<{ subject: string }> }>().messages;
  const expected = ids.filter((id) => id !== other).map((id) => ['one', 'two', 'three'][ids.indexOf(id)]);
  assert.deepEqual(got.map((m) => m.subject).sort(), expected.sort());
  child.proc.kill('SIGTERM');
  assert.equal(await child.exited, 0);
});

test('queue delete --all --state STATE [--older-than D]: bulk removal, with clear refusals for what it will not do', async (t) => {
  const dir = await tempDir(t, 'smtp365-bulk-');
  const spool = path.join(dir, 'spool');
  const env = { PATH: process.env.PATH, HOME: dir, SMTP365_HOME: path.join(dir, 'home') };
  const q = await Queue.open(spool);
  const ids: string[] = [];
  for (const daysAgo of [40, 31, 2]) {
    const e = await q.acceptBuffer(Buffer.from('Subject: x\r\n\r\nx\r\n'), { from: 's@example.com', recipients: ['r@example.com'], account: 'default', client: { address: '127.0.0.1', tls: false } });
    const c = (await q.claim(e.id, 'incoming'))!;
    c.failedAt = new Date(Date.now() - daysAgo * 86_400_000).toISOString();
    await q.moveActive(c, 'failed');
    ids.push(e.id);
  }
  const held = await q.acceptBuffer(Buffer.from('Subject: y\r\n\r\ny\r\n'), { from: 's@example.com', recipients: ['r@example.com'], account: 'default', client: { address: '127.0.0.1', tls: false } });
  await q.hold(held.id);

  for (const [args, why] of [
    [['queue', 'delete'], /Give a message id, or --all --state STATE/],
    [['queue', 'delete', '--all'], /--all needs --state: one of incoming, deferred, hold, failed/],
    [['queue', 'delete', '--all', '--state', 'active'], /active messages are being delivered/],
    [['queue', 'delete', ids[0]!, '--all', '--state', 'failed'], /not both/],
    [['queue', 'delete', '--all', '--state', 'failed', '--older-than', 'soon'], /--older-than: not a duration: "soon"/],
    [['queue', 'delete', '--all', '--state', 'failed', '--older-than', '30'], /a number and a unit: s, m, h or d/],
    [['queue', 'delete', '--all', '--state', 'failed', '--older-than', '30M'], /a number and a unit/],
  ] as const) {
    const r = await cli(env, ...args, '--spool', spool);
    assert.equal(r.code, 65, `${args.join(' ')}: ${r.err}`);
    assert.match(r.err, why);
  }
  assert.equal((await q.counts()).failed, 3, 'nothing removed by a refused command');

  const r = await cli(env, 'queue', 'delete', '--all', '--state', 'failed', '--older-than', '30d', '--spool', spool, '--json');
  assert.equal(r.code, 0, r.err);
  assert.deepEqual((JSON.parse(r.out) as { results: Array<{ id: string }> }).results.map((x) => x.id).sort(), [ids[0], ids[1]].sort());
  assert.deepEqual(await q.ids('failed'), [ids[2]]);
  const human = await cli(env, 'queue', 'delete', '--all', '--state', 'hold', '--spool', spool);
  assert.equal(human.code, 0, human.err);
  assert.match(human.out, new RegExp(`${held.id}: hold → deleted`));
  assert.deepEqual(await q.counts(), { incoming: 0, active: 0, deferred: 0, hold: 0, failed: 1 });
});

test('the relay warns at start when the smtp365 config holding its account\'s secret can be read by others', { skip: process.platform === 'win32' }, async (t) => {
  const sb = await withSandbox(t);
  const { account, configFile, env } = await childSetup(t, sb);
  // The account from smtp365's own config file (not the environment), left readable by everyone.
  const accountFile = path.join(env.XDG_CONFIG_HOME!, 'smtp365', 'config.yaml');
  await mkdir(path.dirname(accountFile), { recursive: true });
  const body = { tenant: account.tenant, clientId: account.clientId, user: account.user, flow: 'client-secret', clientSecret: account.clientSecret, authority: account.authorityHost, smtpHost: account.smtpHost, smtpPort: account.smtpPort, caFile: account.caFile, cloud: 'custom', smtpResource: account.smtpResource };
  await writeFile(accountFile, YAML.stringify({ accounts: { default: body } }), { mode: 0o644 });
  const bare = Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('SMTP365_') || k === 'SMTP365_HOME'));
  const child = await startRelayChild(configFile, bare);
  t.after(() => child.proc.kill('SIGKILL'));
  await waitFor('the warning', async () => child.stderr(), (e) => e.includes('chmod 600'), 10_000);
  assert.match(child.stderr(), new RegExp(`${accountFile.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} holds accounts\\.default\\.clientSecret and other users can read it \\(mode 0644\\): chmod 600 `));
  assert.ok(!child.stderr().includes(account.clientSecret!), 'the secret itself is never logged');
});
