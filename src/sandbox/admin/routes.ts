// The sandbox's admin API: what a tenant admin does in the portals and in
// Exchange Online PowerShell, as JSON over HTTPS, plus the sandbox's own
// controls (device code approval, the clock). Input is validated; errors are
// {"error": code, "message": text} with a 4xx status. Faults and captured
// mail are mounted from ../faults and ../mail before this router runs.
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { z } from 'zod';
import { HttpError, methodNotAllowed, readBodyText, readJson, sendError, sendJson } from '../faults/json-io.ts';
import type { Directory } from '../state/directory.ts';
import { WELL_KNOWN, type SandboxApp, type SandboxMailbox, type SandboxTenant } from '../state/model.ts';
import { EXCHANGE, GRAPH, permissionById, permissionByName } from '../state/resources.ts';
import { certificateRecord, tenantSettingsSchema } from '../state/scenario.ts';
import type { AdminContext } from './context.ts';

const guid = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i, 'must be a GUID');
const email = z.string().regex(/^[^@\s]+@[^@\s]+\.[^@\s]+$/, 'must be an e-mail address');
const trusteeList = z.union([z.array(z.string().min(1)), z.strictObject({ add: z.array(z.string().min(1)).optional(), remove: z.array(z.string().min(1)).optional() })]);

const tenantPatch = tenantSettingsSchema.extend({ displayName: z.string().min(1).optional() });

const mailboxPatch = z.strictObject({
  outboundSpamBlocked: z.boolean().optional(),
  displayName: z.string().min(1).optional(),
  smtpClientAuthenticationDisabled: z.boolean().nullable().optional(),
  maxSendSizeBytes: z.number().int().positive().max(157286400).optional(),
  fullAccess: trusteeList.optional(),
  sendAs: trusteeList.optional(),
});

const mailboxCreate = z.strictObject({ address: email, displayName: z.string().min(1).optional(), type: z.literal('shared').optional() }).extend(mailboxPatch.omit({ displayName: true }).shape);

const appPatch = z.strictObject({
  displayName: z.string().min(1).optional(),
  isFallbackPublicClient: z.boolean().optional(),
  redirectUris: z.array(z.string().min(1)).optional(),
  delegatedPermissions: z.array(z.string()).optional(),
  applicationPermissions: z.array(z.string()).optional(),
  /** true grants admin consent for the app's configured permissions; false revokes all its consent. */
  adminConsent: z.boolean().optional(),
  /** Replace the client secrets (values). */
  secrets: z.array(z.union([z.string().min(1), z.strictObject({ value: z.string().min(1), displayName: z.string().optional(), endDateTime: z.string().datetime().optional() })])).optional(),
  /** Replace the certificates (PEM). */
  certificates: z.array(z.string().min(1)).optional(),
});

const appCreate = appPatch.extend({ displayName: z.string().min(1), appId: guid.optional(), tenant: z.string().optional(), exchangeServicePrincipal: z.boolean().optional() });

const userCreate = z.strictObject({
  upn: email,
  password: z.string().min(1),
  displayName: z.string().min(1).optional(),
  mfaRequired: z.boolean().optional(),
  mfaCode: z.string().regex(/^\d{4,8}$/, 'must be 4–8 digits').optional(),
  isAdmin: z.boolean().optional(),
  accountEnabled: z.boolean().optional(),
  /** Create the user's mailbox (default true). */
  mailbox: z.boolean().optional(),
});

const userPatch = z.strictObject({
  password: z.string().min(1).optional(),
  displayName: z.string().min(1).optional(),
  mfaRequired: z.boolean().optional(),
  mfaCode: z.string().regex(/^\d{4,8}$/, 'must be 4–8 digits').optional(),
  isAdmin: z.boolean().optional(),
  accountEnabled: z.boolean().optional(),
  /** Revoke-MgUserSignInSession: refresh tokens issued so far stop working (AADSTS50173). */
  revokeSessions: z.literal(true).optional(),
});

