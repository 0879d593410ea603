// Entra ID's endpoints on HTTPS: OpenID configuration, JWKS, instance
// discovery, /oauth2/v2.0/{devicecode,token,authorize}, and the sign-in
// pages (/devicelogin, /login). Routes by path only: MSAL appends
// ?client-request-id=… to the token endpoint.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { SandboxUser } from '../state/model.ts';
import { aadError, type Reply } from './errors.ts';
import { codeEntryPage, confirmPage, donePage, errorPage, formPostPage, homePage, mfaPage, signInPage } from './pages.ts';
import type { AuthorizeRequest, IdentityService } from './service.ts';

const BODY_LIMIT = 1_000_000;
const TXN_LIFETIME_MS = 15 * 60_000;

interface Txn {
  id: string;
  kind: 'device' | 'authorize';
  userCode?: string;
  authorize?: AuthorizeRequest;
  appName: string;
  scope: string;
  loginHint: string | null;
  userOid?: string;
  amr: string[];
  step: 'password' | 'mfa' | 'confirm';
  expiresAtMs: number;
}

const txns = new WeakMap<IdentityService, Map<string, Txn>>();

export async function handleIdentityRequest(req: IncomingMessage, res: ServerResponse, url: URL, id: IdentityService): Promise<boolean> {
  const segs = url.pathname.split('/').filter(Boolean).map((s) => decodeURIComponent(s));
  const method = req.method ?? 'GET';
  const corr = header(req, 'client-request-id') ?? url.searchParams.get('client-request-id') ?? undefined;
  const ctx = { correlationId: corr };

  if (segs.length === 0 && method === 'GET') {
    sendHtml(res, 200, homePage(id.authority));
    return true;
  }
  if (segs[0] === 'devicelogin' && segs.length === 1) {
    await deviceLogin(req, res, id, method);
    return true;
  }
  if (segs[0] === 'login' && segs.length === 1 && method === 'POST') {
    await loginStep(req, res, id);
    return true;
  }

  const [tenantSeg, ...rest] = segs;
  if (!tenantSeg) return false;
  const path = rest.join('/');

  // Instance discovery, as MSAL calls it: {host}/common/discovery/instance?api-version=1.1&authorization_endpoint=…
  if (path === 'discovery/instance' && method === 'GET') {
    const host = new URL(id.authority).host;
    sendJson(res, 200, {
      tenant_discovery_endpoint: `${id.authority}/${tenantFromAuthorizeEndpoint(url) ?? tenantSeg}/v2.0/.well-known/openid-configuration`,
      'api-version': '1.1',
      metadata: [{ preferred_network: host, preferred_cache: host, aliases: [host] }],
    });
    return true;
  }
  // Home realm discovery, which MSAL for Python asks before the password flow: every sandbox user is "Managed" (no federation).
  if (tenantSeg === 'common' && rest[0] === 'userrealm' && rest.length === 2 && method === 'GET') {
    const upn = rest[1]!;
    const domain = upn.includes('@') ? upn.slice(upn.lastIndexOf('@') + 1) : '';
    const known = id.directory.data.tenants.find((t) => t.domain.toLowerCase() === domain.toLowerCase());
    sendJson(res, 200, known
      ? { ver: '1.0', account_type: 'Managed', domain_name: known.domain, cloud_instance_name: 'microsoftonline.com', cloud_audience_urn: 'urn:federation:MicrosoftOnline' }
      : { ver: '1.0', account_type: 'Unknown', cloud_instance_name: 'microsoftonline.com' });
    return true;
  }
  if ((path === 'discovery/v2.0/keys' || path === 'discovery/keys') && method === 'GET') {
    if (!id.resolveTenantSegment(tenantSeg) && tenantSeg !== 'consumers') {
      sendReply(res, id.tenantNotFound(tenantSeg, ctx, 'invalid_tenant'));
      return true;
    }
    sendJson(res, 200, id.jwks());
    return true;
  }
  if ((path === 'v2.0/.well-known/openid-configuration' || path === '.well-known/openid-configuration') && method === 'GET') {
    const t = id.resolveTenantSegment(tenantSeg);
    if (!t) {
      sendReply(res, id.tenantNotFound(tenantSeg, ctx, 'invalid_tenant'));
      return true;
    }
    sendJson(res, 200, openidConfiguration(id.authority, tenantSeg, t === 'multi' ? '{tenantid}' : t.id, path.startsWith('v2.0')));
    return true;
  }
  if (path === 'oauth2/v2.0/devicecode' || path === 'oauth2/devicecode') {
    if (method !== 'POST') return methodNotAllowed(res);
    const form = await readForm(req, res);
    if (!form) return true;
    if (await applyFault(req, res, id, 'devicecode', form.get('client_id') ?? undefined, ctx)) return true;
    if (path === 'oauth2/devicecode') v1Resource(form);
    sendReply(res, id.deviceCode(tenantSeg, form, ctx), ctx.correlationId);
    return true;
  }
  if (path === 'oauth2/v2.0/token' || path === 'oauth2/token') {
    if (method !== 'POST') return methodNotAllowed(res);
    const form = await readForm(req, res);
    if (!form) return true;
    const basic = basicAuth(req);
    if (await applyFault(req, res, id, 'token', form.get('client_id') ?? basic?.id, ctx)) return true;
    if (path === 'oauth2/token') v1Resource(form);
    sendReply(res, id.token(tenantSeg, form, basic, ctx), ctx.correlationId);
    return true;
  }
  if (path === 'oauth2/v2.0/authorize' && method === 'GET') {
    authorize(res, id, tenantSeg, url.searchParams);
    return true;
  }
  if (path === 'oauth2/v2.0/logout' && method === 'GET') {
    const post = url.searchParams.get('post_logout_redirect_uri');
    if (post) {
      res.writeHead(302, { location: post });
      res.end();
    } else sendHtml(res, 200, donePage('Microsoft', false).replace('You have signed in to', 'You signed out of'));
    return true;
  }
  return false;
}

