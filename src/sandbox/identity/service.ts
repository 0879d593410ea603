// Entra ID's behaviour, without HTTP: tenants, client authentication, the
// grants of /oauth2/v2.0/token, device codes, authorization codes, refresh
// token sessions, and the AADSTS errors each state leads to (reference §4–5).
// routes.ts puts it on HTTPS; the admin API and the sign-in pages call it.
import { createHash, randomInt, randomUUID, timingSafeEqual, X509Certificate } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import type { FaultInjector } from '../faults/injector.ts';
import type { SandboxClock } from '../state/clock.ts';
import type { Directory } from '../state/directory.ts';
import { WELL_KNOWN, type SandboxApp, type SandboxTenant, type SandboxUser } from '../state/model.ts';
import { EXCHANGE, GRAPH, OIDC_SCOPES, permissionById, resourceByIdentifier, type Resource } from '../state/resources.ts';
import { decodeJwt, verifyJwtSignature } from '../tokens/jwt.ts';
import { opaqueToken, type TokenIssuer } from '../tokens/issuer.ts';
import { aadError, AadFailure, aadTimestamp, type Reply } from './errors.ts';

export type { Reply } from './errors.ts';

const DEVICE_CODE_LIFETIME = 900;
const AUTH_CODE_LIFETIME = 600;
const REFRESH_IDLE_LIFETIME = 90 * 86_400;
const DEVICE_GRANTS = new Set(['device_code', 'urn:ietf:params:oauth:grant-type:device_code']);
const ASSERTION_TYPE = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';
/** Authority path segments that are not one tenant. */
const MULTI_TENANT = new Set(['common', 'organizations']);

/**
 * How Entra behaves where the reference is uncertain, changeable while the
 * sandbox runs (PATCH {admin}/settings).
 */
export interface IdentityBehaviour {
  /**
   * Entra does not revoke a refresh token when it is used ("The Microsoft
   * identity platform doesn't revoke old refresh tokens when used to fetch new
   * access tokens"): true (default) accepts an earlier one until it expires;
   * false refuses it with AADSTS70008, to prove a client always keeps the newest.
   */
  refreshTokenReuse: boolean;
  /** RFC 8628 `slow_down` for device-code polls under half the interval (UNCONFIRMED for Entra; default true). */
  slowDown: boolean;
}

export interface IdentityOptions {
  directory: Directory;
  clock: SandboxClock;
  issuer: TokenIssuer;
  faults: FaultInjector;
  authority: () => string;
  deviceCodeIntervalSeconds: number;
  /** Shared with the admin API: changes apply to the next request. */
  behaviour: IdentityBehaviour;
  autoApprove: { afterMs: number; upn?: string } | false;
  /** Where refresh token sessions are kept (only their hashes), so sign-ins survive a restart with the same state dir. */
  sessionsFile?: string;
}

export interface DeviceCodeEntry {
  deviceCode: string;
  userCode: string;
  clientId: string;
  /** The tenant the request named; null for /common and /organizations. */
  tenantId: string | null;
  scope: string;
  createdAt: number;
  expiresAt: number;
  interval: number;
  lastPollMs: number | null;
  status: 'pending' | 'approved' | 'declined' | 'redeemed';
  userOid?: string;
  amr?: string[];
  authTime?: number;
  /** authTime to the millisecond: revocation compares instants, not seconds. */
  authTimeMs?: number;
}

interface AuthCodeEntry {
  clientId: string;
  tenantId: string;
  redirectUri: string;
  scope: string;
  codeChallenge: string | null;
  codeChallengeMethod: string | null;
  nonce: string | null;
  userOid: string;
  amr: string[];
  authTime: number;
  authTimeMs: number;
  expiresAt: number;
  redeemed: boolean;
}

interface Session {
  tenantId: string;
  clientId: string;
  userOid: string;
  /** When the user signed in (interactive auth); sign-in frequency and revocation compare with it. */
  authTime: number;
  /**
   * authTime to the millisecond (absent in sessions saved by older versions):
   * a sign-in made just after an admin revoke, within the same second, is valid.
   */
  authTimeMs?: number;
  /** When this refresh token was issued (idle expiry). */
  issuedAt: number;
  amr: string[];
  retired: boolean;
  /** Issued to a public client (no client credentials). */
  publicClient: boolean;
}

export interface AuthorizeRequest {
  tenantSegment: string;
  clientId: string;
  redirectUri: string;
  scope: string;
  state: string | null;
  nonce: string | null;
  codeChallenge: string | null;
  codeChallengeMethod: string | null;
  responseMode: 'query' | 'fragment' | 'form_post';
  loginHint: string | null;
  prompt: string | null;
}

type ClientAuth = { kind: 'none' } | { kind: 'secret' } | { kind: 'certificate' };

interface Ctx {
  correlationId?: string;
}

export class IdentityService {
  readonly #o: IdentityOptions;
  readonly #deviceCodes = new Map<string, DeviceCodeEntry>(); // by device_code
  readonly #authCodes = new Map<string, AuthCodeEntry>();
  readonly #sessions = new Map<string, Session>(); // by sha256(refresh token)
  readonly #timers = new Set<NodeJS.Timeout>();

  constructor(options: IdentityOptions) {
    this.#o = options;
    ensureFirstPartyApps(options.directory);
    this.#loadSessions();
  }

