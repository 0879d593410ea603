// Captured mail: every message the sandbox's SMTP side accepted. The raw MIME
// is streamed to a file as it arrives (a 150 MB message is never held in
// memory); the metadata lives in an index file beside it, rewritten
// atomically on each change, so a restarted sandbox still shows its mail.
//
// Layout of `dir`: index.jsonl (one JSON line per message), <id>.eml, and incoming-<id>.tmp while a
// message is being received (removed or renamed when it is decided).

import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { simpleParser, type AddressObject } from 'mailparser';
import type { CapturedMessage } from '../state/model.ts';

type Folder = CapturedMessage['folders'][number]['folder'];

export interface MessageFilter {
  /** Messages in this mailbox (any folder unless `folder` is given). Case-insensitive. */
  mailbox?: string;
  folder?: Folder;
}

/** What the headers say, as far as the sandbox needs it. */
export interface HeaderSummary {
  /** The From header as written (decoded), or null. */
  from: string | null;
  /** The addresses of the From header, lower case. */
  fromAddresses: string[];
  /** The Sender header's address, lower case, if any. */
  sender: string | null;
  /** To and Cc addresses, lower case. */
  to: string[];
  subject: string | null;
  messageId: string | null;
}

/** A message being received: write the raw MIME to `stream`, then save() or discard(). */
export interface IncomingMessageFile {
  readonly id: string;
  readonly path: string;
  readonly stream: Writable;
  /** Bytes written so far. */
  readonly size: number;
  /** The header block (up to the first empty line, at most 1 MiB) seen so far. */
  headerBytes(): Buffer;
  /** Ends the stream and resolves once the file is complete; rejects if writing failed. */
  finish(): Promise<void>;
  /** Stops writing (if not ended) and deletes the file. */
  discard(): Promise<void>;
}

export interface SaveInput {
  /** The message as received with `receive()`; or `raw` for a message given whole. */
  incoming?: IncomingMessageFile;
  raw?: Buffer | string;
  /** Header summary if the caller already parsed it (see summarizeHeaders). */
  summary?: HeaderSummary;
  receivedAt?: Date | number;
  authUser: string;
  authIdentity: string;
  mailFrom: string;
  rcptTo: string[];
  folders: CapturedMessage['folders'];
  /** Used when the message has no Message-ID header (the server's generated one). */
  fallbackMessageId?: string;
}

const HEADER_LIMIT = 1024 * 1024;
const INDEX = 'index.jsonl';

export class MessageStore extends EventEmitter {
  readonly dir: string;
  #messages: CapturedMessage[] = [];

  constructor(dir: string) {
    super();
    this.dir = path.resolve(dir);
    fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.#load();
  }

  /**
   * Starts receiving a message: its raw MIME goes to a file as it is written.
   * Synchronous file calls on purpose: chunks land in the page cache, and on a
   * small machine a trip through libuv's thread pool per open, write, close and
   * rename cost the sandbox more CPU than the work itself (it shares the
   * machine with whatever is being tested against it).
   */
  receive(): IncomingMessageFile {
    const id = newId();
    const file = path.join(this.dir, `incoming-${id}.tmp`);
    let fd: number | undefined;
    let outError: Error | undefined;
    try {
      fd = fs.openSync(file, 'w', 0o600);
    } catch (err) {
      outError = err as Error;
    }
    const closeFile = (): void => {
      if (fd === undefined) return;
      const f = fd;
      fd = undefined;
      fs.closeSync(f);
    };
    let size = 0;
    const head: Buffer[] = [];
    let headLen = 0;
    let headDone = false;
    const capture = (chunk: Buffer): void => {
      if (headDone) return;
      head.push(chunk);
      headLen += chunk.length;
      const joined = Buffer.concat(head);
      const end = headerEnd(joined);
      if (end >= 0 || headLen >= HEADER_LIMIT) {
        headDone = true;
        head.length = 0;
        head.push(joined.subarray(0, end >= 0 ? end : HEADER_LIMIT));
      } else if (head.length > 1) {
        head.length = 0;
        head.push(joined);
      }
    };
    const stream = new Writable({
      write(chunk: Buffer, _enc, cb) {
        if (outError) return cb(outError);
        size += chunk.length;
        capture(chunk);
        try {
          for (let at = 0; at < chunk.length; ) at += fs.writeSync(fd!, chunk, at, chunk.length - at);
        } catch (err) {
          outError = err as Error;
          return cb(outError);
        }
        cb();
      },
      final(cb) {
        if (outError) return cb(outError);
        try {
          closeFile();
        } catch (err) {
          return cb(err as Error);
        }
        cb();
      },
      destroy(err, cb) {
        try {
          closeFile();
        } catch {
          // already failing: the first error is the one reported
        }
        cb(err);
      },
    });
    // Errors (disk full, state dir removed) are reported by finish(), never as an
    // unhandled 'error' event in the middle of an SMTP session.
    let streamError: Error | undefined;
    stream.on('error', (err) => {
      streamError = err;
    });
    const finished = new Promise<void>((resolve, reject) => {
      stream.once('finish', resolve);
      stream.once('error', reject);
    });
    finished.catch(() => undefined);
    return {
      id,
      path: file,
      stream,
      get size() {
        return size;
      },
      headerBytes: () => Buffer.concat(head),
      finish: async () => {
        if (streamError) throw streamError;
        if (!stream.writableEnded) stream.end();
        await finished;
      },
      discard: async () => {
        if (!stream.writableFinished) stream.destroy();
        await rm(file, { force: true });
      },
    };
  }

