// Relay end-to-end against the sandbox: accepted mail reaches Microsoft's
// side; transient faults are retried until delivered; permanent refusals
// bounce with the reason; a broken account keeps mail queued with an alert.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { withSandbox, sandboxAccount, sandboxRequest, type Sandbox } from './helpers/sandbox.ts';
import { createTokenProvider } from '../src/auth/index.ts';
import { parseRelayConfig } from '../src/relay/config.ts';
import { startRelay } from '../src/relay/daemon.ts';
import { silentLogger } from '../src/relay/log.ts';
import { hashPassword } from '../src/relay/users.ts';
import { client, fault, sandboxMessages, startRig, tempDir, testConfigInput, until, RELAY_PASS, RELAY_USER, type RelayRig, sharedSandbox, UNLIMITED } from './relay-helpers.ts';

let sandbox: Sandbox;
const reset = sharedSandbox((sb) => (sandbox = sb));

async function send(rig: RelayRig, subject: string, to = ['someone@example.com']): Promise<string> {
  const info = await client(rig.port).sendMail({ from: rig.account.user, to, subject, text: `body of ${subject}` });
  return info.response;
}

const empty = (rig: RelayRig) => async () => {
  const c = await rig.relay.queue.counts();
  return c.incoming + c.active + c.deferred === 0;
};

test('accepted messages are delivered through the sandbox and leave the queue', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const replies = [];
  for (let i = 0; i < 3; i++) replies.push(await send(rig, `hello ${i}`, ['a@example.com', 'b@example.com']));
  for (const r of replies) assert.match(r, /^250 2\.0\.0 Ok: queued as [0-9A-Z]{17}$/);
  const got = await sandboxMessages(rig, 3);
  assert.deepEqual(got.map((m) => m.subject).sort(), ['hello 0', 'hello 1', 'hello 2']);
  assert.deepEqual(got[0]!.rcptTo.sort(), ['a@example.com', 'b@example.com']);
  assert.equal(got[0]!.mailFrom, rig.account.user);
  await until(rig.relay, empty(rig), 'queue empty');
  await until(rig.relay, async () => (await rig.relay.status()).counters.delivered === 3, 'three deliveries recorded');
  // Metrics and health on the loopback port.
  const metrics = await (await fetch(`${rig.relay.metricsUrl}/metrics`)).text();
  assert.match(metrics, /smtp365_relay_delivered_total\{account="sandbox"\} 3/);
  assert.match(metrics, /smtp365_relay_queue_messages\{state="deferred"\} 0/);
  assert.match(metrics, /smtp365_relay_delivery_latency_seconds_count\{account="sandbox"\} 3/);
  const health = await fetch(`${rig.relay.metricsUrl}/healthz`);
  assert.equal(health.status, 200);
  assert.equal(((await health.json()) as { status: string }).status, 'ok');
});

test('a device\'s Bcc header is removed on the way out (as Postfix does); its recipients still get the message', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const raw = `From: ${rig.account.user}\r\nTo: a@example.com\r\nBcc: hidden@example.com\r\nSubject: with bcc\r\n\r\nBcc: hidden@example.com stays in the body\r\n`;
  await client(rig.port).sendMail({ envelope: { from: rig.account.user, to: ['a@example.com', 'hidden@example.com'] }, raw });
  const [m] = await sandboxMessages(rig, 1);
  assert.deepEqual(m!.rcptTo.sort(), ['a@example.com', 'hidden@example.com']);
  const text = (await sandbox.messages.readRaw(m!.id)).toString();
  assert.equal(text.split('\r\n\r\n')[0]!.includes('hidden@example.com'), false, text);
  assert.match(text, /\r\n\r\nBcc: hidden@example\.com stays in the body\r\n/);
});

test('transient faults (421, 451, 432 4.3.2, drop mid-DATA, token endpoint down and slow) are retried until delivered', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  await fault(rig, [
    { stage: 'connect', reply: '421 4.3.2 Service not available, closing transmission channel', times: 1 },
    { stage: 'data-end', reply: '451 4.7.0 Temporary server error. Please try again later. PRX4', times: 2 },
    { stage: 'mail', reply: '432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded', times: 1 },
    { stage: 'data', drop: true, times: 1 },
    { stage: 'token', drop: true, times: 2 },
    { stage: 'token', delayMs: 300, times: 1 },
  ]);
  for (let i = 0; i < 4; i++) await send(rig, `retry ${i}`);
  const got = await sandboxMessages(rig, 4);
  assert.deepEqual(got.map((m) => m.subject).sort(), ['retry 0', 'retry 1', 'retry 2', 'retry 3']);
  await until(rig.relay, empty(rig), 'queue empty');
  const st = await rig.relay.status();
  assert.ok(st.counters.deferred >= 3, `deferred ${st.counters.deferred} times`);
  assert.equal(st.counters.bounced, 0);
  assert.equal(st.queue.failed, 0);
  // Each message exactly once.
  assert.equal((await sandboxMessages(rig)).length, 4);
});

