// The Microsoft Graph subset setup automation needs, under /graph/v1.0:
// applications, servicePrincipals, oauth2PermissionGrants, appRoleAssignments,
// /me and /organization. Requires a Graph-audience token from the sandbox;
// permission checks (scopes, and an admin role for consent and for apps one
// does not own) answer with Graph's error shape.
import { randomUUID, X509Certificate } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AdminContext } from '../admin/context.ts';
import { readBodyText } from '../faults/json-io.ts';
import type { Directory } from '../state/directory.ts';
import { WELL_KNOWN, type SandboxAccessTokenClaims, type SandboxApp, type SandboxServicePrincipal, type SandboxTenant, type SandboxUser } from '../state/model.ts';
import { resourceByAppId, type Resource } from '../state/resources.ts';
import { certificateRecord } from '../state/scenario.ts';

class GraphError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

interface Caller {
  tenant: SandboxTenant;
  user: SandboxUser | undefined;
  scopes: Set<string>;
  roles: Set<string>;
  appId: string;
}

const READ_APPS = ['Application.Read.All', 'Application.ReadWrite.All', 'Directory.Read.All', 'Directory.ReadWrite.All', 'Directory.AccessAsUser.All'];
const WRITE_APPS = ['Application.ReadWrite.All', 'Directory.ReadWrite.All', 'Directory.AccessAsUser.All'];
const GRANTS = ['DelegatedPermissionGrant.ReadWrite.All', 'Directory.AccessAsUser.All'];
const ROLE_ASSIGN = ['AppRoleAssignment.ReadWrite.All', 'Directory.AccessAsUser.All'];

export async function handleGraphRequest(req: IncomingMessage, res: ServerResponse, url: URL, ctx: AdminContext): Promise<boolean> {
  const m = /^\/graph\/(v1\.0|beta)(\/.*)?$/.exec(url.pathname);
  if (!m) return false;
  const base = `${ctx.info().graph}/${m[1]}`;
  const path = decodeURIComponent((m[2] ?? '/').replace(/\/+$/, '')) || '/';
  const method = req.method ?? 'GET';
  try {
    const caller = authenticate(req, ctx);
    const body = method === 'POST' || method === 'PATCH' ? await readBody(req) : undefined;
    const r = route(ctx.directory, caller, method, path, url.searchParams, body, base, ctx);
    if (r.status === 204) {
      res.writeHead(204, { 'request-id': randomUUID() });
      res.end();
    } else send(res, r.status, r.body);
  } catch (e) {
    if (e instanceof GraphError) {
      send(res, e.status, { error: { code: e.code, message: e.message, innerError: { date: new Date(ctx.clock.nowMs()).toISOString().replace(/\.\d+Z$/, ''), 'request-id': randomUUID(), 'client-request-id': String(req.headers['client-request-id'] ?? randomUUID()) } } });
      return true;
    }
    throw e;
  }
  return true;
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8', 'request-id': randomUUID(), 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Record<string, unknown>> {
  const text = await readBodyText(req, 1_000_000, () => new GraphError(413, 'Request_EntityTooLarge', 'The request body is too large.'));
  if (!text) return {};
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch {
    throw new GraphError(400, 'BadRequest', 'Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.');
  }
}

