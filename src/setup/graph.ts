// Microsoft Graph for setup: a thin JSON client (bearer token, the account's
// CA), plus a dry-run stand-in that records each request instead of sending
// it, so `smtp365 setup --dry-run` prints exactly what a real run would send.
import { Smtp365Error } from '../errors/error.ts';
import { explainFinding, type FindingId } from '../errors/explain.ts';
import { httpRequest, jsonBody } from '../doctor/http.ts';

export interface GraphRequest {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  /** Path under the version root, e.g. "/applications". */
  path: string;
  body?: object;
  /** Why the request is made, for --dry-run and progress. */
  purpose: string;
}

export interface GraphApi {
  call<T = Record<string, unknown>>(req: GraphRequest): Promise<T>;
}

export interface GraphErrorBody {
  error?: { code?: string; message?: string };
}

export class GraphError extends Smtp365Error {
  readonly status: number;
  readonly graphCode: string | undefined;
  constructor(req: GraphRequest, status: number, body: GraphErrorBody | undefined, finding: FindingId = status === 403 ? 'setup-forbidden-app' : 'setup-graph-failed') {
    const what = body?.error?.message ?? `HTTP ${status}`;
    super(status === 403 ? 'SETUP_FORBIDDEN' : 'SETUP_GRAPH_FAILED', `${req.method} ${req.path} (${req.purpose}): ${status} ${body?.error?.code ?? ''} ${what}`.replace(/\s+/g, ' ').trim(), {
      explanation: explainFinding(finding),
      details: { status, graphCode: body?.error?.code },
    });
    this.status = status;
    this.graphCode = body?.error?.code;
  }
}

export interface GraphClientOptions {
  /** e.g. https://graph.microsoft.com (the version is added). */
  endpoint: string;
  token: string;
  ca?: string[] | undefined;
  signal?: AbortSignal;
  /** Called before each request (progress output). */
  onRequest?: (req: GraphRequest) => void;
}

export class GraphClient implements GraphApi {
  private readonly opts: GraphClientOptions;
  constructor(opts: GraphClientOptions) {
    this.opts = opts;
  }

  async call<T = Record<string, unknown>>(req: GraphRequest): Promise<T> {
    this.opts.onRequest?.(req);
    const url = `${this.opts.endpoint.replace(/\/+$/, '')}/v1.0${req.path}`;
    const res = await httpRequest(url, {
      method: req.method,
      headers: { authorization: `Bearer ${this.opts.token}` },
      ...(req.body ? { body: req.body } : {}),
      ca: this.opts.ca,
      ...(this.opts.signal ? { signal: this.opts.signal } : {}),
    });
    const body = jsonBody<T & GraphErrorBody>(res);
    if (res.status >= 200 && res.status < 300) return (body ?? {}) as T;
    throw new GraphError(req, res.status, body);
  }
}

/** Records requests; answers as an empty tenant would, with placeholders for ids. */
export class DryRunGraph implements GraphApi {
  readonly requests: GraphRequest[] = [];
  private readonly answer: (req: GraphRequest) => unknown;
  constructor(answer: (req: GraphRequest) => unknown) {
    this.answer = answer;
  }
  async call<T = Record<string, unknown>>(req: GraphRequest): Promise<T> {
    this.requests.push(req);
    return this.answer(req) as T;
  }
}

/** OData string literal for a query string: quotes doubled, then URL-encoded ("&", "#", "+" in a name must not break the query). */
export function odataString(value: string): string {
  return encodeURIComponent(`'${value.replace(/'/g, "''")}'`);
}
