// createMailer: the one way smtp365 sends. Validates before connecting,
// paces per mailbox, sends over a small pool of authenticated connections,
// renews the token once when Microsoft refuses one that may be stale, and
// retries what is transient within a time budget. The CLI, the nodemailer
// transport and the relay all sit on this.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createReadStream } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { createSecureContext, rootCertificates, type ConnectionOptions } from 'node:tls';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type { Transport } from 'nodemailer/lib/mailer/index.js';
import type { ResultCallback } from 'nodemailer/lib/errors.js';
import type MailMessage from 'nodemailer/lib/mailer/mail-message.js';
import type SMTPConnection from 'nodemailer/lib/smtp-connection/index.js';
import type { SMTPConnectionCustomAuthContext, SMTPConnectionSendInfo, SMTPEnvelope } from 'nodemailer/lib/smtp-connection/index.js';
import { Smtp365Error, parseSmtpReply, type SmtpReply } from '../errors/error.ts';
import type { ExplainContext } from '../errors/explain.ts';
import { isAppOnly, type Account } from '../config/account.ts';
import type { AccessToken, TokenProvider } from '../auth/types.ts';
import { redact } from '../util/redact.ts';
import { classifyError, errorFromReply, type NodemailerError } from './classify.ts';
import { pacerFor, type Pacer, type RateLimitOption } from './pacer.ts';
import { ConnectionPool, unwrapOriginal, wrapForNodemailer, type PoolStats } from './pool.ts';
import { headersOf, stripBccFromMessage, withoutBccStream } from './raw.ts';
import { backoffDelay, retryPolicy, sleep, type RetryOption, type RetryPolicy } from './retry.ts';
import { isRawMessage, type Envelope, type Mailer, type OutgoingMessage, type RawMessage, type RejectedRecipient, type SendResult } from './types.ts';
import { DEFAULT_MAX_MESSAGE_BYTES, parseAddressField, validateMailOptions, validateRawMessage, type SizeEstimate } from './validate.ts';
import { buildXoauth2 } from './xoauth2.ts';
import type { EarlyConnection } from './early-connection.ts';

/** Microsoft's limit of concurrent SMTP submissions per mailbox (reference §1, §6). */
export const MICROSOFT_MAX_CONNECTIONS = 3;

export interface MailerLogger {
  debug?(message: string, fields?: Record<string, unknown>): void;
  info?(message: string, fields?: Record<string, unknown>): void;
  warn?(message: string, fields?: Record<string, unknown>): void;
  error?(message: string, fields?: Record<string, unknown>): void;
}

export interface MailerTimeouts {
  /** TCP connect, DNS included (default 30 000 ms). */
  connectMs?: number;
  /** Until the 220 banner (default 30 000 ms). */
  greetingMs?: number;
  /** Silence on an open connection (default 120 000 ms; Microsoft can take 5–6 s to refuse AUTH). */
  socketMs?: number;
}

export interface MailerOptions {
  account: Account;
  /** Where access tokens come from. Default: the account's own provider from smtp365's auth module. */
  tokenProvider?: TokenProvider;
  /** Concurrent connections for the mailbox: 1–3 (default 3; Microsoft refuses a 4th). */
  maxConnections?: number;
  /** Messages per minute per mailbox (default 30, Microsoft's limit), or false for no pacing. */
  rateLimit?: RateLimitOption;
  /** A pacer to share with other senders of the same mailbox (overrides rateLimit). */
  pacer?: Pacer;
  /** Retries of transient failures (default on: 5 attempts within 2 minutes), or false. */
  retry?: RetryOption;
  timeouts?: MailerTimeouts;
  /** Largest message accepted, after encoding (default 35 MB, Microsoft's default MaxSendSize). */
  maxMessageBytes?: number;
  /** Close connections idle this long (default 10 000 ms: idle connections count against Microsoft's 3 per mailbox). */
  idleTimeoutMs?: number;
  /** EHLO name (default: this host's FQDN, else [127.0.0.1]). */
  clientName?: string;
  logger?: MailerLogger;
  /** Log the SMTP dialogue at debug level (AUTH and message data are never logged). */
  transcript?: boolean;
  /**
   * A connection to the account's SMTP host opened early (connectEarly()), for
   * a process that sends one message: the first connection takes it over.
   * The mailer closes it if unused.
   */
  earlyConnection?: EarlyConnection;
}

export interface SendProgress {
  /** Bytes of the message handed to the connection so far. */
  sentBytes: number;
  /** Estimated total, when known. */
  totalBytes?: number;
  attempt: number;
}

export interface SendOptions {
  signal?: AbortSignal;
  /** Called as the message streams out (at most every 256 KB and at the end). */
  onProgress?: (progress: SendProgress) => void;
}

export interface MailerStats {
  sent: number;
  failed: number;
  /** Attempts beyond the first, over all messages. */
  retries: number;
  /** Forced token renewals after Microsoft refused a token. */
  tokenRenewals: number;
  /** Tokens fetched from the provider (each AUTH fetches one; the provider caches). */
  tokenFetches: number;
  connections: PoolStats;
  pacing: { limit: number; windowMs: number; inWindow: number; waiting: number } | null;
}

