// Ready RFC 5322 messages (sendmail, `send --stdin`, the relay): reading the
// header block, taking recipients from To/Cc/Bcc, dropping Bcc, and adding
// what a submission needs when the writer left it out (From, Date,
// Message-ID) — what sendmail and Postfix's cleanup do for cron and scripts.
import { randomBytes } from 'node:crypto';
import { open } from 'node:fs/promises';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import addressparser from 'nodemailer/lib/addressparser/index.js';

export interface HeaderField {
  /** Lower-case name. */
  key: string;
  /** Name as written. */
  name: string;
  /** Unfolded value, trimmed. */
  value: string;
  /** The field as it appeared, folded lines and final line break included. */
  raw: string;
}

/** Where the header block ends: index of the first body byte, or undefined if no blank line yet. */
export function findHeaderEnd(buf: Buffer, from = 0): number | undefined {
  // A message may start with a blank line (no headers at all).
  if (from === 0) {
    if (buf[0] === 0x0a) return 1;
    if (buf[0] === 0x0d && buf[1] === 0x0a) return 2;
  }
  for (let i = Math.max(from, 1); i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    // i is the end of a line; a blank line follows when the next byte is \n or \r\n
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return undefined;
}

/** Parses a header block (without the blank line). Lines that are not headers are kept as-is under key "". */
export function parseHeaderBlock(text: string): HeaderField[] {
  const lines = text.split(/(?<=\n)/);
  const fields: HeaderField[] = [];
  for (const line of lines) {
    if (/^[ \t]/.test(line) && fields.length > 0) {
      const last = fields[fields.length - 1]!;
      last.raw += line;
      last.value = (last.value + ' ' + line.trim()).trim();
      continue;
    }
    const m = /^([!-9;-~]+)[ \t]*:(.*)$/s.exec(line);
    if (!m) {
      if (line.trim().length > 0) fields.push({ key: '', name: '', value: line.trim(), raw: line });
      continue;
    }
    fields.push({ key: m[1]!.toLowerCase(), name: m[1]!, value: m[2]!.trim(), raw: line });
  }
  return fields;
}

export function headerValue(fields: HeaderField[], key: string): string | undefined {
  return fields.find((f) => f.key === key)?.value;
}

/**
 * The addresses of an address list as written in a To: header or on
 * sendmail's command line: commas inside quoted names ("Doe, John" <j@x.com>)
 * do not split, and a bare local name (root, as cron writes it) is kept.
 */
export function addressList(value: string): string[] {
  return (
    addressparser(value, { flatten: true })
      // a bare local name comes back as a name without an address
      .map((a) => (a.address || (a.name && !/\s/.test(a.name.trim()) ? a.name : '')).trim())
      .filter((a) => a.length > 0)
  );
}

/** Addresses of all fields with this name (several To: lines are all counted). */
export function headerAddresses(fields: HeaderField[], key: string): string[] {
  return fields.filter((f) => f.key === key).flatMap((f) => addressList(f.value));
}

/** A Message-ID for `domain` in the usual form: <random@domain>. */
export function newMessageId(domain: string): string {
  return `<${randomBytes(12).toString('hex')}.${Date.now().toString(36)}@${domain}>`;
}

/** RFC 5322 date: "Thu, 26 Nov 2026 06:03:36 +0000". */
export function rfc5322Date(d = new Date()): string {
  return d.toUTCString().replace(/GMT$/, '+0000');
}

function encodeDisplayName(name: string): string {
  if (/^[\x20-\x7e]*$/.test(name)) {
    return /^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$/.test(name) ? name : `"${name.replace(/(["\\])/g, '\\$1')}"`;
  }
  return `=?UTF-8?B?${Buffer.from(name, 'utf8').toString('base64')}?=`;
}

export interface SubmissionHeaderOptions {
  /** The From to add when the message has none: the mailbox (sendmail: -f, or the account). */
  defaultFrom: string;
  /** Display name for an added From (sendmail -F). */
  fromName?: string;
  /** Remove Bcc (always done by sendmail/Postfix; the envelope still carries those recipients). */
  stripBcc?: boolean;
}

export interface PreparedHeaders {
  /** The header block to send, ending with the blank line. */
  text: string;
  fields: HeaderField[];
  to: string[];
  cc: string[];
  bcc: string[];
  /** The To, Cc and Bcc fields as written (name and unfolded value), for checking them whole. */
  recipientFields: Array<{ name: string; value: string }>;
  /** Address of the From header (after adding one). */
  from: string;
  messageId: string;
  added: string[];
}

/** Rewrites a header block for submission: adds From/Date/Message-ID when missing, strips Bcc. */
export function prepareSubmissionHeaders(headerText: string, opts: SubmissionHeaderOptions): PreparedHeaders {
  const eol = headerText.includes('\r\n') ? '\r\n' : '\n';
  const fields = parseHeaderBlock(headerText);
  const to = headerAddresses(fields, 'to');
  const cc = headerAddresses(fields, 'cc');
  const bcc = headerAddresses(fields, 'bcc');
  const added: string[] = [];
  const kept = opts.stripBcc === false ? fields : fields.filter((f) => f.key !== 'bcc' && f.key !== 'resent-bcc');
  const extra: string[] = [];
  let from = headerAddresses(fields, 'from')[0];
  if (!from) {
    from = opts.defaultFrom;
    extra.push(`From: ${opts.fromName ? `${encodeDisplayName(opts.fromName)} <${from}>` : from}`);
    added.push('From');
  }
  if (!headerValue(fields, 'date')) {
    extra.push(`Date: ${rfc5322Date()}`);
    added.push('Date');
  }
  let messageId = headerValue(fields, 'message-id');
  if (!messageId) {
    messageId = newMessageId(from.split('@')[1] ?? 'localhost');
    extra.push(`Message-ID: ${messageId}`);
    added.push('Message-ID');
  }
  const body = kept.map((f) => (f.raw.endsWith('\n') ? f.raw : f.raw + eol)).join('');
  const text = extra.map((l) => l + eol).join('') + body + eol;
  const recipientFields = fields.filter((f) => f.key === 'to' || f.key === 'cc' || f.key === 'bcc').map((f) => ({ name: f.name, value: f.value }));
  return { text, fields: kept, to, cc, bcc, recipientFields, from, messageId: messageId.trim(), added };
}

const isBcc = (f: HeaderField): boolean => f.key === 'bcc' || f.key === 'resent-bcc';

/**
 * The header fields without Bcc and Resent-Bcc (what sendmail and Postfix's
 * cleanup do: the envelope carries those recipients, the header would show
 * them to everyone), byte for byte otherwise; undefined when there are none.
 * `fields`: the header lines without the blank line that ends them.
 */
export function withoutBcc(fields: string): string | undefined {
  const parsed = parseHeaderBlock(fields);
  if (!parsed.some(isBcc)) return undefined;
  const kept = parsed.filter((f) => !isBcc(f)).map((f) => f.raw).join('');
  // The last field removed: the one before it keeps its line break only if the input ended with one.
  return /\n$/.test(fields) ? kept : kept.replace(/\r?\n$/, '');
}

/**
 * A ready message's bytes with Bcc fields removed from its header section
 * (at most the first 256 KB are looked at): the same buffer when there are none.
 */
export function stripBccFromMessage(message: Buffer): Buffer {
  // No blank line: a message of header fields only (RFC 5322 allows it), when it is small enough to be one.
  const end = findHeaderEnd(message.subarray(0, 262_144)) ?? (message.length < 262_144 ? message.length : undefined);
  if (end === undefined) return message;
  const head = message.subarray(0, end).toString('latin1');
  // Most messages have none: no parsing for them (the relay delivers every message through here).
  if (!/(^|\n)(resent-)?bcc[ \t]*:/i.test(head)) return message;
  // The blank line that ends the header section, whatever the fields' own line ends ("\n\r\n" too).
  const blank = end === message.length && findHeaderEnd(message) === undefined ? 0 : head.endsWith('\r\n') ? 2 : 1;
  const next = withoutBcc(head.slice(0, head.length - blank));
  if (next === undefined) return message;
  return Buffer.concat([Buffer.from(next + head.slice(head.length - blank), 'latin1'), message.subarray(end)]);
}

/** `source` with Bcc fields removed (see BccStripper); an error of the source ends the result with it. */
export function withoutBccStream(source: Readable): Readable {
  const out = new BccStripper();
  source.once('error', (err) => out.destroy(err));
  return source.pipe(out);
}

/** The same for a stream: holds the header section (≤ 256 KB), then passes the rest through. */
export class BccStripper extends Transform {
  private held: Buffer[] = [];
  private size = 0;
  private passing = false;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    if (this.passing) return done(null, chunk);
    this.held.push(chunk);
    this.size += chunk.length;
    const all = Buffer.concat(this.held);
    this.held = [all];
    if (findHeaderEnd(all) === undefined && this.size <= 262_144) return done();
    this.passing = true;
    this.held = [];
    done(null, stripBccFromMessage(all));
  }

  override _flush(done: TransformCallback): void {
    done(null, this.held.length > 0 ? stripBccFromMessage(Buffer.concat(this.held)) : undefined);
  }
}

