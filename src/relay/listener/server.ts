// The SMTP side devices talk to. One smtp-server per configured listener
// (STARTTLS, implicit TLS or plain), all feeding the same queue. A message
// is answered 250 only after Queue.accept() put it on stable storage.
import os from 'node:os';
import type { AddressInfo } from 'node:net';
import { SMTPServer, type SMTPServerAddress, type SMTPServerAuthentication, type SMTPServerDataStream, type SMTPServerSession } from 'smtp-server';
import { isSmtp365Error } from '../../errors/error.ts';
import type { RelayConfig } from '../config.ts';
import { isLoopback, matchNetwork, normalizeIp } from '../config.ts';
import type { Logger } from '../log.ts';
import type { Queue } from '../queue/queue.ts';
import type { QueueEntry } from '../queue/types.ts';
import type { RelayUser } from '../users.ts';
import { PasswordCheck } from './password-check.ts';
import { AuthLimiter } from './auth-limit.ts';
import { allowedSenders, decideFromHeader, decideSender, type Route } from './policy.ts';
import { addressProblem } from '../../send/validate.ts';
import { FromHeaderReader, FromHeaderRewriter } from './header-rewrite.ts';
import { installGreetPause } from './greet-pause.ts';
import type { TlsMaterial } from './tls.ts';

export interface ListenerDeps {
  config: () => RelayConfig;
  queue: Queue;
  users: () => Map<string, RelayUser>;
  /** The mailbox of an account (for sender rewrite), undefined when the account is unknown. */
  mailboxOf: (account: string) => string | undefined;
  /** The account used when a user or network names none. */
  defaultAccount: () => string;
  tls: TlsMaterial;
  log: Logger;
  onAccepted?: (entry: QueueEntry) => void;
  /** A failed AUTH from this address (the relay counts them across listener threads). */
  onAuthFailure?: (ip: string, user: string) => void;
  /** A successful AUTH: this address's failures are forgiven. */
  onAuthSuccess?: (ip: string, user: string) => void;
  /** A counter in `stats` changed. */
  onStats?: () => void;
}

export interface StartOptions {
  /** Ports to bind instead of the configured ones (another thread already chose them for port 0). */
  ports?: number[];
  /** SO_REUSEPORT: several listener threads share each port; the kernel spreads connections. */
  reusePort?: boolean;
}

export interface BoundListener {
  host: string;
  port: number;
  tls: 'starttls' | 'implicit' | 'none';
}

interface SessionState {
  route?: Route;
  from?: string;
  originalFrom?: string;
  inData?: boolean;
}

/** Passwords cross the network only inside TLS, unless the peer is this host or the admin said otherwise. */
export function authAllowedOn(secure: boolean, peer: string, allowPlaintextAuth: boolean): boolean {
  return secure || isLoopback(peer) || allowPlaintextAuth;
}

function smtpError(code: number, message: string): Error & { responseCode: number } {
  return Object.assign(new Error(message), { responseCode: code });
}

export class RelayListener {
  private readonly deps: ListenerDeps;
  private readonly servers: Array<{ server: SMTPServer; spec: RelayConfig['listen'][number] }> = [];
  private readonly state = new WeakMap<SMTPServerSession, SessionState>();
  private authLimiter: AuthLimiter;
  /** scrypt checks, a few at a time, successes remembered for limits.authCache. */
  readonly passwords: PasswordCheck;
  private stopping = false;
  bound: BoundListener[] = [];
  /** Counters for status and metrics. */
  readonly stats = { accepted: 0, rejected: 0, authFailures: 0, authOk: 0, authRemembered: 0, connections: 0 };

  /** The certificate in use (a SIGHUP may bring a renewed one: updateTls). */
  private tls: TlsMaterial;

  constructor(deps: ListenerDeps) {
    this.deps = deps;
    this.tls = deps.tls;
    const l = deps.config().limits;
    this.authLimiter = new AuthLimiter(l.authFailures, l.authFailureWindow);
    this.passwords = new PasswordCheck({ ttlMs: l.authCache });
  }

  private count(key: keyof RelayListener['stats']): void {
    this.stats[key]++;
    this.deps.onStats?.();
  }

  /** A renewed certificate: new TLS sessions (STARTTLS and implicit) use it; those already open keep theirs. */
  updateTls(tls: TlsMaterial): void {
    this.tls = tls;
    for (const { server, spec } of this.servers) if (spec.tls !== 'none') server.updateSecureContext({ key: tls.key, cert: tls.cert });
  }