test('a permanent refusal bounces at once: failed/ keeps the reply and its explanation, a DSN goes to the sender', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  await fault(rig, { stage: 'data-end', reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender', times: 1 });
  const reply = await send(rig, 'will bounce', ['x@example.com']);
  const id = /queued as (\S+)/.exec(reply)![1]!;
  await until(rig.relay, async () => (await rig.relay.queue.counts()).failed === 1, 'message failed');
  const failed = await rig.relay.queue.read('failed', id);
  assert.equal(failed.attempts, 1, 'no retry of a permanent failure');
  assert.equal(failed.recipients[0]!.status, 'failed');
  assert.match(failed.recipients[0]!.reply!, /^550 5\.7\.60/);
  assert.equal(failed.recipients[0]!.explanation?.code, 'SMTP_SEND_AS_DENIED');
  assert.ok(failed.bounceId);
  // The DSN reaches the envelope sender through the sandbox.
  const got = await sandboxMessages(rig, 1);
  assert.equal(got[0]!.subject, 'Undelivered Mail Returned to Sender');
  assert.deepEqual(got[0]!.rcptTo, [rig.account.user]);
  const raw = (await sandboxRequest(sandbox.info, 'GET', `${sandbox.info.admin}/messages/${got[0]!.id}/raw`)).text;
  assert.match(raw, /multipart\/report; report-type=delivery-status/);
  assert.match(raw, /Final-Recipient: rfc822; x@example\.com/);
  assert.match(raw, /Status: 5\.7\.60/);
  assert.match(raw, /Subject: will bounce/, 'original headers attached');
  // The queue file says why, in plain sight.
  const onDisk = JSON.parse(await readFile(path.join(rig.spool, 'failed', `${id}.json`), 'utf8')) as { failureReason: string };
  assert.match(onDisk.failureReason, /5\.7\.60/);
});

test('delayWarning: a message still not delivered after that long earns its sender one delay notice (Action: delayed), then is delivered without a bounce', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox, config: { delivery: { delayWarning: '400ms', minBackoff: '100ms', maxBackoff: '100ms' } } });
  // Microsoft keeps refusing one recipient for now; the other is accepted at once.
  const slow = { stage: 'rcpt', recipient: 'slow@example.com', reply: '451 4.4.4 Temporary lookup failure', times: null, id: 'slow' };
  await fault(rig, slow);
  const reply = await send(rig, 'takes a while', ['slow@example.com', 'fast@example.com']);
  const id = /queued as (\S+)/.exec(reply)![1]!;
  const first = await sandboxMessages(rig, 2);
  const notice = first.find((m) => m.subject === 'Delayed Mail (still being retried)');
  assert.ok(notice, `a delay notice among ${JSON.stringify(first.map((m) => m.subject))}`);
  assert.deepEqual(notice.rcptTo, [rig.account.user], 'to the envelope sender');
  assert.deepEqual(first.find((m) => m.subject === 'takes a while')!.rcptTo, ['fast@example.com']);
  const raw = (await sandboxRequest(sandbox.info, 'GET', `${sandbox.info.admin}/messages/${notice.id}/raw`)).text;
  assert.match(raw, /multipart\/report; report-type=delivery-status/);
  assert.match(raw, /Final-Recipient: rfc822; slow@example\.com/);
  assert.doesNotMatch(raw, /Final-Recipient: rfc822; fast@example\.com/, 'only the recipients still waiting');
  assert.match(raw, /Action: delayed/);
  assert.match(raw, /Status: 4\.4\.4/);
  assert.match(raw, /Will-Retry-Until: /);
  assert.match(raw.replace(/=\r?\n/g, ''), /keeps trying until .+; you do not need to send it again/, 'the human part says what happens next');
  const entry = (await rig.relay.queue.find(id))!;
  assert.ok(entry.delayWarnedAt && entry.delayNoticeId, 'recorded in the queue entry');
  // Waiting mail shows in the metrics by its age (what an alert on stuck mail looks at).
  const metrics = await (await fetch(`${rig.relay.metricsUrl}/metrics`)).text();
  const age = (state: string) => Number(new RegExp(`smtp365_relay_queue_oldest_seconds\\{state="${state}"\\} ([0-9.e+-]+)`).exec(metrics)?.[1]);
  assert.ok(age('deferred') >= 0.4 || age('active') >= 0.4, `the waiting message is at least 0.4 s old: ${age('deferred')} / ${age('active')}`);
  assert.equal(age('hold'), 0, 'an empty state is 0');
  // More retries, no second notice.
  await until(rig.relay, async () => ((await rig.relay.queue.find(id))?.attempts ?? 0) >= entry.attempts + 3, 'three more attempts');
  assert.equal((await sandboxMessages(rig)).filter((m) => m.subject === 'Delayed Mail (still being retried)').length, 1, 'one notice per message');
  // Microsoft takes it now: delivered, and no bounce.
  await sandboxRequest(sandbox.info, 'DELETE', `${sandbox.info.admin}/faults/slow`);
  const all = await sandboxMessages(rig, 3);
  assert.deepEqual(all.filter((m) => m.subject === 'takes a while').map((m) => m.rcptTo).sort(), [['fast@example.com'], ['slow@example.com']]);
  await until(rig.relay, empty(rig), 'queue empty');
  assert.equal((await rig.relay.status()).counters.bounced, 0);
  assert.equal(all.filter((m) => m.subject === 'Undelivered Mail Returned to Sender').length, 0);
});