const approveBody = z.strictObject({ userCode: z.string().min(1), upn: email.optional(), mfa: z.boolean().optional() });
const declineBody = z.strictObject({ userCode: z.string().min(1) });
const clockBody = z.strictObject({ advanceSeconds: z.number().nonnegative().max(10 * 365 * 86400) });
const resetBody = z.strictObject({ directory: z.boolean().optional(), sessions: z.boolean().optional(), faults: z.boolean().optional(), messages: z.boolean().optional(), settings: z.boolean().optional() });
const exoSpBody = z.strictObject({ appId: guid, objectId: guid.optional(), tenant: z.string().optional(), displayName: z.string().optional() });

function parse<T>(schema: z.ZodType<T>, body: unknown): T {
  const r = schema.safeParse(body);
  if (!r.success) {
    const msg = r.error.issues.map((i) => `${i.path.length ? i.path.join('.') : 'body'}: ${i.message}`).join('; ');
    throw new HttpError(400, 'invalid_request', msg);
  }
  return r.data;
}

const notFound = (what: string): HttpError => new HttpError(404, 'not_found', what);

export async function handleAdminRequest(req: IncomingMessage, res: ServerResponse, url: URL, ctx: AdminContext): Promise<boolean> {
  const segs = url.pathname.replace(/\/+$/, '').split('/').filter(Boolean).slice(1).map((s) => decodeURIComponent(s));
  const method = req.method ?? 'GET';
  const d = ctx.directory;
  try {
    const [head, id, sub] = segs;
    switch (head) {
      case undefined:
        if (method !== 'GET') return allow(res, ['GET']);
        sendJson(res, 200, { routes: ROUTES });
        return true;
      case 'state':
        if (method !== 'GET') return allow(res, ['GET']);
        sendJson(res, 200, {
          info: ctx.info(),
          clock: clockView(ctx),
          directory: d.data,
          identity: ctx.identity.stats(),
          pendingDeviceCodes: ctx.identity.pendingDeviceCodes(),
          faults: ctx.faults.list(),
          messages: ctx.messages.list().length,
        });
        return true;
      case 'clock':
        if (method === 'GET') sendJson(res, 200, clockView(ctx));
        else if (method === 'POST') {
          const b = parse(clockBody, await readJson(req));
          ctx.clock.advance(b.advanceSeconds);
          sendJson(res, 200, clockView(ctx));
        } else return allow(res, ['GET', 'POST']);
        return true;
      case 'device-codes':
        return await deviceCodes(req, res, ctx, method, id);
      case 'reset': {
        if (method !== 'POST') return allow(res, ['POST']);
        const b = parse(resetBody, (await readJsonOrEmpty(req)) ?? {});
        const all = Object.values(b).every((v) => v === undefined);
        const done: string[] = [];
        if (all || b.directory) {
          ctx.resetDirectory();
          done.push('directory');
        }
        if (all || b.sessions) {
          ctx.identity.reset();
          done.push('sessions');
        }
        if (all || b.faults) {
          ctx.faults.clear();
          done.push('faults');
        }
        if (all || b.messages) {
          // Back to the start: the sending quotas too (DELETE /messages keeps them, as deleting Sent Items does).
          ctx.messages.clear({ quotas: true });
          done.push('messages');
        }
        if (all || b.settings) {
          ctx.resetSettings();
          done.push('settings');
        }
        sendJson(res, 200, { reset: done });
        return true;
      }
      case 'tenant':
      case 'tenants': {
        const tenant = head === 'tenant' ? (d.data.tenants[0] as SandboxTenant) : id ? d.tenant(id) : undefined;
        if (head === 'tenants' && !id) {
          if (method !== 'GET') return allow(res, ['GET']);
          sendJson(res, 200, { tenants: d.data.tenants });
          return true;
        }
        if (!tenant) throw notFound(`no tenant ${id}`);
        if (method === 'GET') sendJson(res, 200, tenant);
        else if (method === 'PATCH') {
          const b = parse(tenantPatch, await readJson(req));
          const patch = { ...b, ...(b.conditionalAccessBlockedUsers ? { conditionalAccessBlockedUsers: b.conditionalAccessBlockedUsers.map((u) => u.toLowerCase()) } : {}) };
          sendJson(res, 200, d.patchTenant(tenant, stripUndefined(patch)));
        } else return allow(res, ['GET', 'PATCH']);
        return true;
      }
      case 'mailboxes':
        if (sub !== undefined) return false; // /admin/mailboxes/{address}/{folder}: captured mail
        return await mailboxes(req, res, d, method, id);
      case 'apps':
        return await apps(req, res, ctx, method, id, sub);
      case 'users':
        return await users(req, res, ctx, method, id);
      case 'exchange-service-principals':
        return await exchangeSps(req, res, d, method, id);
      default:
        return false;
    }
  } catch (e) {
    if (e instanceof HttpError) {
      sendError(res, e.status, e.code, e.message);
      return true;
    }
    throw e;
  }
}

