// Delivery status notifications (RFC 3464) for recipients that failed, or
// (delay warnings, when configured) that are still being retried:
// multipart/report with a human part (the reply and its explanation from
// src/errors/explain.ts), the machine-readable message/delivery-status, and
// the original headers. Composed with nodemailer's MIME composer.
import { open } from 'node:fs/promises';
import os from 'node:os';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { formatExplanation } from '../../errors/explain.ts';
import type { QueueEntry, RecipientState } from '../queue/types.ts';

/** A sender we can sensibly write to: a real-looking domain, not the null sender. */
export function deliverableSender(address: string): boolean {
  const m = /^[^@\s]+@([^@\s]+)$/.exec(address);
  if (!m) return false;
  const domain = m[1]!.toLowerCase();
  return domain.includes('.') && !/\.(local|localdomain|lan|internal|invalid|test|example)$/.test(domain) && domain !== 'localhost';
}

/** The original message's header section (at most 64 KB). */
async function originalHeaders(dataPath: string): Promise<string> {
  const fh = await open(dataPath, 'r').catch(() => undefined);
  if (!fh) return '';
  try {
    const buf = Buffer.alloc(64 * 1024);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    const end = text.indexOf('\r\n\r\n');
    return end >= 0 ? text.slice(0, end + 2) : text;
  } finally {
    await fh.close();
  }
}

function statusOf(r: RecipientState, action: 'failed' | 'delayed'): string {
  const m = /^\d{3}[ -](\d\.\d{1,3}\.\d{1,3})/.exec(r.reply ?? '');
  return m?.[1] ?? (action === 'failed' ? '5.0.0' : '4.0.0');
}

export async function buildBounce(opts: { entry: QueueEntry; failed: RecipientState[]; mailbox: string; dataPath: string; reportingMta?: string }): Promise<Buffer> {
  return buildDsn({ ...opts, recipients: opts.failed, action: 'failed' });
}

/**
 * A delay warning (Postfix's delay_warning_time): the message is still
 * being retried for these recipients, until `retryUntil`; nothing to do yet.
 */
export async function buildDelayNotice(opts: { entry: QueueEntry; pending: RecipientState[]; mailbox: string; dataPath: string; retryUntil: Date; reportingMta?: string }): Promise<Buffer> {
  return buildDsn({ ...opts, recipients: opts.pending, action: 'delayed' });
}

async function buildDsn(opts: {
  entry: QueueEntry;
  recipients: RecipientState[];
  action: 'failed' | 'delayed';
  mailbox: string;
  dataPath: string;
  retryUntil?: Date;
  reportingMta?: string;
}): Promise<Buffer> {
  const { entry, recipients, mailbox, action } = opts;
  const mta = opts.reportingMta ?? os.hostname();
  const these = recipients.length === 1 ? 'this recipient' : 'these recipients';
  const intro =
    action === 'failed'
      ? [`Your message ${entry.id} (received ${entry.receivedAt}) could not be delivered to ${these}:`]
      : [
          `Your message ${entry.id} (received ${entry.receivedAt}) has not been delivered yet to ${these}.`,
          `The relay keeps trying until ${opts.retryUntil!.toUTCString()}; you do not need to send it again.`,
          'If it still cannot be delivered by then, you will get another message.',
        ];
  const human = [
    `This is the smtp365 relay on ${mta}.`,
    '',
    ...intro,
    '',
    ...recipients.flatMap((r) => [
      `  <${r.address}>`,
      `    ${action === 'failed' ? 'Server said' : 'Last reply'}: ${r.reply ?? entry.lastError?.reply ?? entry.lastError?.message ?? 'no reply'}`,
      ...(r.explanation ? formatExplanation(r.explanation).split('\n').map((l) => `    ${l}`) : []),
      '',
    ]),
    'The message was sent through Microsoft 365 with the account ' + mailbox + '.',
    'The headers of the original message are attached.',
  ].join('\r\n');
  const perMessage = [`Reporting-MTA: dns; ${mta}`, `X-Smtp365-Queue-ID: ${entry.id}`, `Arrival-Date: ${new Date(entry.receivedAt).toUTCString()}`].join('\r\n');
  const perRecipient = recipients.map((r) => {
    const reply = r.reply ?? (action === 'delayed' ? entry.lastError?.reply : undefined);
    return [
      `Final-Recipient: rfc822; ${r.address}`,
      `Action: ${action}`,
      `Status: ${statusOf({ ...r, ...(reply ? { reply } : {}) }, action)}`,
      ...(reply ? [`Diagnostic-Code: smtp; ${reply.replace(/[\r\n]+/g, ' ')}`] : []),
      `Last-Attempt-Date: ${new Date(r.at ?? entry.lastAttemptAt ?? Date.now()).toUTCString()}`,
      ...(action === 'delayed' && opts.retryUntil ? [`Will-Retry-Until: ${opts.retryUntil.toUTCString()}`] : []),
    ].join('\r\n');
  });
  const headers = await originalHeaders(opts.dataPath);
  const composer = new MailComposer({
    from: { name: 'Mail Delivery System', address: mailbox },
    to: entry.from,
    subject: action === 'failed' ? 'Undelivered Mail Returned to Sender' : 'Delayed Mail (still being retried)',
    headers: { 'Auto-Submitted': 'auto-replied', 'X-Smtp365-Bounce-Of': entry.id },
    text: human,
    attachments: [
      { contentType: 'message/delivery-status', content: [perMessage, ...perRecipient].join('\r\n\r\n') + '\r\n', contentDisposition: 'inline', filename: false as unknown as string },
      { contentType: 'text/rfc822-headers', content: headers, contentDisposition: 'inline', filename: false as unknown as string, contentTransferEncoding: /^[\x00-\x7f]*$/.test(headers) ? '7bit' : 'quoted-printable' },
    ],
  });
  const root = composer.compile();
  root.setHeader('Content-Type', 'multipart/report; report-type=delivery-status');
  return root.build();
}