export interface Smtp365Mailer extends Mailer {
  send(message: OutgoingMessage, options?: SendOptions): Promise<SendResult>;
  /** Opens one connection and authenticates, to prove the setup works; sends nothing. */
  verify(options?: { signal?: AbortSignal }): Promise<void>;
  stats(): MailerStats;
  readonly account: Account;
}

/** What a delivery needs, whatever the message was given as. */
export interface DeliveryJob {
  envelope: Envelope;
  messageId: string;
  /** The From header's address (for explanations of send-as refusals). */
  headerFrom?: string;
  /** Fresh message content for one attempt. */
  open(): Readable | Buffer | string;
  /** Whether open() may be called again (false once a one-shot stream was used). */
  restartable(): boolean;
  /** Exact size, when known (sent as SIZE=). */
  exactSize?: number;
  /** Delivery status notification request (nodemailer's `dsn` option). */
  dsn?: SMTPEnvelope['dsn'];
  estimate?: SizeEstimate;
}

let versionCache: string | undefined;
export function packageVersion(): string {
  if (!versionCache) {
    try {
      versionCache = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;
    } catch {
      versionCache = '0.0.0';
    }
  }
  return versionCache;
}

function invalidOption(message: string): Smtp365Error {
  return new Smtp365Error('INPUT_INVALID', message);
}

function isOneShotStream(v: unknown): boolean {
  return !!v && typeof v === 'object' && typeof (v as Readable).pipe === 'function';
}

/** True when a nodemailer message has a stream in it (can be read only once). */
function hasStreamContent(data: Record<string, unknown>): boolean {
  const check = (v: unknown): boolean => {
    if (isOneShotStream(v)) return true;
    if (v && typeof v === 'object' && !Buffer.isBuffer(v)) {
      const o = v as Record<string, unknown>;
      return isOneShotStream(o.content) || isOneShotStream(o.raw);
    }
    return false;
  };
  if (['text', 'html', 'watchHtml', 'amp', 'icalEvent', 'raw'].some((k) => check(data[k]))) return true;
  for (const k of ['attachments', 'alternatives']) {
    const list = data[k];
    if (Array.isArray(list) && list.some(check)) return true;
  }
  return false;
}

function counting(source: Readable | Buffer | string, report: (n: number) => void): Readable {
  const input = typeof source === 'string' || Buffer.isBuffer(source) ? Readable.from([Buffer.from(source)]) : source;
  let n = 0;
  let last = 0;
  const pass = new PassThrough({
    transform(chunk: Buffer, _enc, cb) {
      n += chunk.length;
      if (n - last >= 262_144) {
        last = n;
        report(n);
      }
      cb(null, chunk);
    },
    flush(cb) {
      report(n);
      cb();
    },
  });
  input.on('error', (err) => pass.destroy(err));
  return input.pipe(pass);
}

function destroyContent(c: unknown): void {
  if (c && typeof (c as Readable).destroy === 'function') (c as Readable).destroy();
}

const PRIVATE = Symbol('smtp365.mailer');

interface PrivateSendData {
  validated?: SizeEstimate;
  onProgress?: SendOptions['onProgress'];
}

class MailerImpl implements Smtp365Mailer {
  readonly account: Account;
  private readonly options: MailerOptions;
  private readonly policy: RetryPolicy;
  private readonly pacer: Pacer | undefined;
  private readonly pool: ConnectionPool;
  private readonly maxBytes: number;
  private readonly log: MailerLogger;
  private providerPromise: Promise<TokenProvider> | undefined;
  private renewing: Promise<AccessToken> | undefined;
  private tlsPromise: Promise<ConnectionOptions> | undefined;
  private composer: Mail<SendResult> | undefined;
  private readonly pending = new Set<Promise<unknown>>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private counters = { sent: 0, failed: 0, retries: 0, tokenRenewals: 0, tokenFetches: 0 };