function authenticate(req: IncomingMessage, ctx: AdminContext): Caller {
  const h = String(req.headers['authorization'] ?? '');
  const m = /^Bearer\s+(\S+)$/i.exec(h);
  if (!m) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token is empty.');
  const v = ctx.issuer.verifyAccessToken(m[1] as string);
  if (!v.ok) {
    const msg = { malformed: 'IDX14100: JWT is not well formed, there are no dots (.).', signature: 'Access token validation failure. Invalid signature.', expired: 'Lifetime validation failed, the token is expired.', 'not-yet-valid': 'Lifetime validation failed, the token is not yet valid.' }[v.reason];
    throw new GraphError(401, 'InvalidAuthenticationToken', msg);
  }
  const c: SandboxAccessTokenClaims = v.claims;
  if (c.aud !== WELL_KNOWN.graphAudience && c.aud !== WELL_KNOWN.graphAudience + '/' && c.aud !== WELL_KNOWN.graphAppId) {
    throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid audience.');
  }
  const tenant = ctx.directory.tenant(c.tid);
  if (!tenant) throw new GraphError(401, 'InvalidAuthenticationToken', 'Access token validation failure. Invalid tenant.');
  const user = c.idtyp === 'user' || c.upn ? ctx.directory.user(c.oid) : undefined;
  if ((c.idtyp === 'user' || c.upn) && (!user || !user.accountEnabled)) throw new GraphError(401, 'InvalidAuthenticationToken', 'The user account is disabled or was deleted.');
  return { tenant, user, scopes: new Set((c.scp ?? '').split(/\s+/).filter(Boolean)), roles: new Set(c.roles ?? []), appId: c.appid };
}

