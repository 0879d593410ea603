// Small JSON request/response helpers for the admin endpoints this folder and
// ../mail serve. Errors have one shape: {"error": code, "message": text}.

import type { IncomingMessage, ServerResponse } from 'node:http';

export class HttpError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2) + '\n';
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

export function sendError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: code, message });
}

export function methodNotAllowed(res: ServerResponse, allowed: string[]): void {
  res.setHeader('allow', allowed.join(', '));
  sendError(res, 405, 'method_not_allowed', `use ${allowed.join(' or ')}`);
}

/**
 * Reads a request body as trimmed UTF-8 text, at most `limit` bytes; past that
 * throws what `tooLarge()` makes (each API answers in its own error shape).
 */
export async function readBodyText(req: IncomingMessage, limit: number, tooLarge: () => Error): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) throw tooLarge();
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8').trim();
}

/** Reads and parses a JSON body (at most `limit` bytes); throws HttpError 400/413/415. */
export async function readJson(req: IncomingMessage, limit = 1_000_000): Promise<unknown> {
  const type = String(req.headers['content-type'] ?? '');
  if (type && !/^application\/(.+\+)?json\b/i.test(type)) {
    throw new HttpError(415, 'unsupported_media_type', `send JSON (content-type: application/json), not ${type}`);
  }
  const text = await readBodyText(req, limit, () => new HttpError(413, 'payload_too_large', `the body is larger than ${limit} bytes`));
  if (!text) throw new HttpError(400, 'invalid_request', 'the request body is empty; send a JSON object');
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new HttpError(400, 'invalid_json', `the body is not valid JSON: ${(err as Error).message}`);
  }
}
