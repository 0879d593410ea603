// How an account's sign-in state reads for a person (smtp365 accounts,
// login's summary) and for a script (--json). One place, so `accounts`,
// `login` and doctor say the same thing.
import type { AccountStatus } from './provider.ts';

const DAY = 86_400_000;

/** A date with how far away it is; `past` for times that have happened (a last use), which a clock a hair ahead must not put in the future. */
function when(d: Date, now = Date.now(), past = false): string {
  const iso = d.toISOString().replace('T', ' ').slice(0, 16) + ' UTC';
  const diff = past ? Math.min(-1, d.getTime() - now) : d.getTime() - now;
  const abs = Math.abs(diff);
  if (abs < 60_000) return `${iso} (${diff >= 0 ? 'in under a minute' : 'just now'})`;
  const span = abs < 5_400_000 ? `${Math.round(abs / 60_000)} min` : abs < 2 * DAY ? `${Math.round(abs / 3_600_000)} h` : `${Math.round(abs / DAY)} days`;
  return `${iso} (${diff >= 0 ? `in ${span}` : `${span} ago`})`;
}

export interface StatusStyle {
  bold?: (s: string) => string;
  dim?: (s: string) => string;
  good?: (s: string) => string;
  bad?: (s: string) => string;
  warn?: (s: string) => string;
}

/** Lines describing an account: the heading, then label/value rows. */
export function formatStatus(s: AccountStatus, opts: { isDefault?: boolean; style?: StatusStyle } = {}): string[] {
  const id = (x: string) => x;
  const st = { bold: id, dim: id, good: id, bad: id, warn: id, ...opts.style };
  const now = Date.now();
  const lines: string[] = [];
  const flow = s.signInFlow && s.signInFlow !== s.flow ? `${s.signInFlow} (configured: ${s.flow})` : s.flow;
  lines.push(`${st.bold(s.account)}${opts.isDefault ? st.dim(' (default)') : ''}  ${s.user} ${st.dim(`· ${flow}${s.appOnly ? ' (app-only)' : ''}`)}`);
  const row = (label: string, value: string) => lines.push(`  ${st.dim(label.padEnd(14))} ${value}`);
  const stateText =
    s.state === 'active' ? st.good('active') : s.state === 'failed' ? st.bad('failed') : s.state === 'pending' ? st.warn('pending (sign-in in progress)') : st.warn('not signed in');
  row('state', stateText + (s.signedInAs ? ` · signed in as ${s.signedInAs}` : ''));
  if (s.signedInAs && s.signedInAs.toLowerCase() !== s.user.toLowerCase()) {
    row('', st.dim(`sends as ${s.user} with ${s.signedInAs}'s rights (shared mailbox / delegate)`));
  }
  if (s.accessTokenExpiresOn && s.state === 'failed') {
    // Issued before the failure, it still works until it expires (and is used): the sign-in is needed before then.
    const valid = s.accessTokenExpiresOn.getTime() > now;
    row('access token', valid ? `from before the failure, still used until ${when(s.accessTokenExpiresOn, now)}: sign in again before then` : st.dim(`expired ${when(s.accessTokenExpiresOn, now)}`));
  } else if (s.accessTokenExpiresOn) {
    const valid = s.accessTokenExpiresOn.getTime() > now;
    row('access token', `${valid ? 'valid until' : 'expired'} ${when(s.accessTokenExpiresOn, now)}${valid ? '' : st.dim(' · renewed on next use')}`);
  } else if (s.state !== 'empty') {
    row('access token', st.dim('none cached · obtained on next use'));
  }
  if (!s.appOnly) {
    if (s.refreshTokenLastUsed) {
      const age = s.refreshTokenAgeDays ?? 0;
      const ageText = `last used ${when(s.refreshTokenLastUsed, now, true)}`;
      const colored = age >= 60 ? st.bad(ageText) : age >= 30 ? st.warn(ageText) : ageText;
      // Once refused (revoked, expired), it has no idle expiry left to show.
      const idle = s.refreshTokenIdleExpiresOn && s.state !== 'failed' ? st.dim(` · expires if unused ${s.refreshTokenIdleExpiresOn.toISOString().slice(0, 10)}`) : '';
      row('refresh token', colored + idle);
    } else if (s.state === 'empty') {
      row('refresh token', st.dim('none'));
    }
  } else if (s.state === 'empty') {
    row('', st.dim('app-only: no sign-in needed; a token is requested on first use'));
  }
  if (s.lastError) {
    row('last error', `${st.bad(`[${s.lastError.code}]`)} ${s.lastError.message} ${st.dim(`(${when(s.lastError.at, now, true)}${s.lastError.transient ? ', temporary' : ''})`)}`);
  }
  return lines;
}

/** JSON-friendly status (dates as ISO strings). */
export function statusToJson(s: AccountStatus, isDefault = false): Record<string, unknown> {
  return {
    account: s.account,
    default: isDefault,
    user: s.user,
    flow: s.flow,
    signInFlow: s.signInFlow ?? null,
    appOnly: s.appOnly,
    state: s.state,
    signedInAs: s.signedInAs ?? null,
    accessTokenExpiresOn: s.accessTokenExpiresOn?.toISOString() ?? null,
    refreshTokenLastUsed: s.refreshTokenLastUsed?.toISOString() ?? null,
    refreshTokenAgeDays: s.refreshTokenAgeDays ?? null,
    refreshTokenIdleExpiresOn: s.refreshTokenIdleExpiresOn?.toISOString() ?? null,
    lastError: s.lastError ? { ...s.lastError, at: s.lastError.at.toISOString() } : null,
    cacheFile: s.cacheFile,
  };
}