function requireAny(caller: Caller, needed: string[]): void {
  if (needed.some((n) => caller.scopes.has(n) || caller.roles.has(n))) return;
  throw new GraphError(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
}

function requireAdmin(caller: Caller): void {
  if (caller.user && !caller.user.isAdmin) throw new GraphError(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
}

function requireOwnerOrAdmin(caller: Caller, app: SandboxApp): void {
  if (!caller.user || caller.user.isAdmin) return;
  if ((app.owners ?? []).includes(caller.user.oid)) return;
  throw new GraphError(403, 'Authorization_RequestDenied', 'Insufficient privileges to complete the operation.');
}

const notFound = (id: string): GraphError => new GraphError(404, 'Request_ResourceNotFound', `Resource '${id}' does not exist or one of its queried reference-property objects are not present.`);
const badRequest = (msg: string): GraphError => new GraphError(400, 'Request_BadRequest', msg);

interface Out {
  status: number;
  body?: unknown;
}

function route(d: Directory, caller: Caller, method: string, path: string, q: URLSearchParams, body: Record<string, unknown> | undefined, base: string, ctx: AdminContext): Out {
  const segs = splitPath(path);
  const [head, id, sub] = segs;
  const collection = (name: string, items: Array<Record<string, unknown>>): Out => ({ status: 200, body: { '@odata.context': `${base}/$metadata#${name}`, value: select(applyFilter(items, q.get('$filter')), q).slice(0, topOf(q)) } });
  const entity = (name: string, item: Record<string, unknown>, status = 200): Out => ({ status, body: { '@odata.context': `${base}/$metadata#${name}/$entity`, ...select([item], q)[0] } });

  switch (head?.name) {
    case 'me': {
      if (!caller.user) throw badRequest('/me request is only valid with delegated authentication flow.');
      if (method !== 'GET') throw methodNotAllowed();
      return entity('users', userJson(d, caller.user));
    }
    case 'organization': {
      if (method !== 'GET') throw methodNotAllowed();
      const t = caller.tenant;
      return collection('organization', [{ id: t.id, displayName: t.displayName, verifiedDomains: [{ name: t.domain, isDefault: true, isInitial: true, type: 'Managed', capabilities: 'Email, OfficeCommunicationsOnline' }], tenantType: 'AAD' }]);
    }
    case 'users': {
      if (method !== 'GET') throw methodNotAllowed();
      requireAny(caller, ['User.Read.All', 'User.ReadBasic.All', 'Directory.Read.All', 'Directory.ReadWrite.All', 'Directory.AccessAsUser.All']);
      if (!head.key) return collection('users', d.data.users.filter((u) => d.tenantOfUser(u).id === caller.tenant.id).map((u) => userJson(d, u)));
      const u = d.user(head.key);
      if (!u) throw notFound(head.key);
      return entity('users', userJson(d, u));
    }
    case 'applications': {
      const tenantApps = d.data.apps.filter((a) => a.tenantId === caller.tenant.id);
      const app = head.key ? findApp(tenantApps, head) : undefined;
      if (head.key && !app) throw notFound(head.key);
      if (!app) {
        if (method === 'GET') {
          requireAny(caller, READ_APPS);
          return collection('applications', tenantApps.map((a) => appJson(d, a)));
        }
        if (method === 'POST') {
          requireAny(caller, WRITE_APPS);
          return entity('applications', appJson(d, createApp(d, caller, body ?? {}, ctx)), 201);
        }
        throw methodNotAllowed();
      }
      if (id?.name === 'addPassword' && method === 'POST') {
        requireAny(caller, WRITE_APPS);
        requireOwnerOrAdmin(caller, app);
        const pc = (body?.['passwordCredential'] ?? {}) as Record<string, unknown>;
        const now = new Date(ctx.clock.nowMs());
        const end = typeof pc['endDateTime'] === 'string' ? pc['endDateTime'] : new Date(now.getTime() + 2 * 365 * 86400_000).toISOString();
        const secret = { keyId: randomUUID(), value: `${randomUUID().slice(0, 3)}8Q~${randomUUID().replace(/-/g, '')}${randomUUID().slice(0, 4)}`, displayName: typeof pc['displayName'] === 'string' ? pc['displayName'] : undefined, endDateTime: end };
        d.patchApp(app, { secrets: [...app.secrets, secret] });
        return { status: 200, body: { '@odata.context': `${base}/$metadata#microsoft.graph.passwordCredential`, customKeyIdentifier: null, displayName: secret.displayName ?? null, endDateTime: end, hint: secret.value.slice(0, 3), keyId: secret.keyId, secretText: secret.value, startDateTime: now.toISOString() } };
      }
      if (id?.name === 'removePassword' && method === 'POST') {
        requireAny(caller, WRITE_APPS);
        requireOwnerOrAdmin(caller, app);
        const keyId = String(body?.['keyId'] ?? '');
        if (!app.secrets.some((s) => s.keyId === keyId)) throw badRequest(`No password credential found with keyId ${keyId}.`);
        d.patchApp(app, { secrets: app.secrets.filter((s) => s.keyId !== keyId) });
        return { status: 204 };
      }
      if (id?.name === 'owners' && method === 'GET') {
        requireAny(caller, READ_APPS);
        return collection('directoryObjects', (app.owners ?? []).map((o) => d.user(o)).filter((u): u is SandboxUser => Boolean(u)).map((u) => userJson(d, u)));
      }
      if (id) throw notFound(id.name);
      if (method === 'GET') {
        requireAny(caller, READ_APPS);
        return entity('applications', appJson(d, app));
      }
      if (method === 'PATCH') {
        requireAny(caller, WRITE_APPS);
        requireOwnerOrAdmin(caller, app);
        patchApp(d, app, body ?? {});
        return { status: 204 };
      }
      if (method === 'DELETE') {
        requireAny(caller, WRITE_APPS);
        requireOwnerOrAdmin(caller, app);
        d.data.apps = d.data.apps.filter((a) => a !== app);
        d.data.servicePrincipals = d.data.servicePrincipals.filter((s) => !(s.appId === app.appId && s.tenantId === caller.tenant.id));
        d.changed();
        return { status: 204 };
      }
      throw methodNotAllowed();
    }
    case 'servicePrincipals': {
      const sps = d.data.servicePrincipals.filter((s) => s.tenantId === caller.tenant.id);
      const sp = head.key ? findSp(sps, head) : undefined;
      if (head.key && !sp) throw notFound(head.key);
      if (!sp) {
        if (method === 'GET') {
          requireAny(caller, READ_APPS);
          return collection('servicePrincipals', sps.map((s) => spJson(d, s)));
        }
        if (method === 'POST') {
          requireAny(caller, WRITE_APPS);
          const appId = String(body?.['appId'] ?? '');
          if (!appId) throw badRequest("Property 'appId' is required.");
          const app = d.app(appId);
          if (!app && !resourceByAppId(appId)) throw badRequest(`The appId '${appId}' of the service principal does not reference a valid application object.`);
          if (d.servicePrincipalByAppId(caller.tenant.id, appId)) {
            throw new GraphError(409, 'Request_MultipleObjectsWithSameKeyValue', `The service principal cannot be created, updated, or restored because the service principal name ${appId} is already in use.`);
          }
          const created = d.addServicePrincipal(caller.tenant.id, { appId, displayName: app?.displayName ?? resourceByAppId(appId)?.displayName ?? appId });
          return entity('servicePrincipals', spJson(d, created), 201);
        }
        throw methodNotAllowed();
      }
      if (!id) {
        if (method === 'GET') {
          requireAny(caller, READ_APPS);
          return entity('servicePrincipals', spJson(d, sp));
        }
        if (method === 'DELETE') {
          requireAny(caller, WRITE_APPS);
          requireAdmin(caller);
          d.data.servicePrincipals = d.data.servicePrincipals.filter((s) => s !== sp);
          d.changed();
          return { status: 204 };
        }
        throw methodNotAllowed();
      }
      if (id.name === 'appRoleAssignedTo' || id.name === 'appRoleAssignments') {
        const asResource = id.name === 'appRoleAssignedTo';
        const assignmentId = sub?.name;
        if (method === 'GET' && !assignmentId) {
          requireAny(caller, READ_APPS);
          const list = d.data.appRoleAssignments.filter((a) => (asResource ? a.resourceId === sp.id : a.principalId === sp.id));
          return collection(`servicePrincipals('${sp.id}')/${id.name}`, list.map((a) => assignmentJson(d, a)));
        }
        if (method === 'POST' && !assignmentId) {
          requireAny(caller, ROLE_ASSIGN);
          requireAdmin(caller);
          const principalId = String(body?.['principalId'] ?? '');
          const resourceId = String(body?.['resourceId'] ?? (asResource ? sp.id : ''));
          const appRoleId = String(body?.['appRoleId'] ?? '');
          if (asResource && resourceId !== sp.id) throw badRequest('resourceId must be the service principal in the URL.');
          if (!asResource && principalId !== sp.id) throw badRequest('principalId must be the service principal in the URL.');
          const principal = d.servicePrincipal(principalId);
          const resourceSp = d.servicePrincipal(resourceId);
          if (!principal || principal.tenantId !== caller.tenant.id) throw notFound(principalId);
          if (!resourceSp || resourceSp.tenantId !== caller.tenant.id) throw notFound(resourceId);
          const resource = resourceByAppId(resourceSp.appId);
          if (!resource || !resource.appRoles.some((r) => r.id === appRoleId)) throw badRequest('Permission being assigned was not found on application');
          if (d.data.appRoleAssignments.some((a) => a.principalId === principalId && a.resourceId === resourceId && a.appRoleId === appRoleId)) {
            throw badRequest('Permission being assigned already exists on the object');
          }
          const a = d.addAppRoleAssignment({ principalId, resourceId, appRoleId });
          return entity('appRoleAssignments', assignmentJson(d, a), 201);
        }
        if (method === 'DELETE' && assignmentId) {
          requireAny(caller, ROLE_ASSIGN);
          requireAdmin(caller);
          const before = d.data.appRoleAssignments.length;
          d.data.appRoleAssignments = d.data.appRoleAssignments.filter((a) => a.id !== assignmentId);
          if (d.data.appRoleAssignments.length === before) throw notFound(assignmentId);
          d.changed();
          return { status: 204 };
        }
        throw methodNotAllowed();
      }
      if (id.name === 'oauth2PermissionGrants' && method === 'GET') {
        requireAny(caller, READ_APPS);
        return collection('oauth2PermissionGrants', d.delegatedGrantsFor(sp.id).map((g) => ({ ...g })));
      }
      throw notFound(id.name);
    }
    case 'oauth2PermissionGrants': {
      const tenantSpIds = new Set(d.data.servicePrincipals.filter((s) => s.tenantId === caller.tenant.id).map((s) => s.id));
      const grants = d.data.delegatedGrants.filter((g) => tenantSpIds.has(g.clientId));
      if (!head.key) {
        if (method === 'GET') {
          requireAny(caller, [...READ_APPS, ...GRANTS]);
          return collection('oauth2PermissionGrants', grants.map((g) => ({ ...g })));
        }
        if (method === 'POST') {
          requireAny(caller, GRANTS);
          requireAdmin(caller);
          const b = body ?? {};
          const clientId = String(b['clientId'] ?? '');
          const resourceId = String(b['resourceId'] ?? '');
          const consentType = String(b['consentType'] ?? '');
          const scope = String(b['scope'] ?? '').trim();
          const principalId = b['principalId'] === undefined || b['principalId'] === null ? null : String(b['principalId']);
          if (consentType !== 'AllPrincipals' && consentType !== 'Principal') throw badRequest("Invalid value specified for property 'consentType' of resource 'OAuth2PermissionGrant'.");
          if (consentType === 'Principal' && !principalId) throw badRequest("Property 'principalId' is required when consentType is 'Principal'.");
          if (consentType === 'AllPrincipals' && principalId) throw badRequest("Property 'principalId' must be null when consentType is 'AllPrincipals'.");
          if (!tenantSpIds.has(clientId)) throw notFound(clientId);
          const rsp = d.servicePrincipal(resourceId);
          if (!rsp || !tenantSpIds.has(resourceId)) throw notFound(resourceId);
          validateScopes(rsp, scope);
          if (principalId && !d.user(principalId)) throw notFound(principalId);
          if (d.data.delegatedGrants.some((g) => g.clientId === clientId && g.resourceId === resourceId && g.consentType === consentType && g.principalId === principalId)) {
            throw new GraphError(409, 'Request_MultipleObjectsWithSameKeyValue', 'Permission entry already exists.');
          }
          const g = d.addDelegatedGrant({ clientId, resourceId, consentType, principalId, scope });
          return entity('oauth2PermissionGrants', { ...g }, 201);
        }
        throw methodNotAllowed();
      }
      const g = grants.find((x) => x.id === head.key);
      if (!g) throw notFound(head.key);
      if (method === 'GET') {
        requireAny(caller, [...READ_APPS, ...GRANTS]);
        return entity('oauth2PermissionGrants', { ...g });
      }
      if (method === 'PATCH') {
        requireAny(caller, GRANTS);
        requireAdmin(caller);
        const scope = String(body?.['scope'] ?? '').trim();
        const rsp = d.servicePrincipal(g.resourceId);
        if (rsp) validateScopes(rsp, scope);
        g.scope = scope;
        d.changed();
        return { status: 204 };
      }
      if (method === 'DELETE') {
        requireAny(caller, GRANTS);
        requireAdmin(caller);
        d.data.delegatedGrants = d.data.delegatedGrants.filter((x) => x !== g);
        d.changed();
        return { status: 204 };
      }
      throw methodNotAllowed();
    }
    default:
      throw new GraphError(400, 'BadRequest', `Resource not found for the segment '${head?.name ?? ''}'.`);
  }
}

function methodNotAllowed(): GraphError {
  return new GraphError(405, 'Request_BadRequest', 'The HTTP method is not supported for this resource.');
}

function validateScopes(rsp: SandboxServicePrincipal, scope: string): void {
  const resource = resourceByAppId(rsp.appId);
  if (!resource) return;
  for (const s of scope.split(/\s+/).filter(Boolean)) {
    if (!resource.scopes.some((x) => x.value.toLowerCase() === s.toLowerCase())) {
      throw badRequest(`Invalid value specified for property 'scope' of resource 'OAuth2PermissionGrant': the scope '${s}' does not exist on ${resource.displayName}.`);
    }
  }
}

// ---- path and OData helpers ---------------------------------------------------------------

interface Seg {
  name: string;
  /** Key from name(key) / name(appId='…') or the next path segment for collections. */
  key?: string;
  keyKind?: 'id' | 'appId';
}

function splitPath(path: string): Seg[] {
  const raw = path.split('/').filter(Boolean);
  const out: Seg[] = [];
  for (let i = 0; i < raw.length; i++) {
    const s = raw[i] as string;
    const m = /^(\w+)\((?:(appId)=)?'?([^')]+)'?\)$/.exec(s);
    if (m) {
      out.push({ name: m[1] as string, key: m[3] as string, keyKind: m[2] ? 'appId' : 'id' });
      continue;
    }
    // Collections take the next segment as their key: /applications/{id}/addPassword
    if (out.length === 0 && ['applications', 'servicePrincipals', 'oauth2PermissionGrants', 'users'].includes(s) && raw[i + 1]) {
      out.push({ name: s, key: raw[i + 1] as string, keyKind: 'id' });
      i++;
      continue;
    }
    out.push({ name: s });
  }
  return out;
}

