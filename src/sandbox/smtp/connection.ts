// One SMTP session with Exchange Online's behaviour on port 587.
//
// Built on smtp-server's SMTPConnection: it keeps the socket handling, the
// command parser (pipelining, DATA dot-unstuffing, size counting), the
// STARTTLS upgrade and the timeouts. What it cannot be configured to do is
// overridden here, in a subclass the server creates through
// SMTPServer#connect:
// - its replies are its own wording ("250 Accepted", "220 Ready to start
//   TLS", no enhanced codes in the banner), and Microsoft's exact texts are
//   what clients and our error table match on, so every handler the session
//   uses writes its reply from ./replies.ts;
// - its EHLO keyword order is fixed and lacks BINARYMIME/CHUNKING, so EHLO is
//   answered here and BDAT is implemented (./chunking-stream.ts);
// - its SASL layer answers a failed XOAUTH2 with a 334 JSON challenge (Gmail's
//   way), a cancel with 501, and PLAIN exists: Microsoft does none of these,
//   so AUTH is handled here;
// - the stage hooks (fault injection, limits, send-as after the final dot)
//   need places smtp-server has no callbacks for.

import { SMTPConnection } from 'smtp-server/lib/smtp-connection.js';
import type { SMTPServer } from 'smtp-server';
import { randomBytes } from 'node:crypto';
import type { FaultSpec, FaultStage } from '../state/model.ts';
import type { IncomingMessageFile } from '../mail/store.ts';
import { summarizeHeaders } from '../mail/store.ts';
import { decideBasic, decideXoauth2, maySendAs, parseXoauth2, type AuthDecision, type AuthPrincipal } from './auth.ts';
import { ChunkingStream } from './chunking-stream.ts';
import { authTrailer, ehloLines, R, traceId as newTraceId } from './replies.ts';
import type { SmtpContext } from './context.ts';