/** Reads the Message-ID of a ready message (first 256 KB), or undefined. */
export async function messageIdOf(raw: string | Buffer | { path: string }): Promise<string | undefined> {
  return (await headersOf(raw)).messageId;
}

/** Message-ID and From address of a ready message, from its header section (first 256 KB); `bccBytes`: the size of its Bcc fields. */
export async function headersOf(raw: string | Buffer | { path: string }): Promise<{ messageId?: string; from?: string; bccBytes?: number }> {
  let head: Buffer;
  if (typeof raw === 'string') head = Buffer.from(raw.slice(0, 262_144));
  else if (Buffer.isBuffer(raw)) head = raw.subarray(0, 262_144);
  else {
    const fh = await open(raw.path, 'r');
    try {
      const buf = Buffer.alloc(262_144);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      head = buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  }
  const end = findHeaderEnd(head) ?? head.length;
  const fields = parseHeaderBlock(head.subarray(0, end).toString('utf8'));
  const messageId = headerValue(fields, 'message-id');
  const from = headerAddresses(fields, 'from')[0];
  // What stripBccFromMessage removes, measured the same way (bytes, not UTF-8 characters): the exact SIZE= to announce.
  const bccBytes = fields.some(isBcc) ? head.length - stripBccFromMessage(head).length : 0;
  return { ...(messageId ? { messageId } : {}), ...(from ? { from } : {}), ...(bccBytes ? { bccBytes } : {}) };
}