test('a result that cannot be written (disk full) is written at a later scan: not delivered twice, not bounced twice, not left in active/', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const q = rig.relay.queue;
  const diskFull = () => Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
  // Removing a delivered message fails once, and so does moving a bounced one to failed/.
  const complete = q.complete.bind(q);
  let completeFailures = 1;
  q.complete = async (id: string) => {
    if (completeFailures-- > 0) throw diskFull();
    return complete(id);
  };
  const moveActive = q.moveActive.bind(q);
  let failedMoveFailures = 1;
  q.moveActive = async (entry, to) => {
    if (to === 'failed' && failedMoveFailures-- > 0) throw diskFull();
    return moveActive(entry, to);
  };
  await send(rig, 'delivered, then the disk was full');
  await until(rig.relay, async () => completeFailures < 0 && (await q.counts()).active + (await q.counts()).deferred + (await q.counts()).incoming === 0, 'the delivered message removed after all');
  await fault(rig, { stage: 'data-end', reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender', times: 1 });
  await send(rig, 'bounced, then the disk was full');
  await until(rig.relay, async () => (await q.counts()).failed === 1 && failedMoveFailures < 0, 'the bounced message in failed/ after all');
  await until(rig.relay, empty(rig), 'nothing else queued');
  const got = await sandboxMessages(rig);
  assert.deepEqual(got.map((m) => m.subject).sort(), ['Undelivered Mail Returned to Sender', 'delivered, then the disk was full'], 'each once: no second delivery, no second bounce');
});

test('a failed write keeps what the attempt decided (an operator\'s hold stays a hold); a write that failed after its rename is not written again later', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const q = rig.relay.queue;
  const eio = () => Object.assign(new Error('EIO: i/o error, fsync'), { code: 'EIO' });
  const moveActive = q.moveActive.bind(q);
  let failHold = 0;
  let failAfterRename = 0;
  q.moveActive = async (entry, to) => {
    if (to === 'hold' && failHold-- > 0) throw eio();
    if (to === 'deferred' && failAfterRename-- > 0) {
      await moveActive(entry, to); // renamed into deferred/, then the directory's fsync fails
      throw eio();
    }
    return moveActive(entry, to);
  };
  // 1. Held while being delivered; the move to hold/ fails once: it must end in hold/, not be delivered.
  failHold = 1;
  await fault(rig, { stage: 'data-end', delayMs: 400, reply: '451 4.7.0 Temporary server error. Please try again later. PRX4', times: 1 });
  const held = /queued as (\S+)/.exec(await send(rig, 'held, disk trouble'))![1]!;
  await until(rig.relay, async () => (await q.find(held))?.state === 'active', 'delivery started');
  await q.hold(held);
  await until(rig.relay, async () => failHold < 0 && (await q.find(held))?.state === 'hold', 'held after all');
  // 2. A deferral whose write failed after the rename: the message goes on from deferred/, once.
  failAfterRename = 1;
  await fault(rig, { stage: 'rcpt', recipient: 'later@example.com', reply: '451 4.4.4 Temporary lookup failure', times: 1 });
  await send(rig, 'deferred, disk trouble', ['later@example.com']);
  const got = await sandboxMessages(rig, 1);
  assert.deepEqual(got.map((m) => m.subject), ['deferred, disk trouble']);
  await until(rig.relay, empty(rig), 'delivered and gone');
  // Several scans later (every 50 ms here): no stale copy written back.
  await new Promise((r) => setTimeout(r, 600));
  assert.deepEqual(await q.counts(), { incoming: 0, active: 0, deferred: 0, hold: 1, failed: 0 });
  assert.equal((await sandboxMessages(rig)).filter((m) => m.subject === 'deferred, disk trouble').length, 1);
  assert.equal((await sandboxMessages(rig)).filter((m) => m.subject === 'held, disk trouble').length, 0, 'the held one was never delivered');
});

