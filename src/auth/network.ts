// MSAL's network module, over node:https, so the identity endpoints can be
// reached through a TLS chain the account names (caFile: a company proxy's CA,
// or the sandbox's), in addition to the system's CAs. It also remembers the
// last error body the identity service sent: MSAL keeps only parts of it (the
// device-code poller keeps just "error"), and the explanation needs the
// AADSTS code.
import https from 'node:https';
import tls from 'node:tls';
import fs from 'node:fs';
import { AuthError, type INetworkModule, type NetworkRequestOptions, type NetworkResponse } from '@azure/msal-node';
import type { IdentityErrorInput } from '../errors/explain.ts';
import { Smtp365Error } from '../errors/error.ts';

export interface IdentityErrorBody extends IdentityErrorInput {
  status: number;
  url: string;
  trace_id?: string;
  correlation_id?: string;
}

export interface HttpsNetworkOptions {
  /** PEM file(s) of extra CAs to trust. */
  caFile?: string;
  /** Per-request timeout (ms), default 30 s. */
  timeoutMs?: number;
}

function readCa(caFile: string | undefined): string[] | undefined {
  if (!caFile) return undefined;
  let pem: string;
  try {
    pem = fs.readFileSync(caFile, 'utf8');
  } catch (err) {
    throw new Smtp365Error('CONFIG_INVALID', `caFile ${caFile} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Smtp365Error('CONFIG_INVALID', `caFile ${caFile} holds no PEM certificate`);
  return [...tls.rootCertificates, pem];
}

export class HttpsNetworkClient implements INetworkModule {
  private readonly ca: string[] | undefined;
  private readonly timeoutMs: number;
  /** The last error body an identity endpoint sent (cleared by the provider before each operation). */
  lastError: IdentityErrorBody | undefined;
  /** The last request that failed to connect or complete (TLS, refused, timeout). */
  lastFailure: Error | undefined;
  /**
   * Until when MSAL refuses to ask the identity service again (epoch ms). After
   * a 429 or 5xx, or any refusal with Retry-After, MSAL throttles itself: for
   * Retry-After seconds, else 60 s, at most an hour (msal-common's
   * ThrottlingUtils). Retrying sooner only replays the old answer.
   */
  throttledUntil: number | undefined;

  /** Set when the CA file cannot be used; raised when the client is first needed (not at construction). */
  readonly configError: Smtp365Error | undefined;

  constructor(opts: HttpsNetworkOptions = {}) {
    let ca: string[] | undefined;
    try {
      ca = readCa(opts.caFile);
    } catch (err) {
      this.configError = err as Smtp365Error;
    }
    this.ca = ca;
    this.timeoutMs = opts.timeoutMs ?? 30_000;
  }

  sendGetRequestAsync<T>(url: string, options?: NetworkRequestOptions, timeout?: number): Promise<NetworkResponse<T>> {
    return this.request<T>('GET', url, options, timeout);
  }

  sendPostRequestAsync<T>(url: string, options?: NetworkRequestOptions): Promise<NetworkResponse<T>> {
    return this.request<T>('POST', url, options);
  }

  private request<T>(method: 'GET' | 'POST', url: string, options: NetworkRequestOptions | undefined, timeout?: number): Promise<NetworkResponse<T>> {
    const u = new URL(url);
    const body = method === 'POST' ? Buffer.from(options?.body ?? '', 'utf8') : undefined;
    const headers: Record<string, string | number> = { ...(options?.headers ?? {}) };
    if (body) headers['Content-Length'] = body.length;
    return new Promise<NetworkResponse<T>>((resolve, reject) => {
      const req = https.request(
        u,
        {
          method,
          headers,
          ...(this.ca ? { ca: this.ca } : {}),
          minVersion: 'TLSv1.2',
          timeout: timeout ?? this.timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('error', (err) => reject(networkError(u, err)));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8');
            const status = res.statusCode ?? 0;
            const hdrs: Record<string, string> = {};
            for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) hdrs[k] = Array.isArray(v) ? v.join(', ') : v;
            let parsed: unknown;
            try {
              parsed = text.length > 0 ? JSON.parse(text) : {};
            } catch {
              // Not JSON (a proxy's HTML page, a 502 from a load balancer): make it an error MSAL reports.
              parsed = {
                error: status >= 500 || status === 429 ? 'temporarily_unavailable' : 'invalid_response',
                error_description: `HTTP ${status} from ${u.host}${u.pathname}: the reply is not JSON`,
              };
            }
            // Only POSTs (token, device code) go through MSAL's throttling; its GETs (discovery) do not.
            if (method === 'POST' && (status === 429 || status >= 500 || (hdrs['retry-after'] !== undefined && (status < 200 || status >= 300)))) {
              const seconds = Number.parseInt(hdrs['retry-after'] ?? '', 10);
              this.throttledUntil = Date.now() + Math.min(seconds > 0 ? seconds : 60, 3600) * 1000;
            }
            if (status >= 400 && parsed && typeof parsed === 'object' && 'error' in parsed) {
              this.lastError = { ...(parsed as IdentityErrorInput), status, url: `${u.origin}${u.pathname}` };
            } else if (status >= 400) {
              this.lastError = { error: 'http_error', error_description: `HTTP ${status} from ${u.host}${u.pathname}`, status, url: `${u.origin}${u.pathname}` };
            }
            resolve({ headers: hdrs, body: parsed as T, status });
          });
        },
      );
      req.on('timeout', () => req.destroy(Object.assign(new Error(`no answer within ${Math.round((timeout ?? this.timeoutMs) / 1000)} s`), { code: 'ETIMEDOUT' })));
      req.on('error', (err) => {
        const e = networkError(u, err);
        this.lastFailure = new Error(e.errorMessage);
        reject(e);
      });
      if (body) req.end(body);
      else req.end();
    });
  }
}

function networkError(u: URL, err: Error): AuthError {
  const code = (err as NodeJS.ErrnoException).code;
  // "network_error" is what MSAL's own client raises: MSAL passes it through untouched.
  const e = new AuthError('network_error', '', `Network request to ${u.host} failed: ${code ? `${code} ` : ''}${err.message}`);
  (e as AuthError & { cause?: unknown }).cause = err;
  return e;
}