  /** Stores a message (from receive() or whole) and indexes it. */
  async save(input: SaveInput): Promise<CapturedMessage> {
    let id: string;
    let size: number;
    let summary = input.summary;
    const finalPath = (x: string): string => path.join(this.dir, `${x}.eml`);
    if (input.incoming) {
      const inc = input.incoming;
      await inc.finish();
      id = inc.id;
      size = inc.size;
      summary ??= await summarizeHeaders(inc.headerBytes());
      fs.renameSync(inc.path, finalPath(id));
    } else if (input.raw !== undefined) {
      id = newId();
      const raw = Buffer.isBuffer(input.raw) ? input.raw : Buffer.from(input.raw, 'utf8');
      size = raw.length;
      summary ??= await summarizeHeaders(raw.subarray(0, Math.max(0, headerEnd(raw)) || Math.min(raw.length, HEADER_LIMIT)));
      fs.writeFileSync(finalPath(id), raw, { mode: 0o600 });
    } else {
      throw new TypeError('MessageStore.save needs `incoming` or `raw`');
    }
    const receivedAt = input.receivedAt === undefined ? new Date() : new Date(input.receivedAt);
    const msg: CapturedMessage = {
      id,
      receivedAt: receivedAt.toISOString(),
      authUser: input.authUser.toLowerCase(),
      authIdentity: input.authIdentity,
      mailFrom: input.mailFrom,
      rcptTo: [...input.rcptTo],
      from: summary.from,
      to: summary.to,
      subject: summary.subject,
      messageId: summary.messageId ?? input.fallbackMessageId ?? null,
      size,
      rawPath: finalPath(id),
      folders: input.folders.map((f) => ({ mailbox: f.mailbox.toLowerCase(), folder: f.folder })),
    };
    this.#messages.push(msg);
    this.#indexSent(msg);
    this.#persist(msg);
    this.emit('saved', clone(msg));
    return clone(msg);
  }

  list(filter: MessageFilter = {}): CapturedMessage[] {
    return this.#messages.filter((m) => matches(m, filter)).map(clone);
  }

  /**
   * Counts what a mailbox submitted since `sinceMs` (sandbox time), for the
   * sending limits: messages in its Sent Items, their envelope recipients, and
   * the oldest one's time. No copies: this runs for every submitted message.
   */
  sentSince(mailbox: string, sinceMs: number): { messages: number; recipients: number; oldestMs: number | null } {
    // Asked for every message submitted (the daily and per-minute limits): an index per mailbox
    // with running recipient totals and a binary search, not a pass over everything stored.
    const idx = this.#sentIndex().get(mailbox.toLowerCase());
    if (!idx) return { messages: 0, recipients: 0, oldestMs: null };
    const lo = firstAfter(idx.times, sinceMs);
    const messages = idx.times.length - lo;
    return { messages, recipients: idx.totals[idx.times.length]! - idx.totals[lo]!, oldestMs: messages > 0 ? idx.times[lo]! : null };
  }

  /**
   * What each mailbox submitted, by time: times sorted, totals[i] = recipients
   * of the first i. Made from Sent Items on first use (after a restart: from
   * the mail kept), then kept current by save() and kept when mail is deleted.
   */
  #sent: Map<string, SentIndex> | undefined;