test('delivery.keepFailed: failed/ keeps a bounced message that long, then the relay removes it with its body', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox, config: { delivery: { keepFailed: '2s' } } });
  await fault(rig, { stage: 'data-end', reply: '550 5.7.60 SMTP; Client does not have permissions to send as this sender', times: 1 });
  const id = /queued as (\S+)/.exec(await send(rig, 'kept a while'))![1]!;
  await until(rig.relay, async () => (await rig.relay.queue.counts()).failed === 1, 'in failed/');
  const failedAt = Date.parse((await rig.relay.queue.read('failed', id)).failedAt!);
  // The record goes first (made durable), then the body.
  const bodyGone = () => readFile(rig.relay.queue.dataPath(id)).then(() => false, (e: NodeJS.ErrnoException) => e.code === 'ENOENT');
  await until(rig.relay, async () => (await rig.relay.queue.counts()).failed === 0 && (await bodyGone()), 'removed with its body after keepFailed', 15_000);
  assert.ok(Date.now() - failedAt >= 2000, 'not before its time');
});

test('a recipient refused at RCPT bounces alone; the others are delivered', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  await fault(rig, { stage: 'rcpt', reply: '550 5.1.1 RESOLVER.ADR.RecipNotFound; not found', match: rig.account.user, times: 1 });
  const reply = await send(rig, 'partial', ['gone@example.com', 'ok@example.com']);
  const id = /queued as (\S+)/.exec(reply)![1]!;
  await until(rig.relay, async () => (await rig.relay.queue.counts()).failed === 1, 'message failed');
  const got = await sandboxMessages(rig, 2); // the message to ok@ and the DSN
  const delivered = got.find((m) => m.subject === 'partial')!;
  assert.deepEqual(delivered.rcptTo, ['ok@example.com']);
  const failed = await rig.relay.queue.read('failed', id);
  assert.deepEqual(failed.recipients.map((r) => [r.address, r.status]), [['gone@example.com', 'failed'], ['ok@example.com', 'delivered']]);
});

test('a disabled mailbox keeps mail queued with an alert, no bounce; delivered once fixed', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  const mbx = `${sandbox.info.admin}/mailboxes/${rig.account.user}`;
  const original = (await sandboxRequest(sandbox.info, 'GET', mbx)).json<{ smtpClientAuthenticationDisabled: boolean | null }>().smtpClientAuthenticationDisabled;
  await sandboxRequest(sandbox.info, 'PATCH', mbx, { json: { smtpClientAuthenticationDisabled: true } });
  t.after(() => sandboxRequest(sandbox.info, 'PATCH', mbx, { json: { smtpClientAuthenticationDisabled: original } }));
  await send(rig, 'held for the admin');
  await until(rig.relay, async () => (await rig.relay.status()).accounts.some((a) => a.alert), 'alert raised');
  const st = await rig.relay.status();
  const acct = st.accounts.find((a) => a.name === 'sandbox')!;
  assert.equal(acct.alert!.code, 'SMTP_AUTH_DISABLED_MAILBOX');
  assert.equal(st.counters.bounced, 0);
  assert.equal(st.queue.failed, 0);
  const metrics = await (await fetch(`${rig.relay.metricsUrl}/metrics`)).text();
  assert.match(metrics, /smtp365_relay_account_alert\{account="sandbox"\} 1/);
  const health = (await (await fetch(`${rig.relay.metricsUrl}/healthz`)).json()) as { status: string };
  assert.equal(health.status, 'degraded');
  await sandboxRequest(sandbox.info, 'PATCH', mbx, { json: { smtpClientAuthenticationDisabled: false } });
  const got = await sandboxMessages(rig, 1);
  assert.equal(got[0]!.subject, 'held for the admin');
  await until(rig.relay, async () => !(await rig.relay.status()).accounts.some((a) => a.alert), 'alert cleared');
});

