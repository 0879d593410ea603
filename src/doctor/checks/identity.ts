// Checks 2–5: what Entra ID knows about the tenant and the app registration
// (guide steps 1–19), asked without anyone having to sign in where possible.
import { explainFinding, explainIdentityError } from '../../errors/explain.ts';
import { isSmtp365Error } from '../../errors/error.ts';
import { httpRequest, jsonBody } from '../http.ts';
import { decodeJwtPayload, tokenRoles, tokenScopes } from '../jwt.ts';
import type { DoctorContext } from '../context.ts';
import { failed, notApplicable, passed, warning, type CheckDefinition, type CheckOutcome } from '../types.ts';
import {
  appOnly,
  deviceProbe,
  errorAadsts,
  errorCode,
  errorMessage,
  explainError,
  identityCodes,
  identityLine,
  requireAccount,
  tokenAttempt,
} from './shared.ts';

export const tenantCheck: CheckDefinition<DoctorContext> = {
  id: 'tenant',
  number: 2,
  title: 'Tenant exists',
  dependsOn: ['config'],
  async run(ctx, signal) {
    const account = requireAccount(ctx);
    const url = `${account.authorityHost}/${account.tenant}/v2.0/.well-known/openid-configuration`;
    let res;
    try {
      res = await httpRequest(url, { ca: ctx.trust, signal });
    } catch (err) {
      return failed(`${url}: ${(err as NodeJS.ErrnoException).code ?? ''} ${errorMessage(err)}`.trim(), explainFinding('identity-unreachable', ctx.explain));
    }
    const body = jsonBody<{ issuer?: string; error?: string; error_description?: string; error_codes?: number[] }>(res);
    if (res.status === 200 && body?.issuer) {
      const tid = /([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})/i.exec(body.issuer)?.[1];
      if (tid) ctx.tenantId = tid;
      return passed(`${account.tenant} is known to ${account.authorityHost}${tid && tid !== account.tenant ? ` (tenant id ${tid})` : ''}`);
    }
    if (body && (body.error || body.error_codes)) {
      return failed(`${url} answered ${res.status}: ${identityLine(body)}`, explainIdentityError(body, ctx.explain));
    }
    return failed(`${url} answered HTTP ${res.status} without an OpenID configuration`, explainFinding('identity-unreachable', ctx.explain));
  },
};

export const appCheck: CheckDefinition<DoctorContext> = {
  id: 'app',
  number: 3,
  title: 'App registered in the tenant',
  dependsOn: ['tenant'],
  async run(ctx, signal) {
    const account = requireAccount(ctx);
    if (appOnly(ctx)) {
      const attempt = await tokenAttempt(ctx);
      if (attempt.token) return passed(`the tenant issued a token to app ${account.clientId} (client credentials)`);
      const codes = errorAadsts(attempt.error);
      if (codes.includes(700016) || errorCode(attempt.error) === 'AUTH_APP_NOT_FOUND') {
        return failed(errorMessage(attempt.error), explainIdentityError({ error_codes: [700016] }, ctx.explain));
      }
      if (errorCode(attempt.error) === 'AUTH_NETWORK') {
        // It answered (HTTP 5xx, 429): temporarily unavailable, not a network to fix.
        const e = attempt.error;
        const answered = isSmtp365Error(e) && e.details?.['httpStatus'] !== undefined;
        return failed(errorMessage(e), explainFinding(answered ? 'identity-unavailable' : 'identity-unreachable', ctx.explain));
      }
      return passed(`app ${account.clientId} is known to the tenant (the token request failed for another reason: see "Signed in" below)`);
    }
    const probe = await deviceProbe(ctx, signal);
    if (probe.stage === 'network') return failed(`the device code endpoint could not be reached: ${probe.message}`, explainFinding('identity-unreachable', ctx.explain));
    if (probe.stage === 'devicecode') {
      const codes = identityCodes(probe.error);
      if (codes.includes(700016) || !codes.includes(7000218)) {
        return failed(`device code request refused: ${identityLine(probe.error)}`, explainIdentityError(probe.error ?? {}, ctx.explain));
      }
    }
    return passed(`app ${account.clientId} is registered in ${account.tenant} (it was issued a device code)`);
  },
};

