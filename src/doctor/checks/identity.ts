// Checks 2–5: what Entra ID knows about the tenant and the app registration
// (guide steps 1–19), asked without anyone having to sign in where possible.
import { explainFinding, explainIdentityError } from '../../errors/explain.ts';
import { httpRequest, jsonBody } from '../http.ts';
import { decodeJwtPayload, tokenRoles, tokenScopes } from '../jwt.ts';
import type { DoctorContext } from '../context.ts';
import { failed, notApplicable, passed, warning, type CheckDefinition } from '../types.ts';
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
      if (errorCode(attempt.error) === 'AUTH_NETWORK') return failed(errorMessage(attempt.error), explainFinding('identity-unreachable', ctx.explain));
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
  async run(ctx) {
    const only = appOnly(ctx);
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

export { explainError };
