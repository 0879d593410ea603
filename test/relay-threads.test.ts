// The relay with listener threads (listenerThreads: N): the threads share
// the port, every message still reaches the queue durably and the sandbox
// once, failed AUTHs count across threads, status sums every thread, and a
// graceful stop reaches them all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import tls from 'node:tls';
import { RawSmtp } from './helpers/raw-smtp.ts';
import type { Sandbox } from './helpers/sandbox.ts';
import { certificatePairs, client, sandboxMessages, startRig, until, RELAY_USER, sharedSandbox, plain } from './relay-helpers.ts';

let sandbox: Sandbox;
sharedSandbox((sb) => (sandbox = sb));


test('three listener threads share the port: every message is queued once and delivered once', async (t) => {
  const rig = await startRig(t, { sandbox, config: { listenerThreads: 3, delivery: { ratePerMinute: 0 } } });
  assert.equal(rig.relay.listener.threadCount, 3);
  const N = 24;
  // One connection per message, as devices do: the kernel spreads them over the threads.
  const replies = await Promise.all(
    Array.from({ length: N }, async (_, i) => {
      const c = client(rig.port);
      try {
        const info = await c.sendMail({ from: rig.account.user, to: 'r@example.com', subject: `thread ${i}`, text: `message ${i}` });
        return info.response;
      } finally {
        c.close();
      }
    }),
  );
  for (const r of replies) assert.match(r, /^250 2\.0\.0 Ok: queued as [0-9A-Z]{17}$/);
  const got = await sandboxMessages(rig, N);
  assert.deepEqual(got.map((m) => m.subject).sort(), Array.from({ length: N }, (_, i) => `thread ${i}`).sort());
  await until(rig.relay, async () => (await rig.relay.queue.counts()).incoming + (await rig.relay.queue.counts()).active === 0, 'queue drained');
  const st = await rig.relay.status();
  assert.equal(st.counters.accepted, N, 'status sums the threads');
  assert.equal(st.counters.delivered, N);
  assert.equal((await sandboxMessages(rig)).length, N, 'each exactly once');
});

test('failed AUTHs from one address count across threads; a stop reaches every thread', async (t) => {
  const rig = await startRig(t, { sandbox, config: { listenerThreads: 2, limits: { authFailures: 4 } } });
  // Four connections, one failure each: whichever thread they land on, the fourth blocks the address.
  for (let i = 0; i < 4; i++) {
    const c = await RawSmtp.connect(rig.port);
    await c.readText();
    await c.cmd('EHLO dev.example');
    assert.match(await c.cmd(`AUTH PLAIN ${plain(RELAY_USER, `wrong-${i}`)}`), /^535 /);
    c.close();
  }
  await until(rig.relay, async () => (await rig.relay.status()).counters.authFailures === 4, 'four failures counted');
  // Every thread refuses the address now (several tries: they land on different threads).
  for (let i = 0; i < 4; i++) {
    const c = await RawSmtp.connect(rig.port);
    assert.match(await c.readText(), /^421 4\.7\.0 Too many failed/);
    c.close();
  }
  // A graceful stop ends every thread: nobody listens on the port any more.
  await rig.relay.stop();
  assert.equal(rig.relay.listener.threadCount, 0);
  await assert.rejects(RawSmtp.connect(rig.port), /ECONNREFUSED/);
});

test('a certificate reloaded by SIGHUP reaches every listener thread', async (t) => {
  const { b, files, install } = await certificatePairs(t, 'smtp365-cert-threads-');
  const rig = await startRig(t, { sandbox, config: { listenerThreads: 2, tls: files, listen: [{ address: '127.0.0.1:0', tls: 'implicit' }] } });
  await install(b);
  await rig.relay.reload();
  // The kernel spreads connections over both threads: each must serve the new certificate (the message is async: allow it a moment).
  await until(
    rig.relay,
    async () => {
      const seen = await Promise.all(
        Array.from({ length: 12 }, async () => {
          const s = tls.connect({ port: rig.port, host: '127.0.0.1', rejectUnauthorized: false });
          await new Promise((resolve, reject) => s.once('secureConnect', resolve).once('error', reject));
          const f = s.getPeerCertificate().fingerprint256;
          s.destroy();
          return f;
        }),
      );
      return seen.every((f) => f === b.fingerprint256);
    },
    'every connection served the renewed certificate',
    10_000,
  );
});