  #loadSessions(): void {
    const file = this.#o.sessionsFile;
    if (!file || !existsSync(file)) return;
    try {
      const entries = JSON.parse(readFileSync(file, 'utf8')) as Array<[string, Session]>;
      for (const [k, v] of entries) this.#sessions.set(k, v);
    } catch {
      // A damaged sessions file only means people sign in again.
    }
  }

  #saveSessions(): void {
    const file = this.#o.sessionsFile;
    if (!file) return;
    const now = this.#o.clock.nowSeconds();
    for (const [k, v] of this.#sessions) if (now - v.issuedAt > 2 * REFRESH_IDLE_LIFETIME) this.#sessions.delete(k);
    writeFileSync(`${file}.tmp`, JSON.stringify([...this.#sessions]), { mode: 0o600 });
    renameSync(`${file}.tmp`, file);
  }

  get directory(): Directory {
    return this.#o.directory;
  }

  /** The live behaviour switches (the admin API's /settings changes them). */
  get behaviour(): IdentityBehaviour {
    return this.#o.behaviour;
  }

  get authority(): string {
    return this.#o.authority();
  }

  get faults(): FaultInjector {
    return this.#o.faults;
  }

  jwks(): unknown {
    return this.#o.issuer.jwks();
  }

  close(): void {
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
  }

  /** Forgets every device code, authorization code and refresh token (POST /admin/reset). */
  reset(): void {
    this.close();
    this.#deviceCodes.clear();
    this.#authCodes.clear();
    this.#sessions.clear();
    this.#saveSessions();
    ensureFirstPartyApps(this.#o.directory);
  }

  // ---- errors ------------------------------------------------------------------

  #err(status: number, error: string, code: number, text: string, ctx: Ctx = {}, extra: { suberror?: string } = {}): AadFailure {
    return new AadFailure(aadError(status, error, code, text, { correlationId: ctx.correlationId, nowMs: this.#o.clock.nowMs(), authority: this.#o.authority(), ...extra }));
  }

  // ---- tenants and clients --------------------------------------------------------

  /** A tenant path segment: a tenant, 'multi' for common/organizations, or undefined (AADSTS90002). */
  resolveTenantSegment(segment: string): SandboxTenant | 'multi' | undefined {
    if (MULTI_TENANT.has(segment.toLowerCase())) return 'multi';
    return this.#o.directory.tenant(segment);
  }

  tenantNotFound(segment: string, ctx: Ctx = {}, error = 'invalid_request'): Reply {
    return this.#err(
      400,
      error,
      90002,
      `Tenant '${segment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant.`,
      ctx,
    ).reply;
  }

  #tenantOrFail(segment: string, ctx: Ctx): SandboxTenant | 'multi' {
    const t = this.resolveTenantSegment(segment);
    if (!t) throw new AadFailure(this.tenantNotFound(segment, ctx));
    return t;
  }

  /** The app, if it may sign in to this tenant (registered there, or with a service principal there). */
  #client(clientId: string | undefined, tenant: SandboxTenant | 'multi', ctx: Ctx): SandboxApp {
    if (!clientId) throw this.#missing('client_id', ctx);
    const app = this.#o.directory.app(clientId);
    const tenantId = tenant === 'multi' ? app?.tenantId : tenant.id;
    if (!app || !tenantId || (app.tenantId !== tenantId && !this.#o.directory.servicePrincipalByAppId(tenantId, app.appId))) {
      const name = tenant === 'multi' ? 'common' : tenant.domain;
      throw this.#err(
        400,
        'unauthorized_client',
        700016,
        `Application with identifier '${clientId}' was not found in the directory '${name}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.`,
        ctx,
      );
    }
    return app;
  }

  #missing(param: string, ctx: Ctx): AadFailure {
    return this.#err(400, 'invalid_request', 900144, `The request body must contain the following parameter: '${param}'.`, ctx);
  }

  /** Client authentication: nothing (public), a secret (body or HTTP Basic), or a certificate assertion. */
  #authenticateClient(app: SandboxApp, tenantId: string, p: URLSearchParams, basic: { id: string; secret: string } | undefined, ctx: Ctx): ClientAuth {
    const secret = p.get('client_secret') ?? basic?.secret ?? null;
    const assertion = p.get('client_assertion');
    if (secret === null && assertion === null) return { kind: 'none' };
    if (app.secrets.length === 0 && app.certificates.length === 0) {
      throw this.#err(400, 'invalid_client', 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented.", ctx);
    }
    if (assertion !== null) {
      if (p.get('client_assertion_type') !== ASSERTION_TYPE) {
        throw this.#err(400, 'invalid_request', 900144, "The request body must contain the following parameter: 'client_assertion_type'.", ctx);
      }
      this.#verifyAssertion(app, tenantId, assertion, ctx);
      return { kind: 'certificate' };
    }
    const given = Buffer.from(secret ?? '');
    const now = this.#o.clock.nowMs();
    const match = app.secrets.find((s) => {
      const v = Buffer.from(s.value);
      return v.length === given.length && timingSafeEqual(v, given);
    });
    if (!match) {
      throw this.#err(
        401,
        'invalid_client',
        7000215,
        `Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '${app.appId}'.`,
        ctx,
      );
    }
    if (match.endDateTime && Date.parse(match.endDateTime) <= now) {
      throw this.#err(401, 'invalid_client', 7000222, `The provided client secret keys for app '${app.appId}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.`, ctx);
    }
    return { kind: 'secret' };
  }

  #verifyAssertion(app: SandboxApp, tenantId: string, assertion: string, ctx: Ctx): void {
    const jwt = decodeJwt(assertion);
    if (!jwt) throw this.#err(401, 'invalid_client', 50027, 'JWT token is invalid or malformed.', ctx);
    const x5t = typeof jwt.header['x5t'] === 'string' ? jwt.header['x5t'] : undefined;
    const x5t256 = typeof jwt.header['x5t#S256'] === 'string' ? jwt.header['x5t#S256'] : undefined;
    const norm = (s: string) => s.replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
    const cert = app.certificates.find((c) => (x5t && norm(x5t) === c.thumbprintSha1) || (x5t256 && norm(x5t256) === c.thumbprintSha256));
    if (!cert) {
      throw this.#err(
        401,
        'invalid_client',
        700027,
        `Client assertion failed signature validation. Trace ID: ${randomUUID()} [Reason - The key was not found., Thumbprint of key used by client: '${x5t ?? x5t256 ?? ''}', Please visit the Azure Portal, Graph Explorer or directly use MS Graph to see configured keys for app Id '${app.appId}'.]`,
        ctx,
      );
    }
    if (!verifyJwtSignature(jwt, new X509Certificate(cert.pem).publicKey)) {
      throw this.#err(401, 'invalid_client', 700027, 'Client assertion failed signature validation. [Reason - The provided signature value did not match the expected signature value.]', ctx);
    }
    const c = jwt.payload;
    if (c['iss'] !== app.appId || c['sub'] !== app.appId) {
      throw this.#err(401, 'invalid_client', 700021, "Client assertion application identifier doesn't match 'client_id' parameter.", ctx);
    }
    const tenant = this.#o.directory.tenant(tenantId);
    const base = this.#o.authority();
    const okAud = new Set<string>();
    for (const seg of [tenantId, tenant?.domain ?? tenantId]) {
      okAud.add(`${base}/${seg}/oauth2/v2.0/token`.toLowerCase());
      okAud.add(`${base}/${seg}/oauth2/token`.toLowerCase());
      okAud.add(`${base}/${seg}/v2.0`.toLowerCase());
    }
    const auds = (Array.isArray(c['aud']) ? c['aud'] : [c['aud']]).map((a) => String(a).toLowerCase());
    if (!auds.some((a) => okAud.has(a))) {
      throw this.#err(401, 'invalid_client', 700212, `The audience '${String(c['aud'])}' of the client assertion is not valid. Expected '${base}/${tenantId}/oauth2/v2.0/token'.`, ctx);
    }
    const now = this.#o.clock.nowSeconds();
    const exp = typeof c['exp'] === 'number' ? c['exp'] : 0;
    const nbf = typeof c['nbf'] === 'number' ? c['nbf'] : 0;
    if (exp + 300 < now || nbf - 300 > now) {
      throw this.#err(401, 'invalid_client', 700024, `Client assertion is not within its valid time range. Current time: ${new Date(now * 1000).toISOString()}, assertion valid from ${new Date(nbf * 1000).toISOString()}, expiry time of assertion ${new Date(exp * 1000).toISOString()}.`, ctx);
    }
  }

  #requirePublicClientFlows(app: SandboxApp, auth: ClientAuth, ctx: Ctx): void {
    if (auth.kind === 'none' && !app.isFallbackPublicClient) {
      throw this.#err(401, 'invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", ctx);
    }
  }

  // ---- scopes and consent ---------------------------------------------------------------

  /** Splits a scope parameter into the OIDC scopes and one resource with its permission names. */
  #parseScopes(scope: string, tenant: SandboxTenant, ctx: Ctx): { oidc: string[]; resource: Resource; audience: string; names: string[]; prefix: string } {
    const all = scope.split(/\s+/).filter(Boolean);
    if (all.length === 0) throw this.#missing('scope', ctx);
    const oidc = all.filter((s) => OIDC_SCOPES.has(s.toLowerCase())).map((s) => s.toLowerCase());
    const rest = all.filter((s) => !OIDC_SCOPES.has(s.toLowerCase()));
    let found: { resource: Resource; audience: string; prefix: string } | undefined;
    const names: string[] = [];
    for (const s of rest) {
      const slash = s.lastIndexOf('/');
      const prefix = slash > 0 ? s.slice(0, slash) : '';
      const name = slash > 0 ? s.slice(slash + 1) : s;
      const r = prefix ? resourceByIdentifier(prefix) : { resource: GRAPH, audience: GRAPH.audience };
      if (!r) {
        throw this.#err(400, 'invalid_resource', 500011, `The resource principal named ${prefix} was not found in the tenant named ${tenant.displayName}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`, ctx);
      }
      if (found && found.resource !== r.resource) {
        throw this.#err(400, 'invalid_scope', 28000, `Provided value for the input parameter scope is not valid because it contains more than one resource. Scope ${scope} is not valid.`, ctx);
      }
      found ??= { ...r, prefix: prefix || '' };
      names.push(name);
    }
    const resolved = found ?? { resource: GRAPH, audience: GRAPH.audience, prefix: '' };
    if (resolved.resource === EXCHANGE && !tenant.exchangeOnline) {
      throw this.#err(400, 'invalid_resource', 500011, `The resource principal named ${resolved.prefix || EXCHANGE.audience} was not found in the tenant named ${tenant.displayName}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`, ctx);
    }
    return { oidc, ...resolved, names };
  }

  /** The delegated scopes consented for this client, user and resource (admin or user consent). */
  consentedScopes(tenant: SandboxTenant, app: SandboxApp, user: SandboxUser, resource: Resource): Set<string> {
    const d = this.#o.directory;
    const clientSp = d.servicePrincipalByAppId(tenant.id, app.appId);
    const out = new Set<string>();
    if (!clientSp) return out;
    // The guide grants SMTP.Send under Microsoft Graph; Entra honours it for outlook.office.com too.
    const resourceSps = [resource, ...(resource === EXCHANGE ? [GRAPH] : [])]
      .map((r) => d.servicePrincipalByAppId(tenant.id, r.appId)?.id)
      .filter((x): x is string => Boolean(x));
    for (const g of d.delegatedGrantsFor(clientSp.id)) {
      if (!resourceSps.includes(g.resourceId)) continue;
      if (g.consentType === 'Principal' && g.principalId !== user.oid) continue;
      for (const s of g.scope.split(/\s+/).filter(Boolean)) {
        const fromGraphForExchange = resource === EXCHANGE && g.resourceId !== d.servicePrincipalByAppId(tenant.id, EXCHANGE.appId)?.id;
        if (fromGraphForExchange && !EXCHANGE.scopes.some((x) => x.value.toLowerCase() === s.toLowerCase())) continue;
        out.add(s);
      }
    }
    return out;
  }

  #consentFailure(app: SandboxApp, ctx: Ctx): AadFailure {
    return this.#err(400, 'invalid_grant', 65001, `The user or administrator has not consented to use the application with ID '${app.appId}' named '${app.displayName}'. Send an interactive authorization request for this user and resource.`, ctx, { suberror: 'consent_required' });
  }

  /**
   * Checks consent; returns the scp to put in the token. In interactive sign-ins
   * (device code, browser) first-party tools, and any app in a tenant with
   * `usersCanConsent`, get consent on the spot, as Entra's consent prompt would:
   * user-consentable scopes for anyone, admin-only scopes for admins.
   */
  #grantedScopes(tenant: SandboxTenant, app: SandboxApp, user: SandboxUser, resource: Resource, names: string[], oidc: string[], ctx: Ctx, interactive: boolean): string[] {
    let consented = this.consentedScopes(tenant, app, user, resource);
    const wanted = names.filter((n) => n !== '.default');
    const missing = wanted.filter((n) => ![...consented].some((c) => c.toLowerCase() === n.toLowerCase()));
    if (missing.length && interactive && (app.appId === WELL_KNOWN.graphCliClientId || tenant.usersCanConsent)) {
      const adminOnly = missing.some((n) => resource.scopes.find((s) => s.value.toLowerCase() === n.toLowerCase())?.type === 'Admin');
      if (!adminOnly || user.isAdmin) {
        this.#recordUserConsent(tenant, app, user, resource, missing);
        consented = this.consentedScopes(tenant, app, user, resource);
      }
    }
    if (names.includes('.default')) {
      if (consented.size === 0 && wanted.length === 0) throw this.#consentFailure(app, ctx);
    }
    for (const n of wanted) {
      if (![...consented].some((c) => c.toLowerCase() === n.toLowerCase())) throw this.#consentFailure(app, ctx);
    }
    const scp = names.includes('.default') ? [...consented] : wanted.map((n) => [...consented].find((c) => c.toLowerCase() === n.toLowerCase()) ?? n);
    if (resource === GRAPH) for (const o of oidc) if (o !== 'offline_access' && !scp.includes(o)) scp.push(o);
    return scp.filter((s) => resource !== EXCHANGE || EXCHANGE.scopes.some((x) => x.value.toLowerCase() === s.toLowerCase()));
  }

  #recordUserConsent(tenant: SandboxTenant, app: SandboxApp, user: SandboxUser, resource: Resource, scopes: string[]): void {
    const d = this.#o.directory;
    const clientSp = d.servicePrincipalByAppId(tenant.id, app.appId) ?? d.addServicePrincipal(tenant.id, app);
    const resourceSp = d.servicePrincipalByAppId(tenant.id, resource.appId);
    if (!resourceSp) return;
    const existing = d.data.delegatedGrants.find((g) => g.clientId === clientSp.id && g.resourceId === resourceSp.id && g.consentType === 'Principal' && g.principalId === user.oid);
    if (existing) {
      existing.scope = [...new Set([...existing.scope.split(/\s+/).filter(Boolean), ...scopes])].join(' ');
      d.changed();
    } else {
      d.addDelegatedGrant({ clientId: clientSp.id, resourceId: resourceSp.id, consentType: 'Principal', principalId: user.oid, scope: scopes.join(' ') });
    }
  }

  /** Conditional Access and account state, checked for every delegated token. */
  #checkUserCanGetTokens(tenant: SandboxTenant, user: SandboxUser, ctx: Ctx): void {
    if (!user.accountEnabled) throw this.#err(400, 'invalid_grant', 50057, 'The user account is disabled.', ctx);
    if (tenant.conditionalAccessBlockedUsers.some((u) => u.toLowerCase() === user.upn.toLowerCase())) {
      throw this.#err(400, 'invalid_grant', 53003, 'Access has been blocked by Conditional Access policies. The access policy does not allow token issuance.', ctx, { suberror: 'message_only' });
    }
  }

  // ---- token responses ---------------------------------------------------------------------

  #delegatedReply(input: { tenant: SandboxTenant; app: SandboxApp; user: SandboxUser; scope: string; auth: ClientAuth; amr: string[]; authTime: number; authTimeMs: number; nonce?: string | null; clientInfo: boolean; interactive: boolean }, ctx: Ctx): Reply {
    const { tenant, app, user } = input;
    this.#checkUserCanGetTokens(tenant, user, ctx);
    const parsed = this.#parseScopes(input.scope, tenant, ctx);
    const scp = this.#grantedScopes(tenant, app, user, parsed.resource, parsed.names, parsed.oidc, ctx, input.interactive);
    const at = this.#o.issuer.issueAccessToken({
      tenantId: tenant.id,
      aud: parsed.audience,
      appId: app.appId,
      appDisplayName: app.displayName,
      appidacr: input.auth.kind === 'certificate' ? '2' : input.auth.kind === 'secret' ? '1' : '0',
      user,
      scp,
      amr: input.amr,
    });
    const prefix = parsed.resource === GRAPH ? '' : `${parsed.prefix || parsed.audience}/`;
    const responseScopes = scp.map((s) => (OIDC_SCOPES.has(s) ? s : `${prefix}${s}`));
    if (parsed.names.includes('.default')) responseScopes.push(`${parsed.prefix || parsed.audience}/.default`);
    const body: Record<string, unknown> = {
      token_type: 'Bearer',
      scope: responseScopes.join(' '),
      expires_in: at.expiresIn,
      ext_expires_in: at.expiresIn,
      access_token: at.token,
    };
    if (parsed.oidc.includes('offline_access')) {
      body['refresh_token'] = this.#newSession({ tenantId: tenant.id, clientId: app.appId, userOid: user.oid, authTime: input.authTime, authTimeMs: input.authTimeMs, amr: input.amr, publicClient: input.auth.kind === 'none' });
    }
    if (parsed.oidc.includes('openid')) {
      body['id_token'] = this.#o.issuer.issueIdToken({ tenantId: tenant.id, clientId: app.appId, user, nonce: input.nonce ?? undefined });
    }
    if (input.clientInfo) body['client_info'] = this.#o.issuer.clientInfo(user, tenant.id);
    return { status: 200, body };
  }

  #newSession(s: Omit<Session, 'issuedAt' | 'retired'>): string {
    const token = `0.A${opaqueToken(96)}`;
    this.#sessions.set(hash(token), { ...s, issuedAt: this.#o.clock.nowSeconds(), retired: false });
    this.#saveSessions();
    return token;
  }

  // ---- endpoints ------------------------------------------------------------------------

  /** POST /{tenant}/oauth2/v2.0/devicecode */
  deviceCode(tenantSegment: string, p: URLSearchParams, ctx: Ctx = {}): Reply {
    try {
      const tenant = this.#tenantOrFail(tenantSegment, ctx);
      const app = this.#client(p.get('client_id') ?? undefined, tenant, ctx);
      const scope = p.get('scope');
      if (!scope) throw this.#missing('scope', ctx);
      const now = this.#o.clock.nowSeconds();
      const entry: DeviceCodeEntry = {
        deviceCode: `DAQABIQEAAAD${opaqueToken(96)}`,
        userCode: userCode(),
        clientId: app.appId,
        tenantId: tenant === 'multi' ? null : tenant.id,
        scope,
        createdAt: now,
        expiresAt: now + DEVICE_CODE_LIFETIME,
        interval: this.#o.deviceCodeIntervalSeconds,
        lastPollMs: null,
        status: 'pending',
      };
      this.#deviceCodes.set(entry.deviceCode, entry);
      const verificationUri = `${this.#o.authority()}/devicelogin`;
      if (this.#o.autoApprove) {
        const { afterMs, upn } = this.#o.autoApprove;
        const timer = setTimeout(() => {
          this.#timers.delete(timer);
          const who = upn ? this.#o.directory.user(upn) : this.#o.directory.data.users.find((u) => u.accountEnabled && !u.mfaRequired);
          if (who && entry.status === 'pending') this.approveDeviceCode(entry.userCode, who.upn);
        }, afterMs);
        timer.unref();
        this.#timers.add(timer);
      }
      return {
        status: 200,
        body: {
          user_code: entry.userCode,
          device_code: entry.deviceCode,
          verification_uri: verificationUri,
          expires_in: DEVICE_CODE_LIFETIME,
          interval: entry.interval,
          message: `To sign in, use a web browser to open the page ${verificationUri} and enter the code ${entry.userCode} to authenticate.`,
        },
      };
    } catch (e) {
      if (e instanceof AadFailure) return e.reply;
      throw e;
    }
  }

  /** POST /{tenant}/oauth2/v2.0/token */
  token(tenantSegment: string, p: URLSearchParams, basic: { id: string; secret: string } | undefined, ctx: Ctx = {}): Reply {
    try {
      const tenantSel = this.#tenantOrFail(tenantSegment, ctx);
      const grant = p.get('grant_type');
      if (!grant) throw this.#missing('grant_type', ctx);
      const clientId = p.get('client_id') ?? basic?.id ?? undefined;
      const app = this.#client(clientId, tenantSel, ctx);
      const clientInfo = p.get('client_info') === '1';
      if (DEVICE_GRANTS.has(grant)) return this.#deviceCodeGrant(tenantSel, app, p, basic, clientInfo, ctx);
      switch (grant) {
        case 'refresh_token':
          return this.#refreshGrant(tenantSel, app, p, basic, clientInfo, ctx);
        case 'client_credentials':
          return this.#clientCredentialsGrant(tenantSel, app, p, basic, ctx);
        case 'authorization_code':
          return this.#authorizationCodeGrant(tenantSel, app, p, basic, clientInfo, ctx);
        case 'password':
          return this.#passwordGrant(tenantSel, app, p, basic, clientInfo, ctx);
        default:
          throw this.#err(400, 'unsupported_grant_type', 70003, `The app requested an unsupported grant type '${grant}'.`, ctx);
      }
    } catch (e) {
      if (e instanceof AadFailure) return e.reply;
      throw e;
    }
  }

  #tenantFor(sel: SandboxTenant | 'multi', fallback: () => SandboxTenant): SandboxTenant {
    return sel === 'multi' ? fallback() : sel;
  }

  #deviceCodeGrant(sel: SandboxTenant | 'multi', app: SandboxApp, p: URLSearchParams, basic: { id: string; secret: string } | undefined, clientInfo: boolean, ctx: Ctx): Reply {
    const code = p.get('device_code') ?? p.get('code');
    if (!code) throw this.#missing('device_code', ctx);
    const homeTenant = this.#o.directory.tenant(app.tenantId);
    const auth = this.#authenticateClient(app, sel === 'multi' ? app.tenantId : sel.id, p, basic, ctx);
    this.#requirePublicClientFlows(app, auth, ctx);
    const entry = this.#deviceCodes.get(code);
    if (!entry || entry.clientId !== app.appId) {
      throw this.#err(400, 'bad_verification_code', 70018, 'Invalid verification code due to User typing in wrong user code for device code flow. Authorization is not approved.', ctx);
    }
    const nowMs = this.#o.clock.nowMs();
    if (nowMs / 1000 >= entry.expiresAt && entry.status !== 'redeemed') {
      throw this.#err(400, 'expired_token', 70019, 'Verification code expired. Have the user retry the sign-in.', ctx);
    }
    const last = entry.lastPollMs;
    entry.lastPollMs = nowMs;
    switch (entry.status) {
      case 'pending':
        // RFC 8628 slow_down for clients that ignore the interval (polling at under half of it).
        if (this.#o.behaviour.slowDown && last !== null && nowMs - last < (entry.interval * 1000) / 2) {
          throw this.#err(400, 'slow_down', 70016, `The client is polling too frequently. Poll at most every ${entry.interval} seconds.`, ctx);
        }
        throw this.#err(400, 'authorization_pending', 70016, 'OAuth 2.0 device flow error. Authorization is pending. Continue polling.', ctx);
      case 'declined':
        throw this.#err(400, 'authorization_declined', 70000, 'The user declined the sign-in request.', ctx);
      case 'redeemed':
        throw this.#err(400, 'invalid_grant', 70000, "The provided value for the input parameter 'device_code' is not valid. It was already redeemed.", ctx);
      case 'approved':
        break;
    }
    const user = entry.userOid ? this.#o.directory.user(entry.userOid) : undefined;
    if (!user) throw this.#err(400, 'invalid_grant', 50034, 'The user account does not exist in the directory.', ctx);
    const tenant = this.#tenantFor(sel, () => this.#o.directory.tenantOfUser(user) ?? homeTenant);
    if (sel !== 'multi' && this.#o.directory.tenantOfUser(user).id !== tenant.id) {
      throw this.#err(400, 'invalid_grant', 50020, `User account '${user.upn}' from identity provider 'https://sts.windows.net/${this.#o.directory.tenantOfUser(user).id}/' does not exist in tenant '${tenant.displayName}' and cannot access the application '${app.appId}'(${app.displayName}) in that tenant.`, ctx);
    }
    entry.status = 'redeemed';
    return this.#delegatedReply({ tenant, app, user, scope: p.get('scope') ?? entry.scope, auth, amr: entry.amr ?? ['pwd'], authTime: entry.authTime ?? this.#o.clock.nowSeconds(), authTimeMs: entry.authTimeMs ?? this.#o.clock.nowMs(), clientInfo, interactive: true }, ctx);
  }

  #refreshGrant(sel: SandboxTenant | 'multi', app: SandboxApp, p: URLSearchParams, basic: { id: string; secret: string } | undefined, clientInfo: boolean, ctx: Ctx): Reply {
    const rt = p.get('refresh_token');
    if (!rt) throw this.#missing('refresh_token', ctx);
    const auth = this.#authenticateClient(app, sel === 'multi' ? app.tenantId : sel.id, p, basic, ctx);
    const session = this.#sessions.get(hash(rt));
    if (!session) throw this.#err(400, 'invalid_grant', 9002313, 'Invalid request. Request is malformed or invalid.', ctx);
    if (session.publicClient) this.#requirePublicClientFlows(app, auth, ctx);
    if (session.clientId !== app.appId) {
      throw this.#err(400, 'invalid_grant', 70000, 'Provided grant is invalid or malformed. The refresh token was issued to a different client.', ctx);
    }
    if (sel !== 'multi' && sel.id !== session.tenantId) {
      throw this.#err(400, 'invalid_grant', 7000012, 'The grant was obtained for a different tenant.', ctx);
    }
    const now = this.#o.clock.nowSeconds();
    const issued = aadTimestamp(session.issuedAt * 1000);
    if (session.retired && !this.#o.behaviour.refreshTokenReuse) {
      throw this.#err(400, 'invalid_grant', 70008, 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.', ctx);
    }
    if (now - session.issuedAt > REFRESH_IDLE_LIFETIME) {
      throw this.#err(400, 'invalid_grant', 700082, `The refresh token has expired due to inactivity. The token was issued on ${issued} and was inactive for 90.00:00:00.`, ctx);
    }
    const tenant = this.#o.directory.tenant(session.tenantId);
    const user = this.#o.directory.user(session.userOid);
    if (!tenant || !user) throw this.#err(400, 'invalid_grant', 50034, 'The user account does not exist in the directory.', ctx);
    // Sessions signed in at or before the revoke are dead; one signed in after it (even within the same second) is not.
    const authTimeMs = session.authTimeMs ?? session.authTime * 1000;
    const revokedAtMs = user.sessionsRevokedAtMs ?? (user.sessionsRevokedAt !== null ? user.sessionsRevokedAt * 1000 + 999 : null);
    if (user.sessionsRevokedAt !== null && revokedAtMs !== null && authTimeMs <= revokedAtMs) {
      throw this.#err(
        400,
        'invalid_grant',
        50173,
        `The provided grant has expired due to it being revoked, a fresh auth token is needed. The user might have changed or reset their password. The grant was issued on '${aadTimestamp(session.authTime * 1000)}' and the TokensValidFrom date (before which tokens are not valid) for this user is '${aadTimestamp(user.sessionsRevokedAt * 1000)}'.`,
        ctx,
      );
    }
    if (tenant.signInFrequencySeconds !== null && now - session.authTime > tenant.signInFrequencySeconds) {
      throw this.#err(400, 'invalid_grant', 70043, `The refresh token has expired or is invalid due to sign-in frequency checks by conditional access. The token was issued on ${aadTimestamp(session.authTime * 1000)} and the maximum allowed lifetime for this request is ${tenant.signInFrequencySeconds}.`, ctx, { suberror: 'bad_token' });
    }
    const scope = p.get('scope') ?? 'openid profile offline_access';
    const withOffline = /(^|\s)offline_access(\s|$)/.test(scope) ? scope : `${scope} offline_access`;
    const reply = this.#delegatedReply({ tenant, app, user, scope: withOffline, auth, amr: session.amr, authTime: session.authTime, authTimeMs, clientInfo, interactive: false }, ctx);
    // Rotation: the client should keep the new refresh token; whether this one still works is behaviour.refreshTokenReuse.
    session.retired = true;
    this.#saveSessions();
    return reply;
  }

  #clientCredentialsGrant(sel: SandboxTenant | 'multi', app: SandboxApp, p: URLSearchParams, basic: { id: string; secret: string } | undefined, ctx: Ctx): Reply {
    const tenant = this.#tenantFor(sel, () => this.#o.directory.tenant(app.tenantId) as SandboxTenant);
    const auth = this.#authenticateClient(app, tenant.id, p, basic, ctx);
    if (auth.kind === 'none') {
      throw this.#err(401, 'invalid_client', 7000216, "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.", ctx);
    }
    const scope = (p.get('scope') ?? '').trim();
    if (!scope) throw this.#missing('scope', ctx);
    const scopes = scope.split(/\s+/);
    const bad = scopes.find((s) => !s.endsWith('/.default'));
    if (bad || scopes.length !== 1) {
      throw this.#err(400, 'invalid_scope', 1002012, `The provided value for scope ${bad ?? scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).`, ctx);
    }
    const prefix = (scopes[0] as string).slice(0, -'/.default'.length);
    const r = resourceByIdentifier(prefix);
    if (!r || (r.resource === EXCHANGE && !tenant.exchangeOnline)) {
      throw this.#err(400, 'invalid_resource', 500011, `The resource principal named ${prefix} was not found in the tenant named ${tenant.displayName}. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.`, ctx);
    }
    const d = this.#o.directory;
    const clientSp = d.servicePrincipalByAppId(tenant.id, app.appId);
    const resourceSp = d.servicePrincipalByAppId(tenant.id, r.resource.appId);
    // As Entra: without an assignment the token simply has no roles; the resource refuses it.
    const roles =
      clientSp && resourceSp
        ? d
            .appRoleAssignmentsFor(clientSp.id)
            .filter((a) => a.resourceId === resourceSp.id)
            .map((a) => permissionById(r.resource, a.appRoleId)?.value)
            .filter((v): v is string => Boolean(v))
        : [];
    const at = this.#o.issuer.issueAccessToken({
      tenantId: tenant.id,
      aud: r.audience,
      appId: app.appId,
      appDisplayName: app.displayName,
      appidacr: auth.kind === 'certificate' ? '2' : '1',
      servicePrincipalId: clientSp?.id ?? '',
      roles,
    });
    return { status: 200, body: { token_type: 'Bearer', expires_in: at.expiresIn, ext_expires_in: at.expiresIn, access_token: at.token } };
  }

  #authorizationCodeGrant(sel: SandboxTenant | 'multi', app: SandboxApp, p: URLSearchParams, basic: { id: string; secret: string } | undefined, clientInfo: boolean, ctx: Ctx): Reply {
    const code = p.get('code');
    if (!code) throw this.#missing('code', ctx);
    const redirectUri = p.get('redirect_uri');
    if (!redirectUri) throw this.#missing('redirect_uri', ctx);
    const entry = this.#authCodes.get(hash(code));
    const auth = this.#authenticateClient(app, entry?.tenantId ?? app.tenantId, p, basic, ctx);
    if (auth.kind === 'none' && !app.isFallbackPublicClient && !isLoopback(redirectUri) && (app.secrets.length > 0 || app.certificates.length > 0)) {
      throw this.#err(401, 'invalid_client', 7000218, "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.", ctx);
    }
    if (!entry || entry.clientId !== app.appId) throw this.#err(400, 'invalid_grant', 9002313, 'Invalid request. Request is malformed or invalid.', ctx);
    if (entry.redeemed) throw this.#err(400, 'invalid_grant', 54005, 'OAuth2 Authorization code was already redeemed, please retry with a new valid code or use an existing refresh token.', ctx);
    if (this.#o.clock.nowSeconds() >= entry.expiresAt) {
      throw this.#err(400, 'invalid_grant', 70008, 'The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.', ctx);
    }
    if (sel !== 'multi' && sel.id !== entry.tenantId) throw this.#err(400, 'invalid_grant', 7000012, 'The grant was obtained for a different tenant.', ctx);
    if (redirectUri !== entry.redirectUri) {
      throw this.#err(400, 'invalid_grant', 70000, "The provided value for the input parameter 'redirect_uri' is not valid. The redirect URI must match the one used to obtain the authorization code.", ctx);
    }
    if (entry.codeChallenge) {
      const verifier = p.get('code_verifier');
      if (!verifier) throw this.#missing('code_verifier', ctx);
      const computed = entry.codeChallengeMethod === 'plain' ? verifier : createHash('sha256').update(verifier).digest('base64url');
      if (computed !== entry.codeChallenge) throw this.#err(400, 'invalid_grant', 501481, 'The Code_Verifier does not match the code_challenge supplied in the authorization request.', ctx);
    }
    entry.redeemed = true;
    const tenant = this.#o.directory.tenant(entry.tenantId);
    const user = this.#o.directory.user(entry.userOid);
    if (!tenant || !user) throw this.#err(400, 'invalid_grant', 50034, 'The user account does not exist in the directory.', ctx);
    return this.#delegatedReply({ tenant, app, user, scope: p.get('scope') ?? entry.scope, auth, amr: entry.amr, authTime: entry.authTime, authTimeMs: entry.authTimeMs, nonce: entry.nonce, clientInfo, interactive: true }, ctx);
  }

  #passwordGrant(sel: SandboxTenant | 'multi', app: SandboxApp, p: URLSearchParams, basic: { id: string; secret: string } | undefined, clientInfo: boolean, ctx: Ctx): Reply {
    const username = p.get('username');
    const password = p.get('password');
    if (!username) throw this.#missing('username', ctx);
    if (!password) throw this.#missing('password', ctx);
    const auth = this.#authenticateClient(app, sel === 'multi' ? app.tenantId : sel.id, p, basic, ctx);
    this.#requirePublicClientFlows(app, auth, ctx);
    const user = this.#o.directory.user(username);
    const tenant = this.#tenantFor(sel, () => (user ? this.#o.directory.tenantOfUser(user) : (this.#o.directory.tenant(app.tenantId) as SandboxTenant)));
    if (!user || this.#o.directory.tenantOfUser(user).id !== tenant.id) {
      throw this.#err(400, 'invalid_grant', 50034, `The user account {EUII Hidden} does not exist in the ${tenant.id} directory. To sign into this application, the account must be added to the directory.`, ctx);
    }
    if (!constantTimeEquals(user.password, password)) {
      throw this.#err(400, 'invalid_grant', 50126, 'Error validating credentials due to invalid username or password.', ctx);
    }
    this.#checkUserCanGetTokens(tenant, user, ctx);
    if (tenant.securityDefaults) {
      // Security Defaults refuse the password flow outright (it cannot do MFA).
      throw this.#err(400, 'invalid_grant', 530035, 'Access has been blocked by security defaults. This is due to the request using legacy auth or being deemed unsafe by security defaults policies. For more information please visit https://aka.ms/securitydefaults', ctx);
    }
    if (user.mfaRequired) {
      const parsed = this.#parseScopes(p.get('scope') ?? '', tenant, ctx);
      throw this.#err(
        400,
        'invalid_grant',
        50076,
        `Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '${parsed.resource.appId}'.`,
        ctx,
        { suberror: 'basic_action' },
      );
    }
    const signedInMs = this.#o.clock.nowMs();
    return this.#delegatedReply({ tenant, app, user, scope: p.get('scope') ?? '', auth, amr: ['pwd'], authTime: Math.floor(signedInMs / 1000), authTimeMs: signedInMs, clientInfo, interactive: false }, ctx);
  }

  // ---- device codes: the person's side (pages and admin API) -------------------------------------

  /** Device codes waiting for a person (not expired, not answered). */
  pendingDeviceCodes(): Array<{ userCode: string; clientId: string; appName: string; scope: string; tenantId: string | null; expiresAt: string; expiresInSeconds: number }> {
    const now = this.#o.clock.nowSeconds();
    return [...this.#deviceCodes.values()]
      .filter((e) => e.status === 'pending' && e.expiresAt > now)
      .map((e) => ({
        userCode: e.userCode,
        clientId: e.clientId,
        appName: this.#o.directory.app(e.clientId)?.displayName ?? e.clientId,
        scope: e.scope,
        tenantId: e.tenantId,
        expiresAt: new Date(e.expiresAt * 1000).toISOString(),
        expiresInSeconds: e.expiresAt - now,
      }));
  }

  /** The pending device code a person typed (codes are case-insensitive, dashes and spaces ignored). */
  findDeviceCode(userCodeInput: string): DeviceCodeEntry | undefined {
    const k = userCodeInput.replace(/[\s-]/g, '').toUpperCase();
    const now = this.#o.clock.nowSeconds();
    for (const e of this.#deviceCodes.values()) {
      if (e.userCode === k && e.status === 'pending' && e.expiresAt > now) return e;
    }
    return undefined;
  }

  approveDeviceCode(userCodeInput: string, upn: string, amr: string[] = ['pwd']): { ok: true; entry: DeviceCodeEntry } | { ok: false; status: number; code: string; message: string } {
    const entry = this.findDeviceCode(userCodeInput);
    if (!entry) return { ok: false, status: 404, code: 'not_found', message: `no pending device code ${userCodeInput} (unknown, expired or already answered)` };
    const user = this.#o.directory.user(upn);
    if (!user) return { ok: false, status: 404, code: 'not_found', message: `no user ${upn}` };
    entry.status = 'approved';
    entry.userOid = user.oid;
    entry.amr = user.mfaRequired && !amr.includes('mfa') ? [...amr, 'mfa'] : amr;
    entry.authTimeMs = this.#o.clock.nowMs();
    entry.authTime = Math.floor(entry.authTimeMs / 1000);
    return { ok: true, entry };
  }

  declineDeviceCode(userCodeInput: string): boolean {
    const entry = this.findDeviceCode(userCodeInput);
    if (!entry) return false;
    entry.status = 'declined';
    return true;
  }

  // ---- authorization code flow -----------------------------------------------------------------

  /** Validates /authorize parameters; an error message for the page when they are wrong (Entra shows those, it does not redirect). */
  checkAuthorizeRequest(tenantSegment: string, q: URLSearchParams): { ok: true; request: AuthorizeRequest; app: SandboxApp } | { ok: false; code: number; message: string } {
    const tenant = this.resolveTenantSegment(tenantSegment);
    if (!tenant) return { ok: false, code: 90002, message: `Tenant '${tenantSegment}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.` };
    const clientId = q.get('client_id') ?? '';
    let app: SandboxApp;
    try {
      app = this.#client(clientId, tenant, {});
    } catch (e) {
      if (e instanceof AadFailure) return { ok: false, code: 700016, message: String(e.reply.body['error_description']).split('\r\n')[0]?.replace(/^AADSTS\d+: /, '') ?? '' };
      throw e;
    }
    if (q.get('response_type') !== 'code') return { ok: false, code: 900144, message: "The request body must contain the following parameter: 'response_type' with the value 'code'." };
    const redirectUri = q.get('redirect_uri') ?? '';
    if (!redirectAllowed(app, redirectUri)) {
      return { ok: false, code: 50011, message: `The redirect URI '${redirectUri}' specified in the request does not match the redirect URIs configured for the application '${app.appId}'. Make sure the redirect URI sent in the request matches one added to your application in the Azure portal.` };
    }
    const method = q.get('code_challenge_method');
    if (q.get('code_challenge') && method && method !== 'S256' && method !== 'plain') {
      return { ok: false, code: 501491, message: `Invalid code_challenge_method '${method}'.` };
    }
    const mode = q.get('response_mode') ?? 'query';
    return {
      ok: true,
      app,
      request: {
        tenantSegment,
        clientId: app.appId,
        redirectUri,
        scope: q.get('scope') ?? 'openid profile',
        state: q.get('state'),
        nonce: q.get('nonce'),
        codeChallenge: q.get('code_challenge'),
        codeChallengeMethod: q.get('code_challenge') ? (method ?? 'plain') : null,
        responseMode: mode === 'form_post' || mode === 'fragment' ? mode : 'query',
        loginHint: q.get('login_hint'),
        prompt: q.get('prompt'),
      },
    };
  }

  /** After the sign-in page: a code for the redirect (or an error the redirect carries). */
  completeAuthorize(request: AuthorizeRequest, user: SandboxUser, amr: string[]): { params: Record<string, string> } {
    const sel = this.resolveTenantSegment(request.tenantSegment);
    const tenant = sel && sel !== 'multi' ? sel : this.#o.directory.tenantOfUser(user);
    const params: Record<string, string> = {};
    const code = `1.A${opaqueToken(96)}`;
    this.#authCodes.set(hash(code), {
      clientId: request.clientId,
      tenantId: tenant.id,
      redirectUri: request.redirectUri,
      scope: request.scope,
      codeChallenge: request.codeChallenge,
      codeChallengeMethod: request.codeChallengeMethod,
      nonce: request.nonce,
      userOid: user.oid,
      amr,
      authTime: this.#o.clock.nowSeconds(),
      authTimeMs: this.#o.clock.nowMs(),
      expiresAt: this.#o.clock.nowSeconds() + AUTH_CODE_LIFETIME,
      redeemed: false,
    });
    params['code'] = code;
    params['client_info'] = this.#o.issuer.clientInfo(user, tenant.id);
    if (request.state !== null) params['state'] = request.state;
    params['session_state'] = randomUUID();
    return { params };
  }

  authorizeError(request: AuthorizeRequest, error: string, code: number, text: string): Record<string, string> {
    const e = aadError(400, error, code, text, { nowMs: this.#o.clock.nowMs(), authority: this.#o.authority() });
    const params: Record<string, string> = { error, error_description: String(e.body['error_description']), error_uri: String(e.body['error_uri']) };
    if (request.state !== null) params['state'] = request.state;
    return params;
  }

  /** For the sign-in pages: check a user's password (and account state) the way the login page does. */
  checkPassword(upn: string, password: string): { ok: true; user: SandboxUser } | { ok: false; message: string } {
    const user = this.#o.directory.user(upn);
    if (!user) return { ok: false, message: "This username may be incorrect. Make sure you typed it correctly. Otherwise, contact your admin." };
    if (!constantTimeEquals(user.password, password)) return { ok: false, message: 'Your account or password is incorrect. If you don\'t remember your password, reset it now.' };
    if (!user.accountEnabled) return { ok: false, message: 'Your account has been locked. Contact your support person to unlock it, then try again.' };
    return { ok: true, user };
  }

  /** Counts for GET /admin/state. */
  stats(): { deviceCodes: number; pendingDeviceCodes: number; authorizationCodes: number; refreshTokens: number; activeRefreshTokens: number } {
    const now = this.#o.clock.nowSeconds();
    const sessions = [...this.#sessions.values()];
    return {
      deviceCodes: this.#deviceCodes.size,
      pendingDeviceCodes: [...this.#deviceCodes.values()].filter((e) => e.status === 'pending' && e.expiresAt > now).length,
      authorizationCodes: this.#authCodes.size,
      refreshTokens: sessions.length,
      activeRefreshTokens: sessions.filter((s) => !s.retired && now - s.issuedAt <= REFRESH_IDLE_LIFETIME).length,
    };
  }
}

/** First-party apps every tenant can use: Microsoft Graph Command Line Tools (public client, consent at sign-in). */
export function ensureFirstPartyApps(d: Directory): void {
  const id = WELL_KNOWN.graphCliClientId;
  if (!d.app(id)) {
    d.data.apps.push({
      appId: id,
      objectId: randomUUID(),
      tenantId: 'f8cdef31-a31e-4b4a-93e4-5f571e91255a',
      displayName: 'Microsoft Graph Command Line Tools',
      isFallbackPublicClient: true,
      signInAudience: 'AzureADMultipleOrgs',
      requiredResourceAccess: [],
      secrets: [],
      certificates: [],
      redirectUris: ['http://localhost'],
    });
  }
  for (const t of d.data.tenants) {
    if (!d.servicePrincipalByAppId(t.id, id)) d.data.servicePrincipals.push({ id: randomUUID(), appId: id, tenantId: t.id, displayName: 'Microsoft Graph Command Line Tools' });
  }
  d.changed();
}

function redirectAllowed(app: SandboxApp, uri: string): boolean {
  if (!uri) return false;
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return false;
  }
  for (const r of app.redirectUris) {
    if (r === uri) return true;
    // Entra ignores the port of loopback redirect URIs (native apps, RFC 8252).
    try {
      const ru = new URL(r);
      if (isLoopback(r) && isLoopback(uri) && ru.protocol === u.protocol && ru.pathname.replace(/\/$/, '') === u.pathname.replace(/\/$/, '')) return true;
    } catch {
      /* not a URL */
    }
  }
  return false;
}

function isLoopback(uri: string): boolean {
  try {
    const u = new URL(uri);
    return u.protocol === 'http:' && (u.hostname === 'localhost' || u.hostname === '127.0.0.1' || u.hostname === '[::1]');
  } catch {
    return false;
  }
}

function hash(s: string): string {
  return createHash('sha256').update(s).digest('base64url');
}

function constantTimeEquals(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

/** Nine characters like Entra's user codes, without look-alikes. */
function userCode(): string {
  const alphabet = 'ABCDEFGHJKLMNPQRSTUVWXYZ23456789';
  let s = '';
  for (let i = 0; i < 9; i++) s += alphabet[randomInt(alphabet.length)];
  return s;
}
