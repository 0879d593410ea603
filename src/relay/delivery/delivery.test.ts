// Delivery against a real queue on disk, with a stand-in for the Microsoft
// side that accepts everything (the sandbox end-to-end tests are in test/):
// here what matters is the order of file operations around a stop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Queue } from '../queue/queue.ts';
import { silentLogger } from '../log.ts';
import type { Mailer, OutgoingMessage, SendResult } from '../../send/types.ts';
import { Delivery, type AccountHandle, type DeliverySettings } from './delivery.ts';

const settings: DeliverySettings = { maxConnections: 3, minBackoff: 50, maxBackoff: 200, maxLifetime: 86_400_000, accountPause: 100, scanInterval: 60_000, bounces: true, delayWarning: 0, keepFailed: 0 };

/** Accepts every recipient, as Microsoft does when all is well. */
function acceptingMailer(sent: string[]): Mailer {
  return {
    async send(m: OutgoingMessage): Promise<SendResult> {
      const env = (m as { envelope: { from: string; to: string[] } }).envelope;
      sent.push(...env.to);
      return { messageId: '<x@y>', response: '250 2.0.0 OK', envelope: env, accepted: [...env.to], rejected: [], attempts: 1 };
    },
    async close() {},
  };
}

/** A queue in a temp dir and a Delivery over it that sends through acceptingMailer. */
async function rig(t: { after: (fn: () => Promise<void>) => void }, accounts?: (sent: string[]) => (name: string) => AccountHandle | undefined, overrides: Partial<DeliverySettings> = {}) {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-delivery-'));
  const q = await Queue.open(dir);
  t.after(async () => {
    await q.close();
    await rm(dir, { recursive: true, force: true });
  });
  const sent: string[] = [];
  const d = new Delivery({ queue: q, log: silentLogger, settings: { ...settings, ...overrides }, accounts: accounts?.(sent) ?? (() => ({ mailer: acceptingMailer(sent), mailbox: 'alex@contoso.com' })) });
  return { q, d, sent };
}

