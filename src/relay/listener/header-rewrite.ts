// Devices put nonsense in the From header too (scanner@printer.local), and
// Microsoft refuses a From the mailbox may not send as (5.7.60, after DATA).
// When a route rewrites senders, the From header is rewritten the same way,
// while the message streams: only the header section is held (≤ 256 KB).
import { Transform, type TransformCallback } from 'node:stream';
import addressparser from 'nodemailer/lib/addressparser/index.js';

const MAX_HEADER = 256 * 1024;

/** Returns the new header section, or undefined to keep it. `allowed` says whether an address may stay. */
export function rewriteFromHeader(header: string, mailbox: string, allowed: (address: string) => boolean): string | undefined {
  const lines = header.split('\r\n');
  const start = lines.findIndex((l) => /^from\s*:/i.test(l));
  if (start < 0) return undefined;
  let end = start + 1;
  while (end < lines.length && /^[ \t]/.test(lines[end]!)) end++;
  const value = lines.slice(start, end).join('').replace(/^from\s*:\s*/i, '').trim();
  const parsed = addressparser(value, { flatten: true }) as Array<{ name: string; address: string }>;
  const first = parsed[0];
  if (first && parsed.length === 1 && first.address && allowed(first.address)) return undefined;
  const display = (first?.name || first?.address || 'Device').replace(/["\\\r\n]/g, '').slice(0, 100);
  const replacement = [`From: "${display}" <${mailbox}>`, `X-Smtp365-Original-From: ${value.replace(/[\r\n]/g, ' ').slice(0, 900)}`];
  lines.splice(start, end - start, ...replacement);
  return lines.join('\r\n');
}

export class FromHeaderRewriter extends Transform {
  private buf: Buffer[] = [];
  private size = 0;
  private done = false;
  private readonly mailbox: string;
  private readonly allowed: (address: string) => boolean;
  /** Set when the header was rewritten. */
  rewritten = false;

  constructor(mailbox: string, allowed: (address: string) => boolean) {
    super();
    this.mailbox = mailbox;
    this.allowed = allowed;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.done) return cb(null, chunk);
    this.buf.push(chunk);
    this.size += chunk.length;
    const all = Buffer.concat(this.buf);
    this.buf = [all];
    const idx = all.indexOf('\r\n\r\n');
    if (idx >= 0) {
      this.flushHeader(all, idx);
    } else if (this.size > MAX_HEADER) {
      this.done = true;
      this.buf = [];
      this.push(all);
    }
    cb();
  }

  private flushHeader(all: Buffer, idx: number): void {
    this.done = true;
    this.buf = [];
    const header = all.subarray(0, idx).toString('latin1');
    const next = rewriteFromHeader(header, this.mailbox, this.allowed);
    if (next === undefined) {
      this.push(all);
      return;
    }
    this.rewritten = true;
    this.push(Buffer.from(next, 'latin1'));
    this.push(all.subarray(idx));
  }

  override _flush(cb: TransformCallback): void {
    if (!this.done && this.size > 0) this.push(Buffer.concat(this.buf));
    cb();
  }
}

/** The addresses of the From header(s) of a header section ("\r\n" line ends), lower-cased as given. */
export function fromHeaderAddresses(header: string): string[] {
  const lines = header.split(/\r?\n/);
  const out: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!/^from\s*:/i.test(lines[i]!)) continue;
    let value = lines[i]!.replace(/^from\s*:\s*/i, '');
    while (i + 1 < lines.length && /^[ \t]/.test(lines[i + 1]!)) value += lines[++i];
    for (const a of addressparser(value.trim(), { flatten: true }) as Array<{ address: string }>) if (a.address) out.push(a.address);
  }
  return out;
}

/** Passes the message through unchanged and records the From header's addresses (for the check at the end of DATA). */
export class FromHeaderReader extends Transform {
  private buf: Buffer[] = [];
  private size = 0;
  private done = false;
  /** Set once the header section was seen. */
  from: string[] = [];

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    if (this.done) return cb(null, chunk);
    this.buf.push(chunk);
    this.size += chunk.length;
    const all = Buffer.concat(this.buf);
    this.buf = [all];
    const idx = all.indexOf('\r\n\r\n');
    if (idx >= 0 || this.size > MAX_HEADER) {
      this.done = true;
      this.buf = [];
      this.from = fromHeaderAddresses(all.subarray(0, idx >= 0 ? idx : MAX_HEADER).toString('latin1'));
      this.push(all);
    }
    cb();
  }

  override _flush(cb: TransformCallback): void {
    if (!this.done && this.size > 0) {
      const all = Buffer.concat(this.buf);
      this.from = fromHeaderAddresses(all.toString('latin1'));
      this.push(all);
    }
    cb();
  }
}
