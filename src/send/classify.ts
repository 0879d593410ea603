// Turns what nodemailer's SMTP connection reports (errors with `code`,
// `response`, `responseCode`, `command`) into the one error type, with the
// explanation from the one table (errors/explain.ts) and a transient flag
// the retry loop and the CLI's exit code trust.
import { Smtp365Error, parseSmtpReply, type SmtpReply } from '../errors/error.ts';
import { explainSmtpReply, explainSmtpUnreachable, type ExplainContext } from '../errors/explain.ts';
import { redact } from '../util/redact.ts';

export interface NodemailerError extends Error {
  code?: string;
  originalCode?: string;
  response?: string;
  responseCode?: number;
  command?: string;
  rejectedErrors?: NodemailerError[];
}

/** nodemailer's command names ("MAIL FROM", "AUTH XOAUTH2", "CONN") → the verb explain.ts expects. */
export function commandVerb(command: string | undefined): string | undefined {
  if (!command) return undefined;
  const c = command.toUpperCase();
  if (c.startsWith('AUTH')) return 'AUTH';
  if (c.startsWith('MAIL')) return 'MAIL';
  if (c.startsWith('RCPT')) return 'RCPT';
  if (c.startsWith('DATA')) return 'DATA';
  if (c.startsWith('EHLO') || c.startsWith('HELO') || c.startsWith('LHLO')) return 'EHLO';
  if (c.startsWith('STARTTLS')) return 'STARTTLS';
  if (c === 'CONN' || c === 'GREETING') return 'CONNECT';
  return c.split(' ')[0];
}

/** The server reply an error carries, parsed; undefined for local/network errors. */
export function replyOf(err: NodemailerError): SmtpReply | undefined {
  if (typeof err.response !== 'string' || !/^\d{3}/.test(err.response.trim())) return undefined;
  return parseSmtpReply(err.response, commandVerb(err.command));
}

/** Reply → explained Smtp365Error. */
export function errorFromReply(reply: SmtpReply, ctx: ExplainContext, cause?: unknown, details?: Record<string, unknown>): Smtp365Error {
  const explanation = explainSmtpReply(reply, ctx);
  return new Smtp365Error(explanation.code, redact(explanation.title), {
    smtp: reply,
    explanation,
    transient: explanation.transient,
    cause,
    ...(details ? { details } : {}),
  });
}

const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_SSL_WRONG_VERSION_NUMBER',
  'ERR_SSL_UNSUPPORTED_PROTOCOL',
  'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION',
  'ERR_SSL_NO_PROTOCOLS_AVAILABLE',
]);

const UNREACHABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH']);

export interface ClassifyContext extends ExplainContext {
  host: string;
  port: number;
}

/** Any error from a delivery attempt → Smtp365Error. Smtp365Errors pass through unchanged. */
export function classifyError(err: unknown, ctx: ClassifyContext): Smtp365Error {
  if (err instanceof Smtp365Error) return err;
  const e = (err ?? {}) as NodemailerError;
  const where = `${ctx.host}:${ctx.port}`;
  const reply = replyOf(e);
  if (reply) return errorFromReply(reply, ctx, err);

  const sys = e.originalCode ?? '';
  const msg = redact(e.message ?? String(err));
  if (e.name === 'AbortError' || e.code === 'EABORT' || e.code === 'ABORT_ERR') {
    return new Smtp365Error('TIMEOUT', 'The send was cancelled', { transient: true, cause: err, details: { aborted: true } });
  }
  if (TLS_VERIFY_CODES.has(sys) || TLS_VERIFY_CODES.has(e.code ?? '') || /certificate|self[- ]signed|altnames|wrong version number|protocol version/i.test(e.message ?? '')) {
    return new Smtp365Error('SMTP_TLS', `The TLS connection to ${where} could not be verified: ${msg}`, {
      transient: false,
      cause: err,
      details: { host: ctx.host, port: ctx.port, ...(sys ? { tlsError: sys } : {}) },
      explanation: {
        code: 'SMTP_TLS',
        transient: false,
        title: `The certificate of ${ctx.host} was not accepted`,
        cause: 'smtp365 verifies the server certificate and requires TLS 1.2 or newer. A proxy that intercepts TLS, a wrong host name, or (for the sandbox) a missing CA file makes this fail.',
        fix: [
          `Connect to the DNS name Microsoft documents (smtp.office365.com), never an IP address.`,
          'For the sandbox or a TLS-inspecting proxy, add its CA to the account (caFile / SMTP365_CA_FILE).',
        ],
      },
    });
  }
  if (e.code === 'ETLS') {
    return new Smtp365Error('SMTP_TLS', `STARTTLS with ${where} failed: ${msg}`, { transient: false, cause: err, details: { host: ctx.host, port: ctx.port } });
  }
  if (e.code === 'ETIMEDOUT' || sys === 'ETIMEDOUT') {
    return new Smtp365Error('SMTP_TIMEOUT', `${where} did not answer in time (${msg})`, { transient: true, cause: err, details: { host: ctx.host, port: ctx.port } });
  }
  if (e.code === 'EDNS' || sys === 'ENOTFOUND' || sys === 'EAI_AGAIN') {
    // A name that does not exist is a configuration error; a resolver that is down is not.
    const transient = sys === 'EAI_AGAIN';
    return new Smtp365Error('SMTP_CONNECTION', `Cannot resolve ${ctx.host}: ${msg}`, { transient, cause: err, details: { host: ctx.host, port: ctx.port, ...(sys ? { systemError: sys } : {}) } });
  }
  if (e.code === 'ESTREAM') {
    return new Smtp365Error('MESSAGE_INVALID', `The message could not be read while sending: ${msg}`, { transient: false, cause: err });
  }
  if (e.code === 'ECONNECTION' || e.code === 'ESOCKET' || e.code === 'EPROTOCOL' || sys === 'ECONNREFUSED' || sys === 'ECONNRESET' || sys === 'EPIPE') {
    // No connection at all (not one lost midway): host, port or a firewall, which the explanation walks through.
    const unreachable = UNREACHABLE.has(sys);
    return new Smtp365Error('SMTP_CONNECTION', `The connection to ${where} failed: ${msg}`, {
      transient: true,
      cause: err,
      details: { host: ctx.host, port: ctx.port, ...(sys ? { systemError: sys } : {}) },
      ...(unreachable ? { explanation: explainSmtpUnreachable({ ...ctx, smtpHost: ctx.host, smtpPort: ctx.port }) } : {}),
    });
  }
  if (e.code === 'EENVELOPE') {
    return new Smtp365Error('MESSAGE_INVALID', msg, { transient: false, cause: err });
  }
  if (e.code === 'EMESSAGE' && /size/i.test(msg)) {
    return new Smtp365Error('MESSAGE_TOO_LARGE', msg, { transient: false, cause: err });
  }
  return new Smtp365Error('INTERNAL', msg, { transient: false, cause: err });
}
