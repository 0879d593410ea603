// A plain SMTP client over a raw socket, for asserting the sandbox's exact
// replies: each command returns the reply lines as received.

import net from 'node:net';
import tls from 'node:tls';

export class RawSmtp {
  socket: net.Socket | tls.TLSSocket;
  #buf = '';
  #lines: string[] = [];
  #waiters: Array<() => void> = [];
  #closed = false;
  readonly closedPromise: Promise<void>;
  #resolveClosed!: () => void;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.closedPromise = new Promise((r) => (this.#resolveClosed = r));
    this.#attach(socket);
  }

  static async connect(port: number, host = '127.0.0.1'): Promise<RawSmtp> {
    const socket = net.connect({ port, host });
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    return new RawSmtp(socket);
  }

  #attach(socket: net.Socket): void {
    socket.setEncoding('binary');
    socket.on('data', (d: string) => {
      this.#buf += d;
      let i;
      while ((i = this.#buf.indexOf('\r\n')) >= 0) {
        this.#lines.push(this.#buf.slice(0, i));
        this.#buf = this.#buf.slice(i + 2);
      }
      this.#wake();
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.#closed = true;
      this.#resolveClosed();
      this.#wake();
    });
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Reads one complete reply (all its lines); rejects if the connection closes first. */
  async read(): Promise<string[]> {
    for (;;) {
      const end = this.#lines.findIndex((l) => /^\d{3}( |$)/.test(l));
      if (end >= 0) return this.#lines.splice(0, end + 1);
      if (this.#closed) throw new Error(`connection closed (pending: ${JSON.stringify(this.#lines)})`);
      await new Promise<void>((r) => this.#waiters.push(r));
    }
  }

  /** Reads a reply and returns it as one string (lines joined with \n). */
  async readText(): Promise<string> {
    return (await this.read()).join('\n');
  }

  write(data: string | Buffer): void {
    this.socket.write(data);
  }

  /** Sends a command line and returns the reply as one string. */
  async cmd(line: string): Promise<string> {
    this.write(line + '\r\n');
    return this.readText();
  }

  /** After "220 2.0.0 SMTP server ready": the TLS handshake on the same socket. */
  async upgrade(options: tls.ConnectionOptions = {}): Promise<tls.TLSSocket> {
    const plain = this.socket;
    plain.removeAllListeners('data');
    plain.removeAllListeners('close');
    const secure = tls.connect({ socket: plain, servername: 'localhost', ...options });
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', resolve);
      secure.once('error', reject);
    });
    this.socket = secure;
    this.#buf = '';
    this.#lines = [];
    this.#attach(secure);
    return secure;
  }

  /** Waits until the server closes the connection (or the peer resets it). */
  async waitClosed(): Promise<void> {
    await this.closedPromise;
  }

  close(): void {
    this.socket.destroy();
  }
}

export function xoauth2(user: string, token: string): string {
  return Buffer.from(`user=${user}\x01auth=Bearer ${token}\x01\x01`).toString('base64');
}

/** Connects, reads the banner, EHLO, STARTTLS, EHLO again: ready for AUTH. */
export async function openSecure(port: number, ca: string): Promise<RawSmtp> {
  const c = await RawSmtp.connect(port);
  const banner = await c.readText();
  if (!banner.startsWith('220 ')) throw new Error(`unexpected banner: ${banner}`);
  await c.cmd('EHLO client.example');
  const tls = await c.cmd('STARTTLS');
  if (tls !== '220 2.0.0 SMTP server ready') throw new Error(`STARTTLS refused: ${tls}`);
  await c.upgrade({ ca });
  await c.cmd('EHLO client.example');
  return c;
}

/** openSecure + AUTH XOAUTH2; throws unless 235. */
export async function openAuthed(port: number, ca: string, user: string, token: string): Promise<RawSmtp> {
  const c = await openSecure(port, ca);
  const r = await c.cmd('AUTH XOAUTH2 ' + xoauth2(user, token));
  if (!r.startsWith('235 ')) throw new Error(`AUTH refused: ${r}`);
  return c;
}

/** MAIL, RCPT…, DATA and the message; returns the reply to the final dot. */
export async function sendMessage(c: RawSmtp, from: string, to: string[], message: string): Promise<string> {
  const mail = await c.cmd(`MAIL FROM:<${from}>`);
  if (!mail.startsWith('250 ')) return mail;
  for (const r of to) {
    const rr = await c.cmd(`RCPT TO:<${r}>`);
    if (!rr.startsWith('250 ')) return rr;
  }
  const data = await c.cmd('DATA');
  if (!data.startsWith('354 ')) return data;
  const body = message.replace(/\r?\n/g, '\r\n').replace(/^\./gm, '..');
  return c.cmd(body + (body.endsWith('\r\n') ? '' : '\r\n') + '.');
}

export function mime(from: string, to: string, subject: string, body = 'Hello from the test.', extra = ''): string {
  return `From: ${from}\r\nTo: ${to}\r\nSubject: ${subject}\r\n${extra}Date: Thu, 26 Nov 2026 06:00:00 +0000\r\n\r\n${body}\r\n`;
}
