// A deliberately small SMTP client for diagnosis: it walks the submission
// dialogue one step at a time (DNS, TCP, banner, EHLO, STARTTLS, EHLO, AUTH
// XOAUTH2, QUIT) and records what it saw, so doctor can say exactly which
// step failed. It never sends MAIL FROM; a real message is the send-test's job.
import dns from 'node:dns/promises';
import net from 'node:net';
import tls from 'node:tls';
import { parseSmtpReply, type SmtpReply } from '../errors/error.ts';

export type ProbeStage = 'dns' | 'tcp' | 'banner' | 'ehlo' | 'starttls' | 'tls' | 'ehlo-tls' | 'auth' | 'quit';

export interface ProbeFailure {
  stage: ProbeStage;
  /** dns/tcp/tls: the network layer; protocol: an unexpected reply; timeout: the deadline passed. */
  kind: 'dns' | 'tcp' | 'tls' | 'protocol' | 'timeout' | 'closed';
  message: string;
  reply?: SmtpReply;
}

export interface ProbeReport {
  host: string;
  port: number;
  addresses: string[];
  address?: string;
  banner?: string;
  /** EHLO keywords before and after STARTTLS, e.g. ["SIZE 157286400", "STARTTLS", ...]. */
  ehloBefore?: string[];
  ehloAfter?: string[];
  tlsVersion?: string;
  tlsCipher?: string;
  /** AUTH mechanisms offered after TLS. */
  authMechanisms?: string[];
  /** The reply to AUTH XOAUTH2, when a token was given. */
  authReply?: SmtpReply;
  failure?: ProbeFailure;
}

export interface ProbeOptions {
  host: string;
  port: number;
  /** PEM roots to trust (Node's roots plus the account's CA file). */
  ca?: string[] | undefined;
  /** Aborting it ends the probe with a 'timeout' failure. */
  signal?: AbortSignal | undefined;
  /** Name to greet with (EHLO). */
  clientName?: string;
  /** When given, AUTH XOAUTH2 is tried with this initial response (base64), then QUIT. */
  xoauth2?: string | undefined;
}

class ReplyReader {
  private buffer = '';
  private lines: string[] = [];
  private waiters: Array<{ resolve: (r: string) => void; reject: (e: Error) => void }> = [];
  private closedError: Error | undefined;
  private socket: net.Socket;
  private readonly onData = (chunk: Buffer) => {
    this.buffer += chunk.toString('latin1');
    let i: number;
    while ((i = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, i).replace(/\r$/, '');
      this.buffer = this.buffer.slice(i + 1);
      this.lines.push(line);
      if (/^\d{3}(?: |$)/.test(line)) {
        const reply = this.lines.join('\n');
        this.lines = [];
        const w = this.waiters.shift();
        if (w) w.resolve(reply);
        else this.pending.push(reply);
      }
    }
  };
  private readonly onClose = () => this.fail(new Error('the server closed the connection'));
  private readonly onError = (err: Error) => this.fail(err);
  private pending: string[] = [];

  constructor(socket: net.Socket) {
    this.socket = socket;
    this.attach(socket);
  }

  attach(socket: net.Socket): void {
    this.socket = socket;
    socket.on('data', this.onData);
    socket.on('close', this.onClose);
    socket.on('error', this.onError);
  }

  detach(): void {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onClose);
    this.socket.off('error', this.onError);
  }

  private fail(err: Error): void {
    this.closedError ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  next(): Promise<string> {
    const ready = this.pending.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    if (this.closedError) return Promise.reject(this.closedError);
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }
}

function ehloKeywords(raw: string): string[] {
  // First line is the greeting ("250-host Hello [ip]"); the rest are keywords.
  return raw
    .split('\n')
    .slice(1)
    .map((l) => l.replace(/^\d{3}[ -]/, '').trim())
    .filter(Boolean);
}

class ProbeAbort extends Error {}

