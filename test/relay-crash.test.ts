// kill -9 the relay (the real CLI, a child process) while concurrent clients
// send; restart it; every message that got 250 must reach the sandbox.
// Duplicates are counted and reported: only a message in flight upstream at
// the kill may arrive twice, so there can be at most maxConnections of them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { withSandbox, sandboxRequest } from './helpers/sandbox.ts';
import { client, childSetup, startRelayChild, waitFor, UNLIMITED } from './relay-helpers.ts';
import { Queue } from '../src/relay/queue/queue.ts';

test('kill -9 during concurrent sends: every 250 is delivered after restart; duplicates only for messages in flight', async (t) => {
  const sb = await withSandbox(t, UNLIMITED);
  const { account, dir, configFile, env } = await childSetup(t, sb);
  let child = await startRelayChild(configFile, env);
  t.after(() => {
    child.proc.kill('SIGKILL');
  });

  // 8 clients send as fast as they can; kill -9 after 60 acknowledged messages.
  const acked: string[] = [];
  let killed = false;
  const KILL_AFTER = 60;
  let onKill!: () => void;
  const killedPromise = new Promise<void>((r) => (onKill = r));
  const sender = async (c: number) => {
    const transport = client(child.port);
    for (let n = 0; !killed; n++) {
      const subject = `crash-${c}-${n}`;
      try {
        const info = await transport.sendMail({ from: account.user, to: `rcpt${c}@example.com`, subject, text: `message ${subject}\n`.repeat(100) });
        if (/^250 /.test(info.response)) acked.push(subject);
      } catch {
        // refused or cut by the kill: not acknowledged, the client would retry
      }
      if (!killed && acked.length >= KILL_AFTER) {
        killed = true;
        child.proc.kill('SIGKILL');
        onKill();
      }
    }
    transport.close();
  };
  const senders = Array.from({ length: 8 }, (_, c) => sender(c));
  await killedPromise;
  await child.exited;
  await Promise.all(senders);
  const ackedAtKill = acked.length;

  // What the spool holds right after the crash (the relay is dead: read-only look).
  const q = await Queue.open(path.join(dir, 'spool'));
  const before = await q.counts();
  t.diagnostic(`at the kill: ${ackedAtKill} acknowledged, queue ${JSON.stringify(before)}`);

  // Restart: recovery moves active/ back, delivery finishes the rest.
  child = await startRelayChild(configFile, env);
  const r = await sandboxRequest(sb.info, 'GET', `${sb.info.admin}/messages?count=${ackedAtKill}&timeoutMs=90000`);
  const messages = r.json<{ messages: Array<{ subject: string }> }>().messages;
  // Wait for the queue to drain, so late duplicates are counted too.
  await waitFor('the queue to drain (incoming + active + deferred = 0)', () => q.counts(), (c) => c.incoming + c.active + c.deferred === 0, 90_000, 50);
  const final = (await sandboxRequest(sb.info, 'GET', `${sb.info.admin}/messages`)).json<{ messages: Array<{ subject: string }> }>().messages;
  const seen = new Map<string, number>();
  for (const m of final) seen.set(m.subject, (seen.get(m.subject) ?? 0) + 1);
  const missing = acked.filter((s) => !seen.has(s));
  const duplicates = [...seen.entries()].filter(([, n]) => n > 1);
  t.diagnostic(`delivered ${final.length} (unique ${seen.size}) for ${ackedAtKill} acknowledged; duplicates: ${duplicates.length} ${JSON.stringify(duplicates)}`);
  assert.ok(messages.length >= ackedAtKill);
  assert.deepEqual(missing, [], 'every acknowledged message was delivered');
  assert.ok(duplicates.length <= 3, `duplicates only for messages in flight upstream (≤ 3 connections): ${duplicates.length}`);
  assert.equal((await q.counts()).failed, 0);

  // SIGTERM: graceful stop, exit 0, nothing left half-done.
  child.proc.kill('SIGTERM');
  assert.equal(await child.exited, 0);
  const after = await q.counts();
  assert.equal(after.active, 0, 'a graceful stop leaves nothing in active/');
});
