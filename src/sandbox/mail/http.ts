// Captured mail over HTTP, for tests, scripts and people:
//   GET    /admin/messages[?mailbox=&folder=&count=N&timeoutMs=T]  → {"messages":[…]}
//          (count/timeoutMs: wait until at least N messages match, at most T ms)
//   GET    /admin/messages/{id}         → the message, with its headers and text
//   GET    /admin/messages/{id}/raw     → message/rfc822
//   DELETE /admin/messages              → {"removed": n}
//   DELETE /admin/messages/{id}         → 204 / 404
//   GET    /admin/mailboxes/{address}/{SentItems|Inbox}  → {"mailbox","folder","messages":[…]}
//   GET    /mail, /mail/{id}            → a small page to read them
// Returns false for anything else so the caller's router goes on (PATCH
// /admin/mailboxes/{address} belongs to the directory's admin API).

import type { IncomingMessage, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { simpleParser } from 'mailparser';
import type { CapturedMessage } from '../state/model.ts';
import { methodNotAllowed, sendError, sendJson } from '../faults/json-io.ts';
import { renderMessagePage, renderListPage } from './page.ts';
import type { MessageFilter, MessageStore } from './store.ts';

const MAX_WAIT_MS = 120_000;
/** Messages larger than this are not parsed for the JSON/HTML view (the raw is always there). */
const PARSE_LIMIT = 25 * 1024 * 1024;

export interface MessageView extends Omit<CapturedMessage, 'rawPath'> {
  rawUrl: string;
}

export interface MessageDetail extends MessageView {
  headers: Array<{ name: string; value: string }>;
  text: string | null;
  /** Whether the message has an HTML part (not rendered: open the raw). */
  hasHtml: boolean;
  attachments: Array<{ filename: string | null; contentType: string; size: number }>;
}

export async function handleMailRequest(req: IncomingMessage, res: ServerResponse, url: URL, store: MessageStore): Promise<boolean> {
  const p = url.pathname.replace(/\/+$/, '') || '/';
  const segs = p.split('/').slice(1).map(safeDecode);
  if (segs.some((s) => s === null)) return false;
  const s = segs as string[];

  if (s[0] === 'admin' && s[1] === 'messages') {
    if (s.length === 2) {
      if (req.method === 'GET') {
        const filter = filterFrom(url);
        if (typeof filter === 'string') return bad(res, filter);
        const count = intParam(url, 'count');
        const timeoutMs = intParam(url, 'timeoutMs');
        if (count === null || timeoutMs === null) return bad(res, 'count and timeoutMs must be non-negative integers');
        const list = count !== undefined ? await store.waitFor(count, Math.min(timeoutMs ?? 10_000, MAX_WAIT_MS), filter) : store.list(filter);
        sendJson(res, 200, { messages: list.map((m) => view(m, url)) });
        return true;
      }
      if (req.method === 'DELETE') {
        const removed = store.list().length;
        store.clear();
        sendJson(res, 200, { removed });
        return true;
      }
      methodNotAllowed(res, ['GET', 'DELETE']);
      return true;
    }
    const id = s[2]!;
    const msg = store.get(id);
    if (s.length === 3) {
      if (req.method === 'DELETE') {
        if (store.remove(id)) res.writeHead(204).end();
        else sendError(res, 404, 'not_found', `no message with id "${id}"`);
        return true;
      }
      if (req.method !== 'GET') {
        methodNotAllowed(res, ['GET', 'DELETE']);
        return true;
      }
      if (!msg) return notFound(res, id);
      sendJson(res, 200, await detail(msg, store, url));
      return true;
    }
    if (s.length === 4 && s[3] === 'raw') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        methodNotAllowed(res, ['GET']);
        return true;
      }
      if (!msg) return notFound(res, id);
      await sendRaw(req, res, msg, store);
      return true;
    }
    return false;
  }

  if (s[0] === 'admin' && s[1] === 'mailboxes' && s.length === 4 && req.method === 'GET') {
    const folder = folderName(s[3]!);
    if (!folder) return false;
    const mailbox = s[2]!.toLowerCase();
    sendJson(res, 200, { mailbox, folder, messages: store.list({ mailbox, folder }).map((m) => view(m, url)) });
    return true;
  }

  if (s[0] === 'mail' && (req.method === 'GET' || req.method === 'HEAD')) {
    if (s.length === 1) {
      const filter = filterFrom(url);
      sendHtml(res, 200, renderListPage(store.list(typeof filter === 'string' ? {} : filter).reverse(), typeof filter === 'string' ? {} : filter));
      return true;
    }
    if (s.length === 2) {
      const msg = store.get(s[1]!);
      if (!msg) {
        sendHtml(res, 404, renderListPage(store.list().reverse(), {}, `No message with id ${s[1]}`));
        return true;
      }
      sendHtml(res, 200, renderMessagePage(await detail(msg, store, url)));
      return true;
    }
  }
  return false;
}