  constructor(options: MailerOptions) {
    const account = options?.account;
    if (!account || typeof account !== 'object') throw invalidOption('createMailer needs { account }');
    for (const k of ['user', 'smtpHost'] as const) {
      if (typeof account[k] !== 'string' || account[k].length === 0) throw invalidOption(`The account has no ${k}`);
    }
    if (!Number.isInteger(account.smtpPort) || account.smtpPort < 1 || account.smtpPort > 65535) {
      throw invalidOption(`The account's smtpPort must be a port number, got ${String(account.smtpPort)}`);
    }
    if (account.smtpPort === 465) {
      // Implicit TLS would sit waiting for a greeting that never comes; say why instead.
      throw new Smtp365Error('CONFIG_INVALID', 'Port 465 (implicit TLS) is not supported by Microsoft 365 SMTP submission: use port 587 (STARTTLS)', {
        details: { smtpPort: 465 },
      });
    }
    let mbx: string[] = [];
    try {
      mbx = parseAddressField('account.user', account.user);
    } catch {
      // reported below
    }
    if (mbx.length !== 1) throw invalidOption(`The account's user must be one mailbox address (name@domain), got "${account.user}"`);
    this.account = account;
    this.options = options;
    this.log = options.logger ?? {};
    const max = options.maxConnections ?? MICROSOFT_MAX_CONNECTIONS;
    if (!Number.isInteger(max) || max < 1) throw invalidOption(`maxConnections must be a whole number from 1 to 3, got ${String(max)}`);
    if (max > MICROSOFT_MAX_CONNECTIONS) {
      this.log.warn?.(`maxConnections ${max} lowered to ${MICROSOFT_MAX_CONNECTIONS}: Microsoft refuses more concurrent connections per mailbox (432 4.3.2)`);
    }
    try {
      this.policy = retryPolicy(options.retry);
      this.pacer = options.pacer ?? pacerFor(options.rateLimit);
    } catch (err) {
      throw invalidOption((err as Error).message);
    }
    this.maxBytes = options.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    if (!(this.maxBytes > 0)) throw invalidOption(`maxMessageBytes must be positive, got ${String(options.maxMessageBytes)}`);
    const t = options.timeouts ?? {};
    const transcript = options.transcript && this.log.debug ? this.transcriptLogger() : undefined;
    this.pool = new ConnectionPool({
      maxConnections: Math.min(max, MICROSOFT_MAX_CONNECTIONS),
      authUser: account.user,
      idleTimeoutMs: options.idleTimeoutMs ?? 10_000,
      settings: {
        host: account.smtpHost,
        port: account.smtpPort,
        tls: {}, // filled per connection in tlsOptions()
        ...(options.clientName ? { name: options.clientName } : {}),
        connectionTimeoutMs: t.connectMs ?? 30_000,
        greetingTimeoutMs: t.greetingMs ?? 30_000,
        socketTimeoutMs: t.socketMs ?? 120_000,
        ...(transcript ? { transcriptLogger: transcript } : {}),
      },
      authenticate: (ctx) => this.authenticate(ctx),
      ...(options.earlyConnection ? { earlyConnection: options.earlyConnection } : {}),
    });
  }

  // ------------------------------------------------------------ public API

  send(message: OutgoingMessage, options: SendOptions = {}): Promise<SendResult> {
    const p = this.track(this.sendInner(message, options));
    return p;
  }

  async verify(options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.ensureTls();
    let conn;
    try {
      conn = await this.pool.acquire(options.signal);
    } catch (err) {
      throw this.toError(err, this.account.user);
    }
    this.pool.release(conn, true);
  }

  close(): Promise<void> {
    // Memoised: nodemailer's Mail.close() calls the transport's close(), which lands here again.
    this.closing ??= (async () => {
      this.closed = true;
      while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
      await this.pool.close();
    })();
    return this.closing;
  }

  stats(): MailerStats {
    return {
      ...this.counters,
      connections: this.pool.stats(),
      pacing: this.pacer ? { limit: this.pacer.limit, windowMs: this.pacer.windowMs, inWindow: this.pacer.inWindow(), waiting: this.pacer.waiting() } : null,
    };
  }

  // -------------------------------------------------- nodemailer messages

  /** Delivers a message nodemailer has compiled (our transport's send()). */
  async [PRIVATE](mail: MailMessage<unknown>): Promise<SendResult> {
    const data = mail.data as Mail.Options & { _smtp365?: PrivateSendData };
    const priv = data._smtp365 ?? {};
    const estimate = priv.validated ?? (await validateMailOptions(this.withDefaultFrom(data), this.maxBytes, this.account.user));
    if (!data.from && !(data.envelope as { from?: unknown } | undefined)?.from) {
      mail.message.setHeader('From', this.account.user);
    }
    const env = mail.message.getEnvelope();
    const envelope: Envelope = { from: env.from || this.account.user, to: env.to };
    let headerFrom: string | undefined;
    try {
      headerFrom = parseAddressField('from', (mail.message.getHeader('from') as Mail.Options['from']) ?? undefined)[0];
    } catch {
      headerFrom = undefined; // only used to word explanations
    }
    const oneShot = hasStreamContent(data as Record<string, unknown>);
    let used = false;
    const job: DeliveryJob = {
      envelope,
      messageId: mail.message.messageId(),
      ...(headerFrom ? { headerFrom } : {}),
      open: () => {
        used = true;
        return mail.message.createReadStream();
      },
      restartable: () => !(oneShot && used),
      estimate,
      ...(data.dsn ? { dsn: data.dsn as SMTPEnvelope['dsn'] } : {}),
    };
    return this.deliver(job, { ...(data.signal ? { signal: data.signal } : {}), ...(priv.onProgress ? { onProgress: priv.onProgress } : {}) });
  }

  private withDefaultFrom(data: Mail.Options): Mail.Options {
    return data.from || (data.envelope as { from?: unknown } | undefined)?.from ? data : { ...data, from: this.account.user };
  }