const ROUTES = [
  'GET /admin/state',
  'POST /admin/reset {directory?, sessions?, faults?, messages?, settings?} (all when empty)',
  'GET|PATCH /admin/settings {identity?: {refreshTokenReuse?, slowDown?}, smtp?: {authFailureDelayMs?, sendAsDeniedStyle?, securityDefaultsBlockOAuth?}}',
  'GET|PATCH /admin/smtp/limits {recipientsPerDay?, maxRecipientsPerMessage?, maxConcurrentConnectionsPerMailbox?, messagesPerMinute?: {limit?, mode?, reply?}}',
  'GET /admin/smtp/events?type=&mailbox=&limit=',
  'GET|POST /admin/clock {advanceSeconds}',
  'GET /admin/device-codes',
  'POST /admin/device-codes/approve {userCode, upn?, mfa?}',
  'POST /admin/device-codes/decline {userCode}',
  'GET|PATCH /admin/tenant',
  'GET /admin/tenants, GET|PATCH /admin/tenants/{idOrDomain}',
  'GET|POST /admin/mailboxes, GET|PATCH /admin/mailboxes/{address}',
  'GET /admin/mailboxes/{address}/{SentItems|Inbox}',
  'GET|POST /admin/apps, GET|PATCH|DELETE /admin/apps/{clientId}, POST /admin/apps/{clientId}/secrets',
  'GET|POST /admin/users, GET|PATCH|DELETE /admin/users/{upn}',
  'GET|POST /admin/exchange-service-principals, DELETE /admin/exchange-service-principals/{appId}',
  'GET|POST|DELETE /admin/faults, GET|DELETE /admin/faults/{id}',
  'GET|DELETE /admin/messages, GET|DELETE /admin/messages/{id}, GET /admin/messages/{id}/raw',
];

/** A JSON body, or undefined when there is none (POST /admin/reset without a body). */
async function readJsonOrEmpty(req: IncomingMessage): Promise<unknown> {
  const text = await readBodyText(req, 100_000, () => new HttpError(413, 'payload_too_large', 'the request body is too large'));
  if (!text) return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new HttpError(400, 'invalid_request', 'the request body is not valid JSON');
  }
}

function allow(res: ServerResponse, methods: string[]): true {
  methodNotAllowed(res, methods);
  return true;
}

function stripUndefined<T extends Record<string, unknown>>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function clockView(ctx: AdminContext): { now: string; nowSeconds: number; offsetSeconds: number } {
  return { now: new Date(ctx.clock.nowMs()).toISOString(), nowSeconds: ctx.clock.nowSeconds(), offsetSeconds: ctx.clock.offsetSeconds() };
}

// ---- device codes ---------------------------------------------------------------

