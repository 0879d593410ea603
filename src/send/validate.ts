// Checks a message before any connection is opened: every address parses
// and looks deliverable, there is at least one recipient, each file it
// refers to can be read, and the encoded size stays under the limit.
// Failing here is cheap and the error says exactly which value is wrong;
// failing at Microsoft costs a connection and says "550".
import { constants as fsc } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { Readable } from 'node:stream';
import addressparser from 'nodemailer/lib/addressparser/index.js';
import type Mail from 'nodemailer/lib/mailer/index.js';
import { Smtp365Error } from '../errors/error.ts';
import type { Envelope, RawMessage } from './types.ts';
import { headerProblem } from './header-check.ts';

/** Microsoft's default MaxSendSize (reference §6): 35 MB. */
export const DEFAULT_MAX_MESSAGE_BYTES = 35 * 1024 * 1024;
/** Exchange Online's hard ceiling for MaxSendSize. */
export const MICROSOFT_MAX_MESSAGE_BYTES = 150 * 1024 * 1024;
/** Microsoft's per-message recipient limit (reference §6). */
export const MAX_RECIPIENTS_PER_MESSAGE = 500;

// addr-spec: a dot-atom or quoted local part (UTF-8 allowed, SMTPUTF8), a
// domain with at least two labels or an address literal. Deliberately a bit
// looser than RFC 5321 for local parts, strict where typos happen.
const LOCAL_ATOM = /^[^\s@"(),:;<>[\\\]]+$/u;
const LOCAL_QUOTED = /^"(?:[^"\\\r\n]|\\.)+"$/u;
const DOMAIN_LABEL = /^(?!-)[\p{L}\p{N}-]{1,63}(?<!-)$/u;

/** Why an address is not usable, or undefined when it is fine. */
export function addressProblem(address: string): string | undefined {
  if (address.length === 0) return 'it is empty';
  if (address.length > 254) return 'it is longer than 254 characters';
  if (/[\r\n]/.test(address)) return 'it contains a line break';
  const at = address.lastIndexOf('@');
  if (at < 0) return 'it has no @domain part';
  const local = address.slice(0, at);
  const domain = address.slice(at + 1);
  if (local.length === 0) return 'the part before @ is empty';
  if (local.length > 64) return 'the part before @ is longer than 64 characters';
  if (!LOCAL_QUOTED.test(local)) {
    if (!LOCAL_ATOM.test(local)) return 'the part before @ contains characters that need quoting';
    if (local.startsWith('.') || local.endsWith('.') || local.includes('..')) return 'the part before @ has a misplaced dot';
  }
  if (domain.length === 0) return 'the domain after @ is empty';
  if (/^\[[0-9a-fA-F:.]+\]$/.test(domain)) return undefined;
  const labels = domain.split('.');
  if (labels.length < 2) return `the domain "${domain}" has no dot (a full domain like example.com is needed)`;
  for (const label of labels) {
    if (!DOMAIN_LABEL.test(label)) return `the domain "${domain}" is not a valid domain name`;
  }
  if (/^\d+$/.test(labels[labels.length - 1]!)) return `the domain "${domain}" is not a valid domain name`;
  return undefined;
}

function invalidAddress(field: string, value: string, problem: string): Smtp365Error {
  return new Smtp365Error('MESSAGE_INVALID', `Invalid address in ${field}: "${value}" (${problem})`, {
    details: { field, value },
  });
}

type AddressInput = Mail.Options['to'] | false | null;