  #sentIndex(): Map<string, SentIndex> {
    if (this.#sent) return this.#sent;
    const entries: Array<{ mailbox: string; t: number; rcpts: number }> = [];
    for (const m of this.#messages) {
      const t = Date.parse(m.receivedAt);
      if (Number.isNaN(t)) continue;
      for (const mailbox of sentMailboxes(m)) entries.push({ mailbox, t, rcpts: m.rcptTo.length });
    }
    entries.sort((a, b) => a.t - b.t);
    const out = new Map<string, SentIndex>();
    for (const e of entries) {
      let idx = out.get(e.mailbox);
      if (!idx) out.set(e.mailbox, (idx = { times: [], totals: [0] }));
      idx.times.push(e.t);
      idx.totals.push(idx.totals[idx.totals.length - 1]! + e.rcpts);
    }
    this.#sent = out;
    return out;
  }

  /** Adds a message just stored. Concurrent sessions finish out of time order: a late one goes where it belongs. */
  #indexSent(m: CapturedMessage): void {
    if (!this.#sent) return;
    const t = Date.parse(m.receivedAt);
    if (Number.isNaN(t)) return;
    const r = m.rcptTo.length;
    for (const mailbox of sentMailboxes(m)) {
      let idx = this.#sent.get(mailbox);
      if (!idx) this.#sent.set(mailbox, (idx = { times: [], totals: [0] }));
      const at = firstAfter(idx.times, t);
      idx.times.splice(at, 0, t);
      idx.totals.splice(at + 1, 0, idx.totals[at]! + r);
      for (let i = at + 2; i < idx.totals.length; i++) idx.totals[i]! += r;
    }
  }

  get(id: string): CapturedMessage | undefined {
    const m = this.#messages.find((x) => x.id === id);
    return m ? clone(m) : undefined;
  }

  async readRaw(id: string): Promise<Buffer> {
    const m = this.#messages.find((x) => x.id === id);
    if (!m) throw new RangeError(`no message with id "${id}"`);
    return readFile(m.rawPath);
  }

  /** A stream of the raw MIME (for large messages over HTTP). */
  rawStream(id: string): fs.ReadStream | undefined {
    const m = this.#messages.find((x) => x.id === id);
    return m ? fs.createReadStream(m.rawPath) : undefined;
  }

  remove(id: string): boolean {
    const i = this.#messages.findIndex((x) => x.id === id);
    if (i < 0) return false;
    this.#sentIndex(); // counted before it goes: deleting mail does not give sending quota back
    const [m] = this.#messages.splice(i, 1);
    fs.rmSync(m!.rawPath, { force: true });
    this.#writeIndexSync();
    return true;
  }

  /**
   * Removes all captured mail. What the mailboxes sent still counts toward
   * the daily and per-minute limits (as deleting Sent Items does at
   * Microsoft) unless `quotas` resets them too (POST /admin/reset).
   */
  clear(opts: { quotas?: boolean } = {}): void {
    if (opts.quotas) this.#sent = undefined;
    else this.#sentIndex();
    for (const m of this.#messages) fs.rmSync(m.rawPath, { force: true });
    this.#messages = [];
    if (opts.quotas) this.#sent = new Map();
    this.#writeIndexSync();
    this.emit('cleared');
  }

  /**
   * Resolves with the matching messages once there are at least `count` of
   * them, or with what there is after `timeoutMs` (for tests and scripts that
   * wait for mail to arrive instead of polling).
   */
  waitFor(count: number, timeoutMs: number, filter: MessageFilter = {}): Promise<CapturedMessage[]> {
    const now = this.list(filter);
    if (now.length >= count || timeoutMs <= 0) return Promise.resolve(now);
    // Counted as messages arrive, not by listing (and copying) everything at each arrival:
    // a test or benchmark waiting for thousands of messages would make that quadratic.
    let seen = now.length;
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.off('saved', onSaved);
        resolve(this.list(filter));
      };
      const onSaved = (m: CapturedMessage): void => {
        if (!matches(m, filter) || ++seen < count) return;
        // Exact once the count looks reached (a message may have been removed meanwhile).
        seen = this.#messages.reduce((n, x) => (matches(x, filter) ? n + 1 : n), 0);
        if (seen >= count) done();
      };
      const timer = setTimeout(done, timeoutMs);
      timer.unref?.();
      this.on('saved', onSaved);
    });
  }

  #load(): void {
    const file = path.join(this.dir, INDEX);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const byId = new Map<string, CapturedMessage>();
    let damaged = false;
    for (const line of text.split('\n')) {
      if (!line.trim()) continue;
      let m: CapturedMessage;
      try {
        m = JSON.parse(line) as CapturedMessage;
      } catch {
        // A line cut short by a crash: that message's record is lost, the others are not.
        damaged = true;
        continue;
      }
      if (typeof m?.id !== 'string' || !/^[A-Za-z0-9_-]+$/.test(m.id)) continue;
      const raw = path.join(this.dir, `${m.id}.eml`);
      if (!fs.existsSync(raw)) continue;
      byId.set(m.id, { ...m, rawPath: raw });
    }
    this.#messages = [...byId.values()];
    this.#sent = undefined;
    if (damaged) this.#writeIndexSync();
    // Leftovers of messages that were being received when the process stopped.
    for (const name of fs.readdirSync(this.dir)) {
      if (/^incoming-.*\.tmp$/.test(name)) fs.rmSync(path.join(this.dir, name), { force: true });
    }
  }

  static #line(m: CapturedMessage): string {
    const { rawPath: _r, ...rest } = m;
    return JSON.stringify(rest) + '\n';
  }

  /** Appends one record: the index is a log (one JSON line per message), so saving stays O(1). */
  #persist(m: CapturedMessage): void {
    fs.appendFileSync(path.join(this.dir, INDEX), MessageStore.#line(m), { mode: 0o600 });
  }

  /** Rewrites the index whole (after remove/clear, which are rare). */
  #writeIndexSync(): void {
    const file = path.join(this.dir, INDEX);
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, this.#messages.map((m) => MessageStore.#line(m)).join(''), { mode: 0o600 });
    fs.renameSync(tmp, file);
  }
}