async function deviceCodes(req: IncomingMessage, res: ServerResponse, ctx: AdminContext, method: string, action: string | undefined): Promise<boolean> {
  if (action === undefined) {
    if (method !== 'GET') return allow(res, ['GET']);
    sendJson(res, 200, { deviceCodes: ctx.identity.pendingDeviceCodes() });
    return true;
  }
  if (method !== 'POST') return allow(res, ['POST']);
  if (action === 'approve') {
    const b = parse(approveBody, await readJson(req));
    const upn = b.upn ?? ctx.directory.data.users.find((u) => u.accountEnabled)?.upn;
    if (!upn) throw new HttpError(400, 'invalid_request', 'upn: required (the directory has no enabled user)');
    const r = ctx.identity.approveDeviceCode(b.userCode, upn, b.mfa ? ['pwd', 'mfa'] : ['pwd']);
    if (!r.ok) throw new HttpError(r.status, r.code, r.message);
    sendJson(res, 200, { approved: true, userCode: r.entry.userCode, upn: ctx.directory.user(upn)?.upn ?? upn, clientId: r.entry.clientId });
    return true;
  }
  if (action === 'decline') {
    const b = parse(declineBody, await readJson(req));
    if (!ctx.identity.declineDeviceCode(b.userCode)) throw notFound(`no pending device code ${b.userCode} (unknown, expired or already answered)`);
    sendJson(res, 200, { declined: true, userCode: b.userCode.replace(/[\s-]/g, '').toUpperCase() });
    return true;
  }
  return false;
}

// ---- mailboxes --------------------------------------------------------------------

function mailboxView(d: Directory, m: SandboxMailbox): Record<string, unknown> {
  const name = (id: string): string => {
    const u = d.user(id);
    if (u) return u.upn;
    const exo = d.data.exchangeServicePrincipals.find((e) => e.objectId === id);
    if (exo) return `app:${exo.appId}`;
    return id;
  };
  return {
    ...m,
    effectiveSmtpClientAuthenticationDisabled: d.smtpAuthDisabledFor(m),
    fullAccessNames: m.fullAccess.map(name),
    sendAsNames: m.sendAs.map(name),
  };
}

/** A trustee as Exchange resolves it: a user (UPN or oid) or an app's Exchange service principal (app:<appId>, appId or its object id). */
function resolveTrustee(d: Directory, who: string, tenantId: string, field: string): string {
  const user = d.user(who);
  if (user) return user.oid;
  const appId = who.startsWith('app:') ? who.slice(4) : who;
  const exo = d.exchangeServicePrincipal(tenantId, appId) ?? d.data.exchangeServicePrincipals.find((e) => e.objectId.toLowerCase() === who.toLowerCase());
  if (exo) return exo.objectId;
  if (d.app(appId)) throw new HttpError(400, 'invalid_request', `${field}: app ${appId} has no Exchange service principal yet (New-ServicePrincipal: POST /admin/exchange-service-principals)`);
  throw new HttpError(400, 'invalid_request', `${field}: no user or Exchange service principal "${who}" (use a UPN, or app:<appId>)`);
}

function applyTrustees(d: Directory, current: string[], change: z.infer<typeof trusteeList>, tenantId: string, field: string): string[] {
  if (Array.isArray(change)) return [...new Set(change.map((w, i) => resolveTrustee(d, w, tenantId, `${field}.${i}`)))];
  const add = (change.add ?? []).map((w, i) => resolveTrustee(d, w, tenantId, `${field}.add.${i}`));
  const remove = new Set((change.remove ?? []).map((w, i) => resolveTrustee(d, w, tenantId, `${field}.remove.${i}`)));
  return [...new Set([...current, ...add])].filter((x) => !remove.has(x));
}