export const publicClientCheck: CheckDefinition<DoctorContext> = {
  id: 'public-client',
  number: 4,
  title: 'Public client flows allowed',
  dependsOn: ['app'],
  async run(ctx, signal) {
    const account = requireAccount(ctx);
    if (appOnly(ctx)) return notApplicable('not needed: app-only accounts use client credentials');
    const probe = await deviceProbe(ctx, signal);
    if (probe.stage === 'pending') return passed('a device code poll without a client secret was accepted ("Allow public client flows" is on)');
    const codes = identityCodes(probe.error);
    if (codes.includes(7000218)) {
      const detail = `the token endpoint wants a client secret: ${identityLine(probe.error)}`;
      if (account.flow === 'browser') return warning(detail, explainFinding('public-client-browser', ctx.explain));
      return failed(detail, explainIdentityError(probe.error ?? {}, ctx.explain));
    }
    return warning(`the device code poll answered: ${identityLine(probe.error)}`, explainIdentityError(probe.error ?? {}, ctx.explain));
  },
};

const DELEGATED = ['SMTP.Send', 'offline_access', 'openid', 'User.Read'];

export const permissionsCheck: CheckDefinition<DoctorContext> = {
  id: 'permissions',
  number: 5,
  title: 'Permissions present and consented',
  dependsOn: ['app'],
  async run(ctx, signal) {
    const only = appOnly(ctx);
    if (ctx.options.graph) {
      const fromGraph = await permissionsFromGraph(ctx, signal).catch(() => undefined);
      if (fromGraph) return fromGraph;
    }
    const attempt = await tokenAttempt(ctx);
    if (attempt.error !== undefined) {
      const codes = errorAadsts(attempt.error);
      if (codes.includes(65001) || errorCode(attempt.error) === 'AUTH_CONSENT_REQUIRED') {
        // App-only consent is SMTP.SendAsApp's admin consent, not the guide's delegated list.
        const explanation = only ? explainFinding('token-role', ctx.explain) : explainIdentityError({ error_codes: [65001] }, ctx.explain);
        return failed(`the token request was refused for missing consent: ${errorMessage(attempt.error)}`, explanation);
      }
      if (errorCode(attempt.error) === 'AUTH_NOT_SIGNED_IN') {
        return notApplicable('cannot be read before sign-in (consent is asked at sign-in); run smtp365 login, then doctor again');
      }
      return notApplicable(`no token to read the granted permissions from (see check 6): ${errorMessage(attempt.error).split('\n')[0]}`);
    }
    const claims = decodeJwtPayload(attempt.token!.token);
    if (!claims) return notApplicable('the token is opaque (not a JWT): permissions cannot be read from it');
    if (only) {
      const roles = tokenRoles(claims);
      if (roles.includes('SMTP.SendAsApp')) return passed(`SMTP.SendAsApp is granted with admin consent (token roles: ${roles.join(' ')})`);
      return failed(`the app-only token carries no SMTP.SendAsApp role (roles: ${roles.join(' ') || 'none'})`, explainFinding('token-role', ctx.explain));
    }
    const scopes = tokenScopes(claims);
    if (!scopes.includes('SMTP.Send')) {
      return failed(`the token's scopes lack SMTP.Send (scp: ${scopes.join(' ') || 'none'})`, explainFinding('token-scope', ctx.explain));
    }
    // An Exchange token lists only Exchange scopes; a refresh token proves offline_access, the sign-in itself openid.
    return passed(`SMTP.Send is consented (token scp: ${scopes.join(' ')}); ${DELEGATED.slice(1).join(', ')} are implied by a working sign-in`);
  },
};

const GRAPH_APP_ID = '00000003-0000-0000-c000-000000000000';
const EXCHANGE_APP_ID = '00000002-0000-0ff1-ce00-000000000000';

interface GraphList<T> {
  value?: T[];
}

/**
 * Check 5 read from Graph (when doctor was given a token that may read the
 * directory): the permissions the app registration lists, and the consent
 * granted for them. Undefined when Graph cannot tell (then the token is used).
 */
