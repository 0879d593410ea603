// Connections to Microsoft for one mailbox, reused across messages and never
// more than `maxConnections` at once (Microsoft allows 3 concurrent
// submissions per mailbox and answers a 4th with 432 4.3.2). Each connection
// is nodemailer's SMTPConnection: STARTTLS required, TLS 1.2+, certificate
// verified, then XOAUTH2 through `authenticate`. Idle connections close after
// a while and never keep the process alive on their own.
import type { Socket } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { SMTPConnectionCustomAuthContext, SMTPConnectionOptions } from 'nodemailer/lib/smtp-connection/index.js';
import { Smtp365Error } from '../errors/error.ts';
import { installFastDataStream } from './data-stream.ts';
import type { EarlyConnection } from './early-connection.ts';

// Same bytes on the wire, a fraction of the CPU (data-stream.ts).
installFastDataStream();

export interface ConnectionSettings {
  host: string;
  port: number;
  tls: ConnectionOptions;
  /** EHLO name (default: nodemailer's, the machine's FQDN or [127.0.0.1]). */
  name?: string;
  connectionTimeoutMs: number;
  greetingTimeoutMs: number;
  socketTimeoutMs: number;
  /** nodemailer-style logger for the SMTP transcript (AUTH payloads are masked by nodemailer). */
  transcriptLogger?: SMTPConnectionOptions['logger'];
}

export interface PoolOptions {
  maxConnections: number;
  /** The mailbox (for nodemailer's log lines; the XOAUTH2 payload is built by `authenticate`). */
  authUser: string;
  settings: ConnectionSettings;
  /** Runs the XOAUTH2 exchange; returns when the token used expires (ms since epoch). */
  authenticate: (ctx: SMTPConnectionCustomAuthContext) => Promise<number>;
  /** Close a connection after it was idle this long (default 10 000 ms). */
  idleTimeoutMs?: number;
  /** Open a new connection after this many messages (default 100). */
  maxMessagesPerConnection?: number;
  /** After a 432 4.3.2 the pool stays smaller for this long (default 60 000 ms). */
  shrinkCooldownMs?: number;
  /** A connection already opened to settings.host:port: the first connection takes it over. */
  earlyConnection?: EarlyConnection;
}

export interface PooledConnection {
  readonly id: number;
  readonly smtp: SMTPConnection;
  messages: number;
  /** Expiry of the token this connection authenticated with (ms since epoch). */
  tokenExpiresOn: number;
  busy: boolean;
  dead: boolean;
  idleTimer?: NodeJS.Timeout;
}

export interface PoolStats {
  open: number;
  busy: number;
  opening: number;
  /** Most connections open (or opening) at the same time since creation. */
  peak: number;
  /** Connections opened since creation. */
  created: number;
  /** Current ceiling (lower than maxConnections for a while after 432 4.3.2). */
  limit: number;
  waiting: number;
}

/** Marks an error thrown from inside the auth handler so the original survives nodemailer's wrapping. */
export const ORIGINAL_ERROR = Symbol('smtp365.originalError');

export function wrapForNodemailer(err: Smtp365Error): Error {
  const carrier = new Error(err.message);
  (carrier as unknown as Record<symbol, unknown>)[ORIGINAL_ERROR] = err;
  return carrier;
}

export function unwrapOriginal(err: unknown): Smtp365Error | undefined {
  const o = err && typeof err === 'object' ? (err as Record<symbol, unknown>)[ORIGINAL_ERROR] : undefined;
  return o instanceof Smtp365Error ? o : undefined;
}

function socketOf(c: PooledConnection): Socket | undefined {
  const s = c.smtp._socket;
  return s ? s : undefined;
}

export class ConnectionPool {
  readonly maxConnections: number;
  private readonly opts: PoolOptions;
  private readonly connections: PooledConnection[] = [];
  private opening = 0;
  private peak = 0;
  private created = 0;
  private limit: number;
  private restoreTimer: NodeJS.Timeout | undefined;
  private waiters: Array<{ wake: () => void }> = [];
  private closed = false;
  private early: EarlyConnection | undefined;

  constructor(opts: PoolOptions) {
    this.opts = opts;
    const e = opts.earlyConnection;
    if (e && e.host === opts.settings.host && e.port === opts.settings.port) this.early = e;
    else e?.close();
    this.maxConnections = opts.maxConnections;
    this.limit = opts.maxConnections;
  }

  stats(): PoolStats {
    return {
      open: this.connections.length,
      busy: this.connections.filter((c) => c.busy).length,
      opening: this.opening,
      peak: this.peak,
      created: this.created,
      limit: this.limit,
      waiting: this.waiters.length,
    };
  }

  /** A connection ready for MAIL FROM, reused or newly opened; waits while all are busy. */
  async acquire(signal?: AbortSignal): Promise<PooledConnection> {
    for (;;) {
      if (this.closed) throw new Smtp365Error('INTERNAL', 'The mailer is closed');
      signal?.throwIfAborted();
      const idle = this.connections.find((c) => !c.busy);
      if (idle) {
        // Over the (possibly shrunk) limit: close idle connections instead of reusing them.
        if (idle.dead || !this.reusable(idle) || this.connections.length + this.opening > this.limit) {
          this.destroy(idle);
          continue;
        }
        this.take(idle);
        return idle;
      }
      if (this.connections.length + this.opening < this.limit) {
        this.opening++;
        this.peak = Math.max(this.peak, this.connections.length + this.opening);
        try {
          const c = await this.open();
          if (this.closed) {
            c.smtp.close();
            throw new Smtp365Error('INTERNAL', 'The mailer is closed');
          }
          this.connections.push(c);
          this.take(c);
          return c;
        } finally {
          this.opening--;
          this.notify();
        }
      }
      await this.wait(signal);
    }
  }

