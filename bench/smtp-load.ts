// The benchmarks' SMTP load generator: a minimal client (one message at a
// time per connection, every reply checked), run as a process of its own:
//   node bench/smtp-load.ts PORT CLIENTS TOTAL FROM [USER PASS]
// BENCH_RECONNECT=1: a new connection (and AUTH) per message, as a printer does.
// prints {"seconds": …, "startedAt": epoch ms} from the first MAIL FROM to the last 250.
import net from 'node:net';

const KB10 = 'x'.repeat(76) + '\r\n';

export function body10k(subject: string, from: string): string {
  return `From: ${from}\r\nTo: r@example.com\r\nSubject: ${subject}\r\n\r\n` + KB10.repeat(Math.ceil(10_240 / KB10.length));
}

export class Client {
  private buf = '';
  private waiters: Array<(line: string) => void> = [];
  private readonly sock: net.Socket;
  private constructor(sock: net.Socket) {
    this.sock = sock;
    sock.setEncoding('latin1');
    sock.on('data', (d: string) => {
      this.buf += d;
      let i;
      while ((i = this.buf.indexOf('\r\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 2);
        if (/^\d{3} /.test(line)) this.waiters.shift()?.(line);
      }
    });
    sock.on('error', () => undefined);
  }
  static async open(port: number, auth?: { user: string; pass: string }): Promise<Client> {
    const sock = net.connect({ port, host: '127.0.0.1' });
    await new Promise<void>((res, rej) => sock.once('connect', res).once('error', rej));
    const c = new Client(sock);
    await c.expect(c.reply(), '220');
    await c.cmd('EHLO bench.example', '250');
    if (auth) await c.cmd(`AUTH PLAIN ${Buffer.from(`\0${auth.user}\0${auth.pass}`).toString('base64')}`, '235');
    return c;
  }
  private reply(): Promise<string> {
    return new Promise((r) => this.waiters.push(r));
  }
  private async expect(p: Promise<string>, code: string): Promise<string> {
    const line = await p;
    if (!line.startsWith(code)) throw new Error(`expected ${code}, got ${line}`);
    return line;
  }
  cmd(line: string, code: string): Promise<string> {
    const p = this.reply();
    this.sock.write(line + '\r\n');
    return this.expect(p, code);
  }
  async send(from: string, to: string, message: string): Promise<void> {
    await this.cmd(`MAIL FROM:<${from}>`, '250');
    await this.cmd(`RCPT TO:<${to}>`, '250');
    await this.cmd('DATA', '354');
    await this.cmd(message + '.', '250');
  }
  close(): void {
    this.sock.end('QUIT\r\n');
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [port, clients, total, from, user, pass] = process.argv.slice(2);
  const auth = user && pass ? { user, pass } : undefined;
  const conns = await Promise.all(Array.from({ length: Number(clients) }, () => Client.open(Number(port), auth)));
  const n = Number(total);
  let next = 0;
  const startedAt = performance.timeOrigin + performance.now();
  const start = process.hrtime.bigint();
  const reconnect = process.env.BENCH_RECONNECT === '1';
  await Promise.all(conns.map(async (first, k) => {
    let c = first;
    let fresh = true;
    while (next < n) {
      const i = next++;
      if (reconnect && !fresh) c = await Client.open(Number(port), auth);
      fresh = false;
      await c.send(from!, 'r@example.com', body10k(`m-${k}-${i}`, from!));
      if (reconnect) c.close();
    }
  }));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (process.env.BENCH_RECONNECT !== '1') for (const c of conns) c.close();
  process.stdout.write(JSON.stringify({ seconds, startedAt }) + '\n');
}
