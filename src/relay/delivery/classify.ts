// What a failed delivery attempt means for the message. Three outcomes:
// retry later (transient), bounce now (this message can never go), or keep
// it queued and raise an alert (the ACCOUNT is broken: a revoked sign-in,
// SMTP AUTH switched off, a blocked tenant — bouncing every message would
// turn one admin fix into a flood of lost mail).
import type { ErrorCode } from '../../errors/codes.ts';
import { formatSmtpReply, isSmtp365Error, parseSmtpReply, type Smtp365Error, type SmtpReply } from '../../errors/error.ts';
import { explainSmtpReply, type Explanation } from '../../errors/explain.ts';

export type Outcome = 'transient' | 'permanent' | 'account';

const ACCOUNT_CODES = new Set<ErrorCode>([
  'CONFIG_INVALID',
  'CONFIG_NOT_FOUND',
  'SMTP_AUTH_DISABLED_TENANT',
  'SMTP_AUTH_DISABLED_MAILBOX',
  'SMTP_BASIC_AUTH_DISABLED',
  'SMTP_AUTH_BLOCKED_POLICY',
  'SMTP_AUTH_FAILED',
  'SMTP_NOT_AUTHENTICATED',
  'SMTP_AUTH_MECHANISM',
  'SMTP_QUOTA_EXCEEDED',
  'SMTP_SPAM_BLOCKED',
  'SMTP_TENANT_BLOCKED',
  'SMTP_TLS',
  'SMTP_TLS_TOO_OLD',
]);

export function outcomeOf(err: Smtp365Error): Outcome {
  if (err.code.startsWith('AUTH_')) return err.transient ? 'transient' : 'account';
  if (ACCOUNT_CODES.has(err.code)) return 'account';
  if (err.transient) return 'transient';
  // Our own bug must not destroy mail: retry until the lifetime runs out.
  if (err.code === 'INTERNAL' || err.code === 'QUEUE_IO') return 'transient';
  return 'permanent';
}

/** The per-recipient refusals an error carries (all recipients refused at RCPT). */
export function rejectedOf(err: unknown): Array<{ address: string; reply: SmtpReply }> {
  if (!isSmtp365Error(err)) return [];
  const list = (err.details?.rejected ?? []) as Array<{ address?: string; reply?: string | SmtpReply }>;
  const out: Array<{ address: string; reply: SmtpReply }> = [];
  for (const r of list) {
    if (!r.address) continue;
    const reply = typeof r.reply === 'string' ? parseSmtpReply(r.reply, 'RCPT') : r.reply;
    out.push({ address: r.address, reply: reply ?? { code: 550, text: 'rejected', command: 'RCPT' } });
  }
  return out;
}

export function replyText(reply: SmtpReply): string {
  return formatSmtpReply(reply);
}

export function explainRecipient(reply: SmtpReply, mailbox: string, from: string): Explanation {
  return explainSmtpReply({ ...reply, command: reply.command ?? 'RCPT' }, { mailbox, from });
}
