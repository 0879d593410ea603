// Checks 6–7: the sign-in (tokens present, fresh, refresh token's age) and
// the access token's claims: what Exchange will look at when AUTH arrives.
import { explainFinding } from '../../errors/explain.ts';
import { decodeJwtPayload, tokenAudiences, tokenRoles, tokenScopes, tokenUser } from '../jwt.ts';
import type { DoctorContext } from '../context.ts';
import { failed, passed, warning, type CheckDefinition, type CheckOutcome } from '../types.ts';
import { appOnly, errorCode, errorMessage, explainError, humanDuration, requireAccount, tokenAttempt } from './shared.ts';

const DAY = 86_400_000;
/** Refresh tokens expire after 90 days without use; warn when less than 30 remain. */
const REFRESH_LIFETIME_DAYS = 90;
const REFRESH_WARN_DAYS = 60;

export const signInCheck: CheckDefinition<DoctorContext> = {
  id: 'sign-in',
  number: 6,
  title: 'Signed in, token fresh',
  // Renewing a delegated sign-in needs public client flows (7000218 is check 4's) and
  // consent (65001 is check 5's): each problem is reported once, where it is fixed.
  dependsOn: ['app', 'public-client', 'permissions'],
  async run(ctx) {
    const account = requireAccount(ctx);
    const only = appOnly(ctx);
    const attempt = await tokenAttempt(ctx);
    if (attempt.error !== undefined) {
      const message = errorMessage(attempt.error);
      if (errorCode(attempt.error) === 'AUTH_NOT_SIGNED_IN') return failed(message, explainFinding('not-signed-in', ctx.explain));
      return failed(message, explainError(attempt.error, ctx.explain));
    }
    const token = attempt.token!;
    const now = Date.now();
    const left = token.expiresOn.getTime() - now;
    if (left <= 0) return failed(`the access token expired ${humanDuration(left)} ago`, explainFinding('token-expired', ctx.explain));
    const who = only ? `app ${account.clientId} (client credentials)` : `signed in as ${token.username ?? tokenUser(decodeJwtPayload(token.token) ?? {}) ?? 'an unknown user'}`;
    const parts = [`${who}; access token valid for ${humanDuration(left)} (until ${token.expiresOn.toISOString()})`];
    let outcome: CheckOutcome = passed('');
    if (!only) {
      const before = ctx.signInBefore?.refreshTokenLastUsed;
      const after = (await ctx.provider?.state?.().catch(() => undefined))?.refreshTokenLastUsed;
      if (before) {
        const age = now - before.getTime();
        const renewed = after !== undefined && after.getTime() > before.getTime();
        if (renewed) {
          parts.push(`refresh token had been idle ${humanDuration(age)}; renewed now (90 days unused from now)`);
        } else {
          parts.push(`refresh token last used ${humanDuration(age)} ago; expires unused in ${humanDuration(REFRESH_LIFETIME_DAYS * DAY - age)}`);
          if (age > REFRESH_WARN_DAYS * DAY) outcome = warning('', explainFinding('refresh-token-aging', ctx.explain));
        }
      } else {
        parts.push('refresh token renewed on every use; it expires after 90 days unused');
      }
    }
    return { ...outcome, detail: parts.join('; ') };
  },
};

/** Audiences Exchange Online accepts for SMTP (all clouds), and the account's resource when it names Exchange. */
const EXCHANGE_AUDIENCES = [
  'https://outlook.office.com',
  'https://outlook.office365.com',
  'https://outlook.office365.us',
  'https://partner.outlook.cn',
  '00000002-0000-0ff1-ce00-000000000000',
];
function acceptedAudiences(resource: string): string[] {
  let own: string[] = [];
  try {
    // A custom resource counts only when it is an Exchange (outlook) host: a Graph token must not pass.
    if (/outlook/i.test(new URL(resource).host)) own = [resource];
  } catch {
    own = [];
  }
  const base = [...EXCHANGE_AUDIENCES, ...own];
  return [...base, ...base.map((a) => a + '/')].map((a) => a.toLowerCase());
}

export const claimsCheck: CheckDefinition<DoctorContext> = {
  id: 'token-claims',
  number: 7,
  title: 'Token claims (audience, permission, user)',
  // A missing SMTP.Send / SMTP.SendAsApp is reported once, by check 5.
  dependsOn: ['sign-in', 'permissions'],
  async run(ctx) {
    const account = requireAccount(ctx);
    const only = appOnly(ctx);
    const attempt = await tokenAttempt(ctx);
    const claims = decodeJwtPayload(attempt.token!.token);
    ctx.claims = claims ?? null;
    if (!claims) return warning('the access token is opaque (not a JWT); claims not checked', explainFinding('token-not-jwt', ctx.explain));
    const aud = tokenAudiences(claims);
    const seen: string[] = [`aud ${aud.join(',') || '(none)'}`];
    if (!aud.some((a) => acceptedAudiences(account.smtpResource).includes(a.toLowerCase()))) {
      ctx.explain.audience = aud.join(', ');
      return failed(`the token's audience is ${aud.join(', ') || 'missing'}, not Exchange Online`, explainFinding('token-audience', ctx.explain));
    }
    const tenantWanted = ctx.tenantId ?? account.tenant;
    if (claims.tid && /^[0-9a-f-]{36}$/i.test(tenantWanted) && claims.tid.toLowerCase() !== tenantWanted.toLowerCase()) {
      return failed(`the token's tenant is ${claims.tid}, the account's is ${tenantWanted}`, explainFinding('token-tenant', ctx.explain));
    }
    const app = claims.appid ?? claims.azp;
    if (app && app.toLowerCase() !== account.clientId.toLowerCase()) {
      return failed(`the token was issued to app ${app}, the account's is ${account.clientId}`, explainFinding('token-app', ctx.explain));
    }
    if (only) {
      // An app-only token's oid is the Enterprise application's object id, which New-ServicePrincipal
      // wants; Graph (setup's doctor run) may have filled it in already.
      if (claims.oid) ctx.explain.servicePrincipalId ??= claims.oid;
      const roles = tokenRoles(claims);
      seen.push(`roles ${roles.join(' ') || '(none)'}`);
      if (!roles.includes('SMTP.SendAsApp')) return failed(`${seen.join('; ')}: no SMTP.SendAsApp role`, explainFinding('token-role', ctx.explain));
      return passed(`${seen.join('; ')}; user=${account.user} (app-only: needs FullAccess on it, checked by AUTH below)`);
    }
    const scopes = tokenScopes(claims);
    seen.push(`scp ${scopes.join(' ') || '(none)'}`);
    if (!scopes.includes('SMTP.Send')) return failed(`${seen.join('; ')}: no SMTP.Send scope`, explainFinding('token-scope', ctx.explain));
    const upn = tokenUser(claims);
    if (upn) {
      ctx.explain.tokenUser = upn;
      seen.push(`upn ${upn}`);
    }
    if (upn && upn.toLowerCase() !== account.user.toLowerCase()) {
      return warning(`${seen.join('; ')}; user=${account.user} is another mailbox`, explainFinding('token-user-delegate', ctx.explain));
    }
    return passed(`${seen.join('; ')}; user=${account.user}`);
  },
};