/** The v1 endpoints name a `resource` instead of scopes (older libraries still use them). */
function v1Resource(form: URLSearchParams): void {
  const resource = form.get('resource');
  if (!resource || form.get('scope')) return;
  const appOnly = form.get('grant_type') === 'client_credentials';
  form.set('scope', `${resource.replace(/\/+$/, '')}/.default${appOnly ? '' : ' openid offline_access'}`);
}

// ---- documents -------------------------------------------------------------------

function openidConfiguration(authority: string, seg: string, issuerTenant: string, v2: boolean): Record<string, unknown> {
  const base = `${authority}/${seg}`;
  const o = v2 ? 'oauth2/v2.0' : 'oauth2';
  return {
    token_endpoint: `${base}/${o}/token`,
    token_endpoint_auth_methods_supported: ['client_secret_post', 'private_key_jwt', 'client_secret_basic'],
    jwks_uri: `${base}/discovery/${v2 ? 'v2.0/' : ''}keys`,
    response_modes_supported: ['query', 'fragment', 'form_post'],
    subject_types_supported: ['pairwise'],
    id_token_signing_alg_values_supported: ['RS256'],
    response_types_supported: ['code', 'id_token', 'code id_token', 'id_token token'],
    scopes_supported: ['openid', 'profile', 'email', 'offline_access'],
    issuer: v2 ? `${authority}/${issuerTenant}/v2.0` : `https://sts.windows.net/${issuerTenant}/`,
    request_uri_parameter_supported: false,
    userinfo_endpoint: `${authority}/graph/oidc/userinfo`,
    authorization_endpoint: `${base}/${o}/authorize`,
    device_authorization_endpoint: `${base}/${o}/devicecode`,
    http_logout_supported: true,
    frontchannel_logout_supported: true,
    end_session_endpoint: `${base}/${o}/logout`,
    claims_supported: ['sub', 'iss', 'cloud_instance_name', 'cloud_instance_host_name', 'cloud_graph_host_name', 'msgraph_host', 'aud', 'exp', 'iat', 'auth_time', 'acr', 'nonce', 'preferred_username', 'name', 'tid', 'ver', 'at_hash', 'c_hash', 'email'],
    kerberos_endpoint: `${base}/kerberos`,
    tenant_region_scope: 'WW',
    cloud_instance_name: new URL(authority).host,
    cloud_graph_host_name: new URL(authority).host,
    msgraph_host: `${new URL(authority).host}/graph`,
    rbac_url: authority,
  };
}

function tenantFromAuthorizeEndpoint(url: URL): string | undefined {
  const ep = url.searchParams.get('authorization_endpoint');
  if (!ep) return undefined;
  try {
    return new URL(ep).pathname.split('/').filter(Boolean)[0];
  } catch {
    return undefined;
  }
}

// ---- faults ------------------------------------------------------------------------