test('a revoked sign-in keeps mail queued with an AUTH_SIGNIN_EXPIRED alert; after signing in again it is delivered', async (t) => {
  const upn = 'alex@contoso.onmicrosoft.com';
  const sb = await withSandbox(t, { ...UNLIMITED, tokenLifetimeSeconds: 2, deviceCodeIntervalSeconds: 1, autoApproveDeviceCodes: { afterMs: 10, upn } });
  const account = sandboxAccount(sb.info, { name: 'delegated', user: upn });
  const home = await tempDir(t, 'smtp365-relay-deleg-');
  const provider = createTokenProvider(account, { home });
  assert.equal((await provider.signIn({ onDeviceCode: () => undefined })).state, 'active');
  // Stopped before its spool is removed (after hooks run in the order they are added).
  const running: { relay?: { stop(): Promise<void> } } = {};
  t.after(() => running.relay?.stop());
  const spool = await tempDir(t, 'smtp365-relay-spool-');
  const relay = await startRelay({
    config: parseRelayConfig(testConfigInput(spool, { account: 'delegated', users: [{ name: RELAY_USER, passwordHash: await hashPassword(RELAY_PASS), rewriteSender: true }], delivery: { accountPause: '100ms' } })),
    accounts: { delegated: { account, tokenProvider: provider } },
    log: silentLogger,
  });
  running.relay = relay;
  const port = relay.listeners[0]!.port;
  await client(port).sendMail({ from: upn, to: 'x@example.com', subject: 'before revoke', text: '1' });
  await sandboxMessages({ sandbox: sb }, 1);
  // The admin revokes the user's sessions (password reset, "revoke sessions"): refresh tokens die.
  await sandboxRequest(sb.info, 'PATCH', `${sb.info.admin}/users/${upn}`, { json: { revokeSessions: true } });
  // Tokens live 2 s, so every send needs a refresh (the provider renews below 300 s left): the next one fails.
  await client(port).sendMail({ from: upn, to: 'x@example.com', subject: 'after revoke', text: '2' });
  // The deferral is counted (and the metric bumped) once the queue file is durable, a moment after it shows in deferred/.
  await until(relay, async () => {
    const s = await relay.status();
    return s.accounts.some((a) => a.alert) && s.counters.deferred >= 1 && (await relay.queue.counts()).deferred === 1;
  }, 'alert raised, message deferred and counted');
  const st = await relay.status();
  assert.equal(st.accounts[0]!.alert!.code, 'AUTH_SIGNIN_EXPIRED');
  assert.match(st.accounts[0]!.alert!.explanation!.fix.join(' '), /smtp365 login/);
  assert.equal(st.queue.failed, 0, 'never bounced');
  assert.equal(st.counters.bounced, 0);
  const metrics = await (await fetch(`${relay.metricsUrl}/metrics`)).text();
  assert.match(metrics, /smtp365_relay_token_refresh_failures_total\{account="delegated"\} [1-9]/);
  assert.match(metrics, /smtp365_relay_account_alert\{account="delegated"\} 1/);
  // Sign in again (as `smtp365 login` would) and flush: delivered.
  assert.equal((await provider.signIn({ onDeviceCode: () => undefined })).state, 'active');
  await relay.queue.retryAll();
  relay.delivery.resumeAccounts();
  const got = await sandboxMessages({ sandbox: sb }, 2);
  assert.deepEqual(got.map((m) => m.subject).sort(), ['after revoke', 'before revoke']);
});

test('an operator holds a message while it is being delivered: applied after the attempt; release delivers it', async (t) => {
  await reset();
  const rig = await startRig(t, { sandbox });
  await fault(rig, { stage: 'data-end', delayMs: 400, reply: '451 4.7.0 Temporary server error. Please try again later. PRX4', times: 1 });
  const id = /queued as (\S+)/.exec(await send(rig, 'held mid-flight'))![1]!;
  await until(rig.relay, async () => (await rig.relay.queue.find(id))?.state === 'active', 'delivery started');
  assert.deepEqual(await rig.relay.queue.hold(id), { id, from: 'active', to: 'pending' });
  await until(rig.relay, async () => (await rig.relay.queue.find(id))?.state === 'hold', 'held after the attempt');
  assert.equal((await sandboxMessages(rig)).length, 0);
  await rig.relay.queue.release(id);
  const got = await sandboxMessages(rig, 1);
  assert.equal(got[0]!.subject, 'held mid-flight');
});