async function mailboxes(req: IncomingMessage, res: ServerResponse, d: Directory, method: string, address: string | undefined): Promise<boolean> {
  if (address === undefined) {
    if (method === 'GET') {
      sendJson(res, 200, { mailboxes: d.data.mailboxes.map((m) => mailboxView(d, m)) });
    } else if (method === 'POST') {
      const b = parse(mailboxCreate, await readJson(req));
      if (d.mailbox(b.address)) throw new HttpError(409, 'conflict', `a mailbox ${b.address} already exists`);
      const mb = d.addMailbox({ address: b.address, type: 'shared', displayName: b.displayName });
      patchMailbox(d, mb, b);
      sendJson(res, 201, mailboxView(d, mb));
    } else return allow(res, ['GET', 'POST']);
    return true;
  }
  const mb = d.mailbox(address);
  if (!mb) throw notFound(`no mailbox ${address}`);
  if (method === 'GET') sendJson(res, 200, mailboxView(d, mb));
  else if (method === 'PATCH') {
    const b = parse(mailboxPatch, await readJson(req));
    patchMailbox(d, mb, b);
    sendJson(res, 200, mailboxView(d, mb));
  } else return allow(res, ['GET', 'PATCH']);
  return true;
}

function patchMailbox(d: Directory, mb: SandboxMailbox, b: z.infer<typeof mailboxPatch>): void {
  const tenantId = d.tenantOfMailbox(mb).id;
  const patch: Partial<SandboxMailbox> = {};
  if (b.displayName !== undefined) patch.displayName = b.displayName;
  if (b.smtpClientAuthenticationDisabled !== undefined) patch.smtpClientAuthenticationDisabled = b.smtpClientAuthenticationDisabled;
  if (b.maxSendSizeBytes !== undefined) patch.maxSendSizeBytes = b.maxSendSizeBytes;
  if (b.outboundSpamBlocked !== undefined) patch.outboundSpamBlocked = b.outboundSpamBlocked;
  if (b.fullAccess !== undefined) patch.fullAccess = applyTrustees(d, mb.fullAccess, b.fullAccess, tenantId, 'fullAccess');
  if (b.sendAs !== undefined) patch.sendAs = applyTrustees(d, mb.sendAs, b.sendAs, tenantId, 'sendAs');
  d.patchMailbox(mb, patch);
}

// ---- apps ------------------------------------------------------------------------

export function appView(d: Directory, app: SandboxApp): Record<string, unknown> {
  const sps = d.data.servicePrincipals.filter((s) => s.appId === app.appId);
  const consent = sps.map((sp) => ({
    tenantId: sp.tenantId,
    servicePrincipalId: sp.id,
    delegated: d.delegatedGrantsFor(sp.id).map((g) => ({ id: g.id, resource: d.servicePrincipal(g.resourceId)?.displayName ?? g.resourceId, consentType: g.consentType, principal: g.principalId ? (d.user(g.principalId)?.upn ?? g.principalId) : null, scope: g.scope })),
    applicationRoles: d.appRoleAssignmentsFor(sp.id).map((a) => {
      const rsp = d.servicePrincipal(a.resourceId);
      const res = rsp?.appId === EXCHANGE.appId ? EXCHANGE : rsp?.appId === GRAPH.appId ? GRAPH : undefined;
      return { id: a.id, resource: rsp?.displayName ?? a.resourceId, role: (res && permissionById(res, a.appRoleId)?.value) ?? a.appRoleId };
    }),
    exchangeServicePrincipal: d.exchangeServicePrincipal(sp.tenantId, app.appId) ?? null,
  }));
  return {
    ...app,
    secrets: app.secrets.map((s) => ({ ...s })),
    certificates: app.certificates.map((c) => ({ thumbprintSha1: c.thumbprintSha1, thumbprintSha256: c.thumbprintSha256 })),
    consent,
  };
}

function permissionsToRra(delegated: string[] | undefined, roles: string[] | undefined, current: SandboxApp['requiredResourceAccess']): SandboxApp['requiredResourceAccess'] {
  const rra = current.filter((r) => !(delegated !== undefined && r.resourceAppId === GRAPH.appId) && !(roles !== undefined && r.resourceAppId === EXCHANGE.appId));
  if (delegated?.length) {
    rra.push({
      resourceAppId: GRAPH.appId,
      resourceAccess: delegated.map((n, i) => {
        const p = permissionByName(GRAPH, n, 'Scope');
        if (!p) throw new HttpError(400, 'invalid_request', `delegatedPermissions.${i}: unknown Microsoft Graph delegated permission "${n}"`);
        return { id: p.id, type: 'Scope' as const };
      }),
    });
  }
  if (roles?.length) {
    rra.push({
      resourceAppId: EXCHANGE.appId,
      resourceAccess: roles.map((n, i) => {
        const p = permissionByName(EXCHANGE, n, 'Role');
        if (!p) throw new HttpError(400, 'invalid_request', `applicationPermissions.${i}: unknown Office 365 Exchange Online application permission "${n}"`);
        return { id: p.id, type: 'Role' as const };
      }),
    });
  }
  return rra;
}

