// The SMTP probe against small loopback servers that misbehave the way
// middleboxes do (no STARTTLS, a wrong greeting, a connection dropped), and
// the doctor findings they map to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { probeSmtp } from './smtp-probe.ts';
import { decodeJwtPayload, tokenUser, tokenScopes, tokenAudiences } from './jwt.ts';
import { formatResult } from './render.ts';
import type { CheckResult } from './types.ts';

/** A line-based fake server: `reply(line)` answers each command (the greeting is `greeting`). */
async function fakeServer(t: { after: (fn: () => unknown) => void }, greeting: string | null, reply: (line: string) => string | null): Promise<number> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => undefined);
    if (greeting === null) {
      s.destroy();
      return;
    }
    s.write(greeting + '\r\n');
    let buf = '';
    s.on('data', (c: Buffer) => {
      buf += c.toString();
      let i: number;
      while ((i = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const r = reply(line);
        if (r === null) s.end();
        else s.write(r + '\r\n');
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return (server.address() as net.AddressInfo).port;
}

test('a server whose EHLO lacks STARTTLS (SMTP inspection) stops the probe at EHLO, with the keywords seen', async (t) => {
  const port = await fakeServer(t, '220 mx.example ESMTP', (line) =>
    line.startsWith('EHLO') ? '250-mx.example Hello\r\n250-SIZE 1000\r\n250 AUTH LOGIN' : line === 'QUIT' ? '221 bye' : '502 no',
  );
  const r = await probeSmtp({ host: '127.0.0.1', port });
  assert.equal(r.failure?.stage, 'ehlo');
  assert.equal(r.failure?.kind, 'protocol');
  assert.equal(r.failure?.reply, undefined);
  assert.deepEqual(r.ehloBefore, ['SIZE 1000', 'AUTH LOGIN']);
  assert.equal(r.banner, '220 mx.example ESMTP');
});

test('a greeting other than 220 is reported with the reply', async (t) => {
  const port = await fakeServer(t, '554 5.7.1 no service for you', () => null);
  const r = await probeSmtp({ host: '127.0.0.1', port });
  assert.equal(r.failure?.stage, 'banner');
  assert.equal(r.failure?.reply?.code, 554);
});

test('a connection dropped at once, and a refused port, are network failures', async (t) => {
  const port = await fakeServer(t, null, () => null);
  const dropped = await probeSmtp({ host: '127.0.0.1', port });
  assert.equal(dropped.failure?.kind, 'closed');
  const closed = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
  const refused = await probeSmtp({ host: '127.0.0.1', port: closed });
  assert.equal(refused.failure?.kind, 'tcp');
  assert.match(refused.failure?.message ?? '', /ECONNREFUSED/);
});

test('an aborted probe ends as a timeout and closes its socket', async (t) => {
  const port = await fakeServer(t, '220 slow', () => null);
  const ac = new AbortController();
  const p = probeSmtp({ host: '127.0.0.1', port, signal: ac.signal });
  ac.abort();
  const r = await p;
  assert.equal(r.failure?.kind, 'timeout');
});

test('JWT claims are read without verification; non-JWTs are undefined', () => {
  const payload = { aud: 'https://outlook.office.com', scp: 'SMTP.Send openid', upn: 'a@b.c' };
  const jwt = `eyJhbGciOiJub25lIn0.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
  const c = decodeJwtPayload(jwt)!;
  assert.deepEqual(tokenScopes(c), ['SMTP.Send', 'openid']);
  assert.deepEqual(tokenAudiences(c), ['https://outlook.office.com']);
  assert.equal(tokenUser(c), 'a@b.c');
  assert.equal(decodeJwtPayload('EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA'), undefined);
  assert.equal(decodeJwtPayload('a.!!!.c'), undefined);
});

test('a failed check renders its problem, guide step, fix, portal and PowerShell; secrets are masked', () => {
  const r: CheckResult = {
    id: 'smtp-auth', number: 9, title: 'XOAUTH2 accepted', status: 'failed',
    detail: 'AUTH XOAUTH2 user=a@b.c: 535 5.7.139 … (token eyJabcdefgh.eyJabcdefgh.sig)', problem: 'SMTP AUTH is disabled for the mailbox a@b.c',
    cause: 'why', step: 'guide, last section', fix: ['do this'], powershell: ['Set-CASMailbox -Identity a@b.c -SmtpClientAuthenticationDisabled $false'],
    portal: 'admin center › here', code: 'SMTP_AUTH_DISABLED_MAILBOX', timedOut: false, durationMs: 12,
  };
  const text = formatResult(r, { color: false });
  assert.equal(
    text,
    [
      '✖  9. XOAUTH2 accepted [failed] 12 ms',
      '       SMTP AUTH is disabled for the mailbox a@b.c',
      '       AUTH XOAUTH2 user=a@b.c: 535 5.7.139 … (token [redacted-jwt])',
      '       Why: why',
      '       Guide: guide, last section',
      '       Fix: do this',
      '       Portal: admin center › here',
      '       PowerShell:',
      '         Set-CASMailbox -Identity a@b.c -SmtpClientAuthenticationDisabled $false',
    ].join('\n'),
  );
  assert.equal(formatResult({ ...r, status: 'failed', timedOut: true }, { color: false }).split('\n')[0], '✖  9. XOAUTH2 accepted [timed out] 12 ms');
});