async function permissionsFromGraph(ctx: DoctorContext, signal: AbortSignal): Promise<CheckOutcome | undefined> {
  const g = ctx.options.graph!;
  const account = requireAccount(ctx);
  const only = appOnly(ctx);
  const get = async <T>(p: string): Promise<T | undefined> => {
    const res = await httpRequest(`${g.endpoint.replace(/\/+$/, '')}/v1.0${p}`, { headers: { authorization: `Bearer ${g.token}` }, ca: g.ca, signal });
    return res.status === 200 ? jsonBody<T>(res) : undefined;
  };
  const q = (v: string) => `'${v.replace(/'/g, "''")}'`;
  const apps = await get<GraphList<{ requiredResourceAccess?: Array<{ resourceAppId: string; resourceAccess: Array<{ id: string; type: string }> }> }>>(
    `/applications?$filter=appId eq ${q(account.clientId)}&$select=id,appId,requiredResourceAccess`,
  );
  const sps = await get<GraphList<{ id: string }>>(`/servicePrincipals?$filter=appId eq ${q(account.clientId)}&$select=id,appId`);
  const app = apps?.value?.[0];
  const sp = sps?.value?.[0];
  if (!app || !sp) return undefined;
  ctx.explain.servicePrincipalId = sp.id;
  const resourceAppId = only ? EXCHANGE_APP_ID : GRAPH_APP_ID;
  const resource = await get<{ id: string; oauth2PermissionScopes?: Array<{ id: string; value: string }>; appRoles?: Array<{ id: string; value: string }> }>(
    `/servicePrincipals(appId='${resourceAppId}')?$select=id,oauth2PermissionScopes,appRoles`,
  );
  if (!resource) return undefined;
  const listed = new Set(app.requiredResourceAccess?.find((r) => r.resourceAppId.toLowerCase() === resourceAppId)?.resourceAccess.map((a) => a.id.toLowerCase()) ?? []);
  const wanted = only ? ['SMTP.SendAsApp'] : DELEGATED;
  const idOf = (name: string) => (only ? resource.appRoles : resource.oauth2PermissionScopes)?.find((p) => p.value === name)?.id.toLowerCase();
  const missing = wanted.filter((n) => !listed.has(idOf(n) ?? '-'));
  if (missing.length > 0) {
    return failed(`read from Graph: the app registration does not list ${missing.join(', ')}`, explainFinding('permission-not-configured', ctx.explain));
  }
  if (only) {
    const assigned = await get<GraphList<{ appRoleId: string; resourceId: string }>>(`/servicePrincipals/${sp.id}/appRoleAssignments`);
    if (!assigned) return undefined;
    if (!assigned.value?.some((a) => a.resourceId === resource.id && a.appRoleId.toLowerCase() === idOf('SMTP.SendAsApp'))) {
      return failed('read from Graph: SMTP.SendAsApp is listed but admin consent was not granted', explainFinding('consent-missing', ctx.explain));
    }
    return passed(`read from Graph: SMTP.SendAsApp listed and granted (service principal ${sp.id})`);
  }
  const grants = await get<GraphList<{ resourceId: string; consentType: string; scope: string }>>(`/oauth2PermissionGrants?$filter=clientId eq ${q(sp.id)}`);
  if (!grants) return undefined;
  const tenantWide = new Set(
    (grants.value ?? []).filter((x) => x.resourceId === resource.id && x.consentType === 'AllPrincipals').flatMap((x) => x.scope.split(/\s+/).filter(Boolean)),
  );
  const notGranted = wanted.filter((n) => !tenantWide.has(n));
  if (notGranted.length > 0) {
    // Users may still consent for themselves at sign-in, where the tenant allows it.
    return warning(`read from Graph: ${wanted.join(', ')} listed; no admin consent for ${notGranted.join(', ')}`, explainFinding('consent-missing', ctx.explain));
  }
  return passed(`read from Graph: ${wanted.join(', ')} listed and granted for the whole tenant`);
}

export { explainError };