/** Runs the probe; never throws: failures are in `report.failure`. */
export async function probeSmtp(options: ProbeOptions): Promise<ProbeReport> {
  const report: ProbeReport = { host: options.host, port: options.port, addresses: [] };
  let socket: net.Socket | undefined;
  let tlsSocket: tls.TLSSocket | undefined;
  let stage: ProbeStage = 'dns';
  const signal = options.signal;
  let abortReject: ((e: Error) => void) | undefined;
  const aborted = new Promise<never>((_, reject) => {
    abortReject = reject;
  });
  aborted.catch(() => undefined);
  const onAbort = () => abortReject?.(new ProbeAbort('timed out'));
  if (signal?.aborted) onAbort();
  signal?.addEventListener('abort', onAbort, { once: true });
  const race = <T>(p: Promise<T>): Promise<T> => Promise.race([p, aborted]);

  const fail = (kind: ProbeFailure['kind'], message: string, reply?: SmtpReply): ProbeReport => {
    report.failure = reply ? { stage, kind, message, reply } : { stage, kind, message };
    return report;
  };

  try {
    // DNS (Microsoft says: use the name, never an IP; an IP here is the sandbox or a test).
    if (net.isIP(options.host)) {
      report.addresses = [options.host];
    } else {
      try {
        const found = await race(dns.lookup(options.host, { all: true }));
        report.addresses = found.map((a) => a.address);
      } catch (err) {
        if (err instanceof ProbeAbort) throw err;
        return fail('dns', `${options.host} does not resolve (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
      }
    }

    stage = 'tcp';
    const address = report.addresses[0] ?? options.host;
    try {
      socket = await race(
        new Promise<net.Socket>((resolve, reject) => {
          const s = net.connect({ host: address, port: options.port });
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
          socket = s;
        }),
      );
      report.address = address;
    } catch (err) {
      if (err instanceof ProbeAbort) throw err;
      return fail('tcp', `cannot connect to ${address}:${options.port} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
    }

    const reader = new ReplyReader(socket);
    const command = async (line: string, cmd: string): Promise<SmtpReply> => {
      (tlsSocket ?? socket)!.write(line + '\r\n');
      const raw = await race(reader.next());
      const reply = parseSmtpReply(raw, cmd);
      if (!reply) throw new Error(`unreadable reply to ${cmd}: ${raw.slice(0, 200)}`);
      return reply;
    };

    try {
      stage = 'banner';
      const banner = parseSmtpReply(await race(reader.next()));
      report.banner = banner ? [banner.code, banner.text].join(' ') : undefined;
      if (!banner || banner.code !== 220) return fail('protocol', `unexpected greeting: ${report.banner ?? '(none)'}`, banner);

      stage = 'ehlo';
      const name = options.clientName ?? 'smtp365-doctor';
      (socket as net.Socket).write(`EHLO ${name}\r\n`);
      const ehloRaw = await race(reader.next());
      const ehlo = parseSmtpReply(ehloRaw, 'EHLO');
      if (!ehlo || ehlo.code !== 250) return fail('protocol', `EHLO refused: ${ehloRaw}`, ehlo);
      report.ehloBefore = ehloKeywords(ehloRaw);
      if (!report.ehloBefore.some((k) => k.toUpperCase() === 'STARTTLS')) return fail('protocol', 'the server does not offer STARTTLS');

      stage = 'starttls';
      const st = await command('STARTTLS', 'STARTTLS');
      if (st.code !== 220) return fail('protocol', `STARTTLS refused: ${st.code} ${st.text}`, st);

      stage = 'tls';
      reader.detach();
      const plain = socket;
      try {
        tlsSocket = await race(
          new Promise<tls.TLSSocket>((resolve, reject) => {
            const t = tls.connect({
              socket: plain,
              ...(net.isIP(options.host) ? {} : { servername: options.host }),
              ...(options.ca ? { ca: options.ca } : {}),
              minVersion: 'TLSv1.2',
            });
            tlsSocket = t;
            t.once('secureConnect', () => {
              t.off('error', reject);
              resolve(t);
            });
            t.once('error', reject);
          }),
        );
      } catch (err) {
        if (err instanceof ProbeAbort) throw err;
        const e = err as NodeJS.ErrnoException;
        return fail('tls', `TLS handshake failed: ${e.code ? `${e.code}: ` : ''}${e.message}`);
      }
      report.tlsVersion = tlsSocket.getProtocol() ?? undefined;
      report.tlsCipher = tlsSocket.getCipher()?.name;
      reader.attach(tlsSocket);

      stage = 'ehlo-tls';
      tlsSocket.write(`EHLO ${name}\r\n`);
      const ehlo2Raw = await race(reader.next());
      const ehlo2 = parseSmtpReply(ehlo2Raw, 'EHLO');
      if (!ehlo2 || ehlo2.code !== 250) return fail('protocol', `EHLO after STARTTLS refused: ${ehlo2Raw}`, ehlo2);
      report.ehloAfter = ehloKeywords(ehlo2Raw);
      const authLine = report.ehloAfter.find((k) => /^AUTH[ =]/i.test(k));
      report.authMechanisms = authLine ? authLine.slice(5).trim().split(/\s+/).map((m) => m.toUpperCase()) : [];

      if (options.xoauth2 !== undefined) {
        stage = 'auth';
        let reply = await command(`AUTH XOAUTH2 ${options.xoauth2}`, 'AUTH');
        // Servers that answer with a 334 error challenge expect an empty line before the final reply.
        if (reply.code === 334) reply = await command('', 'AUTH');
        report.authReply = reply;
      }

      stage = 'quit';
      try {
        await command('QUIT', 'QUIT');
      } catch {
        // The server may close without answering QUIT; the probe is finished either way.
      }
      return report;
    } catch (err) {
      if (err instanceof ProbeAbort) throw err;
      return fail('closed', (err as Error).message);
    }
  } catch (err) {
    if (err instanceof ProbeAbort) return fail('timeout', `no answer within the time limit (at ${stage})`);
    return fail('protocol', (err as Error).message);
  } finally {
    signal?.removeEventListener('abort', onAbort);
    tlsSocket?.destroy();
    socket?.destroy();
  }
}