/** Token/device code endpoint faults: a delay, then a given status/body or a dropped connection (or, delay only, carry on). */
async function applyFault(req: IncomingMessage, res: ServerResponse, id: IdentityService, stage: 'token' | 'devicecode', clientId: string | undefined, ctx: { correlationId?: string }): Promise<boolean> {
  const f = id.faults.take(stage, clientId);
  if (!f) return false;
  if (f.delayMs) await new Promise((r) => setTimeout(r, f.delayMs));
  if (f.drop) {
    req.socket.destroy();
    return true;
  }
  if (f.httpStatus !== undefined || f.body !== undefined) {
    const status = f.httpStatus ?? 400;
    const body = f.body ?? aadError(status, 'temporarily_unavailable', 90033, 'A transient error has occurred. Please try again.', { correlationId: ctx.correlationId, authority: id.authority }).body;
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, {
      'content-type': typeof body === 'string' ? 'text/plain; charset=utf-8' : 'application/json; charset=utf-8',
      'cache-control': 'no-store',
      ...(f.retryAfterSeconds !== undefined ? { 'retry-after': String(f.retryAfterSeconds) } : {}),
    });
    res.end(text);
    return true;
  }
  return false;
}

// ---- sign-in pages -------------------------------------------------------------------

function txnStore(id: IdentityService): Map<string, Txn> {
  let m = txns.get(id);
  if (!m) {
    m = new Map();
    txns.set(id, m);
  }
  const now = Date.now();
  for (const [k, t] of m) if (t.expiresAtMs < now) m.delete(k);
  return m;
}

function newTxn(id: IdentityService, t: Omit<Txn, 'id' | 'expiresAtMs' | 'amr' | 'step'>): Txn {
  const txn: Txn = { ...t, id: randomUUID(), amr: ['pwd'], step: 'password', expiresAtMs: Date.now() + TXN_LIFETIME_MS };
  txnStore(id).set(txn.id, txn);
  return txn;
}

async function deviceLogin(req: IncomingMessage, res: ServerResponse, id: IdentityService, method: string): Promise<void> {
  if (method === 'GET') {
    sendHtml(res, 200, codeEntryPage());
    return;
  }
  if (method !== 'POST') {
    methodNotAllowed(res);
    return;
  }
  const form = await readForm(req, res);
  if (!form) return;
  const code = form.get('otc') ?? '';
  const entry = id.findDeviceCode(code);
  if (!entry) {
    sendHtml(res, 400, codeEntryPage("That code didn't work. Check the code and try again."));
    return;
  }
  const appName = id.directory.app(entry.clientId)?.displayName ?? entry.clientId;
  const txn = newTxn(id, { kind: 'device', userCode: entry.userCode, appName, scope: entry.scope, loginHint: null });
  sendHtml(res, 200, signInPage(txn.id, appName));
}

function authorize(res: ServerResponse, id: IdentityService, tenantSeg: string, q: URLSearchParams): void {
  const checked = id.checkAuthorizeRequest(tenantSeg, q);
  if (!checked.ok) {
    sendHtml(res, 400, errorPage(checked.code, checked.message));
    return;
  }
  const { request, app } = checked;
  if (request.prompt === 'none') {
    // The sandbox keeps no browser session: silent sign-in always needs interaction.
    redirect(res, request, id.authorizeError(request, 'login_required', 50058, 'A silent sign-in request was sent but no user is signed in.'));
    return;
  }
  const txn = newTxn(id, { kind: 'authorize', authorize: request, appName: app.displayName, scope: request.scope, loginHint: request.loginHint });
  sendHtml(res, 200, signInPage(txn.id, app.displayName, { loginHint: request.loginHint }));
}