test('stop() writes a result that could not be written before, so a restart does not send the message again', async (t) => {
  const { q, d, sent } = await rig(t);
  // The disk is full until the relay is being stopped.
  let diskFull = true;
  const complete = q.complete.bind(q);
  let refused = 0;
  q.complete = async (id: string) => {
    if (diskFull) {
      refused++;
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    }
    return complete(id);
  };
  const e = await q.acceptBuffer(Buffer.from('Subject: x\r\n\r\nx\r\n'), { from: 'alex@contoso.com', recipients: ['r@example.com'], account: 'a', client: { address: '127.0.0.1', tls: false } });
  d.start();
  d.offer(e.id, 'a', e);
  for (let i = 0; i < 200 && refused === 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(sent, ['r@example.com']);
  assert.equal(await q.where(e.id), 'active', 'delivered, but the removal could not be written');
  diskFull = false;
  await d.stop();
  assert.equal(await q.where(e.id), undefined, 'written at stop: nothing left for a restart to send again');
});

test('one result that keeps failing does not hold back the others', async (t) => {
  const { q, d, sent } = await rig(t);
  const meta = (to: string) => ({ from: 'alex@contoso.com', recipients: [to], account: 'a', client: { address: '127.0.0.1', tls: false } });
  const a = await q.acceptBuffer(Buffer.from('Subject: a\r\n\r\na\r\n'), meta('a@example.com'));
  const b = await q.acceptBuffer(Buffer.from('Subject: b\r\n\r\nb\r\n'), meta('b@example.com'));
  // A's removal always fails (a file the relay cannot remove); B's only while the disk is full.
  let diskFull = true;
  const complete = q.complete.bind(q);
  let refused = 0;
  q.complete = async (id: string) => {
    if (id === a.id || diskFull) {
      refused++;
      throw Object.assign(new Error('EIO: i/o error'), { code: 'EIO' });
    }
    return complete(id);
  };
  d.start();
  d.offer(a.id, 'a', a); // A first: it is the first stranded one the retries meet
  for (let i = 0; i < 200 && refused < 1; i++) await new Promise((r) => setTimeout(r, 10));
  d.offer(b.id, 'a', b);
  for (let i = 0; i < 200 && sent.length < 2; i++) await new Promise((r) => setTimeout(r, 10));
  for (let i = 0; i < 50 && refused < 3; i++) await new Promise((r) => setTimeout(r, 10));
  diskFull = false;
  await d.stop();
  assert.equal(await q.where(b.id), undefined, 'B written although A still fails');
  assert.equal(await q.where(a.id), 'active', 'A stays for the restart (and is logged)');
});

test('an attempt that fails unexpectedly (a bug, not the disk) defers the message instead of leaving it in active/', async (t) => {
  let lookups = 0;
  const { q, d, sent } = await rig(t, (sent) => () => {
    if (++lookups === 1) throw new TypeError("Cannot read properties of undefined (reading 'mailbox')");
    return { mailer: acceptingMailer(sent), mailbox: 'alex@contoso.com' };
  });
  const deferred: string[] = [];
  const e = await q.acceptBuffer(Buffer.from('Subject: x\r\n\r\nx\r\n'), { from: 'alex@contoso.com', recipients: ['r@example.com'], account: 'a', client: { address: '127.0.0.1', tls: false } });
  const delivered = new Promise<void>((resolve) => d.on('delivered', () => resolve()));
  d.start();
  d.offer(e.id, 'a', e);
  // Deferred first, with the failure recorded for `queue show`; then tried again after minBackoff, without a restart.
  for (let i = 0; i < 300 && deferred.length === 0; i++) {
    if ((await q.where(e.id)) === 'deferred') deferred.push((await q.read('deferred', e.id)).lastError?.code ?? '');
    else await new Promise((r) => setTimeout(r, 2));
  }
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<string>((resolve) => (timer = setTimeout(() => void q.where(e.id).then((w) => resolve(`not delivered within 5 s; the message is in ${w}/`)), 5000)));
  const outcome = await Promise.race([delivered.then(() => 'delivered'), late]);
  clearTimeout(timer);
  await d.stop();
  assert.equal(outcome, 'delivered');
  assert.deepEqual(deferred, ['INTERNAL']);
  assert.deepEqual(sent, ['r@example.com']);
  assert.equal(await q.where(e.id), undefined);
});

test('an attempt that keeps failing unexpectedly is not retried forever: past the queue lifetime the message goes to failed/ with the error', async (t) => {
  const { q, d } = await rig(t, () => () => {
    throw new TypeError('a bug that fails every time');
  }, { maxLifetime: 1 });
  const e = await q.acceptBuffer(Buffer.from('Subject: x\r\n\r\nx\r\n'), { from: 'alex@contoso.com', recipients: ['r@example.com'], account: 'a', client: { address: '127.0.0.1', tls: false } });
  await new Promise((r) => setTimeout(r, 5));
  d.start();
  d.offer(e.id, 'a', e);
  for (let i = 0; i < 300 && (await q.where(e.id)) !== 'failed'; i++) await new Promise((r) => setTimeout(r, 5));
  await d.stop();
  assert.equal(await q.where(e.id), 'failed');
  const failed = await q.read('failed', e.id);
  assert.deepEqual(failed.recipients.map((r) => [r.status, r.code]), [['failed', 'INTERNAL']]);
  assert.match(failed.failureReason ?? '', /lifetime exceeded.*a bug that fails every time/);
});

/** Refuses every recipient for good (550), as Microsoft does for an address that does not exist. */
function refusingMailer(): Mailer {
  return {
    async send(m: OutgoingMessage): Promise<SendResult> {
      const env = (m as { envelope: { from: string; to: string[] } }).envelope;
      const reply = { code: 550, enhanced: '5.1.10', text: 'RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup', command: 'RCPT' };
      return { messageId: '<x@y>', response: '550 5.1.10', envelope: env, accepted: [], rejected: env.to.map((address) => ({ address, reply })), attempts: 1 };
    },
    async close() {},
  };
}

test('a crash after the bounce was queued but before the message was recorded as failed: after the restart the sender gets no second bounce', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-delivery-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const accounts = () => ({ mailer: refusingMailer(), mailbox: 'alex@contoso.com' });
  const meta = { from: 'device@contoso.com', recipients: ['nobody@example.com'], account: 'a', client: { address: '127.0.0.1', tls: false } };
  // First run: the failed/ record never gets written (the process dies there; here the write keeps failing).
  const q1 = await Queue.open(dir);
  const e = await q1.acceptBuffer(Buffer.from('Subject: x\r\n\r\nx\r\n'), meta);
  const moveActive = q1.moveActive.bind(q1);
  q1.moveActive = async (entry, to) => {
    if (entry.id === e.id && to === 'failed') throw Object.assign(new Error('killed'), { code: 'EIO' });
    return moveActive(entry, to);
  };
  const d1 = new Delivery({ queue: q1, log: silentLogger, settings, accounts });
  d1.start();
  d1.offer(e.id, 'a', e);
  const reports = async (q: Queue) => (await q.list()).filter((x) => x.bounceOf === e.id);
  for (let i = 0; i < 300 && (await reports(q1)).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal((await reports(q1)).length, 1, 'the bounce was queued');
  assert.equal(await q1.where(e.id), 'active', 'the message was not recorded as failed');
  await d1.stop();
  await q1.close();

  // The restart: the message is tried again, fails again, and is recorded; the bounce is the one already queued.
  const q2 = await Queue.open(dir);
  t.after(() => q2.close());
  await q2.recover();
  const d2 = new Delivery({ queue: q2, log: silentLogger, settings, accounts });
  const bounced = new Promise<{ bounceId?: string }>((resolve) => d2.on('bounced', (b) => b.id === e.id && resolve(b)));
  d2.start();
  const b = await bounced;
  await d2.stop();
  assert.equal(await q2.where(e.id), 'failed');
  const all = await reports(q2);
  assert.equal(all.length, 1, `one bounce, not ${all.length}`);
  assert.equal(b.bounceId, all[0]!.id);
  assert.equal((await q2.read('failed', e.id)).bounceId, all[0]!.id);
});

test('a crash after a delay notice was queued but before the message recorded it: the notice goes out once, even when it is delivered before the message is tried again', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-delivery-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const sender = 'device@contoso.com';
  const notices: string[] = [];
  // Microsoft defers the device's message (451), slowly; it takes reports (to the sender) at once.
  const mailer: Mailer = {
    async send(m: OutgoingMessage): Promise<SendResult> {
      const env = (m as { envelope: { from: string; to: string[] } }).envelope;
      if (env.to.includes(sender)) {
        notices.push(env.to.join());
        return { messageId: '<n@y>', response: '250 2.0.0 OK', envelope: env, accepted: [...env.to], rejected: [], attempts: 1 };
      }
      await new Promise((r) => setTimeout(r, 100));
      const reply = { code: 451, enhanced: '4.7.0', text: 'Temporary server error', command: 'RCPT' };
      return { messageId: '<x@y>', response: '451', envelope: env, accepted: [], rejected: env.to.map((address) => ({ address, reply })), attempts: 1 };
    },
    async close() {},
  };
  const accounts = () => ({ mailer, mailbox: 'alex@contoso.com' });
  const warnSettings = { ...settings, delayWarning: 1, minBackoff: 20, maxBackoff: 40 };
  const q1 = await Queue.open(dir);
  const e = await q1.acceptBuffer(Buffer.from('Subject: x\r\n\r\nx\r\n'), { from: sender, recipients: ['r@example.com'], account: 'a', client: { address: '127.0.0.1', tls: false } });
  await new Promise((r) => setTimeout(r, 5));
  // First run: the deferral that would record the notice never gets written (the process dies there).
  const moveActive = q1.moveActive.bind(q1);
  q1.moveActive = async (entry, to) => {
    if (entry.id === e.id) throw Object.assign(new Error('killed'), { code: 'EIO' });
    return moveActive(entry, to);
  };
  const d1 = new Delivery({ queue: q1, log: silentLogger, settings: { ...warnSettings, delayWarning: 1 }, accounts });
  // The notice is queued but not delivered before the "crash": d1 never sends it.
  d1.offer = () => undefined;
  d1.start();
  Delivery.prototype.offer.call(d1, e.id, 'a', e);
  const reports = async (q: Queue) => (await q.list()).filter((x) => x.bounceOf === e.id);
  for (let i = 0; i < 300 && (await reports(q1)).length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal((await reports(q1)).length, 1, 'the notice was queued');
  await d1.stop();
  await q1.close();

  // The restart: the notice goes out at once; the message is tried again 100 ms later and deferred again.
  const q2 = await Queue.open(dir);
  t.after(() => q2.close());
  await q2.recover();
  const d2 = new Delivery({ queue: q2, log: silentLogger, settings: warnSettings, accounts });
  d2.start();
  for (let i = 0; i < 400 && (await q2.where(e.id)) !== 'deferred'; i++) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 150));
  await d2.stop();
  assert.deepEqual(notices, [sender], 'one delay notice');
  assert.ok((await q2.read('deferred', e.id)).delayWarnedAt);
});
