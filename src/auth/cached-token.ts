// Reads a still-valid access token straight out of MSAL's serialized cache,
// so the common case — `smtp365 send` / `token` from cron or msmtp with a
// token minted minutes ago — needs neither MSAL (100+ ms to load) nor the
// cross-process lock. It finds exactly the token MSAL's own silent lookup
// would return (same client, tenant/account, environment alias and scopes,
// plain Bearer), and gives up — returning undefined, so the caller takes the
// full MSAL path — on anything unusual: several candidates, a token due for
// proactive refresh (refresh_on), one within MSAL's 5-minute renewal window or
// the caller's margin, an unknown authority alias.
import { isAppOnly, smtpScopes, type Account } from '../config/account.ts';
import type { AccessToken } from './types.ts';

/** MSAL renews an access token this long before it expires (tokenRenewalOffsetSeconds). */
export const MSAL_RENEWAL_OFFSET_SECONDS = 300;

/** Scopes MSAL leaves out of an access token lookup (OIDC scopes). */
const OIDC_SCOPES = new Set(['openid', 'profile', 'offline_access']);

/** MSAL's built-in authority aliases: a token cached under one host serves the others. */
const ALIAS_GROUPS: string[][] = [
  ['login.microsoftonline.com', 'login.windows.net', 'login.microsoft.com', 'sts.windows.net'],
  ['login.partner.microsoftonline.cn', 'login.chinacloudapi.cn'],
  ['login.microsoftonline.us', 'login.usgovcloudapi.net'],
];

interface MsalAccountEntity {
  home_account_id?: string;
  environment?: string;
  realm?: string;
  username?: string;
}

interface MsalAccessTokenEntity {
  home_account_id?: string;
  environment?: string;
  credential_type?: string;
  client_id?: string;
  secret?: string;
  realm?: string;
  target?: string;
  cached_at?: string | number;
  expires_on?: string | number;
  refresh_on?: string | number;
  token_type?: string;
  [other: string]: unknown;
}

interface MsalCache {
  Account?: Record<string, MsalAccountEntity>;
  AccessToken?: Record<string, MsalAccessTokenEntity>;
}

/** The host names (with port) a token cached for this account's authority may be stored under. */
function environments(account: Account): Set<string> {
  let host: string;
  try {
    host = new URL(account.authorityHost).host.toLowerCase();
  } catch {
    return new Set();
  }
  const group = ALIAS_GROUPS.find((g) => g.includes(host));
  return new Set(group ?? [host]);
}

const lower = (s: unknown) => (typeof s === 'string' ? s.toLowerCase() : undefined);

/**
 * The access token MSAL would hand out from this cache without a network call,
 * when it stays valid for more than `minValiditySeconds` (and MSAL's renewal
 * offset); undefined whenever MSAL must be asked.
 */
export function cachedAccessToken(msalJson: string, account: Account, signedInAs: string | undefined, minValiditySeconds: number, now = Date.now()): AccessToken | undefined {
  let cache: MsalCache;
  try {
    cache = JSON.parse(msalJson) as MsalCache;
  } catch {
    return undefined;
  }
  if (!cache || typeof cache !== 'object') return undefined;
  const envs = environments(account);
  const appOnly = isAppOnly(account);
  let homeAccountId = '';
  let realm = lower(account.tenant);
  let username: string | undefined;
  let environment: string | undefined;
  if (!appOnly) {
    // The account acquire() would pick: the signed-in user, else the first one.
    const accounts = Object.values(cache.Account ?? {}).filter((a) => a && typeof a === 'object' && typeof a.username === 'string');
    const acct = accounts.find((a) => a.username!.toLowerCase() === (signedInAs ?? '').toLowerCase()) ?? accounts[0];
    if (!acct || typeof acct.home_account_id !== 'string' || !acct.home_account_id || typeof acct.realm !== 'string') return undefined;
    if (!envs.has(lower(acct.environment) ?? '')) return undefined;
    homeAccountId = acct.home_account_id;
    realm = acct.realm.toLowerCase();
    environment = lower(acct.environment);
    username = acct.username;
  }
  const wanted = smtpScopes(account)
    .map((s) => s.toLowerCase())
    .filter((s) => !OIDC_SCOPES.has(s));
  const candidates = Object.values(cache.AccessToken ?? {}).filter((t) => {
    if (!t || typeof t !== 'object') return false;
    if (t.credential_type !== 'AccessToken') return false; // not PoP / bound tokens
    if (t.token_type !== undefined && String(t.token_type).toLowerCase() !== 'bearer') return false;
    if (lower(t.client_id) !== account.clientId.toLowerCase()) return false;
    if ((t.home_account_id ?? '') !== homeAccountId) return false;
    if (lower(t.realm) !== realm) return false;
    const env = lower(t.environment) ?? '';
    if (environment !== undefined ? env !== environment : !envs.has(env)) return false;
    if (typeof t.target !== 'string') return false;
    const have = new Set(t.target.toLowerCase().split(' ').filter(Boolean));
    return wanted.every((s) => have.has(s));
  });
  // MSAL refuses several matches; let it say so.
  if (candidates.length !== 1) return undefined;
  const t = candidates[0]!;
  // Extra cache-key components (claims, FMI path) belong to other requests.
  if (Object.keys(t).some((k) => k === 'requested_claims' || k === 'requested_claims_hash' || k === 'key_id' || k === 'fmi_path' || k === 'client_claims')) return undefined;
  if (typeof t.secret !== 'string' || t.secret.length === 0) return undefined;
  const expiresOn = Number(t.expires_on) * 1000;
  if (!Number.isFinite(expiresOn) || expiresOn <= 0) return undefined;
  const margin = Math.max(MSAL_RENEWAL_OFFSET_SECONDS, minValiditySeconds) * 1000;
  if (expiresOn - now <= margin) return undefined;
  // A clock turned back since the token was cached: MSAL renews.
  if (t.cached_at !== undefined && !(Number(t.cached_at) * 1000 <= now)) return undefined;
  if (t.refresh_on !== undefined && t.refresh_on !== '') {
    const refreshOn = Number(t.refresh_on) * 1000;
    if (!Number.isFinite(refreshOn) || refreshOn <= now) return undefined;
  }
  const token: AccessToken = { token: t.secret, expiresOn: new Date(expiresOn), scopes: t.target!.split(' ').filter(Boolean) };
  if (!appOnly && username) token.username = username;
  return token;
}