async function loginStep(req: IncomingMessage, res: ServerResponse, id: IdentityService): Promise<void> {
  const form = await readForm(req, res);
  if (!form) return;
  const txn = txnStore(id).get(form.get('txn') ?? '');
  if (!txn) {
    sendHtml(res, 400, errorPage(50058, 'Your sign-in session has expired or is unknown. Start the sign-in again.'));
    return;
  }
  const step = form.get('step');
  const user = txn.userOid ? id.directory.user(txn.userOid) : undefined;
  if (step === 'password' || !user) {
    const r = id.checkPassword(form.get('login') ?? '', form.get('passwd') ?? '');
    if (!r.ok) {
      sendHtml(res, 200, signInPage(txn.id, txn.appName, { error: r.message, loginHint: form.get('login') }));
      return;
    }
    txn.userOid = r.user.oid;
    txn.amr = ['pwd'];
    txn.step = r.user.mfaRequired ? 'mfa' : 'confirm';
    sendHtml(res, 200, txn.step === 'mfa' ? mfaPage(txn.id, r.user.upn) : confirmPage(txn.id, r.user.upn, txn.appName, txn.scope, txn.kind === 'device'));
    return;
  }
  if (step === 'mfa' && txn.step === 'mfa') {
    if ((form.get('otc') ?? '').trim() !== (user.mfaCode ?? '123456')) {
      sendHtml(res, 200, mfaPage(txn.id, user.upn, "That code didn't work. Check the code and try again."));
      return;
    }
    txn.amr = ['pwd', 'mfa'];
    txn.step = 'confirm';
    sendHtml(res, 200, confirmPage(txn.id, user.upn, txn.appName, txn.scope, txn.kind === 'device'));
    return;
  }
  if (step === 'confirm' && txn.step === 'confirm') {
    txnStore(id).delete(txn.id);
    const declined = form.get('action') !== 'continue';
    finish(res, id, txn, user, declined);
    return;
  }
  sendHtml(res, 400, errorPage(50058, 'Unexpected sign-in step. Start the sign-in again.'));
}

function finish(res: ServerResponse, id: IdentityService, txn: Txn, user: SandboxUser, declined: boolean): void {
  if (txn.kind === 'device' && txn.userCode) {
    if (declined) id.declineDeviceCode(txn.userCode);
    else {
      const r = id.approveDeviceCode(txn.userCode, user.upn, txn.amr);
      if (!r.ok) {
        sendHtml(res, 400, errorPage(70019, 'The code expired or was already used. Start the sign-in on your device again.'));
        return;
      }
    }
    sendHtml(res, 200, donePage(txn.appName, declined));
    return;
  }
  const request = txn.authorize as AuthorizeRequest;
  if (declined) {
    redirect(res, request, id.authorizeError(request, 'access_denied', 65004, 'User declined to consent to access the app.'));
    return;
  }
  redirect(res, request, id.completeAuthorize(request, user, txn.amr).params);
}

function redirect(res: ServerResponse, request: AuthorizeRequest, params: Record<string, string>): void {
  if (request.responseMode === 'form_post') {
    sendHtml(res, 200, formPostPage(request.redirectUri, params));
    return;
  }
  const qs = new URLSearchParams(params).toString();
  const target = request.responseMode === 'fragment' ? `${request.redirectUri}#${qs}` : `${request.redirectUri}${request.redirectUri.includes('?') ? '&' : '?'}${qs}`;
  res.writeHead(302, { location: target, 'cache-control': 'no-store' });
  res.end();
}

// ---- HTTP helpers ------------------------------------------------------------------------

function header(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

function basicAuth(req: IncomingMessage): { id: string; secret: string } | undefined {
  const h = header(req, 'authorization');
  if (!h || !/^basic /i.test(h)) return undefined;
  const decoded = Buffer.from(h.slice(6).trim(), 'base64').toString('utf8');
  const i = decoded.indexOf(':');
  if (i < 0) return undefined;
  return { id: decodeURIComponent(decoded.slice(0, i)), secret: decodeURIComponent(decoded.slice(i + 1)) };
}

async function readForm(req: IncomingMessage, res: ServerResponse): Promise<URLSearchParams | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > BODY_LIMIT) {
      sendJson(res, 413, { error: 'invalid_request', error_description: 'request body too large' });
      return undefined;
    }
    chunks.push(c);
  }
  const type = header(req, 'content-type') ?? '';
  if (size > 0 && !/application\/x-www-form-urlencoded/i.test(type)) {
    const r = aadError(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'grant_type'. (Send application/x-www-form-urlencoded.)");
    sendReply(res, r);
    return undefined;
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

function sendReply(res: ServerResponse, r: Reply, correlationId?: string): void {
  // As Entra: the request id, and the caller's client-request-id echoed.
  const ids: Record<string, string> = { 'x-ms-request-id': String(r.body['trace_id'] ?? randomUUID()) };
  if (correlationId) ids['client-request-id'] = correlationId;
  sendJson(res, r.status, r.body, { ...ids, ...r.headers });
}

function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store, no-cache', pragma: 'no-cache', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

function sendHtml(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(html), 'x-frame-options': 'DENY' });
  res.end(html);
}

function methodNotAllowed(res: ServerResponse): true {
  sendJson(res, 405, { error: 'invalid_request', error_description: 'Method not allowed.' });
  return true;
}