  /** Refuse `ip` until `until` (ms): its failures, counted over all listener threads, reached the limit. */
  blockAddress(ip: string, until: number): void {
    this.authLimiter.block(ip, until);
  }

  private st(session: SMTPServerSession): SessionState {
    let s = this.state.get(session);
    if (!s) {
      s = {};
      this.state.set(session, s);
    }
    return s;
  }

  async start(opts: StartOptions = {}): Promise<BoundListener[]> {
    const cfg = this.deps.config();
    for (const [i, spec] of cfg.listen.entries()) {
      const server = this.createServer(spec);
      const port = opts.ports?.[i] ?? spec.address.port;
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port, host: spec.address.host, ...(opts.reusePort ? { reusePort: true } : {}) }, () => {
          server.removeListener('error', reject);
          resolve();
        });
      });
      server.on('error', (err) => this.deps.log.warn('smtp connection error', { error: (err as Error).message }));
      const addr = (server as unknown as { server: { address(): AddressInfo } }).server.address();
      this.servers.push({ server, spec });
      this.bound.push({ host: addr.address, port: addr.port, tls: spec.tls });
    }
    return this.bound;
  }

  private createServer(spec: RelayConfig['listen'][number]): SMTPServer {
    const cfg = this.deps.config();
    const log = this.deps.log;
    installGreetPause();
    const options = {
      name: cfg.hostname ?? os.hostname(),
      banner: 'smtp365 relay',
      secure: spec.tls === 'implicit',
      key: this.tls.key,
      cert: this.tls.cert,
      minVersion: 'TLSv1.2',
      hideSTARTTLS: spec.tls === 'none',
      disabledCommands: spec.tls === 'none' ? ['STARTTLS'] : [],
      authMethods: ['PLAIN', 'LOGIN'],
      authOptional: true,
      // Enforced per peer in onAuth: loopback may, others only over TLS unless configured.
      allowInsecureAuth: true,
      size: cfg.limits.maxMessageSize,
      maxClients: cfg.limits.maxClients,
      socketTimeout: cfg.limits.socketTimeout,
      closeTimeout: 30_000,
      disableReverseLookup: true,
      logger: false,
      onConnect: (session, cb) => {
        this.count('connections');
        log.debug('connection', { client: normalizeIp(session.remoteAddress), listener: `${spec.address.host}:${spec.address.port}`, tls: spec.tls, session: session.id });
        if (this.stopping) return cb(smtpError(421, '4.3.2 Service shutting down, try again later'));
        if (this.authLimiter.blocked(session.remoteAddress)) {
          log.warn('refused connection: too many failed AUTH attempts', { client: session.remoteAddress });
          return cb(smtpError(421, '4.7.0 Too many failed authentication attempts, try again later'));
        }
        cb();
      },
      onAuth: (auth, session, cb) => {
        this.onAuth(auth, session).then((r) => cb(null, r), (err: Error) => cb(err));
      },
      onMailFrom: (address, session, cb) => {
        try {
          this.onMailFrom(address, session);
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
      onRcptTo: (address, session, cb) => {
        try {
          this.onRcptTo(address, session);
          cb();
        } catch (err) {
          cb(err as Error);
        }
      },
      onData: (stream, session, cb) => {
        this.onData(stream, session).then((msg) => cb(null, msg), (err: Error) => cb(err));
      },
      onSecure: (_socket, session, cb) => {
        log.debug('TLS established', { client: normalizeIp(session.remoteAddress), session: session.id });
        cb();
      },
      onClose: (session) => {
        // smtp-server numbers the transaction in progress from 1: those ended (queued or refused at the end of DATA) are one fewer.
        log.debug('connection closed', { client: normalizeIp(session.remoteAddress), session: session.id, messages: Math.max(0, (session.transaction ?? 1) - 1) });
        this.state.delete(session);
      },
    } satisfies ConstructorParameters<typeof SMTPServer>[0];
    return new SMTPServer({ ...options, smtp365GreetPauseMs: cfg.limits.greetPause } as typeof options);
  }

  private async onAuth(auth: SMTPServerAuthentication, session: SMTPServerSession): Promise<{ user: string }> {
    const cfg = this.deps.config();
    const ip = session.remoteAddress;
    if (!authAllowedOn(Boolean(session.secure), ip, cfg.allowPlaintextAuth)) {
      throw smtpError(538, '5.7.11 Encryption required for requested authentication mechanism: use STARTTLS');
    }
    if (this.authLimiter.blocked(ip)) {
      throw smtpError(454, '4.7.0 Too many failed authentication attempts, try again later');
    }
    const name = auth.username ?? '';
    const user = this.deps.users().get(name);
    this.passwords.setTtl(cfg.limits.authCache);
    let ok: boolean;
    let remembered: boolean;
    try {
      ({ ok, remembered } = await this.passwords.authenticate(name, auth.password ?? '', user?.passwordHash));
    } catch (err) {
      // Too busy, or the check itself failed: not a wrong password (535 makes devices give up), try again later.
      this.deps.log.warn('relay AUTH could not be checked now', { client: normalizeIp(ip), user: name, error: (err as Error).message });
      throw smtpError(454, '4.7.0 Temporary authentication failure, try again later');
    }
    if (!ok || !user) {
      this.count('authFailures');
      const n = this.authLimiter.fail(ip, name);
      this.deps.onAuthFailure?.(ip, name);
      this.deps.log.warn('relay AUTH failed', { client: normalizeIp(ip), user: name, failures: n });
      throw smtpError(535, '5.7.8 Authentication credentials invalid');
    }
    this.authLimiter.succeed(ip, name);
    this.deps.onAuthSuccess?.(ip, name);
    // remembered: answered from limits.authCache (or by a check made for another connection at the same time), no scrypt of its own.
    if (remembered) this.stats.authRemembered++;
    this.count('authOk');
    this.deps.log.debug('relay AUTH ok', { client: normalizeIp(ip), user: name, method: auth.method, session: session.id, remembered });
    return { user: name };
  }

  private route(session: SMTPServerSession): Route | undefined {
    const cfg = this.deps.config();
    const def = this.deps.defaultAccount();
    if (session.user) {
      const u = this.deps.users().get(String(session.user));
      if (!u) return undefined; // removed since AUTH (reload)
      return { via: `user ${u.name}`, account: u.account ?? def, policy: u };
    }
    const net = matchNetwork(cfg.allow, session.remoteAddress);
    if (net) return { via: `network ${net.cidr}`, account: net.account ?? def, policy: net };
    return undefined;
  }

  private onMailFrom(address: SMTPServerAddress, session: SMTPServerSession): void {
    if (this.stopping) throw smtpError(421, '4.3.2 Service shutting down, try again later');
    // A new transaction: nothing of the previous one carries over, even if this MAIL is refused.
    const prev = this.st(session);
    delete prev.route;
    delete prev.from;
    delete prev.originalFrom;
    const route = this.route(session);
    if (!route) {
      this.count('rejected');
      this.deps.log.info('refused: not authenticated and not from an allowed network', { client: normalizeIp(session.remoteAddress), from: address.address });
      throw smtpError(530, '5.7.0 Authentication required');
    }
    const decision = decideSender(route, address.address ?? '', this.deps.mailboxOf(route.account));
    if (!decision.ok) {
      this.count('rejected');
      this.deps.log.info('refused sender at MAIL FROM', { client: normalizeIp(session.remoteAddress), via: route.via, from: address.address, reply: `${decision.code} ${decision.message}` });
      throw smtpError(decision.code, decision.message);
    }
    this.deps.log.debug('MAIL FROM accepted', { client: normalizeIp(session.remoteAddress), session: session.id, via: route.via, account: route.account, from: address.address, ...(decision.originalFrom !== undefined ? { rewrittenTo: decision.from } : {}) });
    const s = this.st(session);
    s.route = route;
    s.from = decision.from;
    if (decision.originalFrom !== undefined) s.originalFrom = decision.originalFrom;
    else delete s.originalFrom;
  }

  private onRcptTo(address: SMTPServerAddress, session: SMTPServerSession): void {
    const s = this.st(session);
    // Checked again here: never relay for a session that has no route.
    if (!s.route) throw smtpError(530, '5.7.0 Authentication required');
    const to = address.address ?? '';
    const problem = addressProblem(to);
    if (problem) throw smtpError(501, `5.1.3 Bad recipient address syntax <${to}>: ${problem}`);
    if (session.envelope.rcptTo.length >= this.deps.config().limits.maxRecipients) {
      throw smtpError(452, '4.5.3 Too many recipients');
    }
    this.deps.log.debug('RCPT TO accepted', { session: session.id, to });
  }

  private async onData(stream: SMTPServerDataStream, session: SMTPServerSession): Promise<string> {
    const s = this.st(session);
    if (!s.route || s.from === undefined) throw smtpError(503, '5.5.1 Bad sequence of commands');
    const cfg = this.deps.config();
    s.inData = true;
    const mailbox = this.deps.mailboxOf(s.route.account);
    const policy = s.route.policy;
    const route = s.route;
    // With rewriting, a From header that is not allowed becomes the mailbox; without, it is refused at the end of DATA.
    const reader = policy.rewriteSender && mailbox ? undefined : new FromHeaderReader();
    const filters = reader
      ? [reader]
      : [new FromHeaderRewriter(mailbox!, (addr) => decideSender({ ...route, policy: { ...policy, rewriteSender: false, senders: allowedSenders(policy, mailbox) } }, addr, mailbox).ok)];
    const verify = () => {
      const refusal = reader && decideFromHeader(route, reader.from, mailbox);
      if (refusal) throw smtpError(550, refusal);
    };
    try {
      const entry = await this.deps.queue.accept(stream, {
        filters,
        verify,
        from: s.from,
        ...(s.originalFrom !== undefined ? { originalFrom: s.originalFrom } : {}),
        recipients: session.envelope.rcptTo.map((r) => r.address),
        account: s.route.account,
        maxSize: cfg.limits.maxMessageSize,
        client: {
          address: normalizeIp(session.remoteAddress),
          ...(session.user ? { user: String(session.user) } : {}),
          ...(session.hostNameAppearsAs ? { helo: session.hostNameAppearsAs } : {}),
          tls: Boolean(session.secure),
        },
      });
      this.count('accepted');
      this.deps.log.info('queued', { id: entry.id, from: entry.from, rcpts: entry.recipients.length, size: entry.size, account: entry.account, via: s.route.via });
      this.deps.onAccepted?.(entry);
      return `2.0.0 Ok: queued as ${entry.id}`;
    } catch (err) {
      if (typeof (err as { responseCode?: unknown }).responseCode === 'number') {
        this.count('rejected');
        this.deps.log.info('refused at the end of DATA, nothing queued', { client: normalizeIp(session.remoteAddress), via: route.via, reply: `${(err as { responseCode: number }).responseCode} ${(err as Error).message}` });
        throw err;
      }
      if (isSmtp365Error(err) && err.code === 'MESSAGE_TOO_LARGE') {
        throw smtpError(552, `5.3.4 Message size exceeds fixed maximum message size (${cfg.limits.maxMessageSize} bytes)`);
      }
      if (stream.destroyed && !stream.readableEnded) {
        // The client went away; nothing was queued and nobody is left to answer.
        this.deps.log.info('client vanished during DATA, nothing queued', { client: normalizeIp(session.remoteAddress) });
        throw smtpError(451, '4.3.0 Message not received in full');
      }
      this.deps.log.error('queue write failed', { error: (err as Error).message });
      // A full disk (or quota) is said as such (RFC 3463's 4.3.1, as Postfix does): the operator sees it in the client's log too.
      const cause = (err as { cause?: NodeJS.ErrnoException }).cause ?? (err as NodeJS.ErrnoException);
      if (cause?.code === 'ENOSPC' || cause?.code === 'EDQUOT') throw smtpError(452, '4.3.1 Insufficient system storage: the relay\'s spool is full, try again later');
      throw smtpError(451, '4.3.0 Temporary local problem: the message could not be queued, try again later');
    } finally {
      s.inData = false;
    }
  }

  /**
   * Graceful stop: no new connections or transactions, idle sessions get
   * 421, a message being received is finished and answered; resolves when
   * every connection is gone (or after `timeoutMs`).
   */
  async stop(timeoutMs = 30_000): Promise<void> {
    this.stopping = true;
    await Promise.all(
      this.servers.map(
        ({ server }) =>
          new Promise<void>((resolve) => {
            const conns = (server as unknown as { connections: Set<{ session: SMTPServerSession; send(c: number, m: string): void; close(): void }> }).connections;
            for (const c of conns) {
              const s = this.state.get(c.session);
              if (!s?.inData) {
                c.send(421, '4.3.2 Service shutting down, try again later');
                c.close();
              }
            }
            const timer = setTimeout(resolve, timeoutMs);
            timer.unref();
            server.close(() => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    await this.passwords.close();
  }
}