/** Admin consent: grants exactly what requiredResourceAccess asks for (the portal's "Grant admin consent" button). */
export function grantAdminConsent(d: Directory, app: SandboxApp, tenantId: string): void {
  const clientSp = d.servicePrincipalByAppId(tenantId, app.appId) ?? d.addServicePrincipal(tenantId, app);
  for (const r of app.requiredResourceAccess) {
    const resource = r.resourceAppId === GRAPH.appId ? GRAPH : r.resourceAppId === EXCHANGE.appId ? EXCHANGE : undefined;
    const rsp = d.servicePrincipalByAppId(tenantId, r.resourceAppId);
    if (!resource || !rsp) continue;
    const scopes = r.resourceAccess.filter((a) => a.type === 'Scope').map((a) => permissionById(resource, a.id)?.value).filter((v): v is string => Boolean(v));
    if (scopes.length) {
      const g = d.data.delegatedGrants.find((x) => x.clientId === clientSp.id && x.resourceId === rsp.id && x.consentType === 'AllPrincipals');
      if (g) g.scope = [...new Set([...g.scope.split(/\s+/).filter(Boolean), ...scopes])].join(' ');
      else d.addDelegatedGrant({ clientId: clientSp.id, resourceId: rsp.id, consentType: 'AllPrincipals', principalId: null, scope: scopes.join(' ') });
    }
    for (const a of r.resourceAccess.filter((x) => x.type === 'Role')) d.addAppRoleAssignment({ principalId: clientSp.id, resourceId: rsp.id, appRoleId: a.id });
  }
  d.changed();
}

function revokeConsent(d: Directory, app: SandboxApp): void {
  const spIds = new Set(d.data.servicePrincipals.filter((s) => s.appId === app.appId).map((s) => s.id));
  d.data.delegatedGrants = d.data.delegatedGrants.filter((g) => !spIds.has(g.clientId));
  d.data.appRoleAssignments = d.data.appRoleAssignments.filter((a) => !spIds.has(a.principalId));
  d.changed();
}

function applyAppPatch(d: Directory, app: SandboxApp, b: z.infer<typeof appPatch>): void {
  const patch: Partial<SandboxApp> = {};
  if (b.displayName !== undefined) patch.displayName = b.displayName;
  if (b.isFallbackPublicClient !== undefined) patch.isFallbackPublicClient = b.isFallbackPublicClient;
  if (b.redirectUris !== undefined) patch.redirectUris = b.redirectUris;
  if (b.delegatedPermissions !== undefined || b.applicationPermissions !== undefined) {
    patch.requiredResourceAccess = permissionsToRra(b.delegatedPermissions, b.applicationPermissions, app.requiredResourceAccess);
  }
  if (b.secrets !== undefined) patch.secrets = b.secrets.map((s) => (typeof s === 'string' ? { keyId: randomUUID(), value: s } : { keyId: randomUUID(), ...s }));
  if (b.certificates !== undefined) {
    patch.certificates = b.certificates.map((pem, i) => {
      try {
        return certificateRecord(pem);
      } catch (e) {
        throw new HttpError(400, 'invalid_request', `certificates.${i}: not a PEM certificate (${(e as Error).message})`);
      }
    });
  }
  d.patchApp(app, patch);
  if (b.adminConsent === true) grantAdminConsent(d, app, app.tenantId);
  if (b.adminConsent === false) revokeConsent(d, app);
}

