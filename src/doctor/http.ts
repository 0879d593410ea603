// A small HTTPS client for doctor and setup (OpenID configuration, token
// endpoint probes, Microsoft Graph). node:https rather than fetch because the
// account's CA file (a TLS-inspecting proxy, the sandbox) must be trusted for
// these requests only, not process-wide.
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import { readFile } from 'node:fs/promises';

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
}

export interface HttpRequestOptions {
  method?: string;
  headers?: Record<string, string>;
  /** A string is sent as is; URLSearchParams as a form; anything else as JSON. */
  body?: string | URLSearchParams | object;
  /** PEM certificates to trust (Node's roots included by loadTrust). */
  ca?: string[];
  signal?: AbortSignal;
}

/** Node's root CAs plus the account's CA file, when it has one. */
export async function loadTrust(caFile: string | undefined): Promise<string[] | undefined> {
  if (!caFile) return undefined;
  const pem = await readFile(caFile, 'utf8');
  return [...tls.rootCertificates, pem];
}

export function httpRequest(url: string, options: HttpRequestOptions = {}): Promise<HttpResponse> {
  const target = new URL(url);
  const headers: Record<string, string> = { accept: 'application/json', ...options.headers };
  let payload: string | undefined;
  if (options.body instanceof URLSearchParams) {
    payload = options.body.toString();
    headers['content-type'] ??= 'application/x-www-form-urlencoded';
  } else if (typeof options.body === 'string') {
    payload = options.body;
  } else if (options.body !== undefined) {
    payload = JSON.stringify(options.body);
    headers['content-type'] ??= 'application/json';
  }
  if (payload !== undefined) headers['content-length'] = String(Buffer.byteLength(payload));
  const mod = target.protocol === 'http:' ? http : https;
  return new Promise<HttpResponse>((resolve, reject) => {
    const req = mod.request(
      target,
      {
        method: options.method ?? (payload === undefined ? 'GET' : 'POST'),
        headers,
        ...(options.ca && target.protocol === 'https:' ? { ca: options.ca } : {}),
        ...(options.signal ? { signal: options.signal } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    if (payload !== undefined) req.write(payload);
    req.end();
  });
}

/** Parses a JSON body; undefined when it is not JSON. */
export function jsonBody<T = Record<string, unknown>>(res: HttpResponse): T | undefined {
  try {
    return JSON.parse(res.text) as T;
  } catch {
    return undefined;
  }
}