/** Flattens nodemailer address input (strings, {name,address}, lists, groups) to addresses, validating each. */
export function parseAddressField(field: string, input: AddressInput): string[] {
  if (input === undefined || input === null || input === false) return [];
  const out: string[] = [];
  const visit = (v: unknown) => {
    if (v === undefined || v === null || v === '') return;
    if (Array.isArray(v)) {
      for (const x of v) visit(x);
      return;
    }
    if (typeof v === 'object') {
      const a = v as { address?: unknown; name?: unknown };
      if (typeof a.address !== 'string') throw invalidAddress(field, JSON.stringify(v), 'an address object needs an "address" string');
      const problem = addressProblem(a.address.trim());
      if (problem) throw invalidAddress(field, a.address, problem);
      out.push(a.address.trim());
      return;
    }
    if (typeof v !== 'string') throw invalidAddress(field, String(v), 'not a string');
    // Before parsing: the parser would turn "a@b.c\r\nBcc: x@y.z" into a display name and send to x@y.z only.
    if (/[\r\n]/.test(v)) throw invalidAddress(field, v.replace(/\r?\n/g, '\\n'), 'it contains a line break');
    const parsed = addressparser(v, { flatten: true });
    if (parsed.length === 0) throw invalidAddress(field, v, 'no address found');
    for (const p of parsed) {
      const addr = (p.address ?? '').trim();
      if (!addr) {
        // addressparser files a bare word ("bob", "root") under name
        const word = (p.name ?? '').trim();
        throw invalidAddress(field, word || v, (word && addressProblem(word)) || 'no address found');
      }
      const problem = addressProblem(addr);
      if (problem) throw invalidAddress(field, addr, problem);
      // "a@b.c d@e.f" parses as a display name "a@b.c" for d@e.f: two addresses missing a comma, not a name.
      if (!v.includes('<') && (p.name ?? '').includes('@')) throw invalidAddress(field, v, 'it looks like several addresses: separate them with commas');
      out.push(addr);
    }
  };
  visit(input);
  return out;
}

export function validateEnvelope(envelope: Envelope, where = 'envelope'): void {
  if (!envelope || typeof envelope !== 'object') throw new Smtp365Error('MESSAGE_INVALID', `The ${where} is missing`);
  if (typeof envelope.from !== 'string') throw new Smtp365Error('MESSAGE_INVALID', `The ${where} has no sender (from)`);
  if (envelope.from !== '') parseAddressField(`${where}.from`, envelope.from);
  if (!Array.isArray(envelope.to)) throw new Smtp365Error('MESSAGE_INVALID', `The ${where}'s "to" must be a list of addresses`);
  const to = parseAddressField(`${where}.to`, envelope.to);
  checkRecipientCount(to.length);
}

export function checkRecipientCount(n: number): void {
  if (n === 0) {
    throw new Smtp365Error('MESSAGE_INVALID', 'The message has no recipients: give at least one to, cc or bcc address');
  }
  if (n > MAX_RECIPIENTS_PER_MESSAGE) {
    throw new Smtp365Error('MESSAGE_INVALID', `The message has ${n} recipients; Microsoft 365 accepts at most ${MAX_RECIPIENTS_PER_MESSAGE} per message`, {
      details: { recipients: n, limit: MAX_RECIPIENTS_PER_MESSAGE },
    });
  }
}

function isUrl(p: string): boolean {
  return /^(?:https?|data):/i.test(p);
}

/** Size of a readable local file, or a clear error naming what refers to it. */
export async function checkReadableFile(path: string, what: string): Promise<number> {
  let size: number;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw Object.assign(new Error('not a regular file'), { code: 'ENOTFILE' });
    size = st.size;
    const fh = await open(path, fsc.O_RDONLY);
    await fh.close();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT' ? 'no such file' : code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOTFILE' || code === 'EISDIR' ? 'not a regular file' : (err as Error).message;
    throw new Smtp365Error('INPUT_INVALID', `Cannot read ${what} "${path}": ${why}`, { details: { path, ...(code ? { errno: code } : {}) } });
  }
  return size;
}

/** Bytes after base64 with 76-character lines. */
export function base64Size(n: number): number {
  const b64 = Math.ceil(n / 3) * 4;
  return b64 + Math.ceil(b64 / 76) * 2;
}

interface ContentSize {
  bytes: number;
  /** false when part of the content is a stream or URL of unknown length. */
  known: boolean;
}