  private async sendInner(message: OutgoingMessage, options: SendOptions): Promise<SendResult> {
    if (this.closed) throw new Smtp365Error('INTERNAL', 'The mailer is closed');
    if (!message || typeof message !== 'object') throw new Smtp365Error('MESSAGE_INVALID', 'The message must be an object');
    options.signal?.throwIfAborted();
    if (isRawMessage(message)) return this.sendRaw(message, options);
    const data = this.withDefaultFrom(message as Mail.Options);
    const estimate = await validateMailOptions(data, this.maxBytes, this.account.user);
    const composer = await this.getComposer();
    const priv: PrivateSendData = { validated: estimate, ...(options.onProgress ? { onProgress: options.onProgress } : {}) };
    return composer.sendMail({ ...data, ...(options.signal ? { signal: options.signal } : {}), _smtp365: priv } as Mail.Options);
  }

  private async sendRaw(message: RawMessage, options: SendOptions): Promise<SendResult> {
    const estimate = await validateRawMessage(message, this.maxBytes, this.account.user);
    const raw = message.raw;
    const streamed = isOneShotStream(raw);
    let used = false;
    const head = streamed ? {} : await headersOf(raw as string | Buffer | { path: string }).catch(() => ({}) as { messageId?: string; from?: string; bccBytes?: number });
    // Bcc fields go (as sendmail and Postfix do): the envelope carries those recipients; in the header every recipient would see them.
    const bytes = typeof raw === 'string' || Buffer.isBuffer(raw) ? stripBccFromMessage(Buffer.from(raw)) : undefined;
    const job: DeliveryJob = {
      envelope: { from: message.envelope.from, to: [...message.envelope.to] },
      messageId: head.messageId ?? '',
      ...(head.from ? { headerFrom: head.from } : {}),
      open: () => {
        if (bytes) return bytes;
        if (streamed) {
          used = true;
          return withoutBccStream(raw as Readable);
        }
        const file = createReadStream((raw as { path: string }).path);
        return head.bccBytes ? withoutBccStream(file) : file;
      },
      restartable: () => !(streamed && used),
      ...(estimate.complete ? { exactSize: bytes ? bytes.length : estimate.bytes - (head.bccBytes ?? 0) } : {}),
      estimate,
    };
    return this.deliver(job, options);
  }

  private async getComposer(): Promise<Mail<SendResult>> {
    if (!this.composer) {
      const { default: MailClass } = await import('nodemailer/lib/mailer/index.js');
      if (!this.composer) this.composer = new MailClass(smtp365TransportFor(this)) as unknown as Mail<SendResult>;
    }
    return this.composer;
  }

  // ------------------------------------------------------------- delivery

  async deliver(job: DeliveryJob, options: SendOptions = {}): Promise<SendResult> {
    await this.ensureTls();
    const { signal } = options;
    const started = Date.now();
    // After a partial success: what already went out, while the deferred recipients are retried.
    let done: { accepted: string[]; rejected: RejectedRecipient[]; first: SendResult } | undefined;
    const merge = (r: SendResult, attempts: number): SendResult =>
      done ? { ...done.first, accepted: [...done.accepted, ...r.accepted], rejected: [...done.rejected, ...r.rejected], attempts } : { ...r, attempts };
    let staleRetried = false;
    for (let attempt = 1; ; attempt++) {
      let conn;
      let reused = false;
      try {
        signal?.throwIfAborted();
        if (this.pacer) await this.pacer.acquire(signal);
        conn = await this.pool.acquire(signal);
        reused = conn.messages > 0;
        const info = await this.sendOn(conn.smtp, job, attempt, options);
        conn.messages++;
        this.pool.release(conn, true);
        const result = merge(this.result(job, info, attempt), attempt);
        // Recipients refused for now (4xx) while others got the message: send again to just those.
        const deferred = result.rejected.filter((r) => r.reply.code >= 400 && r.reply.code < 500);
        const delay = backoffDelay(this.policy, attempt);
        if (deferred.length > 0 && attempt < this.policy.maxAttempts && delay <= this.policy.budgetMs - (Date.now() - started) && job.restartable() && !this.closed) {
          this.log.warn?.(`${deferred.length} recipient(s) deferred (${deferred[0]!.reply.code}); retrying them in ${waitText(delay)}`, { attempt, delayMs: delay });
          done = { accepted: result.accepted, rejected: result.rejected.filter((r) => !deferred.includes(r)), first: done?.first ?? result };
          job = { ...job, envelope: { ...job.envelope, to: deferred.map((r) => r.address) } };
          await sleep(delay, signal);
          continue;
        }
        this.counters.sent++;
        this.counters.retries += attempt - 1;
        return result;
      } catch (raw) {
        if (signal?.aborted) {
          if (conn) this.pool.release(conn, false);
          this.counters.failed++;
          throw signal.reason;
        }
        const err = this.toError(raw, job.headerFrom ?? job.envelope.from);
        if (conn) await this.giveBack(conn, raw as NodemailerError);
        if (err.code === 'SMTP_CONCURRENCY_LIMIT') this.pool.shrink();
        // A pooled connection the server had already dropped (idle timeout) failing before any of
        // the message went out is not a failure of this message: one immediate retry on a new
        // connection, not counted, even with retries off (the relay's case).
        if (reused && !staleRetried && err.code === 'SMTP_CONNECTION' && (raw as { bodyUntouched?: boolean }).bodyUntouched && job.restartable() && !this.closed) {
          staleRetried = true;
          attempt--;
          this.log.info?.('A pooled connection was closed by the server; sending on a new one');
          continue;
        }
        // Not sooner than the other side allows (MSAL holds token requests back up to a minute after a 5xx).
        const delay = Math.max(backoffDelay(this.policy, attempt), err.retryAfterMs ?? 0);
        const budgetLeft = this.policy.budgetMs - (Date.now() - started);
        const retry = err.transient && attempt < this.policy.maxAttempts && delay <= budgetLeft && job.restartable() && !this.closed;
        if (!retry) {
          this.counters.retries += attempt - 1;
          if (done) {
            // The message reached some recipients already: report the rest as rejected, not the whole send as failed.
            this.counters.sent++;
            const reply: SmtpReply = err.smtp ?? { code: err.transient ? 451 : 554, text: err.message };
            return { ...done.first, accepted: done.accepted, rejected: [...done.rejected, ...job.envelope.to.map((address) => ({ address, reply }))], attempts: attempt };
          }
          this.counters.failed++;
          throw withAttempts(waitTooLong(err, budgetLeft, attempt < this.policy.maxAttempts), attempt, err.transient && !job.restartable());
        }
        this.log.warn?.(`Attempt ${attempt} failed (${err.code}); retrying in ${waitText(delay)}`, {
          code: err.code,
          reply: err.smtp ? redact(`${err.smtp.code} ${err.smtp.enhanced ?? ''} ${err.smtp.text}`) : undefined,
          attempt,
          delayMs: delay,
        });
        await sleep(delay, signal);
      }
    }
  }