export function view(m: CapturedMessage, url: URL): MessageView {
  const { rawPath: _rawPath, ...rest } = m;
  return { ...rest, rawUrl: `${url.origin}/admin/messages/${encodeURIComponent(m.id)}/raw` };
}

async function detail(m: CapturedMessage, store: MessageStore, url: URL): Promise<MessageDetail> {
  const base = view(m, url);
  if (m.size > PARSE_LIMIT) {
    return { ...base, headers: [], text: `(${m.size} bytes: too large to show here; open the raw message)`, hasHtml: false, attachments: [] };
  }
  const raw = await store.readRaw(m.id);
  const parsed = await simpleParser(raw, { skipImageLinks: true, skipTextToHtml: true });
  return {
    ...base,
    headers: parsed.headerLines.map((h) => {
      const i = h.line.indexOf(':');
      return { name: i > 0 ? h.line.slice(0, i) : h.key, value: (i > 0 ? h.line.slice(i + 1) : h.line).replace(/\r?\n[ \t]+/g, ' ').trim() };
    }),
    text: parsed.text ?? null,
    hasHtml: typeof parsed.html === 'string' && parsed.html.length > 0,
    attachments: parsed.attachments.map((a) => ({ filename: a.filename ?? null, contentType: a.contentType, size: a.size })),
  };
}

async function sendRaw(req: IncomingMessage, res: ServerResponse, m: CapturedMessage, store: MessageStore): Promise<void> {
  res.writeHead(200, {
    'content-type': 'message/rfc822',
    'content-length': m.size,
    'content-disposition': `inline; filename="${m.id}.eml"`,
    'x-content-type-options': 'nosniff',
    'cache-control': 'no-store',
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const stream = store.rawStream(m.id);
  if (!stream) {
    res.end();
    return;
  }
  await pipeline(stream, res).catch(() => res.destroy());
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, {
    'content-type': 'text/html; charset=utf-8',
    // Mail content is untrusted: nothing on the page may run or load.
    'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; frame-ancestors 'none'",
    'x-content-type-options': 'nosniff',
    'referrer-policy': 'no-referrer',
    'cache-control': 'no-store',
  });
  res.end(html);
}

function filterFrom(url: URL): MessageFilter | string {
  const filter: MessageFilter = {};
  const mailbox = url.searchParams.get('mailbox');
  if (mailbox) filter.mailbox = mailbox;
  const folder = url.searchParams.get('folder');
  if (folder) {
    const f = folderName(folder);
    if (!f) return `folder must be SentItems or Inbox, not "${folder}"`;
    filter.folder = f;
  }
  return filter;
}

function folderName(s: string): 'SentItems' | 'Inbox' | undefined {
  const k = s.toLowerCase().replace(/[^a-z]/g, '');
  if (k === 'sentitems' || k === 'sent') return 'SentItems';
  if (k === 'inbox') return 'Inbox';
  return undefined;
}

/** undefined when absent, null when invalid. */
function intParam(url: URL, name: string): number | undefined | null {
  const v = url.searchParams.get(name);
  if (v === null || v === '') return undefined;
  return /^\d{1,9}$/.test(v) ? Number(v) : null;
}

function safeDecode(s: string): string | null {
  try {
    return decodeURIComponent(s);
  } catch {
    return null;
  }
}

function bad(res: ServerResponse, message: string): true {
  sendError(res, 400, 'invalid_request', message);
  return true;
}

function notFound(res: ServerResponse, id: string): true {
  sendError(res, 404, 'not_found', `no message with id "${id}"`);
  return true;
}