async function contentSize(value: unknown, what: string, textual: boolean): Promise<ContentSize> {
  if (value === undefined || value === null || value === false) return { bytes: 0, known: true };
  const encoded = (n: number, ascii: boolean) => (ascii ? Math.ceil(n * 1.02) : base64Size(n));
  if (typeof value === 'string') {
    const n = Buffer.byteLength(value);
      return { bytes: encoded(n, textual && /^[\x00-\x7f]*$/.test(value)), known: true };
  }
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return { bytes: base64Size(value.byteLength), known: true };
  if (value instanceof Readable || (typeof value === 'object' && typeof (value as { pipe?: unknown }).pipe === 'function')) return { bytes: 0, known: false };
  if (typeof value === 'object') {
    const o = value as { content?: unknown; path?: unknown; href?: unknown; raw?: unknown; encoding?: unknown };
    if (o.raw !== undefined) return contentSize(o.raw, what, true);
    if (typeof o.path === 'string' && o.path) {
      if (isUrl(o.path)) return { bytes: 0, known: false };
      const n = await checkReadableFile(o.path, what);
      return { bytes: base64Size(n), known: true };
    }
    if (typeof o.href === 'string' && o.href) return { bytes: 0, known: false };
    if (o.content !== undefined) {
      if (typeof o.content === 'string' && typeof o.encoding === 'string' && o.encoding.toLowerCase() === 'base64') {
        return { bytes: base64Size(Math.floor((o.content.length * 3) / 4)), known: true };
      }
      return contentSize(o.content, what, textual);
    }
  }
  return { bytes: 0, known: true };
}

async function rawSize(raw: unknown): Promise<ContentSize> {
  if (typeof raw === 'string') return { bytes: Buffer.byteLength(raw), known: true };
  if (Buffer.isBuffer(raw)) return { bytes: raw.length, known: true };
  if (raw && typeof raw === 'object' && typeof (raw as { path?: unknown }).path === 'string' && !isUrl((raw as { path: string }).path)) {
    return { bytes: await checkReadableFile((raw as { path: string }).path, 'the raw message'), known: true };
  }
  if (raw && typeof raw === 'object' && 'content' in raw) return rawSize((raw as { content: unknown }).content);
  return { bytes: 0, known: false };
}

export interface SizeEstimate {
  /** Estimated size on the wire, headers and encoding included. */
  bytes: number;
  /** false when a stream or URL of unknown length is part of the message. */
  complete: boolean;
}

/** Estimates the encoded size of a nodemailer message, checking each referenced file. */
export async function estimateMessageSize(mail: Mail.Options): Promise<SizeEstimate> {
  let bytes = 2048; // headers, boundaries
  let complete = true;
  const add = (s: ContentSize) => {
    bytes += s.bytes;
    complete &&= s.known;
  };
  if (mail.raw !== undefined) {
    // A ready message is sent as it is: no headers or encoding are added.
    const s = await rawSize(mail.raw);
    return { bytes: s.bytes, complete: s.known };
  }
  add(await contentSize(mail.text, 'the text body', true));
  add(await contentSize(mail.html, 'the HTML body', true));
  add(await contentSize(mail.watchHtml, 'the watchHtml body', true));
  add(await contentSize(mail.amp, 'the AMP body', true));
  add(await contentSize(mail.icalEvent, 'the calendar event', true));
  for (const [i, alt] of (mail.alternatives ?? []).entries()) {
    add(await contentSize(alt, `alternative #${i + 1}`, false));
    bytes += 200;
  }
  for (const [i, att] of (mail.attachments ?? []).entries()) {
    const name = typeof att.filename === 'string' ? att.filename : typeof att.path === 'string' ? att.path : `#${i + 1}`;
    add(await contentSize(att, `attachment ${name}`, false));
    bytes += 300;
  }
  return { bytes, complete };
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}

/** `mailbox`, when known, fills in the PowerShell line. */
export function checkSize(estimate: SizeEstimate, limit: number, mailbox?: string): void {
  if (estimate.bytes > limit) {
    throw new Smtp365Error(
      'MESSAGE_TOO_LARGE',
      `The message is about ${formatBytes(estimate.bytes)} once encoded, over the limit of ${formatBytes(limit)} (attachments grow by about a third when encoded)`,
      {
        details: { estimatedBytes: estimate.bytes, limitBytes: limit },
        explanation: {
          code: 'MESSAGE_TOO_LARGE',
          transient: false,
          title: 'The message is larger than the mailbox may send',
          cause: `Exchange Online refuses messages over the mailbox's MaxSendSize (35 MB by default, at most 150 MB), counted after encoding.`,
          fix: [
            'Send a smaller message, or share large files by link.',
            "If the mailbox's MaxSendSize was raised, raise smtp365's limit to match (maxMessageBytes option, --max-size).",
          ],
          powershell: [`Set-Mailbox -Identity ${mailbox || '<mailbox>'} -MaxSendSize 150MB`],
        },
      },
    );
  }
}