  /** Gives a connection back; `healthy` false closes it. */
  release(c: PooledConnection, healthy: boolean): void {
    c.busy = false;
    if (!healthy || c.dead || this.closed || !this.reusable(c)) {
      this.destroy(c);
      return;
    }
    socketOf(c)?.unref();
    const idleMs = this.opts.idleTimeoutMs ?? 10_000;
    c.idleTimer = setTimeout(() => {
      if (!c.busy) this.destroy(c, true);
    }, idleMs);
    c.idleTimer.unref();
    this.notify();
  }

  /** Closes a connection (QUIT when `polite`), freeing its slot. */
  destroy(c: PooledConnection, polite = false): void {
    clearTimeout(c.idleTimer);
    const i = this.connections.indexOf(c);
    if (i >= 0) this.connections.splice(i, 1);
    if (!c.dead) {
      c.dead = true;
      try {
        if (polite) c.smtp.quit();
        else c.smtp.close();
      } catch {
        // already gone
      }
    }
    this.notify();
  }

  /** TLS options for connections opened from now on (the CA file is read asynchronously). */
  setTls(tls: ConnectionOptions): void {
    this.opts.settings.tls = tls;
  }

  /** After 432 4.3.2: someone else uses the mailbox too, so use one connection fewer for a while. */
  shrink(): void {
    const open = this.connections.length + this.opening;
    this.limit = Math.max(1, Math.min(this.limit, open) - 1);
    clearTimeout(this.restoreTimer);
    this.restoreTimer = setTimeout(() => {
      this.limit = this.maxConnections;
      this.notify();
    }, this.opts.shrinkCooldownMs ?? 60_000);
    this.restoreTimer.unref();
  }

  /** Resets the session after a refused transaction so the connection can be reused. */
  reset(c: PooledConnection): Promise<boolean> {
    if (c.dead) return Promise.resolve(false);
    return new Promise((resolve) => c.smtp.reset((err) => resolve(!err)));
  }

  async close(): Promise<void> {
    this.closed = true;
    this.early?.close();
    this.early = undefined;
    clearTimeout(this.restoreTimer);
    for (const w of this.waiters.splice(0)) w.wake();
    const closing = this.connections.map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.dead) return resolve();
          // Idle sockets are unref'd; hold the process until the goodbye is done
          // (a caller awaiting close() must not find the event loop empty).
          socketOf(c)?.ref();
          const t = setTimeout(resolve, 2_000);
          c.smtp.once('end', () => {
            clearTimeout(t);
            resolve();
          });
          this.destroy(c, !c.busy);
        }),
    );
    await Promise.all(closing);
  }

  private reusable(c: PooledConnection): boolean {
    return c.messages < (this.opts.maxMessagesPerConnection ?? 100) && c.tokenExpiresOn > Date.now() + 5_000;
  }

  private take(c: PooledConnection): void {
    clearTimeout(c.idleTimer);
    c.idleTimer = undefined;
    c.busy = true;
    socketOf(c)?.ref();
  }

  private notify(): void {
    const w = this.waiters.shift();
    w?.wake();
  }

  private wait(signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const entry = {
        wake: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiters.indexOf(entry);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(entry);
    });
  }

  private async open(): Promise<PooledConnection> {
    const s = this.opts.settings;
    const early = this.early;
    this.early = undefined;
    const socket = early ? await early.take(s.connectionTimeoutMs) : undefined;
    let tokenExpiresOn = 0;
    const smtp = new SMTPConnection({
      ...(socket ? { connection: socket } : {}),
      host: s.host,
      port: s.port,
      secure: false,
      requireTLS: true,
      tls: s.tls,
      ...(s.name ? { name: s.name } : {}),
      connectionTimeout: s.connectionTimeoutMs,
      greetingTimeout: s.greetingTimeoutMs,
      socketTimeout: s.socketTimeoutMs,
      ...(s.transcriptLogger ? { logger: s.transcriptLogger, transactionLog: true } : { logger: false }),
      customAuth: {
        XOAUTH2: async (ctx) => {
          tokenExpiresOn = await this.opts.authenticate(ctx);
        },
      },
    });
    // An early connection that failed: nodemailer connects itself, within the deadline counted from the first attempt.
    if (early && !socket) (smtp as unknown as { _connectStartedAt?: number })._connectStartedAt = early.startedAt;
    const c: PooledConnection = { id: ++this.created, smtp, messages: 0, tokenExpiresOn: 0, busy: false, dead: false };
    // A connection reports trouble as an 'error' event; without a listener it would crash the process.
    smtp.on('error', () => {
      c.dead = true;
    });
    smtp.on('end', () => {
      c.dead = true;
      if (!c.busy) this.destroy(c);
    });
    return new Promise<PooledConnection>((resolve, reject) => {
      let settled = false;
      const fail = (err: unknown) => {
        if (settled) return;
        settled = true;
        c.dead = true;
        try {
          smtp.close();
        } catch {
          // ignore
        }
        reject(err);
      };
      smtp.once('error', fail);
      smtp.once('end', () => fail(Object.assign(new Error('Connection closed during setup'), { code: 'ECONNECTION' })));
      smtp.connect((err) => {
        if (err) return fail(err);
        // `oauth2` only tells nodemailer that XOAUTH2 can run; the exchange itself is our customAuth handler.
        smtp.login({ user: this.opts.authUser, method: 'XOAUTH2', oauth2: {} as never }, (loginErr) => {
          if (loginErr) return fail(loginErr);
          if (settled) return;
          settled = true;
          smtp.removeListener('error', fail);
          c.tokenExpiresOn = tokenExpiresOn;
          resolve(c);
        });
      });
    });
  }
}
