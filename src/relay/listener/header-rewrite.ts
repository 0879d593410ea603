// Devices put nonsense in the From header too (scanner@printer.local), and
// Microsoft refuses a From the mailbox may not send as (5.7.60, after DATA).
// When a route rewrites senders, the From header is rewritten the same way,
// while the message streams: only the header section is held (≤ 256 KB).
import addressparser from 'nodemailer/lib/addressparser/index.js';
import type { ChunkFilter } from '../queue/message-writer.ts';

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

/**
 * Holds the bytes of a message until its header section is complete (the
 * first empty line, or MAX_HEADER bytes without one), hands the header to
 * `onHeader`, then passes everything else through untouched.
 */
abstract class HeaderSectionFilter implements ChunkFilter {
  private held: Buffer[] = [];
  private size = 0;
  private done = false;

  /** `all` = every byte so far; `end` = where the header section ends in it (-1: none within the limit or the message). */
  protected abstract onHeader(all: Buffer, end: number): Buffer[];

  write(chunk: Buffer): Buffer[] {
    if (this.done) return [chunk];
    this.held.push(chunk);
    this.size += chunk.length;
    const all = this.held.length === 1 ? chunk : Buffer.concat(this.held);
    this.held = [all];
    const idx = all.indexOf('\r\n\r\n');
    if (idx < 0 && this.size <= MAX_HEADER) return [];
    this.done = true;
    this.held = [];
    return this.onHeader(all, idx);
  }

  end(): Buffer[] {
    if (this.done || this.size === 0) return [];
    this.done = true;
    const all = Buffer.concat(this.held);
    this.held = [];
    return this.onHeader(all, -1);
  }
}

/** Rewrites a From header the route may not use to the account's mailbox (the original kept in X-Smtp365-Original-From). */
export class FromHeaderRewriter extends HeaderSectionFilter {
  private readonly mailbox: string;
  private readonly allowed: (address: string) => boolean;
  /** Set when the header was rewritten. */
  rewritten = false;

  constructor(mailbox: string, allowed: (address: string) => boolean) {
    super();
    this.mailbox = mailbox;
    this.allowed = allowed;
  }

  protected onHeader(all: Buffer, end: number): Buffer[] {
    // No complete header section within the limit: left as it is.
    if (end < 0) return [all];
    const next = rewriteFromHeader(all.subarray(0, end).toString('latin1'), this.mailbox, this.allowed);
    if (next === undefined) return [all];
    this.rewritten = true;
    return [Buffer.from(next, 'latin1'), all.subarray(end)];
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
export class FromHeaderReader extends HeaderSectionFilter {
  /** Set once the header section was seen. */
  from: string[] = [];

  protected onHeader(all: Buffer, end: number): Buffer[] {
    this.from = fromHeaderAddresses(all.subarray(0, end >= 0 ? end : Math.min(all.length, MAX_HEADER)).toString('latin1'));
    return [all];
  }
}
