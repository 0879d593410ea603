// Helpers the checks share: memoised probes and turning thrown errors into
// explanations (always through src/errors/explain.ts).
import { smtpScopes, isAppOnly, type Account } from '../../config/account.ts';
import { isSmtp365Error } from '../../errors/error.ts';
import { aadstsCodes, explainIdentityError, type Explanation, type ExplainContext } from '../../errors/explain.ts';
import type { ErrorCode } from '../../errors/codes.ts';
import { httpRequest, jsonBody } from '../http.ts';
import type { DeviceProbe, DoctorContext, TokenAttempt } from '../context.ts';

export function requireAccount(ctx: DoctorContext): Account {
  if (!ctx.account) throw new Error('internal: the configuration check did not run');
  return ctx.account;
}

export function appOnly(ctx: DoctorContext): boolean {
  return isAppOnly(requireAccount(ctx));
}

/** Gets the SMTP token once for all checks. Never starts an interactive sign-in. */
export function tokenAttempt(ctx: DoctorContext): Promise<TokenAttempt> {
  ctx.tokenAttempt ??= (async (): Promise<TokenAttempt> => {
    const account = requireAccount(ctx);
    try {
      ctx.provider ??= await ctx.deps.createTokenProvider(account, ctx.env);
      // Read the sign-in's state first: getting a token renews the refresh token and resets its age.
      ctx.signInBefore = await ctx.provider.state?.().catch(() => undefined);
      // Forced: "signed in" must mean the identity service accepts the sign-in (or the secret) now,
      // not that a cached access token has not expired yet. It also renews the 90-day idle clock.
      return { token: await ctx.provider.getAccessToken({ forceRefresh: true }) };
    } catch (error) {
      return { error };
    }
  })();
  return ctx.tokenAttempt;
}

export function errorCode(err: unknown): ErrorCode | undefined {
  return isSmtp365Error(err) ? err.code : undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** AADSTS codes carried by an error from auth (explanation, details or message). */
export function errorAadsts(err: unknown): number[] {
  if (isSmtp365Error(err) && err.explanation?.aadsts !== undefined) return [err.explanation.aadsts];
  return aadstsCodes(errorMessage(err));
}

/** The explanation of an error auth threw, re-made with doctor's context (the user's values). */
export function explainError(err: unknown, ctx: ExplainContext): Explanation | undefined {
  const codes = errorAadsts(err);
  if (codes.length > 0) return explainIdentityError({ error_codes: codes, error_description: errorMessage(err) }, ctx);
  if (isSmtp365Error(err)) return err.explanation;
  return undefined;
}

/** Asks for a device code and polls the token endpoint once: tells "app unknown" and "public client flows off" apart without anyone signing in. */
export function deviceProbe(ctx: DoctorContext, signal: AbortSignal): Promise<DeviceProbe> {
  ctx.deviceProbe ??= (async (): Promise<DeviceProbe> => {
    const account = requireAccount(ctx);
    const base = `${account.authorityHost}/${account.tenant}/oauth2/v2.0`;
    try {
      const dc = await httpRequest(`${base}/devicecode`, {
        body: new URLSearchParams({ client_id: account.clientId, scope: [...smtpScopes(account), 'openid', 'profile'].join(' ') }),
        ca: ctx.trust,
        signal,
      });
      const dcBody = jsonBody<{ device_code?: string } & DeviceProbe['error']>(dc);
      if (dc.status !== 200 || !dcBody?.device_code) {
        return { stage: 'devicecode', httpStatus: dc.status, error: dcBody ?? { error_description: dc.text.slice(0, 300) } };
      }
      const poll = await httpRequest(`${base}/token`, {
        body: new URLSearchParams({
          grant_type: 'urn:ietf:params:oauth:grant-type:device_code',
          client_id: account.clientId,
          device_code: dcBody.device_code,
        }),
        ca: ctx.trust,
        signal,
      });
      const pollBody = jsonBody<NonNullable<DeviceProbe['error']>>(poll);
      if (pollBody?.error === 'authorization_pending' || pollBody?.error === 'slow_down') return { stage: 'pending' };
      return { stage: 'token', httpStatus: poll.status, error: pollBody ?? { error_description: poll.text.slice(0, 300) } };
    } catch (err) {
      return { stage: 'network', message: `${(err as NodeJS.ErrnoException).code ?? ''} ${errorMessage(err)}`.trim() };
    }
  })();
  return ctx.deviceProbe;
}

export function identityCodes(e: DeviceProbe['error']): number[] {
  return e ? aadstsCodes(e) : [];
}

/** First line of an identity error, for the detail. */
export function identityLine(e: DeviceProbe['error']): string {
  const d = e?.error_description ?? e?.error ?? 'unknown error';
  return d.split(/\r?\n/)[0] ?? d;
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** "in 1 h 14 min", "3 days". */
export function humanDuration(ms: number): string {
  const s = Math.round(Math.abs(ms) / 1000);
  if (s < 90) return plural(s, 'second');
  const m = Math.round(s / 60);
  if (m < 90) return plural(m, 'minute');
  const h = Math.round(m / 60);
  if (h < 48) return plural(h, 'hour');
  return plural(Math.round(h / 24), 'day');
}