async function apps(req: IncomingMessage, res: ServerResponse, ctx: AdminContext, method: string, clientId: string | undefined, sub: string | undefined): Promise<boolean> {
  const d = ctx.directory;
  if (clientId === undefined) {
    if (method === 'GET') sendJson(res, 200, { apps: d.data.apps.filter((a) => a.appId !== WELL_KNOWN.graphCliClientId).map((a) => appView(d, a)) });
    else if (method === 'POST') {
      const b = parse(appCreate, await readJson(req));
      const tenant = b.tenant ? d.tenant(b.tenant) : d.data.tenants[0];
      if (!tenant) throw new HttpError(400, 'invalid_request', `tenant: no tenant ${b.tenant}`);
      if (b.appId && d.app(b.appId)) throw new HttpError(409, 'conflict', `an app ${b.appId} already exists`);
      const app = d.addApp({
        appId: b.appId ?? randomUUID(),
        objectId: randomUUID(),
        tenantId: tenant.id,
        displayName: b.displayName,
        isFallbackPublicClient: false,
        signInAudience: 'AzureADMyOrg',
        requiredResourceAccess: [],
        secrets: [],
        certificates: [],
        redirectUris: [],
        owners: [],
        createdDateTime: new Date(ctx.clock.nowMs()).toISOString(),
      });
      d.addServicePrincipal(tenant.id, app);
      applyAppPatch(d, app, { ...b, adminConsent: b.adminConsent ?? true });
      if (b.exchangeServicePrincipal) {
        const sp = d.servicePrincipalByAppId(tenant.id, app.appId);
        if (sp) d.setExchangeServicePrincipal({ appId: app.appId, objectId: sp.id, tenantId: tenant.id });
      }
      sendJson(res, 201, appView(d, app));
    } else return allow(res, ['GET', 'POST']);
    return true;
  }
  const app = d.app(clientId) ?? d.appByObjectId(clientId);
  if (!app) throw notFound(`no app ${clientId}`);
  if (sub === 'secrets') {
    if (method !== 'POST') return allow(res, ['POST']);
    const b = parse(z.strictObject({ displayName: z.string().optional(), endDateTime: z.string().datetime().optional(), value: z.string().min(1).optional() }), await readJson(req));
    const secret = { keyId: randomUUID(), value: b.value ?? `${randomUUID().slice(0, 3)}8Q~${randomUUID().replace(/-/g, '')}`, ...(b.displayName ? { displayName: b.displayName } : {}), ...(b.endDateTime ? { endDateTime: b.endDateTime } : {}) };
    d.patchApp(app, { secrets: [...app.secrets, secret] });
    sendJson(res, 201, secret);
    return true;
  }
  if (sub !== undefined) return false;
  if (method === 'GET') sendJson(res, 200, appView(d, app));
  else if (method === 'PATCH') {
    applyAppPatch(d, app, parse(appPatch, await readJson(req)));
    sendJson(res, 200, appView(d, app));
  } else if (method === 'DELETE') {
    revokeConsent(d, app);
    d.data.servicePrincipals = d.data.servicePrincipals.filter((s) => s.appId !== app.appId);
    d.data.exchangeServicePrincipals = d.data.exchangeServicePrincipals.filter((s) => s.appId !== app.appId);
    d.data.apps = d.data.apps.filter((a) => a !== app);
    d.changed();
    res.writeHead(204).end();
  } else return allow(res, ['GET', 'PATCH', 'DELETE']);
  return true;
}

// ---- users --------------------------------------------------------------------------

function userView(d: Directory, u: NonNullable<ReturnType<Directory['user']>>): Record<string, unknown> {
  return { ...u, mailbox: d.mailboxOfUser(u)?.address ?? null };
}