/** Validates a nodemailer message object before sending: addresses, recipients, files, size. */
/** nodemailer's `headers`: an object (values a string, a list, or {prepared, value}) or a list of {key, value}. */
function checkCustomHeaders(headers: unknown): void {
  if (headers === undefined || headers === null) return;
  const entries: Array<[string, unknown]> = Array.isArray(headers)
    ? headers.map((h) => [String((h as { key?: unknown })?.key ?? ''), (h as { value?: unknown })?.value])
    : typeof headers === 'object'
      ? Object.entries(headers as Record<string, unknown>)
      : [];
  for (const [name, raw] of entries) {
    for (const v of Array.isArray(raw) ? raw : [raw]) {
      const value = v !== null && typeof v === 'object' && 'value' in v ? (v as { value: unknown }).value : v;
      const problem = headerProblem(name, String(value ?? ''));
      if (problem) throw new Smtp365Error('MESSAGE_INVALID', `headers["${name}"]: ${problem}; for a message with your own MIME structure, send it as raw`);
    }
  }
}

export async function validateMailOptions(mail: Mail.Options, limit: number, mailbox?: string): Promise<SizeEstimate> {
  if (!mail || typeof mail !== 'object') throw new Smtp365Error('MESSAGE_INVALID', 'The message must be an object');
  checkCustomHeaders(mail.headers);
  const from = parseAddressField('from', mail.from);
  if (from.length > 1 && !mail.sender) {
    throw new Smtp365Error('MESSAGE_INVALID', `"from" has ${from.length} addresses; give one (or set "sender")`);
  }
  parseAddressField('sender', mail.sender);
  parseAddressField('replyTo', mail.replyTo);
  let recipients: number;
  if (mail.envelope) {
    const env = mail.envelope as { from?: AddressInput; to?: AddressInput; cc?: AddressInput; bcc?: AddressInput };
    if (env.from) parseAddressField('envelope.from', env.from);
    recipients = ['to', 'cc', 'bcc'].reduce((n, k) => n + parseAddressField(`envelope.${k}`, env[k as 'to']).length, 0);
    // nodemailer addresses the header fields only when the envelope names no recipient
    for (const k of ['to', 'cc', 'bcc'] as const) parseAddressField(k, mail[k]);
  } else {
    recipients = ['to', 'cc', 'bcc'].reduce((n, k) => n + parseAddressField(k, mail[k as 'to']).length, 0);
  }
  checkRecipientCount(recipients);
  const estimate = await estimateMessageSize(mail);
  checkSize(estimate, limit, mailbox);
  return estimate;
}

/** Validates a raw message and its envelope; returns its size (exact when known). */
export async function validateRawMessage(message: RawMessage, limit: number, mailbox?: string): Promise<SizeEstimate> {
  validateEnvelope(message.envelope);
  const raw = message.raw;
  let estimate: SizeEstimate;
  if (typeof raw === 'string') estimate = { bytes: Buffer.byteLength(raw), complete: true };
  else if (Buffer.isBuffer(raw)) estimate = { bytes: raw.length, complete: true };
  else if (raw && typeof raw === 'object' && 'path' in raw && typeof raw.path === 'string') {
    estimate = { bytes: await checkReadableFile(raw.path, 'the raw message'), complete: true };
  } else if (raw && typeof (raw as Readable).pipe === 'function') estimate = { bytes: 0, complete: false };
  else throw new Smtp365Error('MESSAGE_INVALID', 'raw must be a string, a Buffer, a readable stream or { path }');
  if (estimate.complete && estimate.bytes === 0) throw new Smtp365Error('MESSAGE_INVALID', 'The raw message is empty');
  checkSize(estimate, limit, mailbox);
  return estimate;
}
