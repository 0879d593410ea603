// Reads a whole message from a stream (stdin for `sendmail` and
// `send --stdin`) into a private temp file, rewriting its header block on
// the way (recipients from To/Cc/Bcc, Bcc dropped, From/Date/Message-ID
// added), so the body — possibly a large attachment — is never held in
// memory and can be re-read for a retry.
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { Smtp365Error } from '../errors/error.ts';
import { formatBytes } from './validate.ts';

export interface SpoolOptions {
  /** sendmail without -i: a line with a single "." ends the message. */
  dotTerminates: boolean;
  /** Gets the message's header block (may be empty), returns the one to write, blank line included. */
  onHeaders: (headerText: string) => string;
  /** Header blocks larger than this are refused (default 1 MB). */
  maxHeaderBytes?: number;
  /** Refuse messages larger than this many bytes (checked while reading). */
  maxBytes?: number;
  /** Extra bytes allowed for the header lines smtp365 adds (default 64 KB). */
  slackBytes?: number;
  /** Temp directory parent (default os.tmpdir()). */
  tmp?: string;
}

export interface SpooledMessage {
  path: string;
  /** Bytes written (rewritten headers + body). */
  size: number;
  /** Removes the temp file and its directory. */
  cleanup(): Promise<void>;
}

const HEADER_LINE = /^[!-9;-~]+[ \t]*:/;

/**
 * Splits the start of a message into header block and body: headers run up to
 * a blank line (consumed) or the first line that is not a header (kept, it
 * starts the body: `echo hi | sendmail bob@x` has no headers at all).
 * Returns undefined while more input is needed.
 */
export function splitHeaderSection(buf: Buffer, final: boolean): { header: string; bodyStart: number } | undefined {
  let pos = 0;
  let header = '';
  let first = true;
  for (;;) {
    const nl = buf.indexOf(0x0a, pos);
    if (nl < 0) {
      if (!final) return undefined;
      // the last line has no line break
      const line = buf.subarray(pos).toString('utf8');
      if (line.length > 0 && (HEADER_LINE.test(line) || (/^[ \t]/.test(line) && header.length > 0))) return { header: header + line + '\n', bodyStart: buf.length };
      return { header, bodyStart: pos };
    }
    const line = buf.subarray(pos, nl + 1).toString('utf8');
    const bare = line.replace(/\r?\n$/, '');
    if (first && /^From /.test(bare)) {
      // an mbox "From " line, not part of the message (Postfix drops it too)
      first = false;
      pos = nl + 1;
      continue;
    }
    first = false;
    if (bare.length === 0) return { header, bodyStart: nl + 1 };
    if (HEADER_LINE.test(bare) || (/^[ \t]/.test(bare) && header.length > 0)) {
      header += line;
      pos = nl + 1;
      continue;
    }
    return { header, bodyStart: pos };
  }
}

export async function spoolMessage(input: Readable, opts: SpoolOptions): Promise<SpooledMessage> {
  const dir = await mkdtemp(join(opts.tmp ?? tmpdir(), 'smtp365-msg-'));
  const path = join(dir, 'message.eml');
  const cleanup = () => rm(dir, { recursive: true, force: true });
  const out = createWriteStream(path, { mode: 0o600 });
  const maxHeader = opts.maxHeaderBytes ?? 1024 * 1024;
  let size = 0;
  let headerDone = false;
  let head = Buffer.alloc(0); // the header section while it is being read
  let carry = Buffer.alloc(0); // "." or ".\r" at a line start: maybe the end, maybe not
  let atLineStart = true;

  const write = async (b: Buffer) => {
    if (b.length === 0) return;
    size += b.length;
    if (opts.maxBytes !== undefined && size > opts.maxBytes + (opts.slackBytes ?? 65_536)) {
      throw new Smtp365Error('MESSAGE_TOO_LARGE', `The message on standard input is over the limit of ${formatBytes(opts.maxBytes)} (raise it with --max-size or SMTP365_MAX_MESSAGE_SIZE if the mailbox allows more)`, {
        details: { limitBytes: opts.maxBytes },
      });
    }
    if (!out.write(b)) await once(out, 'drain');
  };

  /** Writes body bytes; true when a line holding only "." ended the message (sendmail without -i). */
  const body = async (chunk: Buffer, final: boolean): Promise<boolean> => {
    const buf = carry.length ? Buffer.concat([carry, chunk]) : chunk;
    carry = Buffer.alloc(0);
    if (!opts.dotTerminates) {
      await write(buf);
      return false;
    }
    let p = atLineStart ? 0 : buf.indexOf(0x0a) + 1;
    while (p > 0 || (p === 0 && atLineStart)) {
      if (p >= buf.length) break;
      if (buf[p] === 0x2e) {
        const rest = buf.length - p;
        if ((rest >= 2 && buf[p + 1] === 0x0a) || (rest >= 3 && buf[p + 1] === 0x0d && buf[p + 2] === 0x0a)) {
          await write(buf.subarray(0, p));
          return true;
        }
        if (rest === 1 || (rest === 2 && buf[p + 1] === 0x0d)) {
          await write(buf.subarray(0, p));
          if (final) return true;
          carry = Buffer.from(buf.subarray(p));
          atLineStart = true;
          return false;
        }
      }
      const nl = buf.indexOf(0x0a, p);
      if (nl < 0) break;
      p = nl + 1;
    }
    await write(buf);
    if (buf.length > 0) atLineStart = buf[buf.length - 1] === 0x0a;
    return false;
  };

  const startBody = async (final: boolean): Promise<boolean> => {
    const split = splitHeaderSection(head, final);
    if (!split) {
      if (head.length > maxHeader) throw new Smtp365Error('MESSAGE_INVALID', `The message's header section is larger than ${maxHeader} bytes`);
      return false;
    }
    headerDone = true;
    await write(Buffer.from(opts.onHeaders(split.header), 'utf8'));
    const rest = head.subarray(split.bodyStart);
    head = Buffer.alloc(0);
    return body(rest, final);
  };

  try {
    let ended = false;
    for await (const chunk of input) {
      const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string);
      if (!headerDone) {
        head = Buffer.concat([head, b]);
        ended = await startBody(false);
      } else {
        ended = await body(b, false);
      }
      if (ended) break;
    }
    if (!ended) {
      if (!headerDone) await startBody(true);
      else await body(Buffer.alloc(0), true);
    }
    out.end();
    await once(out, 'close');
    return { path, size, cleanup };
  } catch (err) {
    out.destroy();
    await cleanup();
    throw err;
  }
}