function findApp(apps: SandboxApp[], seg: Seg): SandboxApp | undefined {
  const k = (seg.key ?? '').toLowerCase();
  return seg.keyKind === 'appId' ? apps.find((a) => a.appId.toLowerCase() === k) : apps.find((a) => a.objectId.toLowerCase() === k);
}

function findSp(sps: SandboxServicePrincipal[], seg: Seg): SandboxServicePrincipal | undefined {
  const k = (seg.key ?? '').toLowerCase();
  return seg.keyKind === 'appId' ? sps.find((s) => s.appId.toLowerCase() === k) : sps.find((s) => s.id.toLowerCase() === k);
}

/** $filter: `prop eq 'value'` (joined with `and`) and startswith(prop,'value'). */
function applyFilter(items: Array<Record<string, unknown>>, filter: string | null): Array<Record<string, unknown>> {
  if (!filter) return items;
  const clauses = filter.split(/\s+and\s+/i);
  const tests = clauses.map((c) => {
    let m = /^\s*(\w+)\s+eq\s+'((?:[^']|'')*)'\s*$/.exec(c);
    if (m) {
      const [, prop, value] = m as unknown as [string, string, string];
      const v = value.replace(/''/g, "'").toLowerCase();
      return (it: Record<string, unknown>) => String(it[prop] ?? '').toLowerCase() === v;
    }
    m = /^\s*(\w+)\s+eq\s+(true|false|null)\s*$/.exec(c);
    if (m) {
      const [, prop, lit] = m as unknown as [string, string, string];
      const v = lit === 'null' ? null : lit === 'true';
      return (it: Record<string, unknown>) => (it[prop] ?? null) === v;
    }
    m = /^\s*startswith\((\w+),\s*'((?:[^']|'')*)'\)\s*$/i.exec(c);
    if (m) {
      const [, prop, value] = m as unknown as [string, string, string];
      return (it: Record<string, unknown>) => String(it[prop] ?? '').toLowerCase().startsWith(value.replace(/''/g, "'").toLowerCase());
    }
    throw new GraphError(400, 'BadRequest', `Invalid filter clause: ${c}`);
  });
  return items.filter((it) => tests.every((t) => t(it)));
}

