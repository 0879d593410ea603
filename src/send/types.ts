// The contract of sending. A transport is anything with send(): the relay's
// delivery, the CLI and the nodemailer transport all sit on a Mailer.
import type { Readable } from 'node:stream';
import type Mail from 'nodemailer/lib/mailer/index.js';
import type { SmtpReply } from '../errors/error.ts';

export interface Envelope {
  from: string;
  to: string[];
}

/** A ready RFC 5322 message with its envelope (the relay, sendmail, stdin). */
export interface RawMessage {
  raw: string | Buffer | Readable | { path: string };
  envelope: Envelope;
}

/** Either nodemailer's message object (from, to, cc, bcc, subject, text, html, attachments, headers) or a raw message. */
export type OutgoingMessage = Mail.Options | RawMessage;

export interface RejectedRecipient {
  address: string;
  reply: SmtpReply;
}

export interface SendResult {
  messageId: string;
  /** The server's final reply, e.g. "250 2.0.0 OK <id> [Hostname=...]". */
  response: string;
  envelope: Envelope;
  accepted: string[];
  rejected: RejectedRecipient[];
  /** How many attempts it took (1 = first try). */
  attempts: number;
}

export interface Mailer {
  send(message: OutgoingMessage, options?: { signal?: AbortSignal }): Promise<SendResult>;
  /** Closes pooled connections; pending sends finish first. */
  close(): Promise<void>;
}

export function isRawMessage(m: OutgoingMessage): m is RawMessage {
  return typeof m === 'object' && m !== null && 'raw' in m && 'envelope' in m && (m as RawMessage).envelope !== undefined;
}
