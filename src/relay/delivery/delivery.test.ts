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
import { Delivery, type DeliverySettings } from './delivery.ts';

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

test('stop() writes a result that could not be written before, so a restart does not send the message again', async (t) => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'smtp365-delivery-'));
  const q = await Queue.open(dir);
  t.after(async () => {
    await q.close();
    await rm(dir, { recursive: true, force: true });
  });
  const sent: string[] = [];
  const d = new Delivery({ queue: q, log: silentLogger, settings, accounts: () => ({ mailer: acceptingMailer(sent), mailbox: 'alex@contoso.com' }) });
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