  private async giveBack(conn: Parameters<ConnectionPool['release']>[0], raw: NodemailerError): Promise<void> {
    // A refused transaction leaves a healthy session: reset and reuse it. Anything
    // else (421, drops, timeouts, AUTH trouble) gets a new connection.
    const refusedTransaction = (raw?.code === 'EENVELOPE' || raw?.code === 'EMESSAGE') && raw.responseCode !== 421 && raw.responseCode !== 432 && !conn.dead;
    if (refusedTransaction && (await this.pool.reset(conn))) {
      conn.messages++;
      this.pool.release(conn, true);
    } else {
      this.pool.release(conn, false);
    }
  }

  private sendOn(smtp: SMTPConnection, job: DeliveryJob, attempt: number, options: SendOptions): Promise<SMTPConnectionSendInfo> {
    return new Promise((resolve, reject) => {
      let content: Readable | Buffer | string;
      try {
        content = job.open();
      } catch (err) {
        reject(err);
        return;
      }
      const total = job.exactSize ?? (job.estimate?.complete ? job.estimate.bytes : undefined);
      const onProgress = options.onProgress;
      // Always a stream, so that after a failure we can tell whether any of it was read.
      const body = onProgress
        ? counting(content, (n) => onProgress({ sentBytes: n, attempt, ...(total !== undefined ? { totalBytes: total } : {}) }))
        : typeof content === 'string' || Buffer.isBuffer(content)
          ? Readable.from([Buffer.from(content)])
          : content;
      let settled = false;
      const signal = options.signal;
      // Cancelling mid-transaction closes the connection (nodemailer then forgets the send, so settle here).
      const onAbort = () => {
        if (settled) return;
        settled = true;
        destroyContent(body);
        destroyContent(content);
        smtp.close();
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      smtp.send({ from: job.envelope.from, to: job.envelope.to, ...(job.exactSize ? { size: job.exactSize } : {}), ...(job.dsn ? { dsn: job.dsn } : {}) }, body, (err, info) => {
        signal?.removeEventListener('abort', onAbort);
        if (settled) return;
        settled = true;
        if (err) {
          // nothing of the message went out: safe to send again at once on a fresh connection
          if (body.readableDidRead === false) (err as NodemailerError & { bodyUntouched?: boolean }).bodyUntouched = true;
          destroyContent(body);
          destroyContent(content);
          reject(err);
        } else resolve(info);
      });
    });
  }

  private result(job: DeliveryJob, info: SMTPConnectionSendInfo, attempts: number): SendResult {
    const rejected: RejectedRecipient[] = (info.rejectedErrors ?? []).map((e) => {
      const ne = e as NodemailerError & { recipient?: string };
      const reply: SmtpReply = (typeof ne.response === 'string' && parseSmtpReply(ne.response, 'RCPT')) || { code: 0, text: redact(ne.message), command: 'RCPT' };
      return { address: ne.recipient ?? '', reply };
    });
    for (const address of info.rejected ?? []) {
      if (!rejected.some((r) => r.address === address)) rejected.push({ address, reply: { code: 0, text: 'rejected', command: 'RCPT' } });
    }
    const out: SendResult & { serverMessageId?: string } = {
      messageId: job.messageId || info.serverMessageId || '',
      response: info.response,
      envelope: job.envelope,
      accepted: info.accepted ?? [],
      rejected,
      attempts,
    };
    if (info.serverMessageId) out.serverMessageId = info.serverMessageId;
    return out;
  }

  private explainContext(from: string | undefined): ExplainContext {
    const a = this.account;
    return {
      mailbox: a.user,
      ...(from ? { from } : {}),
      ...(a.clientId ? { clientId: a.clientId } : {}),
      ...(a.tenant ? { tenantId: a.tenant } : {}),
      appOnly: isAppOnly(a),
    };
  }

  private toError(raw: unknown, from: string | undefined): Smtp365Error {
    const original = unwrapOriginal(raw);
    if (original) return original;
    const ne = raw as NodemailerError;
    // Every recipient refused: the explanation names them (not only --json's details).
    const recipients = (ne?.rejectedErrors ?? []).map((e) => (e as { recipient?: string }).recipient).filter((r): r is string => !!r);
    const err = classifyError(raw, { ...this.explainContext(from), host: this.account.smtpHost, port: this.account.smtpPort, ...(recipients.length ? { recipients } : {}) });
    if (ne?.rejectedErrors?.length && !err.details?.rejected) {
      return withDetails(err, {
        rejected: ne.rejectedErrors.map((e) => ({ address: (e as { recipient?: string }).recipient, reply: typeof e.response === 'string' ? redact(e.response) : undefined })),
      });
    }
    return err;
  }

  // ------------------------------------------------------------ TLS, auth

  private ensureTls(): Promise<void> {
    if (!this.tlsPromise) {
      this.tlsPromise = this.tlsOptions();
      this.tlsPromise.catch(() => {
        this.tlsPromise = undefined;
      });
    }
    return this.tlsPromise.then((tls) => this.pool.setTls(tls));
  }

  private async tlsOptions(): Promise<ConnectionOptions> {
    const tls: ConnectionOptions = { minVersion: 'TLSv1.2', rejectUnauthorized: true };
    if (this.account.caFile) {
      let pem: Buffer;
      try {
        pem = await readFile(this.account.caFile);
      } catch (err) {
        throw new Smtp365Error('CONFIG_INVALID', `Cannot read the account's CA file "${this.account.caFile}": ${(err as Error).message}`, { cause: err });
      }
      // Added to Node's default CAs, not instead of them: a real tenant still verifies as usual.
      tls.ca = [...rootCertificates, pem.toString('utf8')];
    }
    try {
      // Built once, here (while the server's greeting is awaited), not per
      // connection in the middle of STARTTLS: parsing the CAs takes milliseconds.
      tls.secureContext = createSecureContext({ minVersion: tls.minVersion!, ...(tls.ca ? { ca: tls.ca } : {}) });
    } catch {
      // unusable CA data: left to the TLS handshake to report, as before
    }
    return tls;
  }

  private provider(): Promise<TokenProvider> {
    if (!this.providerPromise) {
      this.providerPromise = this.options.tokenProvider
        ? Promise.resolve(this.options.tokenProvider)
        : import('../auth/index.ts').then((m) => m.createTokenProvider(this.account));
      this.providerPromise.catch(() => {
        this.providerPromise = undefined;
      });
    }
    return this.providerPromise;
  }

  private async fetchToken(force: boolean): Promise<AccessToken> {
    try {
      const provider = await this.provider();
      this.counters.tokenFetches++;
      const token = await provider.getAccessToken(force ? { forceRefresh: true } : {});
      if (!token || typeof token.token !== 'string' || token.token.length === 0) {
        throw new Smtp365Error('AUTH_FAILED', 'The token provider returned no access token');
      }
      return token;
    } catch (err) {
      throw wrapForNodemailer(
        err instanceof Smtp365Error ? err : new Smtp365Error('AUTH_FAILED', `Could not get an access token: ${redact((err as Error)?.message ?? String(err))}`, { cause: err }),
      );
    }
  }

  /** One renewal at a time; a token another connection already renewed is used as is. */
  private renew(used: AccessToken): Promise<AccessToken> {
    if (!this.renewing) {
      this.renewing = (async () => {
        const current = await this.fetchToken(false);
        if (current.token !== used.token) return current; // just rotated
        this.counters.tokenRenewals++;
        this.log.info?.('Microsoft refused the access token; renewing it once', { mailbox: this.account.user });
        return this.fetchToken(true);
      })().finally(() => {
        this.renewing = undefined;
      });
    }
    return this.renewing;
  }

  /** XOAUTH2 on one connection; returns when the token used expires. */
  private async authenticate(ctx: SMTPConnectionCustomAuthContext): Promise<number> {
    const user = this.account.user;
    const attempt = async (token: AccessToken): Promise<SmtpReply | undefined> => {
      let r = await ctx.sendCommand('AUTH XOAUTH2 ' + buildXoauth2(user, token.token));
      // A server that answers with a JSON error challenge (334) wants an empty line before its final reply.
      if (r.status === 334) r = await ctx.sendCommand('');
      if (r.status === 235) return undefined;
      return parseSmtpReply(r.response, 'AUTH') ?? { code: r.status, text: r.text, command: 'AUTH' };
    };
    let token = this.renewing ? await this.renewing.catch(() => this.fetchToken(false)) : await this.fetchToken(false);
    let refused = await attempt(token);
    let renewed = false;
    if (refused && mayBeStaleToken(refused)) {
      token = await this.renew(token);
      renewed = true;
      refused = await attempt(token);
    }
    if (refused) {
      throw wrapForNodemailer(errorFromReply(refused, this.explainContext(undefined), undefined, { renewedToken: renewed }));
    }
    return token.expiresOn instanceof Date ? token.expiresOn.getTime() : Number(token.expiresOn) || Date.now() + 3_600_000;
  }

  private transcriptLogger() {
    const log = this.log;
    // nodemailer logs bunyan-style (meta, format, ...args); everything goes to debug, redacted.
    const line = (meta: unknown, fmt?: unknown, ...args: unknown[]) => {
      const text = typeof fmt === 'string' ? fmt.replace(/%[sdj]/g, () => String(args.shift() ?? '')) : String(meta);
      log.debug?.(redact(text));
    };
    return { debug: line, info: line, warn: line, error: line, trace: line, fatal: line, level: () => undefined };
  }

  private track<T>(p: Promise<T>): Promise<T> {
    this.pending.add(p);
    const done = () => this.pending.delete(p);
    p.then(done, done);
    return p;
  }
}

/**
 * Whether a refused AUTH may be a stale or rotated token (and one renewal may
 * help): the generic 535 5.7.3. A 5.7.139 (SMTP AUTH disabled, policy) will
 * not change with a new token. We renew on any 5.7.3, not only when the token
 * looks near expiry locally: the server's clock, revocation and rotation are
 * invisible from here, and one extra token request on a real failure is cheap.
 */
export function mayBeStaleToken(reply: SmtpReply): boolean {
  return reply.code === 535 && (reply.enhanced === undefined || reply.enhanced === '5.7.3');
}

/** A transient error given up on because the wait it asks for is longer than the retry budget has left: said so, first. */
function waitTooLong(err: Smtp365Error, budgetLeftMs: number, attemptsLeft: boolean): Smtp365Error {
  if (!err.transient || err.retryAfterMs === undefined || err.retryAfterMs <= budgetLeftMs || !attemptsLeft || !err.explanation) return err;
  const line = `Microsoft asked for a ${waitText(err.retryAfterMs)} wait before the next try; the retry budget had ${waitText(Math.max(0, budgetLeftMs))} left (the CLI's --timeout, the library's retry.budgetMs), so this send stopped. Try again after the wait, or allow more time.`;
  return err.with({ details: { gaveUp: 'the wait asked for is longer than the retry budget left' }, explanation: { ...err.explanation, fix: [line, ...err.explanation.fix] } });
}

function withDetails(err: Smtp365Error, extra: Record<string, unknown>): Smtp365Error {
  return err.with({ details: extra });
}

function withAttempts(err: Smtp365Error, attempts: number, notRestartable: boolean): Smtp365Error {
  return withDetails(err, { attempts, ...(notRestartable ? { notRetried: 'the message was a stream that cannot be read twice' } : {}) });
}

// ---------------------------------------------------------------- transport

export interface Smtp365SentMessageInfo {
  messageId: string;
  serverMessageId?: string;
  response: string;
  envelope: Envelope;
  accepted: string[];
  /** Addresses, as nodemailer reports them; the replies are in rejectedErrors. */
  rejected: string[];
  rejectedErrors: RejectedRecipient[];
  pending: string[];
  attempts: number;
}

/** What every smtp365 nodemailer transport has; T is what sendMail() resolves with. */
interface Smtp365TransportOf<T> extends Transport<T> {
  name: string;
  version: string;
  supportsAbortSignal: boolean;
  send(mail: MailMessage<T>, callback: ResultCallback<T>): void;
  verify(callback?: (err: Error | null, ok?: true) => void): Promise<true> | void;
  isIdle(): boolean;
  close(): void;
}

/** The transport under a Mailer's own composer (sendMail() resolves with the SendResult as is). */
export interface Smtp365Transport extends Smtp365TransportOf<SendResult> {
  /** The smtp365 Mailer underneath (stats, verify). */
  readonly smtp365: Smtp365Mailer;
}

/** The nodemailer transport object for a Mailer (internal: returns SendResult as is). */
function smtp365TransportFor(impl: MailerImpl): Smtp365Transport {
  return {
    name: 'smtp365',
    version: packageVersion(),
    supportsAbortSignal: true,
    smtp365: impl,
    send(mail, callback) {
      impl[PRIVATE](mail).then(
        (r) => callback(null, r),
        (e: unknown) => callback(e as NodemailerError),
      );
    },
    verify(callback) {
      const p = impl.verify().then(() => true as const);
      if (!callback) return p;
      p.then(
        (ok) => callback(null, ok),
        (e: unknown) => callback(e as Error),
      );
    },
    isIdle: () => impl.stats().connections.busy < impl.stats().connections.limit,
    close() {
      void impl.close();
    },
  };
}

/** Options of openMailer() and smtp365Transport(): the account by object, by name, or the default one. */
export interface OpenMailerOptions extends Omit<MailerOptions, 'account'> {
  /** An account, an account name from the config file, or nothing for the default account (config file or SMTP365_* variables). */
  account?: Account | string;
  /** Config file (default: SMTP365_CONFIG or the usual place). */
  configPath?: string;
  /** Environment to read SMTP365_* from (default: process.env). */
  env?: NodeJS.ProcessEnv;
}

/** createMailer() for an account from the config file or the environment: `await openMailer()`, `await openMailer({ account: 'work' })`. */
export async function openMailer(options: OpenMailerOptions = {}): Promise<Smtp365Mailer> {
  const { account, configPath, env, ...rest } = options;
  if (account && typeof account === 'object') return createMailer({ ...rest, account });
  const { resolveAccount } = await import('../config/load.ts');
  const resolved = await resolveAccount({ ...(typeof account === 'string' ? { name: account } : {}), ...(configPath ? { configPath } : {}), ...(env ? { env } : {}) });
  return createMailer({ ...rest, account: resolved });
}

/**
 * Typed for nodemailer: `nodemailer.createTransport(smtp365Transport())` is a
 * Mail<Smtp365SentMessageInfo>, so `info.messageId` and `info.accepted` are typed.
 */
export interface Smtp365NodemailerTransport extends Smtp365TransportOf<Smtp365SentMessageInfo> {
  /** The smtp365 Mailer underneath (stats(), verify()), once the account is resolved. */
  getMailer(): Promise<Smtp365Mailer>;
}

/**
 * A nodemailer transport: `nodemailer.createTransport(smtp365Transport({ account }))`,
 * or `smtp365Transport()` for the default account of the config file or the
 * environment (resolved at the first send). sendMail() resolves with
 * nodemailer's usual info (messageId, response, envelope, accepted, rejected)
 * plus rejectedErrors and attempts; errors are Smtp365Error with code,
 * transient, smtp and explanation.
 */
export function smtp365Transport(options: OpenMailerOptions | MailerOptions | { mailer: Smtp365Mailer } = {}): Smtp365NodemailerTransport {
  let mailer: Promise<MailerImpl> | undefined;
  if ('mailer' in options && options.mailer) {
    const m = options.mailer;
    if (!(m instanceof MailerImpl)) throw invalidOption('smtp365Transport({ mailer }) needs a mailer made by createMailer()');
    mailer = Promise.resolve(m);
  } else if ((options as OpenMailerOptions).account && typeof (options as OpenMailerOptions).account === 'object') {
    // an account object: validate now, so a wrong setup fails at createTransport()
    mailer = Promise.resolve(createMailer(options as MailerOptions) as MailerImpl);
  }
  // otherwise the account is resolved (config file, environment) at the first use
  const ready = (): Promise<MailerImpl> => {
    if (!mailer) {
      const p = openMailer(options as OpenMailerOptions) as Promise<MailerImpl>;
      mailer = p;
      p.catch(() => {
        if (mailer === p) mailer = undefined; // a fixed configuration is picked up next time
      });
    }
    return mailer;
  };
  let closed = false;
  return {
    name: 'smtp365',
    version: packageVersion(),
    supportsAbortSignal: true,
    getMailer: () => ready(),
    send(mail, callback) {
      ready()
        .then((m) => m[PRIVATE](mail))
        .then(
          (r) => {
            const info: Smtp365SentMessageInfo = { ...r, rejected: r.rejected.map((x) => x.address), rejectedErrors: r.rejected, pending: [] };
            callback(null, info);
          },
          (e: unknown) => callback(e as NodemailerError),
        );
    },
    verify(callback) {
      const p = ready()
        .then((m) => m.verify())
        .then(() => true as const);
      if (!callback) return p;
      p.then(
        (ok) => callback(null, ok),
        (e: unknown) => callback(e as Error),
      );
    },
    isIdle: () => !closed,
    close() {
      closed = true;
      void mailer?.then(
        (m) => m.close(),
        () => undefined,
      );
    },
  };
}

export function createMailer(options: MailerOptions): Smtp365Mailer {
  return new MailerImpl(options);
}

/** "800 ms", "60 s": a wait as a person reads it in a retry note. */
function waitText(ms: number): string {
  return ms < 10_000 ? `${ms} ms` : `${Math.round(ms / 1000)} s`;
}
