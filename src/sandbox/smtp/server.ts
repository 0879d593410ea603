// The sandbox's SMTP submission endpoint: Exchange Online's port 587 on a
// local port. Sessions are ./connection.ts; this file wires them to a
// listening smtp-server with the sandbox's TLS certificate and holds what
// sessions share (limits, per-mailbox connection counts, the event log).

import type net from 'node:net';
import type tls from 'node:tls';
import { SMTPServer, type SMTPServerSession } from 'smtp-server';
import { SandboxConnection } from './connection.ts';
import type { RankedConnection, SmtpContext, SmtpEvent, SmtpEventInput, SmtpBehaviour, SmtpLimits, SmtpSandboxDeps } from './context.ts';
import { R, type ReplyHosts } from './replies.ts';

export type { SmtpSandboxDeps, SmtpEvent, SmtpLimits, SmtpBehaviour } from './context.ts';

export const DEFAULT_LIMITS: SmtpLimits = {
  maxRecipientsPerMessage: 500,
  recipientsPerDay: 10_000,
  maxConcurrentConnectionsPerMailbox: 3,
  messagesPerMinute: { limit: 30, mode: 'reject', reply: R.rateLimited },
};

export const DEFAULT_HOSTS: ReplyHosts = {
  frontEnd: 'SB1PR00CA0001.outlook.office365.com',
  backEnd: 'SB1PR00MB0001.namprd00.prod.outlook.com',
};

export interface SmtpSandboxHandle {
  port: number;
  close(): Promise<void>;
  /** Recent events (newest last, at most 1000): auth results with the reason, rejections, faults. */
  events(): SmtpEvent[];
  /** The limits in force; change its fields to change them at run time. */
  limits: SmtpLimits;
  /** Behaviour where Microsoft's is uncertain; change its fields to change it at run time. */
  behaviour: SmtpBehaviour;
}

class SandboxSmtpServer extends SMTPServer {
  sandbox!: SmtpContext;

  override connect(socket: net.Socket | tls.TLSSocket, socketOptions?: ConstructorParameters<typeof SandboxConnection>[2]): void {
    const connection = new SandboxConnection(this, socket, socketOptions);
    this.connections.add(connection);
    connection.on('error', (err: Error) => this._onError(err));
    connection.on('connect', (data) => this._onClientConnect(data));
    connection.init();
  }
}

export async function startSmtpSandbox(deps: SmtpSandboxDeps, listen: { host: string; port: number }): Promise<SmtpSandboxHandle> {
  const l = deps.limits ?? {};
  const limits: SmtpLimits = {
    maxRecipientsPerMessage: l.maxRecipientsPerMessage ?? DEFAULT_LIMITS.maxRecipientsPerMessage,
    recipientsPerDay: l.recipientsPerDay ?? DEFAULT_LIMITS.recipientsPerDay,
    maxConcurrentConnectionsPerMailbox: l.maxConcurrentConnectionsPerMailbox ?? DEFAULT_LIMITS.maxConcurrentConnectionsPerMailbox,
    messagesPerMinute: { ...DEFAULT_LIMITS.messagesPerMinute, ...(l.messagesPerMinute ?? {}) },
  };
  const hosts: ReplyHosts = { frontEnd: deps.hostname ?? DEFAULT_HOSTS.frontEnd, backEnd: DEFAULT_HOSTS.backEnd };
  const log: SmtpEvent[] = [];
  const authenticated = new Map<string, Set<RankedConnection>>();

  const ctx: SmtpContext = {
    deps,
    hosts,
    limits,
    behaviour: {
      authFailureDelayMs: deps.authFailureDelayMs ?? 100,
      sendAsDeniedStyle: deps.sendAsDeniedStyle ?? '5.7.60',
      securityDefaultsBlockOAuth: deps.securityDefaultsBlockOAuth ?? false,
    },
    event(e: SmtpEventInput) {
      const full = { ...e, at: new Date(deps.clock.nowMs()).toISOString() } as SmtpEvent;
      log.push(full);
      if (log.length > 1000) log.splice(0, log.length - 1000);
      try {
        deps.onEvent?.(full);
      } catch {
        // a listener's bug must not break a session
      }
    },
    registerAuthenticated(c) {
      if (!c.principal) return;
      let set = authenticated.get(c.principal.mailbox);
      if (!set) authenticated.set(c.principal.mailbox, (set = new Set()));
      set.add(c);
    },
    unregister(c) {
      for (const [mailbox, set] of authenticated) {
        if (set.delete(c) && set.size === 0) authenticated.delete(mailbox);
      }
    },
    connectionRank(c) {
      const set = c.principal ? authenticated.get(c.principal.mailbox) : undefined;
      return set ? [...set].indexOf(c) : -1;
    },
  };

  const server = new SandboxSmtpServer({
    name: hosts.frontEnd,
    key: deps.tls.key,
    cert: deps.tls.cert,
    // Old clients must complete the handshake so they can be told why they are refused
    // (421 4.7.66 after STARTTLS, as Exchange Online does), hence TLS 1.0 and SECLEVEL 0
    // at the handshake and the version check in onSecure.
    minVersion: 'TLSv1',
    ciphers: 'DEFAULT:@SECLEVEL=0',
    disableReverseLookup: true,
    // 530 5.7.57 is answered by the session itself, with Microsoft's wording.
    authOptional: true,
    authMethods: ['LOGIN', 'XOAUTH2'],
    size: 157_286_400,
    logger: false,
    closeTimeout: 1,
    onSecure(socket: net.Socket | tls.TLSSocket, _session: SMTPServerSession, callback: (err?: Error | null) => void) {
      const protocol = 'getProtocol' in socket ? socket.getProtocol() : null;
      if (protocol === 'TLSv1' || protocol === 'TLSv1.1') {
        const err = Object.assign(new Error(R.tlsTooOld.slice(4)), { responseCode: 421 });
        return callback(err);
      }
      callback();
    },
  });
  server.sandbox = ctx;
  server.on('error', (err: Error) => ctx.event({ type: 'error', connection: '-', message: err.message }));

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.server.once('error', onError);
    server.server.listen(listen.port, listen.host, () => {
      server.server.off('error', onError);
      resolve();
    });
  });
  const address = server.server.address();
  const port = typeof address === 'object' && address ? address.port : listen.port;

  let closing: Promise<void> | undefined;
  return {
    port,
    limits,
    behaviour: ctx.behaviour,
    events: () => log.map((e) => ({ ...e })),
    close() {
      closing ??= new Promise<void>((resolve) => {
        for (const c of server.connections) {
          const s = c as SandboxConnection;
          if (!s._closed && !s._upgrading) s.reply('421 4.3.2 Service not available, closing transmission channel');
          s._socket.destroy();
        }
        server.close(() => resolve());
      });
      return closing;
    },
  };
}
