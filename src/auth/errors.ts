// Turns what MSAL throws (AuthError and its kin: errorCode, errorMessage,
// subError) plus the identity service's last error body into one
// Smtp365Error with the explanation from src/errors/explain.ts. No wording
// about Microsoft's errors lives here: only the mapping of MSAL's own
// client-side codes to ours.
import { Smtp365Error } from '../errors/error.ts';
import { explainIdentityError, type ExplainContext, type Explanation, type IdentityErrorInput } from '../errors/explain.ts';
import type { ErrorCode } from '../errors/codes.ts';
import { redact } from '../util/redact.ts';
import { isAppOnly, type Account } from '../config/account.ts';
import type { IdentityErrorBody } from './network.ts';

interface MsalLikeError {
  errorCode?: string;
  errorMessage?: string;
  subError?: string;
  errorNo?: string;
  status?: number;
  correlationId?: string;
  message?: string;
}

function isMsalError(err: unknown): err is MsalLikeError & Error {
  return err instanceof Error && typeof (err as MsalLikeError).errorCode === 'string';
}

export function explainContext(account: Account): ExplainContext {
  return { tenantId: account.tenant, clientId: account.clientId, mailbox: account.user, appOnly: isAppOnly(account), accountName: account.name };
}

function relogin(account: Account): string {
  return `smtp365 login${account.name === 'default' ? '' : ` --account ${account.name}`}`;
}

function own(code: ErrorCode, title: string, cause: string, fix: string[], transient = false): Explanation {
  return { code, transient, title, cause, fix };
}

/** Explanation for "no saved sign-in". */
export function notSignedIn(account: Account): Smtp365Error {
  return new Smtp365Error('AUTH_NOT_SIGNED_IN', `Account "${account.name}" is not signed in`, {
    explanation: own('AUTH_NOT_SIGNED_IN', 'The account is not signed in', 'There are no saved tokens for this account on this machine (or they were removed).', [
      `Sign in: ${relogin(account)}`,
    ]),
    details: { account: account.name },
  });
}

const DEVICE_POLL_ERRORS = new Set(['authorization_declined', 'expired_token', 'code_expired', 'bad_verification_code']);

function aadstsOf(e: IdentityErrorInput): number | undefined {
  return e.error_codes?.[0] ?? (e.error_description ? Number(/AADSTS(\d+)/.exec(e.error_description)?.[1]) || undefined : undefined);
}

const CLIENT_CODES_NOT_SIGNED_IN = new Set(['no_account_in_silent_request', 'no_tokens_found', 'no_account_found', 'refresh_token_expired', 'native_account_unavailable']);
const CLIENT_CODES_NETWORK = new Set(['network_error', 'endpoints_resolution_error', 'openid_config_error', 'network_unavailable', 'request_cannot_be_made']);

export interface MapContext {
  account: Account;
  /** What was being done, for the message: "sign-in", "token refresh". */
  operation: string;
  /** The identity service's last error body, if any arrived during the operation. */
  serverError?: IdentityErrorBody;
  /** The last failed connection (MSAL's discovery hides its cause). */
  networkFailure?: Error;
  /** Until when MSAL holds token requests back after a 429/5xx (epoch ms), when known. */
  throttledUntil?: number;
}

/** Maps anything thrown while getting a token into a Smtp365Error with an explanation. */
export function toAuthError(err: unknown, ctx: MapContext): Smtp365Error {
  const e = mapAuthError(err, ctx);
  // After a 429/5xx MSAL holds token requests back (see HttpsNetworkClient.throttledUntil): a
  // transient failure says so, so retry loops wait it out rather than spend attempts on replays.
  const left = ctx.throttledUntil !== undefined ? ctx.throttledUntil - Date.now() : 0;
  if (!e.transient || e.retryAfterMs !== undefined || left <= 0) return e;
  return e.with({ details: { retryAfterMs: left }, retryAfterMs: left });
}