function select(items: Array<Record<string, unknown>>, q: URLSearchParams): Array<Record<string, unknown>> {
  const sel = q.get('$select');
  if (!sel) return items;
  const keys = sel.split(',').map((s) => s.trim()).filter(Boolean);
  return items.map((it) => Object.fromEntries(keys.filter((k) => k in it).map((k) => [k, it[k]])));
}

function topOf(q: URLSearchParams): number {
  const t = Number(q.get('$top'));
  return Number.isInteger(t) && t > 0 ? t : 999;
}

// ---- JSON shapes ------------------------------------------------------------------------------

function userJson(d: Directory, u: SandboxUser): Record<string, unknown> {
  const mb = d.mailboxOfUser(u);
  return { id: u.oid, userPrincipalName: u.upn, displayName: u.displayName, mail: mb?.address ?? null, accountEnabled: u.accountEnabled, givenName: null, surname: null, jobTitle: null, businessPhones: [], mobilePhone: null, officeLocation: null, preferredLanguage: 'en-US' };
}

function appJson(d: Directory, a: SandboxApp): Record<string, unknown> {
  const tenant = d.tenant(a.tenantId);
  return {
    id: a.objectId,
    appId: a.appId,
    displayName: a.displayName,
    createdDateTime: a.createdDateTime ?? null,
    signInAudience: a.signInAudience,
    isFallbackPublicClient: a.isFallbackPublicClient,
    publisherDomain: tenant?.domain ?? null,
    identifierUris: [],
    requiredResourceAccess: a.requiredResourceAccess,
    passwordCredentials: a.secrets.map((s) => ({ customKeyIdentifier: null, displayName: s.displayName ?? null, endDateTime: s.endDateTime ?? null, hint: s.value.slice(0, 3), keyId: s.keyId, secretText: null, startDateTime: a.createdDateTime ?? null })),
    keyCredentials: a.certificates.map((c) => {
      const x = new X509Certificate(c.pem);
      return { customKeyIdentifier: Buffer.from(c.thumbprintSha1, 'base64url').toString('hex').toUpperCase(), displayName: x.subject.replace(/\n/g, ', '), endDateTime: new Date(x.validTo).toISOString(), key: null, keyId: randomUUIDFrom(c.thumbprintSha256), startDateTime: new Date(x.validFrom).toISOString(), type: 'AsymmetricX509Cert', usage: 'Verify' };
    }),
    publicClient: { redirectUris: a.redirectUris.filter((u) => !u.startsWith('https://')) },
    web: { redirectUris: a.redirectUris.filter((u) => u.startsWith('https://')), implicitGrantSettings: { enableAccessTokenIssuance: false, enableIdTokenIssuance: false } },
    spa: { redirectUris: [] },
  };
}

