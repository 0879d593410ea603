// Entra ID's error replies, in the exact shape its token endpoint uses:
// {"error","error_description":"AADSTSnnnn: text\r\nTrace ID: …\r\nCorrelation ID: …\r\nTimestamp: …",
//  "error_codes":[n],"timestamp","trace_id","correlation_id","error_uri"}.
import { randomUUID } from 'node:crypto';

export interface Reply {
  status: number;
  body: Record<string, unknown>;
  headers?: Record<string, string>;
}

/** Entra's timestamp format: 2026-01-09 02:02:12Z */
export function aadTimestamp(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, 'Z');
}

export interface AadErrorOptions {
  correlationId?: string;
  nowMs?: number;
  /** Authority host for error_uri (Entra: https://login.microsoftonline.com). */
  authority?: string;
  suberror?: string;
  claims?: string;
}

export function aadError(status: number, error: string, code: number, text: string, o: AadErrorOptions = {}): Reply {
  const traceId = randomUUID();
  const correlationId = o.correlationId && /^[0-9a-f-]{36}$/i.test(o.correlationId) ? o.correlationId : randomUUID();
  const timestamp = aadTimestamp(o.nowMs ?? Date.now());
  const body: Record<string, unknown> = {
    error,
    error_description: `AADSTS${code}: ${text}\r\nTrace ID: ${traceId}\r\nCorrelation ID: ${correlationId}\r\nTimestamp: ${timestamp}`,
    error_codes: [code],
    timestamp,
    trace_id: traceId,
    correlation_id: correlationId,
    // Microsoft's own page for the code, as Entra answers (the sandbox serves no such page).
    error_uri: `https://login.microsoftonline.com/error?code=${code}`,
  };
  if (o.suberror) body['suberror'] = o.suberror;
  if (o.claims) body['claims'] = o.claims;
  return { status, body };
}

/** Thrown inside the identity service to leave with an error reply. */
export class AadFailure extends Error {
  readonly reply: Reply;
  constructor(reply: Reply) {
    super(String(reply.body['error_description'] ?? reply.body['error']));
    this.reply = reply;
  }
}