async function users(req: IncomingMessage, res: ServerResponse, ctx: AdminContext, method: string, upn: string | undefined): Promise<boolean> {
  const d = ctx.directory;
  if (upn === undefined) {
    if (method === 'GET') sendJson(res, 200, { users: d.data.users.map((u) => userView(d, u)) });
    else if (method === 'POST') {
      const b = parse(userCreate, await readJson(req));
      if (d.user(b.upn)) throw new HttpError(409, 'conflict', `a user ${b.upn} already exists`);
      const domain = b.upn.split('@')[1] ?? '';
      if (!d.tenant(domain)) throw new HttpError(400, 'invalid_request', `upn: the domain ${domain} is not a domain of any sandbox tenant (${d.data.tenants.map((t) => t.domain).join(', ')})`);
      const user = d.addUser({ ...b });
      if (b.mfaCode) d.patchUser(user, { mfaCode: b.mfaCode });
      const mb = d.mailboxOfUser(user);
      // New mailboxes of the sandbox can send: SMTP AUTH on for the mailbox (as the guide's last step).
      if (mb) d.patchMailbox(mb, { smtpClientAuthenticationDisabled: false });
      sendJson(res, 201, userView(d, user));
    } else return allow(res, ['GET', 'POST']);
    return true;
  }
  const user = d.user(upn);
  if (!user) throw notFound(`no user ${upn}`);
  if (method === 'GET') sendJson(res, 200, userView(d, user));
  else if (method === 'PATCH') {
    const b = parse(userPatch, await readJson(req));
    const { revokeSessions, password, ...rest } = b;
    d.patchUser(user, stripUndefined(rest));
    // A password change or reset revokes the refresh tokens, as in Entra.
    if (password !== undefined) d.patchUser(user, { password });
    if (revokeSessions || password !== undefined) {
      const nowMs = ctx.clock.nowMs();
      d.revokeSessions(user, Math.floor(nowMs / 1000), nowMs);
    }
    sendJson(res, 200, userView(d, user));
  } else if (method === 'DELETE') {
    d.data.users = d.data.users.filter((u) => u !== user);
    d.data.mailboxes = d.data.mailboxes.filter((m) => m.ownerOid !== user.oid);
    d.changed();
    res.writeHead(204).end();
  } else return allow(res, ['GET', 'PATCH', 'DELETE']);
  return true;
}

// ---- Exchange Online service principals (New-ServicePrincipal) ---------------------------------

async function exchangeSps(req: IncomingMessage, res: ServerResponse, d: Directory, method: string, appId: string | undefined): Promise<boolean> {
  if (appId === undefined) {
    if (method === 'GET') sendJson(res, 200, { exchangeServicePrincipals: d.data.exchangeServicePrincipals });
    else if (method === 'POST') {
      const b = parse(exoSpBody, await readJson(req));
      const app = d.app(b.appId);
      const tenant = b.tenant ? d.tenant(b.tenant) : app ? d.tenant(app.tenantId) : d.data.tenants[0];
      if (!tenant) throw new HttpError(400, 'invalid_request', `tenant: no tenant ${b.tenant}`);
      const sp = d.servicePrincipalByAppId(tenant.id, b.appId);
      if (!sp) throw new HttpError(400, 'invalid_request', `appId: the app ${b.appId} has no enterprise application (service principal) in ${tenant.domain}`);
      // -ObjectId may be given wrong on purpose (the App Registration's id): the SMTP side then refuses, as Exchange does.
      const e = d.setExchangeServicePrincipal({ appId: sp.appId, objectId: b.objectId ?? sp.id, tenantId: tenant.id });
      sendJson(res, 201, { ...e, matchesEnterpriseApplication: e.objectId.toLowerCase() === sp.id.toLowerCase() });
    } else return allow(res, ['GET', 'POST']);
    return true;
  }
  if (method !== 'DELETE') return allow(res, ['DELETE']);
  const before = d.data.exchangeServicePrincipals.length;
  d.data.exchangeServicePrincipals = d.data.exchangeServicePrincipals.filter((e) => e.appId.toLowerCase() !== appId.toLowerCase());
  if (d.data.exchangeServicePrincipals.length === before) throw notFound(`no Exchange service principal for app ${appId}`);
  d.changed();
  res.writeHead(204).end();
  return true;
}