function mapAuthError(err: unknown, ctx: MapContext): Smtp365Error {
  if (err instanceof Smtp365Error) return err;
  const ectx = explainContext(ctx.account);
  const server = ctx.serverError;
  const m = isMsalError(err) ? err : undefined;
  const details: Record<string, unknown> = { account: ctx.account.name };
  if (m?.errorCode) details.msalError = m.errorCode;
  if (m?.correlationId) details.correlationId = m.correlationId;

  // MSAL throttles itself after a 429/5xx from the token endpoint (up to 60 s
  // without Retry-After): it then throws, without asking, a ServerError that
  // replays the old answer's description with its numeric AADSTS codes as the
  // error code and no HTTP status (ThrottlingUtils.preProcess). No response
  // arrived in this operation, so this is that replay: transient, whatever the
  // old text says. (Sign-in redirects also give status-less ServerErrors, but
  // with an OAuth error word such as access_denied as the code.)
  if (m && m.name === 'ServerError' && m.status === undefined && !server && !ctx.networkFailure && /^(\d+( \d+)*)?$/.test(m.errorCode ?? '')) {
    const said = m.errorMessage ? redact(firstLine(m.errorMessage)) : '';
    // The wait left, so a retry loop waits it out instead of spending its attempts on replays.
    const retryAfterMs = ctx.throttledUntil !== undefined ? Math.max(0, ctx.throttledUntil - Date.now()) : 60_000;
    const seconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
    const explanation = own(
      'AUTH_NETWORK',
      'The identity service is temporarily unavailable',
      `It answered with a server error recently${said ? ` (${said})` : ''}, so token requests are held back for ${seconds} s more.`,
      [`Try again in ${seconds} s (a send waits that long by itself when its retry budget allows).`, 'Mail that must not wait for you: send it through the relay (smtp365 relay), which keeps it queued and retries.'],
      true,
    );
    return new Smtp365Error('AUTH_NETWORK', explanation.title, { cause: err, details: { ...details, retryAfterMs }, explanation, transient: true, retryAfterMs });
  }

  // The identity service said something: that is the truth to explain.
  // "Keep polling" answers are never why a sign-in failed: when one is the
  // last thing the service said, the failure came after it (the connection).
  const keepPolling = server?.error === 'authorization_pending' || server?.error === 'slow_down';
  const fromServer: IdentityErrorInput | undefined =
    server && !keepPolling && (server.error_codes?.length || server.error_description || server.error)
      ? server
      : m && (m.errorMessage?.includes('AADSTS') || (m.errorCode && !CLIENT_CODES_NETWORK.has(m.errorCode) && m.status !== undefined))
        ? {
            error: m.errorCode,
            error_description: m.errorMessage,
            ...(m.subError ? { suberror: m.subError } : {}),
            ...(m.errorNo && /^\d+$/.test(m.errorNo) ? { error_codes: [Number(m.errorNo)] } : {}),
          }
        : undefined;
  const status = server?.status ?? m?.status;

  if (fromServer) {
    if (server?.trace_id) details.traceId = server.trace_id;
    if (server?.correlation_id) details.correlationId = server.correlation_id;
    if (status !== undefined) details.httpStatus = status;
    const transientServer =
      (status !== undefined && (status >= 500 || status === 429)) ||
      fromServer.error === 'temporarily_unavailable' ||
      /temporarily_unavailable|transient error|service (is )?(temporarily )?unavailable/i.test(fromServer.error_description ?? '');
    // Device-code polling answers are told by their OAuth error (Entra attaches a generic AADSTS code to them).
    const polling = fromServer.error !== undefined && DEVICE_POLL_ERRORS.has(fromServer.error);
    let explanation = explainIdentityError(polling ? { error: fromServer.error!, ...(fromServer.error_description ? { error_description: fromServer.error_description.replace(/AADSTS\d+/g, '') } : {}) } : fromServer, ectx);
    if (polling && aadstsOf(fromServer) !== undefined) explanation = { ...explanation, aadsts: aadstsOf(fromServer)! };
    if (transientServer && (explanation.code === 'AUTH_FAILED' || explanation.aadsts === undefined)) {
      explanation = own(
        'AUTH_NETWORK',
        'The identity service is temporarily unavailable',
        // The description usually ends with its own period ("Please try again."): one is enough.
        `It answered ${status !== undefined ? `HTTP ${status}` : fromServer.error}${fromServer.error_description ? `: ${firstLine(fromServer.error_description).replace(/[.\s]+$/, '')}` : ''}.`,
        ['Try again later.', 'Mail that must not wait for you: send it through the relay (smtp365 relay), which keeps it queued and retries.'],
        true,
      );
    }
    if (explanation.aadsts !== undefined) details.aadsts = explanation.aadsts;
    if (fromServer.error) details.error = fromServer.error;
    const message = fromServer.error_description ? redact(firstLine(fromServer.error_description)) : explanation.title;
    // A 5xx or 429 is the service's trouble, whatever code its text names: retry (the relay defers, it does not raise an account alert).
    const httpTransient = status !== undefined && (status >= 500 || status === 429);
    return new Smtp365Error(explanation.code, message, { explanation, cause: err, details, ...(httpTransient ? { transient: true } : {}) });
  }

  const code = m?.errorCode ?? '';
  const text = redact(ctx.networkFailure?.message || m?.errorMessage || (err instanceof Error ? err.message : String(err)));
  if (code === 'device_code_polling_cancelled' || (err instanceof Error && err.name === 'AbortError')) {
    return new Smtp365Error('AUTH_CANCELLED', 'Sign-in was cancelled', {
      cause: err,
      details,
      explanation: own('AUTH_CANCELLED', 'Sign-in was cancelled', 'The sign-in was stopped before it finished; nothing was saved.', [`Run ${relogin(ctx.account)} again when ready.`]),
    });
  }
  if (code === 'device_code_expired' || code === 'user_timeout_reached') {
    const explanation = explainIdentityError({ error: 'expired_token' }, ectx);
    return new Smtp365Error(explanation.code, explanation.title, { cause: err, details, explanation });
  }
  if (CLIENT_CODES_NOT_SIGNED_IN.has(code)) return notSignedIn(ctx.account);
  if (CLIENT_CODES_NETWORK.has(code) || /ECONNREFUSED|ENOTFOUND|ETIMEDOUT|ECONNRESET|EAI_AGAIN|socket hang up/i.test(text)) {
    const tlsProblem = /certificate|self.signed|unable to verify|UNABLE_TO_GET_ISSUER|CERT_/i.test(text);
    const host = safeHost(ctx.account.authorityHost);
    const explanation = tlsProblem
      ? own(
          'AUTH_NETWORK',
          `The TLS certificate of ${host} could not be verified`,
          `${text}. A proxy that inspects TLS, or a private identity service (the sandbox), uses a CA this machine does not trust.`,
          ['Add the CA (PEM) to the account: caFile in the config, SMTP365_CA_FILE, or --ca-file.'],
          false,
        )
      : own(
          'AUTH_NETWORK',
          `The identity service at ${host} could not be reached`,
          `${text}. DNS, a firewall, a proxy or the network is in the way, or the service is down.`,
          [`Check that this machine reaches ${host} over HTTPS${host.includes(':') ? '' : ' (port 443)'}; retry later.`],
          true,
        );
    return new Smtp365Error('AUTH_NETWORK', explanation.title, { cause: err, details, explanation, transient: explanation.transient });
  }
  const explanation = own('AUTH_FAILED', `The ${ctx.operation} failed`, text || 'An unexpected error from the sign-in library.', [
    'Run the command again with --verbose for the details.',
    `If it persists, sign in again: ${relogin(ctx.account)}`,
  ]);
  return new Smtp365Error('AUTH_FAILED', `The ${ctx.operation} failed: ${text}`, { cause: err, details, explanation });
}

function firstLine(s: string): string {
  return (s.split(/\r?\n/)[0] ?? s).trim();
}

function safeHost(u: string): string {
  try {
    return new URL(u).host;
  } catch {
    return u;
  }
}