function randomUUIDFrom(seed: string): string {
  const h = Buffer.from(seed, 'base64url').toString('hex').padEnd(32, '0');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

function spJson(d: Directory, s: SandboxServicePrincipal): Record<string, unknown> {
  const resource: Resource | undefined = resourceByAppId(s.appId);
  const app = d.app(s.appId);
  return {
    id: s.id,
    appId: s.appId,
    displayName: s.displayName,
    appDisplayName: app?.displayName ?? resource?.displayName ?? s.displayName,
    accountEnabled: true,
    servicePrincipalType: 'Application',
    appOwnerOrganizationId: app?.tenantId ?? 'f8cdef31-a31e-4b4a-93e4-5f571e91255a',
    servicePrincipalNames: [s.appId, ...(resource?.identifierUris.filter((u) => u.startsWith('https://')) ?? [])],
    oauth2PermissionScopes: (resource?.scopes ?? []).map((p) => ({ id: p.id, value: p.value, type: p.type ?? 'User', isEnabled: true, adminConsentDisplayName: p.description, adminConsentDescription: p.description, userConsentDisplayName: p.description, userConsentDescription: p.description })),
    appRoles: (resource?.appRoles ?? []).map((p) => ({ id: p.id, value: p.value, allowedMemberTypes: ['Application'], displayName: p.description, description: p.description, isEnabled: true, origin: 'Application' })),
  };
}

function assignmentJson(d: Directory, a: { id: string; principalId: string; resourceId: string; appRoleId: string }): Record<string, unknown> {
  const p = d.servicePrincipal(a.principalId);
  const r = d.servicePrincipal(a.resourceId);
  return { id: a.id, appRoleId: a.appRoleId, createdDateTime: null, deletedDateTime: null, principalId: a.principalId, principalDisplayName: p?.displayName ?? null, principalType: 'ServicePrincipal', resourceId: a.resourceId, resourceDisplayName: r?.displayName ?? null };
}

// ---- writes -----------------------------------------------------------------------------------

function createApp(d: Directory, caller: Caller, body: Record<string, unknown>, ctx: AdminContext): SandboxApp {
  const displayName = body['displayName'];
  if (typeof displayName !== 'string' || !displayName.trim()) throw badRequest("Property 'displayName' is required.");
  const app: SandboxApp = {
    appId: randomUUID(),
    objectId: randomUUID(),
    tenantId: caller.tenant.id,
    displayName,
    isFallbackPublicClient: false,
    signInAudience: 'AzureADMyOrg',
    requiredResourceAccess: [],
    secrets: [],
    certificates: [],
    redirectUris: [],
    owners: caller.user ? [caller.user.oid] : [],
    createdDateTime: new Date(ctx.clock.nowMs()).toISOString(),
  };
  d.addApp(app);
  patchApp(d, app, { ...body, displayName });
  return app;
}

function patchApp(d: Directory, app: SandboxApp, body: Record<string, unknown>): void {
  const patch: Partial<SandboxApp> = {};
  for (const [k, v] of Object.entries(body)) {
    switch (k) {
      case 'displayName':
        if (typeof v !== 'string' || !v) throw badRequest("Invalid value specified for property 'displayName' of resource 'Application'.");
        patch.displayName = v;
        break;
      case 'isFallbackPublicClient':
        if (v !== null && typeof v !== 'boolean') throw badRequest("Invalid value specified for property 'isFallbackPublicClient' of resource 'Application'.");
        patch.isFallbackPublicClient = v === true;
        break;
      case 'signInAudience':
        if (typeof v !== 'string') throw badRequest("Invalid value specified for property 'signInAudience' of resource 'Application'.");
        patch.signInAudience = v;
        break;
      case 'requiredResourceAccess':
        patch.requiredResourceAccess = parseRra(v);
        break;
      case 'publicClient':
      case 'web': {
        const uris = (v as { redirectUris?: unknown } | null)?.redirectUris;
        if (!Array.isArray(uris) || !uris.every((u) => typeof u === 'string')) throw badRequest(`Invalid value specified for property '${k}' of resource 'Application'.`);
        const keep = (patch.redirectUris ?? app.redirectUris).filter((u) => (k === 'web' ? !u.startsWith('https://') : u.startsWith('https://')));
        patch.redirectUris = [...keep, ...(uris as string[])];
        break;
      }
      case 'keyCredentials': {
        if (!Array.isArray(v)) throw badRequest("Invalid value specified for property 'keyCredentials' of resource 'Application'.");
        patch.certificates = v.map((kc) => {
          const key = (kc as { key?: unknown }).key;
          if (typeof key !== 'string') throw badRequest('keyCredentials: key (base64 DER certificate) is required.');
          try {
            return certificateRecord(new X509Certificate(Buffer.from(key, 'base64')).toString());
          } catch {
            throw badRequest('keyCredentials: key is not a valid certificate.');
          }
        });
        break;
      }
      case 'identifierUris':
      case 'description':
      case 'notes':
      case 'tags':
      case 'api':
      case 'spa':
      case 'info':
      case 'optionalClaims':
        break; // accepted, not modelled
      default:
        if (k.startsWith('@odata')) break;
        throw badRequest(`Property '${k}' does not exist on type 'microsoft.graph.application'. Make sure to only use property names that are defined by the type.`);
    }
  }
  d.patchApp(app, patch);
}

function parseRra(v: unknown): SandboxApp['requiredResourceAccess'] {
  if (!Array.isArray(v)) throw badRequest("Invalid value specified for property 'requiredResourceAccess' of resource 'Application'.");
  return v.map((r) => {
    const rr = r as { resourceAppId?: unknown; resourceAccess?: unknown };
    if (typeof rr.resourceAppId !== 'string' || !Array.isArray(rr.resourceAccess)) throw badRequest("Invalid value specified for property 'requiredResourceAccess' of resource 'Application'.");
    return {
      resourceAppId: rr.resourceAppId,
      resourceAccess: rr.resourceAccess.map((a) => {
        const aa = a as { id?: unknown; type?: unknown };
        if (typeof aa.id !== 'string' || (aa.type !== 'Scope' && aa.type !== 'Role')) throw badRequest('Invalid value specified for property \'resourceAccess\': id and type (Scope or Role) are required.');
        // Like Graph, ids are stored as given; consent (grants, role assignments) is where they are checked.
        return { id: aa.id, type: aa.type };
      }),
    };
  });
}