const KNOWN = new Set(['EHLO', 'HELO', 'STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'BDAT', 'RSET', 'NOOP', 'QUIT', 'HELP', 'VRFY']);
const NEEDS_HELLO = new Set(['STARTTLS', 'AUTH', 'MAIL', 'RCPT', 'DATA', 'BDAT']);
/** Faults applied when the command arrives; 'auth', 'data' for BDAT and 'data-end' are applied where they have their context. */
const COMMAND_STAGE: Record<string, FaultStage> = { EHLO: 'ehlo', HELO: 'ehlo', STARTTLS: 'starttls', MAIL: 'mail', RCPT: 'rcpt', DATA: 'data' };
const MAIL_PARAMS = new Set(['SIZE', 'BODY', 'SMTPUTF8', 'RET', 'ENVID', 'AUTH', 'REQUIRETLS']);
const RCPT_PARAMS = new Set(['NOTIFY', 'ORCPT']);
const DEFAULT_MAX_SEND = 35 * 1024 * 1024;
const EHLO_MAX = 157_286_400;

type Callback = () => void;

interface BdatState {
  incoming: IncomingMessageFile;
  bytes: number;
  exceeded: boolean;
  /** A reply every further chunk of this transaction gets (a fault at 'data'). */
  error: string | null;
  /** Writing it failed (disk full, state dir gone): later chunks are skipped, the end gets a 451. */
  failed: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class SandboxConnection extends SMTPConnection {
  /** Who authenticated (null before AUTH). */
  principal: AuthPrincipal | null = null;
  /** Microsoft's per-session id: in the banner and in 535 trailers. */
  readonly traceId = newTraceId();
  #bdat: BdatState | null = null;
  #bodyType = '7bit';

  constructor(server: SMTPServer, socket: ConstructorParameters<typeof SMTPConnection>[1], options?: ConstructorParameters<typeof SMTPConnection>[2]) {
    super(server, socket, options);
  }

  get ctx(): SmtpContext {
    return (this._server as unknown as { sandbox: SmtpContext }).sandbox;
  }

  /** Writes a reply line as given ("250 2.1.0 Sender OK"), or several lines of one reply. */
  reply(line: string | readonly string[]): void {
    const lines = (typeof line === 'string' ? line.split(/\r?\n/) : [...line]).filter((l) => l.length > 0);
    const code = Number(lines[0]!.slice(0, 3));
    const texts = lines.map((l) => l.slice(4));
    if (texts.length === 1) this.send(code, texts[0] || null, false);
    else this.send(code, texts, false);
  }

  // --- parser with BDAT -----------------------------------------------------

  override _createParser(): ChunkingStream {
    const parser = new ChunkingStream({ maxCommandLength: this._server.options.maxCommandLength });
    parser.oncommand = (command: Buffer, callback?: Callback) => this._onCommand(command, callback);
    parser.on('error', (err: Error) => this.send(500, `5.5.6 ${err.message}`, false));
    return parser;
  }

  // --- greeting and dispatch ------------------------------------------------

  override _sendGreeting(): void {
    void this.#applyFault('connect', undefined).then((outcome) => {
      if (outcome === 'handled') {
        if (!this._closed) this.close();
        return;
      }
      this.reply(R.banner(this.ctx.hosts, new Date(this.ctx.deps.clock.nowMs()), this.traceId));
    });
  }

  override _onCommand(command: Buffer, callback?: Callback): void {
    const next = callback ?? (() => undefined);
    if (this._nextHandler || this._upgrading || !this._ready || this._server._closeTimeout) {
      super._onCommand(command, callback);
      return;
    }
    const name = (command.toString('binary').split(' ')[0] ?? '').trim().toUpperCase();
    if (!KNOWN.has(name)) {
      if (++this._unrecognizedCommands >= 10) {
        this.send(421, '4.7.0 Too many errors on this connection, closing transmission channel', false);
        return;
      }
      this.reply(R.unrecognized(name.replace(/[^\x21-\x7e]/g, '').slice(0, 40)));
      setImmediate(next);
      return;
    }
    if (NEEDS_HELLO.has(name) && !this.hostNameAppearsAs) {
      this.reply(R.sendHelloFirst);
      setImmediate(next);
      return;
    }
    const stage = COMMAND_STAGE[name];
    if (!stage) {
      super._onCommand(command, callback);
      return;
    }
    this._handlerPending = true;
    // RCPT faults may name one recipient: the address as written, without parsing the whole command.
    const recipient = stage === 'rcpt' ? /<([^<>\s]+)>/.exec(command.toString('utf8'))?.[1] : undefined;
    void this.#applyFault(stage, this.principal?.mailbox, recipient).then((outcome) => {
      this._handlerPending = false;
      if (outcome === 'proceed') super._onCommand(command, callback);
      else next();
    });
  }

  /** Applies a fault for this stage if one is due: 'handled' when it replied or dropped. */
  async #applyFault(stage: FaultStage, match: string | undefined, recipient?: string): Promise<'proceed' | 'handled'> {
    const f: FaultSpec | undefined = this.ctx.deps.faults.take(stage, match, recipient);
    if (!f) return 'proceed';
    this.ctx.event({ type: 'fault', stage, connection: this.id, mailbox: match ?? null, fault: f });
    if (f.delayMs) await sleep(f.delayMs);
    if (this._closed || this._socket.destroyed) return 'handled';
    if (f.drop) {
      this._socket.destroy();
      return 'handled';
    }
    if (f.reply) {
      this.reply(f.reply);
      return 'handled';
    }
    return 'proceed';
  }

  // --- EHLO / HELO / STARTTLS -----------------------------------------------

  override handler_EHLO(command: Buffer, callback: Callback): void {
    const parts = command.toString().trim().split(/\s+/);
    if (parts.length !== 2 || parts[1]!.length > 255 || /[\x00-\x1f\x7f]/.test(parts[1]!)) {
      this.reply(R.invalidDomain);
      return callback();
    }
    this.hostNameAppearsAs = parts[1]!.toLowerCase();
    this.#resetTransaction();
    this.send(250, ehloLines(this.ctx.hosts, this.remoteAddress, this.secure), false);
    callback();
  }

  override handler_HELO(command: Buffer, callback: Callback): void {
    const parts = command.toString().trim().split(/\s+/);
    if (parts.length !== 2 || /[\x00-\x1f\x7f]/.test(parts[1]!)) {
      this.reply(R.invalidDomain);
      return callback();
    }
    this.hostNameAppearsAs = parts[1]!.toLowerCase();
    this.#resetTransaction();
    this.send(250, R.ehloFirst(this.ctx.hosts, this.remoteAddress), false);
    callback();
  }

  override handler_STARTTLS(command: Buffer, callback: Callback): void {
    if (command.toString().trim().split(/\s+/).length > 1) {
      this.reply(R.invalidArguments);
      return callback();
    }
    if (this.secure) {
      this.reply(R.badSequence);
      return callback();
    }
    this.reply(R.starttls);
    // TLS version is judged once the handshake is done (server onSecure): a TLS 1.0/1.1
    // client gets Microsoft's 421 4.7.66 rather than a bare handshake failure.
    this.upgrade(callback);
  }

  // --- AUTH -----------------------------------------------------------------

  override handler_AUTH(command: Buffer, callback: Callback): void {
    const args = command.toString().trim().split(/\s+/);
    args.shift();
    const method = (args.shift() ?? '').toUpperCase();
    // Exchange offers AUTH only inside TLS; before it, every mechanism is "unrecognized".
    if (!this.secure) {
      this.reply(R.authMechanism);
      return callback();
    }
    if (this.principal) {
      this.reply(R.alreadyAuthenticated);
      return callback();
    }
    if (this.session.envelope.mailFrom) {
      this.reply(R.badSequence);
      return callback();
    }
    if (method === 'XOAUTH2') {
      if (args.length > 1) return void this.#refuse({ ok: false, refusal: 'failed', detail: 'AUTH XOAUTH2 takes one argument' }, null, callback);
      if (args.length === 1) return void this.#xoauth2(args[0]!, callback);
      this._nextHandler = (line: Buffer, cb: Callback) => void this.#xoauth2(line.toString(), cb);
      this.send(334, null, false);
      return callback();
    }
    if (method === 'LOGIN') {
      if (args.length > 1) return void this.#refuse({ ok: false, refusal: 'failed', detail: 'AUTH LOGIN takes at most one argument' }, null, callback);
      if (args.length === 1) return this.#loginUser(args[0]!, callback);
      this._nextHandler = (line: Buffer, cb: Callback) => this.#loginUser(line.toString(), cb);
      this.send(334, 'VXNlcm5hbWU6', false);
      return callback();
    }
    this.reply(R.authMechanism);
    callback();
  }

  async #xoauth2(initial: string, cb: Callback): Promise<void> {
    if (initial.trim() === '*') return this.#refuse({ ok: false, refusal: 'failed', detail: 'the client cancelled the exchange (*)' }, null, cb);
    const parsed = parseXoauth2(initial);
    if (!parsed) return this.#refuse({ ok: false, refusal: 'failed', detail: 'malformed XOAUTH2 response (expected base64 of "user=…^Aauth=Bearer …^A^A")' }, null, cb);
    await this.#authenticate(parsed.user, () => decideXoauth2(this.ctx.deps.directory, this.ctx.deps.verifyToken, parsed.user, parsed.token, this.ctx.behaviour), cb);
  }

  #loginUser(line: string, cb: Callback): void {
    const raw = line.trim();
    if (raw === '*') return void this.#refuse({ ok: false, refusal: 'failed', detail: 'the client cancelled the exchange (*)' }, null, cb);
    const username = Buffer.from(raw, 'base64').toString('utf8');
    this._nextHandler = (pw: Buffer, next: Callback) => {
      const p = pw.toString().trim();
      if (p === '*') return void this.#refuse({ ok: false, refusal: 'failed', detail: 'the client cancelled the exchange (*)' }, username, next);
      const password = Buffer.from(p, 'base64').toString('utf8');
      void this.#authenticate(username, () => decideBasic(this.ctx.deps.directory, username, password), next);
    };
    this.send(334, 'UGFzc3dvcmQ6', false);
    cb();
  }

  async #authenticate(user: string, decide: () => AuthDecision, cb: Callback): Promise<void> {
    const outcome = await this.#applyFault('auth', user);
    if (outcome === 'handled') return cb();
    let d: AuthDecision;
    try {
      d = decide();
    } catch (err) {
      d = { ok: false, refusal: 'failed', detail: `sandbox error: ${(err as Error).message}` };
    }
    if (!d.ok) return this.#refuse(d, user, cb);
    if (this._closed) return cb();
    this.principal = d.principal;
    this.session.user = { mailbox: d.principal.mailbox, identity: d.principal.identity };
    this.session.transmissionType = this._transmissionType();
    this.ctx.registerAuthenticated(this);
    this.ctx.event({ type: 'auth', ok: true, connection: this.id, mailbox: d.principal.mailbox, identity: d.principal.identity, method: d.principal.method });
    this.reply(R.authOk);
    cb();
  }

  async #refuse(d: Extract<AuthDecision, { ok: false }>, user: string | null, cb: Callback): Promise<void> {
    const t = authTrailer(this.ctx.hosts, new Date(this.ctx.deps.clock.nowMs()), this.traceId);
    const line = {
      failed: R.authFailed(t),
      'basic-disabled': R.basicAuthDisabled(t),
      'tenant-disabled': R.smtpAuthDisabledTenant(t),
      'mailbox-disabled': R.smtpAuthDisabledMailbox(t),
      'security-defaults': R.securityDefaults(t),
      'conditional-access': R.conditionalAccess(t),
    }[d.refusal];
    this.ctx.event({ type: 'auth', ok: false, connection: this.id, mailbox: user, refusal: d.refusal, detail: d.detail, reply: line });
    // Microsoft takes seconds to refuse (reference §1); the delay is configurable.
    if (this.ctx.behaviour.authFailureDelayMs > 0) await sleep(this.ctx.behaviour.authFailureDelayMs);
    if (!this._closed) this.reply(line);
    cb();
  }

  // --- MAIL / RCPT ----------------------------------------------------------

  override handler_MAIL(command: Buffer, callback: Callback): void {
    if (!this.principal) {
      this.reply(R.notAuthenticated);
      return callback();
    }
    const parsed = this._parseAddressCommand('mail from', command);
    if (!parsed) {
      this.reply(R.invalidAddress);
      return callback();
    }
    if (this.session.envelope.mailFrom || this.#bdat) {
      this.reply(R.senderAlready);
      return callback();
    }
    const args = (parsed.args || {}) as Record<string, string | true>;
    for (const key of Object.keys(args)) {
      if (!MAIL_PARAMS.has(key)) {
        this.reply(R.invalidArguments);
        return callback();
      }
    }
    let body = '7bit';
    if (args['BODY'] !== undefined) {
      const b = String(args['BODY']).toLowerCase();
      if (!['7bit', '8bitmime', 'binarymime'].includes(b)) {
        this.reply(R.invalidArguments);
        return callback();
      }
      body = b;
    }
    if (args['SIZE'] !== undefined) {
      if (typeof args['SIZE'] !== 'string' || !/^\d{1,20}$/.test(args['SIZE'])) {
        this.reply(R.invalidArguments);
        return callback();
      }
      if (Number(args['SIZE']) > this.#maxSize()) {
        this.reply(R.tooLarge);
        return callback();
      }
    }
    const blocked = this.ctx.deps.directory.tenant(this.principal.tenantId)?.submissionBlocked;
    if (blocked) {
      const line = blocked === 'ip' ? R.ipBlocked : R.tenantThreshold;
      this.ctx.event({ type: 'rejected', connection: this.id, mailbox: this.principal.mailbox, reason: `tenant-blocked-${blocked}`, reply: line });
      this.reply(line);
      return callback();
    }
    this.#bodyType = body;
    this.session.envelope.mailFrom = parsed;
    this.reply(R.senderOk);
    callback();
  }

  override handler_RCPT(command: Buffer, callback: Callback): void {
    if (!this.principal) {
      this.reply(R.notAuthenticated);
      return callback();
    }
    if (!this.session.envelope.mailFrom) {
      this.reply(R.needMail);
      return callback();
    }
    const parsed = this._parseAddressCommand('rcpt to', command);
    if (!parsed || !parsed.address) {
      this.reply(R.invalidRecipient);
      return callback();
    }
    const args = (parsed.args || {}) as Record<string, string | true>;
    if (Object.keys(args).some((k) => !RCPT_PARAMS.has(k))) {
      this.reply(R.invalidArguments);
      return callback();
    }
    const rcpts = this.session.envelope.rcptTo;
    const key = parsed.address.toLowerCase();
    if (rcpts.some((r) => r.address.toLowerCase() === key)) {
      this.reply(R.recipientOk);
      return callback();
    }
    if (rcpts.length >= this.ctx.limits.maxRecipientsPerMessage) {
      this.reply(R.tooManyRecipients);
      return callback();
    }
    rcpts.push(parsed);
    this.reply(R.recipientOk);
    callback();
  }

  // --- DATA / BDAT ----------------------------------------------------------

  /** The reply that refuses DATA/BDAT now, if any. */
  #transactionError(): string | null {
    if (!this.principal) return R.notAuthenticated;
    if (!this.session.envelope.mailFrom) return R.needMail;
    if (!this.session.envelope.rcptTo.length) return R.needRcpt;
    return null;
  }

  override handler_DATA(_command: Buffer, callback: Callback): void {
    const error = this.#transactionError() ?? (this.#bodyType === 'binarymime' || this.#bdat ? R.badSequence : null);
    if (error) {
      this.reply(error);
      return callback();
    }
    const parser = this._parser;
    if (!parser) return callback();
    const incoming = this.ctx.deps.messages.receive();
    const stream = parser.startDataMode(this.#maxSize());
    this._dataStream = stream;
    let exceeded = false;
    // A write error (disk full, state dir gone) must not stall the session: keep
    // reading to the final dot; finishing then fails and the client gets a 451.
    let failed = false;
    incoming.stream.on('error', () => {
      failed = true;
      stream.resume();
    });
    stream.on('data', (chunk: Buffer) => {
      if (exceeded || failed) return;
      if (stream.sizeExceeded) {
        // Over the mailbox's MaxSendSize: stop keeping it, but read to the final dot.
        exceeded = true;
        void incoming.discard();
        return;
      }
      if (!incoming.stream.write(chunk)) {
        stream.pause();
        incoming.stream.once('drain', () => stream.resume());
      }
    });
    stream.on('error', () => void incoming.discard());
    stream.on('end', () => {
      exceeded ||= stream.sizeExceeded;
      void this.#finishMessage(incoming, exceeded).then((line) => {
        this._dataStream = false;
        if (line !== null) this.reply(line);
        this._transactionCounter++;
        this.#resetTransaction();
        parser.continue();
      });
    });
    this.reply(R.startData);
    callback();
  }

  handler_BDAT(command: Buffer, callback: Callback): void {
    const m = /^BDAT\s+(\d{1,15})(\s+LAST)?$/i.exec(command.toString().trim());
    const parser = this._parser as ChunkingStream | false;
    if (!m || !parser) {
      // Without a valid size the chunk cannot be skipped; the client is out of step.
      this.reply(R.invalidArguments);
      return callback();
    }
    const size = Number(m[1]);
    const last = !!m[2];
    const refused = this.#transactionError();
    const start = (sink: (buf: Buffer, next: Callback) => void, complete: (resume: Callback) => void): void => {
      if (size === 0) complete(callback);
      else {
        parser.startChunk(size, sink, complete);
        callback();
      }
    };
    if (refused) {
      // RFC 3030: the chunk's octets are read (and dropped) before the reply.
      start(
        (_b, next) => next(),
        (resume) => {
          this.reply(refused);
          resume();
        },
      );
      return;
    }
    const begin = async (): Promise<BdatState | null> => {
      if (this.#bdat) return this.#bdat;
      const state: BdatState = { incoming: this.ctx.deps.messages.receive(), bytes: 0, exceeded: false, error: null, failed: false };
      // A destroyed stream neither drains nor errors again: without this, the next chunk would wait forever.
      state.incoming.stream.on('error', () => (state.failed = true));
      this.#bdat = state;
      const f = this.ctx.deps.faults.take('data', this.principal!.mailbox);
      if (f) {
        this.ctx.event({ type: 'fault', stage: 'data', connection: this.id, mailbox: this.principal!.mailbox, fault: f });
        if (f.delayMs) await sleep(f.delayMs);
        if (f.drop) {
          void state.incoming.discard();
          this._socket.destroy();
          return null;
        }
        if (f.reply) state.error = f.reply;
      }
      return state;
    };
    this._handlerPending = true;
    void begin().then((state) => {
      this._handlerPending = false;
      if (!state) return;
      const max = this.#maxSize();
      start(
        (buf, next) => {
          if (state.error || state.exceeded || state.failed) return next();
          state.bytes += buf.length;
          if (state.bytes > max) {
            state.exceeded = true;
            void state.incoming.discard();
            return next();
          }
          if (state.incoming.stream.write(buf)) return next();
          const go = (): void => {
            state.incoming.stream.off('drain', go);
            state.incoming.stream.off('error', go);
            next();
          };
          state.incoming.stream.once('drain', go);
          state.incoming.stream.once('error', go);
        },
        (resume) => {
          if (!last) {
            this.reply(state.error ?? R.chunkOk(size));
            return resume();
          }
          this.#bdat = null;
          const done = (line: string | null): void => {
            this._handlerPending = false;
            if (line !== null) this.reply(line);
            this._transactionCounter++;
            this.#resetTransaction();
            resume();
          };
          this._handlerPending = true;
          if (state.error) {
            void state.incoming.discard().then(() => done(state.error));
            return;
          }
          void this.#finishMessage(state.incoming, state.exceeded).then(done);
        },
      );
    });
  }

  /**
   * After the final dot (or BDAT LAST): the checks Exchange makes at submission,
   * then the message is stored. Returns the reply, or null when the connection
   * was dropped by a fault.
   */
  async #finishMessage(incoming: IncomingMessageFile, exceeded: boolean): Promise<string | null> {
    const ctx = this.ctx;
    const p = this.principal;
    const env = this.session.envelope;
    try {
      if (!p || !env.mailFrom) {
        await incoming.discard();
        return R.badSequence;
      }
      if (exceeded) {
        await incoming.discard();
        ctx.event({ type: 'rejected', connection: this.id, mailbox: p.mailbox, reason: 'size', reply: R.tooLarge });
        return R.tooLarge;
      }
      const f = ctx.deps.faults.take('data-end', p.mailbox);
      if (f) {
        ctx.event({ type: 'fault', stage: 'data-end', connection: this.id, mailbox: p.mailbox, fault: f });
        if (f.delayMs) await sleep(f.delayMs);
        if (f.drop) {
          await incoming.discard();
          this._socket.destroy();
          return null;
        }
        if (f.reply) {
          await incoming.discard();
          return f.reply;
        }
      }
      const reject = async (reason: string, line: string): Promise<string> => {
        await incoming.discard();
        ctx.event({ type: 'rejected', connection: this.id, mailbox: p.mailbox, reason, reply: line });
        return line;
      };
      if (ctx.connectionRank(this) >= ctx.limits.maxConcurrentConnectionsPerMailbox) return reject('concurrency', R.threadLimit);
      if (ctx.deps.directory.mailbox(p.mailbox)?.outboundSpamBlocked) return reject('outbound-spam', R.outboundSpam(ctx.hosts));

      await incoming.finish();
      const summary = await summarizeHeaders(incoming.headerBytes());
      const mailFrom = env.mailFrom.address;
      const senders = [...(mailFrom ? [mailFrom.toLowerCase()] : []), ...summary.fromAddresses];
      const denied = senders.find((a) => !maySendAs(ctx.deps.directory, p, a));
      if (denied) {
        return reject('send-as', ctx.behaviour.sendAsDeniedStyle === '5.2.252' ? R.sendAsDeniedStoreDrv(p.mailbox, denied, ctx.hosts) : R.sendAsDenied);
      }

      const now = ctx.deps.clock.nowMs();
      const day = ctx.deps.messages.sentSince(p.mailbox, now - 24 * 3600_000);
      if (day.recipients + env.rcptTo.length > ctx.limits.recipientsPerDay) return reject('quota', R.quotaExceeded(ctx.hosts));
      const rate = ctx.limits.messagesPerMinute;
      if (rate.mode !== 'off') {
        const minute = ctx.deps.messages.sentSince(p.mailbox, now - 60_000);
        if (minute.messages >= rate.limit) {
          if (rate.mode === 'reject') return reject('rate', rate.reply);
          // 'delay': hold the reply until the oldest message of the minute ages out.
          const oldest = minute.oldestMs ?? now;
          const wait = Math.max(0, Math.min(oldest + 60_000 - now, 60_000));
          ctx.event({ type: 'delayed', connection: this.id, mailbox: p.mailbox, reason: 'rate', ms: wait });
          await sleep(wait);
        }
      }

      const folders: Array<{ mailbox: string; folder: 'SentItems' | 'Inbox' }> = [{ mailbox: p.mailbox, folder: 'SentItems' }];
      for (const r of env.rcptTo) {
        const mb = ctx.deps.directory.mailbox(r.address);
        if (mb && !folders.some((f) => f.folder === 'Inbox' && f.mailbox === mb.address.toLowerCase())) folders.push({ mailbox: mb.address.toLowerCase(), folder: 'Inbox' });
      }
      const saved = await ctx.deps.messages.save({
        incoming,
        summary,
        receivedAt: ctx.deps.clock.nowMs(),
        authUser: p.mailbox,
        authIdentity: p.identity,
        mailFrom,
        rcptTo: env.rcptTo.map((r) => r.address),
        folders,
        fallbackMessageId: `<${randomBytes(16).toString('hex')}@${ctx.hosts.backEnd.toLowerCase()}>`,
      });
      ctx.event({ type: 'accepted', connection: this.id, mailbox: p.mailbox, messageId: saved.id });
      return R.queued(saved.messageId ?? '<>', ctx.hosts);
    } catch (err) {
      await incoming.discard().catch(() => undefined);
      ctx.event({ type: 'error', connection: this.id, message: (err as Error).message });
      return '451 4.3.0 Temporary server error. Please try again later.';
    }
  }

  // --- small commands -------------------------------------------------------

  override handler_RSET(_command: Buffer, callback: Callback): void {
    this.#resetTransaction();
    this.reply(R.reset);
    callback();
  }

  override handler_NOOP(_command: Buffer, callback: Callback): void {
    this.reply(R.ok);
    callback();
  }

  override handler_QUIT(_command: Buffer, callback: Callback): void {
    // A session that said QUIT no longer submits: its slot is free even if the client closes late.
    this.ctx.unregister(this);
    this.reply(R.quit);
    this.close();
    callback();
  }

  override handler_HELP(_command: Buffer, callback: Callback): void {
    this.reply(R.help);
    callback();
  }

  override handler_VRFY(_command: Buffer, callback: Callback): void {
    this.reply(R.vrfy);
    callback();
  }

  // --- lifecycle --------------------------------------------------------------

  #resetTransaction(): void {
    if (this.#bdat) void this.#bdat.incoming.discard();
    this.#bdat = null;
    this.#bodyType = '7bit';
    this._resetSession();
  }

  #maxSize(): number {
    const mb = this.principal ? this.ctx.deps.directory.mailbox(this.principal.mailbox) : undefined;
    return Math.min(mb?.maxSendSizeBytes ?? DEFAULT_MAX_SEND, EHLO_MAX);
  }

  override _onClose(): void {
    super._onClose();
    if (this.#bdat) void this.#bdat.incoming.discard();
    this.#bdat = null;
    this.ctx.unregister(this);
  }
}
