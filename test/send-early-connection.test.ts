// The connection a one-message command opens before the rest loads
// (src/send/early-connection.ts): handed over with what the server already
// sent, never handed over when it failed, and a failed one changes nothing
// about the error the mailer reports.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { connectEarly } from '../src/send/early-connection.ts';
import { createMailer, type Smtp365Error } from '../src/index.ts';
import { sendSandbox, MEGAN } from './send-support.ts';

async function server(t: { after: (fn: () => unknown) => void }, onConnection: (s: net.Socket) => void): Promise<number> {
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
    onConnection(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise((resolve) => srv.close(resolve));
  });
  return (srv.address() as net.AddressInfo).port;
}

/** A port nothing listens on (bound, then released). */
async function closedPort(): Promise<number> {
  const srv = net.createServer();
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

test('the socket is handed over once, with the greeting the server sent before', async (t) => {
  const port = await server(t, (s) => s.write('220 hello\r\n'));
  const early = connectEarly('127.0.0.1', port);
  assert.equal(early.host, '127.0.0.1');
  assert.equal(early.port, port);
  await new Promise((resolve) => setTimeout(resolve, 50));
  const socket = await early.take(5_000);
  assert.ok(socket, 'a connected socket');
  t.after(() => socket.destroy());
  const [chunk] = (await once(socket, 'data')) as [Buffer];
  assert.equal(chunk.toString(), '220 hello\r\n');
  assert.equal(await early.take(5_000), undefined, 'only once');
  early.close(); // after the hand-over: leaves the socket alone
  assert.equal(socket.destroyed, false);
});

test('a refused or closed early connection is not handed over', async (t) => {
  const refused = connectEarly('127.0.0.1', await closedPort());
  assert.equal(await refused.take(5_000), undefined);

  let accepted = 0;
  const port = await server(t, () => accepted++);
  const dropped = connectEarly('127.0.0.1', port);
  dropped.close();
  assert.equal(await dropped.take(5_000), undefined);
});

test('the mailer sends over an early connection; one to another host:port is closed unused', async (t) => {
  const s = await sendSandbox(t);
  const account = s.account();
  const early = connectEarly(account.smtpHost, account.smtpPort);
  const mailer = createMailer({ account, tokenProvider: s.provider(account), retry: false, earlyConnection: early });
  t.after(() => mailer.close());
  const r = await mailer.send({ to: MEGAN, subject: 'early', text: 'x' });
  assert.match(r.response, /^250 /);
  assert.equal(mailer.stats().connections.created, 1, 'no second connection was opened');
  assert.equal(await early.take(1_000), undefined, 'taken by the mailer');

  let accepted = 0;
  const other = await server(t, () => accepted++);
  const elsewhere = connectEarly('127.0.0.1', other);
  const m2 = createMailer({ account, tokenProvider: s.provider(account), retry: false, earlyConnection: elsewhere });
  t.after(() => m2.close());
  assert.match((await m2.send({ to: MEGAN, subject: 'early 2', text: 'x' })).response, /^250 /);
  assert.equal(await elsewhere.take(1_000), undefined, 'closed, not used');
  assert.equal(s.messages().length, 2);
});

test('a failed early connection: the mailer connects itself and reports the usual error', async () => {
  const port = await closedPort();
  const account = {
    name: 'x', cloud: 'custom' as const, authorityHost: 'https://127.0.0.1:9', tenant: 't.example', clientId: '00000000-0000-0000-0000-000000000000',
    user: 'a@b.example', flow: 'client-secret' as const, clientSecret: 's', smtpHost: '127.0.0.1', smtpPort: port,
    smtpResource: 'https://outlook.office.com', graphEndpoint: 'https://graph.microsoft.com',
  };
  const send = async (early: boolean) => {
    const mailer = createMailer({
      account,
      tokenProvider: { getAccessToken: () => Promise.reject(new Error('not reached')) },
      retry: false,
      ...(early ? { earlyConnection: connectEarly('127.0.0.1', port) } : {}),
    });
    try {
      await mailer.send({ to: MEGAN, subject: 's', text: 'x' });
      assert.fail('sent to a closed port');
    } catch (err) {
      return err as Smtp365Error;
    } finally {
      await mailer.close();
    }
  };
  const plain = await send(false);
  const withEarly = await send(true);
  assert.equal(withEarly.code, plain.code);
  assert.equal(withEarly.code, 'SMTP_CONNECTION');
  assert.equal(withEarly.message, plain.message);
  assert.equal(withEarly.transient, plain.transient);
});