/** Parses the header block of a message into what the sandbox shows and checks. */
export async function summarizeHeaders(header: Buffer): Promise<HeaderSummary> {
  const parsed = await simpleParser(Buffer.concat([header, Buffer.from('\r\n\r\n')]), { skipHtmlToText: true, skipTextToHtml: true, skipImageLinks: true });
  const addrs = (v: AddressObject | AddressObject[] | undefined): string[] => {
    const list = v === undefined ? [] : Array.isArray(v) ? v : [v];
    const out: string[] = [];
    const walk = (entries: AddressObject['value']): void => {
      for (const e of entries) {
        if (e.group) walk(e.group);
        else if (e.address) out.push(e.address.toLowerCase());
      }
    };
    for (const a of list) walk(a.value);
    return out;
  };
  const fromText = parsed.from?.text ?? null;
  const senderHeader = parsed.headers.get('sender') as AddressObject | undefined;
  const sender = senderHeader ? (addrs(senderHeader)[0] ?? null) : null;
  const messageId = parsed.messageId ? (parsed.messageId.startsWith('<') ? parsed.messageId : `<${parsed.messageId}>`) : null;
  return {
    from: fromText && fromText.length ? fromText : null,
    fromAddresses: addrs(parsed.from),
    sender,
    to: [...addrs(parsed.to), ...addrs(parsed.cc)],
    subject: parsed.subject ?? null,
    messageId,
  };
}

/** Offset of the empty line that ends the header block (CRLFCRLF or LFLF), -1 if not seen. */
function headerEnd(buf: Buffer): number {
  const crlf = buf.indexOf('\r\n\r\n');
  const lf = buf.indexOf('\n\n');
  if (crlf < 0) return lf;
  if (lf < 0) return crlf;
  return Math.min(crlf, lf);
}

interface SentIndex {
  times: number[];
  totals: number[];
}

/** The mailboxes whose Sent Items hold this message, each once. */
function sentMailboxes(m: CapturedMessage): Set<string> {
  return new Set(m.folders.filter((f) => f.folder === 'SentItems').map((f) => f.mailbox));
}

/** Index of the first time after t (times sorted). */
function firstAfter(times: number[], t: number): number {
  let lo = 0;
  let hi = times.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (times[mid]! > t) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

function matches(m: CapturedMessage, f: MessageFilter): boolean {
  if (!f.mailbox && !f.folder) return true;
  const mbx = f.mailbox?.toLowerCase();
  return m.folders.some((x) => (mbx === undefined || x.mailbox === mbx) && (f.folder === undefined || x.folder === f.folder));
}

function clone(m: CapturedMessage): CapturedMessage {
  return { ...m, rcptTo: [...m.rcptTo], to: [...m.to], folders: m.folders.map((f) => ({ ...f })) };
}

function newId(): string {
  // Time-ordered prefix so ids sort like arrival order; random suffix so they are unique.
  return `${Date.now().toString(36)}${randomBytes(5).toString('hex')}`;
}
