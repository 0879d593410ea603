import { ERROR_CODES, type ErrorCode } from './codes.ts';
import type { Explanation } from './explain.ts';

/** A reply as an SMTP server sent it: `535 5.7.3 Authentication unsuccessful`. */
export interface SmtpReply {
  code: number;
  enhanced?: string;
  text: string;
  /** The command the reply answered (EHLO, AUTH, MAIL, RCPT, DATA, ...), when known. */
  command?: string;
}

export interface Smtp365ErrorOptions {
  transient?: boolean;
  smtp?: SmtpReply;
  explanation?: Explanation;
  cause?: unknown;
  /** Extra machine-readable facts (never secrets). */
  details?: Record<string, unknown>;
  /** A retry before this many ms is pointless (the other side, or a library acting for it, said so). */
  retryAfterMs?: number;
}

/**
 * The one error type of smtp365. `code` is stable, `transient` tells a caller
 * whether to retry, `smtp` carries the server's reply when there was one, and
 * `explanation` says what it means and how to fix it.
 */
export class Smtp365Error extends Error {
  readonly code: ErrorCode;
  readonly transient: boolean;
  readonly smtp: SmtpReply | undefined;
  readonly explanation: Explanation | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly retryAfterMs: number | undefined;

  constructor(code: ErrorCode, message: string, options: Smtp365ErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'Smtp365Error';
    this.code = code;
    this.transient = options.transient ?? options.explanation?.transient ?? ERROR_CODES[code].transient;
    this.smtp = options.smtp;
    this.explanation = options.explanation;
    this.details = options.details;
    this.retryAfterMs = options.retryAfterMs;
  }

  /** The same error with some parts changed (details are merged); the cause stays the original's. */
  with(changes: Pick<Smtp365ErrorOptions, 'explanation' | 'details' | 'retryAfterMs'>): Smtp365Error {
    return new Smtp365Error(this.code, this.message, {
      transient: this.transient,
      ...(this.smtp ? { smtp: this.smtp } : {}),
      ...((changes.explanation ?? this.explanation) ? { explanation: changes.explanation ?? this.explanation } : {}),
      cause: this.cause ?? this,
      ...(this.details || changes.details ? { details: { ...(this.details ?? {}), ...(changes.details ?? {}) } } : {}),
      ...((changes.retryAfterMs ?? this.retryAfterMs) !== undefined ? { retryAfterMs: changes.retryAfterMs ?? this.retryAfterMs } : {}),
    });
  }

  toJSON(): Record<string, unknown> {
    return {
      code: this.code,
      message: this.message,
      transient: this.transient,
      ...(this.smtp ? { smtp: this.smtp } : {}),
      ...(this.explanation ? { explanation: this.explanation } : {}),
      ...(this.details ? { details: this.details } : {}),
      ...(this.retryAfterMs !== undefined ? { retryAfterMs: this.retryAfterMs } : {}),
    };
  }
}

export function isSmtp365Error(err: unknown): err is Smtp365Error {
  return err instanceof Smtp365Error;
}

/** Formats an SMTP reply the way it appeared on the wire. */
export function formatSmtpReply(reply: SmtpReply): string {
  return [String(reply.code), reply.enhanced, reply.text].filter(Boolean).join(' ');
}

/** Parses `535 5.7.3 Authentication unsuccessful [...]` (multi-line replies joined). */
export function parseSmtpReply(raw: string, command?: string): SmtpReply | undefined {
  const lines = raw.trim().split(/\r?\n/);
  const parts: string[] = [];
  let code: number | undefined;
  let enhanced: string | undefined;
  for (const line of lines) {
    const m = /^(\d{3})[ -]?(?:(\d\.\d{1,3}\.\d{1,3}) )?(.*)$/.exec(line.trim());
    if (!m) {
      parts.push(line.trim());
      continue;
    }
    code ??= Number(m[1]);
    enhanced ??= m[2];
    parts.push(m[3] ?? '');
  }
  if (code === undefined) return undefined;
  const reply: SmtpReply = { code, text: parts.join(' ').trim() };
  if (enhanced) reply.enhanced = enhanced;
  if (command) reply.command = command;
  return reply;
}
